"""A per-user persistent cache of JAX's compiled programs, so NUTS compiles once, not every run.

Compiling NumPyro's NUTS kernel for the emulator's log-density takes seconds to tens of seconds on
a small CPU, more than the sampling itself. JAX can keep compiled XLA executables on disk
(``jax_compilation_cache_dir``) and reuse them when the same program is compiled again with the
same JAX, XLA and device: the entries are XLA's own serialised executables (compressed bytes,
deserialised by XLA), nothing is unpickled. Compiled code is still code, so the folder must be
the user's own: :func:`enable_compilation_cache` uses it only when it is owned by the current
user and not writable by anyone else (it is created with mode 0700). JAX writes the entries; one
cut short (a process killed while writing) fails to decompress, and JAX then logs a warning and
compiles again.

Where: ``$IAEMU_JAX_CACHE`` if set (``off`` or ``0`` disables it), else
``$XDG_CACHE_HOME/iaemu/jax`` (``~/.cache/iaemu/jax``). A cache directory the caller already
configured in JAX is left as it is.
"""
from __future__ import annotations

import logging
import math
import os
import stat
from pathlib import Path

__all__ = ["enable_compilation_cache", "cache_folder", "ENV_VAR", "CompileTimer"]

log = logging.getLogger(__name__)

#: JAX's timed compilation stages (tracing to a jaxpr, lowering to MLIR, XLA compilation or
#: retrieval from the persistent cache), whose time spans :class:`CompileTimer` collects.
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
#: Programs that took at least this long to compile are kept (JAX's default: 1 s).
MIN_COMPILE_SECONDS = 0.0
#: Environment variable naming the cache folder, or ``off`` / ``0`` to disable it.
ENV_VAR = "IAEMU_JAX_CACHE"
_OFF = ("", "0", "off", "false", "no")


def cache_folder() -> Path | None:
    """The folder the cache would use, or None when :data:`ENV_VAR` disables it."""
    value = os.environ.get(ENV_VAR)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "iaemu" / "jax"


def _private(folder: Path) -> bool:
    """Create ``folder`` (0700) if needed; whether it is ours and not writable by others."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError as exc:
        log.info("JAX compilation cache disabled: cannot create %s (%s)", folder, exc)
        return False
    if not stat.S_ISDIR(info.st_mode):
        log.info("JAX compilation cache disabled: %s is not a folder", folder)
        return False
    if (hasattr(os, "getuid") and info.st_uid != os.getuid()) or info.st_mode & 0o022:
        log.warning("JAX compilation cache disabled: %s is not private to this user (owner or "
                    "mode %o); compiled code is only reused from a folder only you can write, "
                    "see %s", folder, stat.S_IMODE(info.st_mode), ENV_VAR)
        return False
    return True


def enable_compilation_cache(jax) -> Path | None:
    """Point JAX's persistent compilation cache at the user's iaemu cache folder.

    Parameters
    ----------
    jax : module
        The imported ``jax`` module.

    Returns
    -------
    pathlib.Path or None
        The folder in use, or None (disabled, unusable, or configured by the caller).
    """
    if jax.config.jax_compilation_cache_dir:
        return None
    folder = cache_folder()
    if folder is None or not _private(folder):
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # JAX keeps only programs that took >= 1 s to compile; the dozens of small ones NumPyro runs
    # outside its loops (mass-matrix factorisation, stacking chains) took ~8 s per run at load
    # average 5, every run
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    log.debug("JAX compilation cache at %s", folder)
    return folder


class CompileTimer:
    """Wall seconds JAX spends compiling (tracing, lowering, XLA or cache retrieval) while active.

    A context manager: it listens to JAX's compilation time spans (:data:`COMPILE_EVENTS`) and
    merges overlapping ones (a jit traced inside another is one span, not two), so
    :meth:`seconds` is the wall time during which some compilation ran. Stage timings subtract
    :meth:`seconds` over their own interval (``time.time()`` stamps) to report sampling alone.

    Parameters
    ----------
    jax : module
        The imported ``jax`` module.
    """

    def __init__(self, jax):
        self._monitoring = jax.monitoring
        self.spans = []
        self.cache_hits = 0

    def _span(self, event, start, end, **kwargs):
        if event in COMPILE_EVENTS:
            self.spans.append((float(start), float(end)))

    def _event(self, event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            self.cache_hits += 1

    def __enter__(self):
        self._monitoring.register_event_time_span_listener(self._span)
        self._monitoring.register_event_listener(self._event)
        return self

    def __exit__(self, *exc):
        self._monitoring.unregister_event_time_span_listener(self._span)
        self._monitoring.unregister_event_listener(self._event)
        return False

    def seconds(self, start: float = -math.inf, end: float = math.inf) -> float:
        """Wall seconds of compilation inside ``[start, end]`` (``time.time()`` stamps)."""
        total, reach = 0.0, -math.inf
        for lo, hi in sorted(self.spans):
            lo, hi = max(lo, start, reach), min(hi, end)
            if hi > lo:
                total += hi - lo
            reach = max(reach, hi)
        return total
