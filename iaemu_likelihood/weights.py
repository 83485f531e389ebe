"""Locating shipped weight folders (package data under ``iaemu_likelihood.trained_weights``).

A weights folder holds ``metadata.json``, the tensors, ``SHA256SUMS`` and a README;
see ``trained_weights/README.md`` for the schema.
"""
from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

from ._io import read_json_file, unique_json_keys  # noqa: F401  (their home is _io; read here too)
from .errors import ConfigError, WeightsNotFoundError

__all__ = ["weights_root", "available_versions", "default_version", "resolve_weights_dir",
           "read_metadata", "read_json_file", "unique_json_keys", "METADATA_FILE", "WEIGHTS_FILE",
           "CORRELATION_FILE", "MASS_FUNCTION_FILE", "MASS_FUNCTION_TABLE_FILE", "REFERENCE_FILE", "CHECKSUM_FILE",
           "REQUIRED_FILES", "caveats_of", "warn_caveats"]

#: Names of the files of a weights folder (one place: the reader, the writer and the checksums).
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "weights.npz"
CORRELATION_FILE = "residual_correlation.npy"
MASS_FUNCTION_FILE = "halo_mass_function.npz"
#: Host mass function across an N-body suite, for weights with cosmology/redshift inputs (optional;
#: named by metadata["mass_function_table"], :mod:`iaemu_likelihood.mass_function_table`).
MASS_FUNCTION_TABLE_FILE = "halo_mass_function_table.npz"
REFERENCE_FILE = "reference_predictions.npz"
CHECKSUM_FILE = "SHA256SUMS"
#: Files every weights folder must have (and have checksummed).
REQUIRED_FILES = (METADATA_FILE, WEIGHTS_FILE, CORRELATION_FILE, MASS_FUNCTION_FILE)
#: Files never checksummed.
UNCHECKED_FILES = ("README.md", CHECKSUM_FILE)
DEFAULT_FILE = "DEFAULT"
log = logging.getLogger(__name__)
#: versions whose caveats this process has logged (once each)
_CAVEATS_LOGGED: set = set()


def weights_root() -> Path:
    """Folder that holds the shipped weight versions."""
    return Path(str(resources.files("iaemu_likelihood.trained_weights")))


def available_versions() -> list[str]:
    """Names of the shipped weight versions (folders with a metadata.json), sorted."""
    root = weights_root()
    return sorted(p.name for p in root.iterdir() if (p / METADATA_FILE).is_file())


def default_version() -> str | None:
    """The version named in ``trained_weights/DEFAULT``, or None when no weights are shipped."""
    marker = weights_root() / DEFAULT_FILE
    if not marker.is_file():
        return None
    name = marker.read_text().strip()
    return name or None


def resolve_weights_dir(version: str | os.PathLike | None = None) -> Path:
    """Return the folder of a weights version.

    Parameters
    ----------
    version : str or path-like, optional
        A shipped version name, or a path to a weights folder. None selects the default.

    Raises
    ------
    WeightsNotFoundError
        If nothing matches; the message lists what is available.
    """
    if version is not None and not isinstance(version, (str, os.PathLike)):
        raise ConfigError(f"weights = {version!r} ({type(version).__name__}); allowed: a shipped "
                          f"version name (shipped: {available_versions() or 'none'}) or the path "
                          "of a weights folder")
    if version is None:
        version = default_version()
        if version is None:
            raise WeightsNotFoundError(
                "no trained weights are shipped in this installation "
                f"({weights_root()} has no DEFAULT file); pass a weights folder explicitly")
    candidate = Path(version)
    if candidate.is_dir() and (candidate / METADATA_FILE).is_file():
        return candidate.resolve()
    shipped = weights_root() / str(version)
    if (shipped / METADATA_FILE).is_file():
        return shipped
    raise WeightsNotFoundError(
        f"weights {str(version)!r} not found: not a folder with {METADATA_FILE} and not a shipped "
        f"version (shipped: {available_versions() or 'none'})")


def read_metadata(version: str | os.PathLike | None = None) -> dict:
    """Parsed ``metadata.json`` of a weights version (parsed only: :func:`~iaemu_likelihood.
    weights_io.read_metadata_file` also validates it)."""
    return read_json_file(resolve_weights_dir(version) / METADATA_FILE)


def caveats_of(meta: dict) -> list[str]:
    """Known limits of a weights version (``metadata["caveats"]``, written from the training
    config's ``caveats``; validated at load): sentences, empty for weights without any."""
    return list(meta.get("caveats") or [])


def warn_caveats(meta: dict) -> None:
    """Log a weights version's caveats as warnings, once per version and process (loading the same
    weights again, as Cobaya and CosmoSIS do per component, does not repeat them)."""
    caveats = caveats_of(meta)
    key = meta.get("version")
    if not caveats or key in _CAVEATS_LOGGED:
        return
    _CAVEATS_LOGGED.add(key)
    for text in caveats:
        log.warning("weights %s: %s", key, text)
