"""Resumable sampler state: ``PREFIX.state.npz`` beside the chain files of ``iaemu sample``.

The samplers save their state after the warm-up (NUTS) and after every block of steps, so
``iaemu sample --resume`` continues an interrupted run where its last block ended. The file is
a plain ``.npz`` (numbers only, read with ``allow_pickle=False``), written atomically
(:func:`iaemu_likelihood._io.atomic_write_bytes`): a kill while saving leaves the previous state.
A JSON ``meta`` entry records what the state belongs to (sampler, seed, its settings and a
fingerprint of the posterior); resuming with anything else is refused, naming the difference.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, npz_bytes
from ..errors import IAEmuError

__all__ = ["ResumeError", "state_path", "posterior_blocks", "posterior_fingerprint", "save_state", "load_state",
           "SCHEMA"]

log = logging.getLogger(__name__)

#: Version of the state layout; a state of another version is refused.
SCHEMA = 1
_META = "meta"


class ResumeError(IAEmuError, ValueError):
    """A saved sampler state cannot be resumed (missing, unreadable or from another run)."""


def state_path(prefix) -> Path:
    """``PREFIX.state.npz`` of an output prefix (a :class:`pathlib.Path`)."""
    prefix = Path(prefix)
    return prefix.parent / f"{prefix.name}.state.npz"


def posterior_blocks(info: dict) -> dict:
    """The input blocks that define a posterior (all but the sampler and output options), as
    plain data: what :func:`posterior_fingerprint` hashes and a chain worker rebuilds."""
    from .posterior import plain_data

    return plain_data({k: v for k, v in info.items()
                       if k not in ("sampler", "output", "force", "resume")})


def posterior_fingerprint(posterior) -> str:
    """SHA-256 of what defines the posterior: the input blocks (:func:`posterior_blocks`), the
    weights version and the sampled names."""
    text = json.dumps({"info": posterior_blocks(posterior.info),
                       "weights": str(posterior.emulator.version),
                       "names": list(posterior.names)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def save_state(path: Path, meta: dict, arrays: dict) -> None:
    """Write a sampler state atomically.

    Parameters
    ----------
    path : pathlib.Path
        ``PREFIX.state.npz``.
    meta : dict
        JSON-serialisable description (sampler, seed, settings, fingerprint, counters).
    arrays : dict
        ``{name: ndarray}`` of numeric arrays (no objects).
    """
    if _META in arrays:
        raise ValueError(f"array name {_META!r} is reserved")
    payload = {_META: np.array(json.dumps({"schema": SCHEMA, **meta}, sort_keys=True))}
    payload.update({k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, npz_bytes(payload, compressed=False))
    log.debug("saved sampler state %s", path)


def load_state(path: Path, expected: dict) -> tuple[dict, dict]:
    """Read a sampler state and check that it belongs to the run being resumed.

    Parameters
    ----------
    path : pathlib.Path
    expected : dict
        Entries of ``meta`` that must be equal (sampler, seed, settings, fingerprint).

    Returns
    -------
    meta : dict
    arrays : dict of ndarray

    Raises
    ------
    ResumeError
        The file is unreadable, of another schema, or one of ``expected`` differs.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop(_META)))
    except (OSError, ValueError, KeyError) as exc:
        raise ResumeError(f"sampler state {path} cannot be read ({exc}); pass --force to start "
                          "over") from None
    if meta.get("schema") != SCHEMA:
        raise ResumeError(f"sampler state {path} has schema {meta.get('schema')!r}, this version "
                          f"reads {SCHEMA}; pass --force to start over")
    for key, value in expected.items():
        saved = meta.get(key)
        if json.dumps(saved, sort_keys=True) != json.dumps(value, sort_keys=True):
            raise ResumeError(f"cannot resume {path}: its {key} is {saved!r}, this run's is "
                              f"{value!r}; run with the same options or pass --force to start over")
    return meta, arrays
