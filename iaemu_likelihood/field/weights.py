"""Painter weights folders: write, verify and read (no pickle, SHA-256 checked before reading).

A painter folder holds

* ``painter.json``: metadata (``kind`` = ``"field_painter"``, ``schema_version``, ``version``,
  ``architecture_config``, ``hod_names``, ``bounds`` and ``support`` of the HOD prior, ``mesh``
  {``n_mesh``, ``box_size`` (h^-1 Mpc), ``voxel_size`` (h^-1 Mpc), ``assignment``}, ``input``
  normalisation, ``pos_weight`` of the classifier loss, ``training`` {boxes with their sha256, ...});
* ``weights.npz``: the network's state dict (float32), read with ``allow_pickle=False``;
* ``SHA256SUMS`` over every file but ``README.md`` and itself, written and checked by the emulator
  weights' helpers (:func:`iaemu_likelihood.weights_io.write_checksums`, ``verify_checksums``);
  ``painter.json`` is parsed strictly and ``weights.npz``'s declared size is checked before reading,
  as for the emulator.

The metadata file is not called ``metadata.json`` so that the emulator's version listing
(:func:`iaemu_likelihood.weights.available_versions`) never mistakes a painter for an emulator.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, npz_bytes
from ..errors import WeightsIntegrityError, WeightsNotFoundError
from ..weights import read_json_file
from ..weights_io import check_declared_size, verify_checksums, write_checksums

__all__ = ["DEFAULT_PAINTER", "PAINTER_FILE", "WEIGHTS_FILE", "SCHEMA_VERSION", "KIND", "write_painter_folder",
           "verify_painter_checksums", "load_painter_folder", "resolve_painter_dir"]

PAINTER_FILE = "painter.json"
WEIGHTS_FILE = "weights.npz"
SCHEMA_VERSION = 1
KIND = "field_painter"
#: metadata keys every painter folder must have
REQUIRED_KEYS = ("kind", "schema_version", "version", "architecture_config", "hod_names", "bounds",
                 "mesh", "input", "pos_weight")


#: The shipped painter used when none is named.
DEFAULT_PAINTER = "iaemu-painter-v6"


def write_painter_folder(folder, metadata: dict, state_dict, extra_files: dict | None = None) -> Path:
    """Write ``painter.json``, ``weights.npz``, extra files (``name -> bytes``) and ``SHA256SUMS``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"kind": KIND, "schema_version": SCHEMA_VERSION, **metadata}
    _validate(meta, folder)
    arrays = {}
    for key, value in state_dict.items():
        if hasattr(value, "detach"):  # a torch tensor; torch itself is not imported here
            value = value.detach().cpu().numpy()
        arr = np.asarray(value)
        arrays[key] = arr.astype(np.float32) if np.issubdtype(arr.dtype, np.floating) else arr
    atomic_write_bytes(folder / WEIGHTS_FILE, npz_bytes(arrays, compressed=False))
    atomic_write_bytes(folder / PAINTER_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    for name, content in (extra_files or {}).items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, bytes(content))
    write_checksums(folder)
    return folder


def verify_painter_checksums(folder) -> dict:
    """Check every ``SHA256SUMS`` entry and that the two core files are listed; name -> sha256.

    The emulator weights' check (:func:`iaemu_likelihood.weights_io.verify_checksums`) with the
    painter's required files.
    """
    return verify_checksums(folder, required=(PAINTER_FILE, WEIGHTS_FILE))


def _validate(meta: dict, folder: Path) -> None:
    if not isinstance(meta, dict):
        raise WeightsIntegrityError(f"{PAINTER_FILE} in {folder} is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise WeightsIntegrityError(f"{PAINTER_FILE} in {folder} lacks keys {missing}")
    if meta["kind"] != KIND:
        raise WeightsIntegrityError(f"{PAINTER_FILE} in {folder}: kind={meta['kind']!r}, expected {KIND!r}")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise WeightsIntegrityError(f"{PAINTER_FILE} in {folder}: schema_version={meta['schema_version']!r}, "
                                    f"this iaemu reads {SCHEMA_VERSION}")
    names = list(meta["hod_names"])
    if sorted(meta["bounds"]) != sorted(names):
        raise WeightsIntegrityError(f"{PAINTER_FILE} in {folder}: bounds name {sorted(meta['bounds'])}, "
                                    f"hod_names are {names}")
    for key in ("n_mesh", "box_size", "voxel_size"):
        if key not in meta["mesh"]:
            raise WeightsIntegrityError(f"{PAINTER_FILE} in {folder}: mesh lacks {key!r}")
    mass_function = (meta.get("calibration") or {}).get("mass_function")
    if mass_function is not None:
        from ..hod import validate_mass_function

        try:
            validate_mass_function(mass_function)
        except (ValueError, TypeError) as exc:
            raise WeightsIntegrityError(f"{PAINTER_FILE} in {folder}: calibration.{exc}") from None


def resolve_painter_dir(version=None) -> Path:
    """A painter folder: a path, or the name of a shipped version (default :data:`DEFAULT_PAINTER`)."""
    from ..weights import weights_root

    version = DEFAULT_PAINTER if version is None else version
    candidate = Path(version)
    if (candidate / PAINTER_FILE).is_file():
        return candidate.resolve()
    shipped = weights_root() / str(version)
    if (shipped / PAINTER_FILE).is_file():
        return shipped
    available = sorted(p.name for p in weights_root().iterdir() if (p / PAINTER_FILE).is_file())
    raise WeightsNotFoundError(f"painter weights {str(version)!r} not found: not a folder with "
                               f"{PAINTER_FILE} and not a shipped painter (shipped: {available or 'none'})")


def load_painter_folder(version=None) -> tuple[dict, dict, Path]:
    """Verify and read a painter folder: (metadata, state dict name -> ndarray, folder)."""
    folder = resolve_painter_dir(version)
    verify_painter_checksums(folder)
    meta = read_json_file(folder / PAINTER_FILE)
    _validate(meta, folder)
    check_declared_size(folder / WEIGHTS_FILE)
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as npz:
        state = {k: npz[k] for k in npz.files}
    return meta, state, folder
