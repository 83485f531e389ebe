"""Writing, reading and verifying a weights folder (schema in ``trained_weights/README.md``).

Tensors are stored without pickle: ``weights.npz`` holds every ensemble member's state dict
under ``member{i}/{key}`` (floating arrays as float32), read back with ``allow_pickle=False``.
``SHA256SUMS`` (sha256sum format) covers every file but ``README.md`` and itself and is checked
before anything is read.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._io import atomic_write_bytes, npz_bytes
from .conventions import N_BINS, PARAM_NAMES, R_EDGES, STATISTICS
from .errors import WeightsIntegrityError, WeightsNotFoundError
from .hod import MASS_FUNCTION_KEYS, validate_mass_function

__all__ = ["write_weights_folder", "write_checksums", "verify_checksums", "load_weights_folder",
           "validate_metadata", "sha256_file", "SCHEMA_VERSION", "WEIGHTS_FILE", "METADATA_FILE",
           "CORRELATION_FILE", "MASS_FUNCTION_FILE", "REFERENCE_FILE", "CHECKSUM_FILE",
           "REQUIRED_FILES"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
WEIGHTS_FILE = "weights.npz"
METADATA_FILE = "metadata.json"
CORRELATION_FILE = "residual_correlation.npy"
MASS_FUNCTION_FILE = "halo_mass_function.npz"
REFERENCE_FILE = "reference_predictions.npz"
CHECKSUM_FILE = "SHA256SUMS"
#: Files every weights folder must have (and have checksummed).
REQUIRED_FILES = (METADATA_FILE, WEIGHTS_FILE, CORRELATION_FILE, MASS_FUNCTION_FILE)
#: Files never checksummed.
UNCHECKED_FILES = ("README.md", CHECKSUM_FILE)
ARCHITECTURES = ("mlp", "paper", "factorised")
TRANSFORMS = ("log", "identity")
#: Tolerances of the metadata checks.
R_EDGES_RTOL = 1e-10
CORRELATION_ATOL = 1e-6

_MEMBER_KEY = re.compile(r"^member(\d+)/(.+)$")


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; torch is not imported here
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype == object:
        raise TypeError("state dict values must be numeric arrays or tensors, not objects")
    return arr.astype(np.float32) if np.issubdtype(arr.dtype, np.floating) else arr


def _checked_files(folder: Path) -> list[str]:
    names = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in UNCHECKED_FILES and not path.name.startswith("."):
            names.append(rel)
    return names


def write_checksums(folder) -> Path:
    """(Re)write ``SHA256SUMS`` for every file of ``folder`` except README.md and itself.

    Call it again after adding files (reference predictions, reports, figures).
    """
    folder = Path(folder)
    lines = [f"{sha256_file(folder / name)}  {name}\n" for name in _checked_files(folder)]
    path = folder / CHECKSUM_FILE
    atomic_write_bytes(path, "".join(lines).encode())
    return path


def write_weights_folder(folder, metadata: Mapping, member_state_dicts, residual_correlation,
                         halo_mass_function: Mapping, extra_files: Mapping | None = None) -> Path:
    """Write a complete weights folder and its ``SHA256SUMS``.

    Parameters
    ----------
    folder : path-like
        Created if needed; files already there are overwritten.
    metadata : mapping
        Content of ``metadata.json`` (validated with :func:`validate_metadata`; ``schema_version``
        and ``ensemble_size`` are filled in when absent).
    member_state_dicts : sequence of mapping
        One state dict per ensemble member (torch tensors or numpy arrays); floating arrays are
        stored as float32.
    residual_correlation : array_like, shape (60, 60)
        Correlation matrix of the standardised per-realization residuals.
    halo_mass_function : mapping
        Binned host-halo mass function (``log10_mass_edges``, ``counts``, ``mean_log10_mass``,
        ``volume`` in (h^-1 Mpc)^3).
    extra_files : mapping, optional
        ``relative name -> bytes`` (written as is) or ``-> path`` (copied), e.g. report files.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    members = list(member_state_dicts)
    if not members:
        raise ValueError("member_state_dicts is empty: a weights folder needs at least one member")
    meta = dict(metadata)
    meta.setdefault("schema_version", SCHEMA_VERSION)
    meta.setdefault("ensemble_size", len(members))
    corr = np.asarray(residual_correlation, dtype=np.float64)
    mass_function = validate_mass_function(halo_mass_function)
    validate_metadata(meta, n_members=len(members))
    _validate_correlation(corr)

    arrays = {}
    for i, sd in enumerate(members):
        for key, value in sd.items():
            arrays[f"member{i}/{key}"] = _to_numpy(value)
    atomic_write_bytes(folder / WEIGHTS_FILE, npz_bytes(arrays, compressed=False))
    atomic_write_bytes(folder / METADATA_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    atomic_write_bytes(folder / CORRELATION_FILE, _npy_bytes(corr))
    atomic_write_bytes(folder / MASS_FUNCTION_FILE, npz_bytes(mass_function, compressed=False))
    for name, content in (extra_files or {}).items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, (bytes, bytearray)):
            atomic_write_bytes(target, bytes(content))
        else:
            shutil.copyfile(content, target)
    write_checksums(folder)
    log.info("wrote weights folder %s (%d members)", folder, len(members))
    return folder


def verify_checksums(folder) -> dict[str, str]:
    """Check every file listed in ``SHA256SUMS`` and that every required file is listed.

    Returns
    -------
    dict
        ``file name -> sha256`` of the verified files.

    Raises
    ------
    WeightsIntegrityError
        Naming the file that is missing, unlisted or whose hash differs.
    """
    folder = Path(folder)
    sums_path = folder / CHECKSUM_FILE
    if not sums_path.is_file():
        raise WeightsIntegrityError(f"{sums_path} is missing: cannot verify the weights in {folder}")
    expected = {}
    for n, line in enumerate(sums_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            raise WeightsIntegrityError(f"{sums_path} line {n} is not 'sha256  filename': {line!r}")
        expected[parts[1].lstrip("*").strip()] = parts[0]
    for name in REQUIRED_FILES:
        if name not in expected:
            raise WeightsIntegrityError(f"{name} is not listed in {sums_path}")
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise WeightsIntegrityError(f"{name} is listed in {sums_path} but missing from {folder}")
        actual = sha256_file(path)
        if actual != digest:
            raise WeightsIntegrityError(
                f"{name} in {folder} does not match its SHA256SUMS entry (expected {digest}, "
                f"found {actual}): the file is corrupted or was modified")
    return expected


def _validate_correlation(corr: np.ndarray) -> None:
    n = len(STATISTICS) * N_BINS
    if corr.shape != (n, n):
        raise WeightsIntegrityError(f"residual correlation has shape {corr.shape}, expected ({n}, {n})")
    if not np.all(np.isfinite(corr)):
        raise WeightsIntegrityError("residual correlation has non-finite entries")
    if not np.allclose(corr, corr.T, atol=CORRELATION_ATOL):
        raise WeightsIntegrityError("residual correlation is not symmetric")
    if not np.allclose(np.diag(corr), 1.0, atol=CORRELATION_ATOL):
        raise WeightsIntegrityError("residual correlation does not have a unit diagonal")


def _vector(value, length, what):
    arr = np.asarray(value, dtype=float)
    if arr.shape != (length,) or not np.all(np.isfinite(arr)):
        raise WeightsIntegrityError(f"metadata {what} must be {length} finite numbers, got shape "
                                    f"{arr.shape}")
    return arr


def validate_metadata(meta: Mapping, n_members: int | None = None) -> None:
    """Check ``metadata.json`` against the schema; raise :class:`WeightsIntegrityError` naming the
    offending key, its value and what is allowed."""
    def fail(msg):
        raise WeightsIntegrityError(f"metadata: {msg}")

    if meta.get("schema_version") != SCHEMA_VERSION:
        fail(f"schema_version = {meta.get('schema_version')!r}; this code reads {SCHEMA_VERSION}")
    if meta.get("architecture") not in ARCHITECTURES:
        fail(f"architecture = {meta.get('architecture')!r}; allowed: {ARCHITECTURES}")
    if not isinstance(meta.get("architecture_config", {}), Mapping):
        fail("architecture_config must be a mapping")
    if tuple(meta.get("param_names", ())) != PARAM_NAMES:
        fail(f"param_names = {meta.get('param_names')!r}; expected {list(PARAM_NAMES)} in that order")
    if tuple(meta.get("statistics", STATISTICS)) != STATISTICS:
        fail(f"statistics = {meta.get('statistics')!r}; expected {list(STATISTICS)}")
    edges = np.asarray(meta.get("r_edges", []), dtype=float)
    if edges.shape != R_EDGES.shape or not np.allclose(edges, R_EDGES, rtol=R_EDGES_RTOL, atol=0):
        fail(f"r_edges (shape {edges.shape}) differ from conventions.R_EDGES "
             f"(np.logspace(-1, 1.2, 21) h^-1 Mpc)")
    size = meta.get("ensemble_size")
    if not isinstance(size, int) or size < 1:
        fail(f"ensemble_size = {size!r} must be a positive integer")
    if n_members is not None and size != n_members:
        fail(f"ensemble_size = {size} but {n_members} member state dicts are stored")
    bounds = meta.get("bounds", {})
    for name in PARAM_NAMES:
        if name not in bounds:
            fail(f"bounds lacks {name!r}")
        low, high = (float(v) for v in bounds[name])
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            fail(f"bounds[{name!r}] = {bounds[name]!r} must be finite with low < high")
    norm = meta.get("normalisation")
    if not isinstance(norm, Mapping) or "input" not in norm or "output" not in norm:
        fail("normalisation must have 'input' and 'output' entries")
    low = _vector(norm["input"].get("low"), len(PARAM_NAMES), "normalisation.input.low")
    high = _vector(norm["input"].get("high"), len(PARAM_NAMES), "normalisation.input.high")
    if np.any(high <= low):
        fail("normalisation.input.high must exceed normalisation.input.low for every parameter")
    for stat in STATISTICS:
        entry = norm["output"].get(stat)
        if not isinstance(entry, Mapping):
            fail(f"normalisation.output lacks {stat!r}")
        if entry.get("transform") not in TRANSFORMS:
            fail(f"normalisation.output.{stat}.transform = {entry.get('transform')!r}; "
                 f"allowed: {TRANSFORMS}")
        _vector(entry.get("mean"), N_BINS, f"normalisation.output.{stat}.mean")
        std = _vector(entry.get("std"), N_BINS, f"normalisation.output.{stat}.std")
        if np.any(std <= 0):
            fail(f"normalisation.output.{stat}.std must be > 0")


def _read_members(path: Path, n_members: int) -> list[dict[str, np.ndarray]]:
    members: list[dict[str, np.ndarray]] = [{} for _ in range(n_members)]
    with np.load(path, allow_pickle=False) as npz:
        matches = [(key, _MEMBER_KEY.match(key)) for key in npz.files]
        for key, match in matches:
            if match is None:
                raise WeightsIntegrityError(f"{WEIGHTS_FILE}: unexpected key {key!r} (expected "
                                            "member{i}/<state dict key>)")
        stored = 1 + max(int(m.group(1)) for _, m in matches) if matches else 0
        if stored != n_members:
            raise WeightsIntegrityError(f"metadata ensemble_size = {n_members} but {WEIGHTS_FILE} "
                                        f"holds {stored} members")
        for key, match in matches:
            members[int(match.group(1))][match.group(2)] = npz[key]
    for i, sd in enumerate(members):
        if not sd:
            raise WeightsIntegrityError(f"{WEIGHTS_FILE} has no arrays for member{i}")
        if set(sd) != set(members[0]):
            raise WeightsIntegrityError(f"{WEIGHTS_FILE}: member{i} has different keys from member0")
    return members


def load_weights_folder(folder):
    """Verify and read a weights folder.

    Parameters
    ----------
    folder : path-like

    Returns
    -------
    metadata : dict
    members : list of dict
        Each member's state dict, ``key -> ndarray`` (float32 for floating tensors).
    residual_correlation : ndarray, shape (60, 60)
    halo_mass_function : dict
        ``log10_mass_edges``, ``counts``, ``mean_log10_mass``, ``volume`` ((h^-1 Mpc)^3).

    Raises
    ------
    WeightsNotFoundError
        If the folder does not exist.
    WeightsIntegrityError
        If a checksum differs, a file is missing, or the metadata or arrays break the schema.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsNotFoundError(f"weights folder {folder} does not exist")
    verify_checksums(folder)
    with open(folder / METADATA_FILE, encoding="utf-8") as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as exc:
            raise WeightsIntegrityError(f"{METADATA_FILE} in {folder} is not valid JSON: {exc}") from exc
    validate_metadata(meta)
    members = _read_members(folder / WEIGHTS_FILE, meta["ensemble_size"])
    corr = np.load(folder / CORRELATION_FILE, allow_pickle=False).astype(np.float64)
    _validate_correlation(corr)
    with np.load(folder / MASS_FUNCTION_FILE, allow_pickle=False) as npz:
        try:
            mass_function = validate_mass_function({k: npz[k] for k in MASS_FUNCTION_KEYS if k in npz})
        except ValueError as exc:
            raise WeightsIntegrityError(f"{MASS_FUNCTION_FILE} in {folder}: {exc}") from exc
    return meta, members, corr, mass_function
