"""Painter weights folders: write, verify and read (no pickle, SHA-256 checked before reading).

A painter folder holds

* ``painter.json``: metadata (``kind`` = ``"field_painter"``, ``schema_version``, ``version``,
  ``architecture_config``, ``hod_names``, ``bounds`` and ``support`` of the HOD prior, ``mesh``
  {``n_mesh``, ``box_size`` (h^-1 Mpc), ``voxel_size`` (h^-1 Mpc), ``assignment``}, ``input``
  normalisation, ``pos_weight`` of the classifier loss, ``training`` {boxes with their sha256, ...});
* ``weights.npz``: the network's state dict (float32), read with ``allow_pickle=False``;
* ``SHA256SUMS`` over every file but ``README.md`` and itself, written and hashed by the emulator
  weights' helpers (:func:`iaemu_likelihood.weights_io.write_checksums`, ``sha256_file``).

The metadata file is not called ``metadata.json`` so that the emulator's version listing
(:func:`iaemu_likelihood.weights.available_versions`) never mistakes a painter for an emulator.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, npz_bytes
from ..errors import WeightsIntegrityError, WeightsNotFoundError
from ..weights_io import CHECKSUM_FILE, sha256_file, write_checksums

__all__ = ["PAINTER_FILE", "WEIGHTS_FILE", "SCHEMA_VERSION", "KIND", "write_painter_folder",
           "verify_painter_checksums", "load_painter_folder", "resolve_painter_dir"]

PAINTER_FILE = "painter.json"
WEIGHTS_FILE = "weights.npz"
SCHEMA_VERSION = 1
KIND = "field_painter"
#: metadata keys every painter folder must have
REQUIRED_KEYS = ("kind", "schema_version", "version", "architecture_config", "hod_names", "bounds",
                 "mesh", "input", "pos_weight")


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
    """Check every ``SHA256SUMS`` entry (and that the two core files are listed); name -> sha256."""
    folder = Path(folder)
    sums = folder / CHECKSUM_FILE
    if not sums.is_file():
        raise WeightsIntegrityError(f"{sums} is missing: cannot verify the painter weights in {folder}")
    expected = {}
    for n, line in enumerate(sums.read_text().splitlines(), 1):
        match = re.fullmatch(r"([0-9a-f]{64})\s+\*?(\S.*)", line.strip())
        if line.strip() and match is None:
            raise WeightsIntegrityError(f"{sums} line {n} is not 'sha256  filename': {line!r}")
        if match:
            expected[match.group(2)] = match.group(1)
    for name in (PAINTER_FILE, WEIGHTS_FILE):
        if name not in expected:
            raise WeightsIntegrityError(f"{name} is not listed in {sums}")
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise WeightsIntegrityError(f"{name} is listed in {sums} but missing from {folder}")
        if sha256_file(path) != digest:
            raise WeightsIntegrityError(f"{name} in {folder} does not match its SHA256SUMS entry: "
                                        "the file is corrupted or was modified")
    return expected


def _validate(meta: dict, folder: Path) -> None:
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


def resolve_painter_dir(version=None) -> Path:
    """A painter folder: a path, or the name of a shipped version (default ``iaemu-painter-v1``)."""
    from ..weights import weights_root

    version = "iaemu-painter-v1" if version is None else version
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
    try:
        meta = json.loads((folder / PAINTER_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WeightsIntegrityError(f"{PAINTER_FILE} in {folder} is not valid JSON: {exc}") from exc
    _validate(meta, folder)
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as npz:
        state = {k: npz[k] for k in npz.files}
    return meta, state, folder
