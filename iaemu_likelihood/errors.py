"""Exceptions raised by iaemu. All derive from :class:`IAEmuError`."""

__all__ = ["IAEmuError", "ConfigError", "OutOfRangeError", "InputShapeError", "BatchTooLargeError",
           "WeightsIntegrityError", "WeightsNotFoundError"]


class IAEmuError(Exception):
    """Base class of every error raised by iaemu."""


class ConfigError(IAEmuError, ValueError):
    """A configuration file, key or option is unknown, of the wrong type or out of range."""


class OutOfRangeError(IAEmuError, ValueError):
    """An input parameter is outside the emulator's training range (or not finite)."""


class InputShapeError(IAEmuError, ValueError):
    """Emulator inputs of the wrong shape or type, or with missing or unknown parameter names."""


class BatchTooLargeError(IAEmuError, ValueError):
    """A batch whose result would need more memory than the emulator's limit allows."""


class WeightsIntegrityError(IAEmuError):
    """A weights file does not match its recorded SHA-256 checksum, or is malformed."""


class WeightsNotFoundError(IAEmuError, FileNotFoundError):
    """The requested weights version or folder does not exist."""
