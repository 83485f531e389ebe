"""Writing, reading and verifying a weights folder (schema in ``trained_weights/README.md``).

Tensors are stored without pickle: ``weights.npz`` holds every ensemble member's state dict
under ``member{i}/{key}`` (floating arrays as float32), read back with ``allow_pickle=False``.
``SHA256SUMS`` (sha256sum format) covers every file but ``README.md`` and itself and is checked
before anything is read; the content is then validated too (:mod:`.weights_checks`), since sums
re-written after an edit prove nothing about it. :func:`reseal_folder` (``iaemu reseal``) re-seals
a folder edited on purpose, after the same validation.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._io import atomic_write_bytes, declared_array_bytes, npz_bytes
from .architectures import architecture_names
from .conventions import R_EDGES
from .errors import WeightsIntegrityError, WeightsNotFoundError
from .hod import MASS_FUNCTION_KEYS, validate_mass_function
from .layout import DEFAULT_LAYOUT, TRANSFORMS, layout_of
from .weights import read_json_file
from .weights_checks import (check_architecture_config, check_bounds, check_correlation,
                             check_epistemic, check_mass_function_values, check_members,
                             check_support, fail, finite_numbers)

__all__ = ["write_weights_folder", "write_checksums", "verify_checksums", "load_weights_folder",
           "validate_metadata", "read_metadata_file", "reseal_folder", "sha256_file", "SCHEMA_VERSION", "WEIGHTS_FILE", "METADATA_FILE",
           "CORRELATION_FILE", "MASS_FUNCTION_FILE", "REFERENCE_FILE", "CHECKSUM_FILE",
           "check_declared_size", "MAX_DECLARED_BYTES",
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
#: Tolerance of the metadata's r edges against conventions.R_EDGES.
R_EDGES_RTOL = 1e-10
#: Most bytes the arrays of one weights-folder file may declare (the shipped ones hold a few MB):
#: a small compressed file declaring more (a "zip bomb") is refused before anything is allocated.
MAX_DECLARED_BYTES = 1024 ** 3

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


def _inside_name(name: str) -> bool:
    """Whether a SHA256SUMS file name stays inside its folder (relative, no '..' part)."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts \
        and "\\" not in name


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
    meta.setdefault("layout", DEFAULT_LAYOUT.to_metadata())
    mass_function = validate_mass_function(halo_mass_function)
    validate_metadata(meta, n_members=len(members), where=str(folder / METADATA_FILE))
    layout = layout_of(meta)
    corr = check_correlation(residual_correlation, str(folder / CORRELATION_FILE),
                             "residual correlation", layout.n_out)
    numpy_members = [{key: _to_numpy(value) for key, value in sd.items()} for sd in members]
    check_members(numpy_members, meta, str(folder / WEIGHTS_FILE), layout)
    check_mass_function_values(mass_function, str(folder / MASS_FUNCTION_FILE))
    arrays = {f"member{i}/{key}": value for i, sd in enumerate(numpy_members)
              for key, value in sd.items()}
    atomic_write_bytes(folder / WEIGHTS_FILE, npz_bytes(arrays, compressed=False))
    atomic_write_bytes(folder / METADATA_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    atomic_write_bytes(folder / CORRELATION_FILE, _npy_bytes(corr))
    atomic_write_bytes(folder / MASS_FUNCTION_FILE, npz_bytes(mass_function, compressed=False))
    for name, content in (extra_files or {}).items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        data = bytes(content) if isinstance(content, (bytes, bytearray)) else Path(content).read_bytes()
        atomic_write_bytes(target, data)
    write_checksums(folder)
    log.info("wrote weights folder %s (%d members)", folder, len(members))
    return folder


def verify_checksums(folder, required=REQUIRED_FILES) -> dict[str, str]:
    """Check every file listed in ``SHA256SUMS`` and that every ``required`` file is listed.

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
    try:
        text = sums_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsIntegrityError(f"{sums_path}: not readable as a UTF-8 text file "
                                    f"({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    expected = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            raise WeightsIntegrityError(f"{sums_path} line {n} is not 'sha256  filename': {line[:80]!r}")
        name = parts[1].lstrip("*").strip()
        if not _inside_name(name):
            raise WeightsIntegrityError(f"{sums_path} line {n}: file name {name[:80]!r}; allowed: a "
                                        "relative path inside the folder (no '..', not absolute)")
        if name in expected:
            raise WeightsIntegrityError(f"{sums_path} line {n}: {name!r} is listed twice")
        expected[name] = parts[0]
    for name in required:
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


def validate_metadata(meta: Mapping, n_members: int | None = None, where: str = METADATA_FILE) -> None:
    """Check ``metadata.json`` against the schema and the physics.

    Parameters
    ----------
    meta : mapping
        Parsed ``metadata.json``.
    n_members : int, optional
        Number of stored member state dicts, checked against ``ensemble_size``.
    where : str
        The file the metadata came from, for the messages.

    Raises
    ------
    WeightsIntegrityError
        One line naming ``where``, the offending key, its value and what is allowed: schema
        fields, bounds (finite, low < high, inside the physical range of the parameter and the
        input normalisation), output normalisation (finite, std > 0), support band (finite and
        non-empty inside the bounds), epistemic factors (finite, > 0) and correlation
        (symmetric positive semi-definite with a unit diagonal); see
        :mod:`iaemu_likelihood.weights_checks`.
    """
    if not isinstance(meta, Mapping):
        fail(where, "content", type(meta).__name__, "a JSON object")
    if meta.get("schema_version") != SCHEMA_VERSION:
        fail(where, "schema_version", meta.get("schema_version"), f"{SCHEMA_VERSION} (the version this code reads)")
    if meta.get("architecture") not in architecture_names():
        fail(where, "architecture", meta.get("architecture"), f"one of {list(architecture_names())}")
    if not isinstance(meta.get("architecture_config", {}), Mapping):
        fail(where, "architecture_config", meta.get("architecture_config"), "a mapping")
    layout = layout_of(meta, where)  # folders without a "layout" entry: the default layout
    names, stats = layout.param_names, layout.statistic_names
    if not isinstance(meta.get("param_names"), (list, tuple)) or tuple(meta["param_names"]) != names:
        fail(where, "param_names", meta.get("param_names"), f"{list(names)} in that order")
    if not isinstance(meta.get("statistics", stats), (list, tuple)) or \
            tuple(meta.get("statistics", stats)) != stats:
        fail(where, "statistics", meta.get("statistics"), f"{list(stats)}")
    _check_r_edges(meta, layout, where)
    version = meta.get("version")
    if version is not None and not (isinstance(version, str) and version.strip()
                                    and version.isprintable()):
        fail(where, "version", version, "a non-empty printable string (or no version entry)")
    size = meta.get("ensemble_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        fail(where, "ensemble_size", size, "a positive integer")
    if n_members is not None and size != n_members:
        fail(where, "ensemble_size", size, f"{n_members}, the number of member state dicts stored")
    norm = meta.get("normalisation")
    if not isinstance(norm, Mapping) or not isinstance(norm.get("output"), Mapping):
        fail(where, "normalisation", norm, "a mapping with 'input' and 'output' entries")
    check_bounds(meta, where, layout)
    for stat in stats:
        n_bins = layout.statistic(stat).n_bins
        entry = norm["output"].get(stat)
        if not isinstance(entry, Mapping):
            fail(where, f"normalisation.output.{stat}", entry, "a mapping with transform, mean, std")
        if entry.get("transform") not in TRANSFORMS:
            fail(where, f"normalisation.output.{stat}.transform", entry.get("transform"),
                 f"one of {list(TRANSFORMS)}")
        finite_numbers(where, f"normalisation.output.{stat}.mean", entry.get("mean"), n_bins)
        std = finite_numbers(where, f"normalisation.output.{stat}.std", entry.get("std"), n_bins)
        if np.any(std <= 0):
            fail(where, f"normalisation.output.{stat}.std", entry.get("std"),
                 f"{n_bins} finite numbers > 0 (std must be > 0)")
    check_architecture_config(meta, where, layout)
    check_support(meta, where, layout)
    check_epistemic(meta, where, layout)


def _check_r_edges(meta: Mapping, layout, where: str) -> None:
    """``r_edges``: required (and equal to conventions.R_EDGES) for the default layout; for
    another layout optional, and then the shared edges of its statistics."""
    if layout == DEFAULT_LAYOUT:
        expected, text = R_EDGES, ("np.logspace(-1, 1.2, 21) h^-1 Mpc (conventions.R_EDGES); "
                                   "these differ from conventions.R_EDGES")
    elif "r_edges" not in meta:
        return
    elif layout.shared_axis:
        expected = np.asarray(layout.statistics[0].edges)
        text = "the bin edges of the layout's statistics"
    else:
        fail(where, "r_edges", meta.get("r_edges"), "no r_edges entry: the statistics of this "
             "layout have their own axes (layout.statistics[].edges)")
    try:
        edges = np.asarray(meta.get("r_edges", []), dtype=float)
    except (TypeError, ValueError):
        edges = np.array([])
    if edges.shape != expected.shape or not np.allclose(edges, expected, rtol=R_EDGES_RTOL, atol=0):
        fail(where, "r_edges", meta.get("r_edges"), text)


def _read_members(path: Path, n_members: int) -> list[dict[str, np.ndarray]]:
    where = str(path)
    with _opened(path) as npz:
        matches = [(key, _MEMBER_KEY.match(key)) for key in npz.files]
        for key, match in matches:
            if match is None:
                fail(where, "key", key, "member{i}/<state dict key>")
        stored = 1 + max(int(m.group(1)) for _, m in matches) if matches else 0
        if stored != n_members:  # checked before anything is sized by ensemble_size
            fail(where, "number of members", stored, f"{n_members} (ensemble_size in {METADATA_FILE})")
        members: list[dict[str, np.ndarray]] = [{} for _ in range(n_members)]
        for key, match in matches:
            members[int(match.group(1))][match.group(2)] = _array(npz, key, where)
    for i, sd in enumerate(members):
        if not sd:
            fail(where, f"member{i}", "no arrays", "the state dict of every member 0..ensemble_size-1")
        if set(sd) != set(members[0]):
            fail(where, f"member{i} keys", sorted(set(sd) ^ set(members[0]))[:3],
                 "the same keys as member0")
    return members


def check_declared_size(path) -> None:
    """Refuse a ``.npy``/``.npz`` file of a weights folder whose arrays declare more than
    :data:`MAX_DECLARED_BYTES`, from its headers, before anything is allocated.

    Raises
    ------
    WeightsIntegrityError
    """
    declared = declared_array_bytes(path)
    if declared > MAX_DECLARED_BYTES:
        raise WeightsIntegrityError(
            f"{path}: its arrays declare {declared / 1024 ** 2:,.1f} MiB; allowed: at most "
            f"{MAX_DECLARED_BYTES / 1024 ** 2:,.1f} MiB (weights folders hold a few MB), refused "
            "before reading")


class _opened:
    """``np.load`` of a weights-folder file (no pickle) whose failures name the file."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        check_declared_size(self.path)
        try:
            self.value = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise WeightsIntegrityError(f"{self.path}: cannot be read as a numpy file without "
                                        f"pickle ({type(exc).__name__}: {exc})") from None
        return self.value

    def __exit__(self, *exc):
        if hasattr(self.value, "close"):
            self.value.close()
        return False


def _array(npz, key: str, where: str) -> np.ndarray:
    try:
        arr = npz[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise WeightsIntegrityError(f"{where}: array {key!r} cannot be read without pickle "
                                    f"({type(exc).__name__}: {exc})") from None
    if arr.dtype.kind not in "fiu":
        fail(where, f"{key} dtype", str(arr.dtype), "a numeric (float or integer) array")
    return arr


def read_metadata_file(folder) -> dict:
    """Parse and validate ``metadata.json`` of ``folder`` (no checksum check: see
    :func:`load_weights_folder`); errors name the file."""
    path = Path(folder) / METADATA_FILE
    meta = read_json_file(path)
    validate_metadata(meta, where=str(path))
    return meta


def load_weights_folder(folder, check_sums: bool = True):
    """Verify, read and validate a weights folder.

    Parameters
    ----------
    folder : path-like
    check_sums : bool
        Verify ``SHA256SUMS`` first (default). Only :func:`reseal_folder` reads a folder without,
        to validate its content before writing new sums.

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
        If a checksum differs or a file is missing, or if any content breaks the schema or the
        physics (:func:`validate_metadata`, :func:`~iaemu_likelihood.weights_checks.check_members`,
        correlation and mass-function checks): one line naming the file, the field, its value and
        what is allowed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsNotFoundError(f"weights folder {folder} does not exist")
    if check_sums:
        verify_checksums(folder)
    meta = read_metadata_file(folder)
    layout = layout_of(meta)
    members = _read_members(folder / WEIGHTS_FILE, meta["ensemble_size"])
    check_members(members, meta, str(folder / WEIGHTS_FILE), layout)
    with _opened(folder / CORRELATION_FILE) as corr:
        corr = check_correlation(corr, str(folder / CORRELATION_FILE), "residual correlation",
                                 layout.n_out)
    where = str(folder / MASS_FUNCTION_FILE)
    with _opened(folder / MASS_FUNCTION_FILE) as npz:
        arrays = {k: _array(npz, k, where) for k in MASS_FUNCTION_KEYS if k in npz.files}
    try:
        mass_function = validate_mass_function(arrays)
    except ValueError as exc:
        raise WeightsIntegrityError(f"{where}: {exc}") from None
    check_mass_function_values(mass_function, where)
    return meta, members, corr, mass_function


def reseal_folder(folder) -> Path:
    """Re-validate the content of a weights folder edited on purpose, then rewrite ``SHA256SUMS``.

    Every check of :func:`load_weights_folder` runs first (without the old sums); only a folder
    that passes gets new sums, written atomically.

    Returns
    -------
    pathlib.Path
        The new ``SHA256SUMS``.

    Raises
    ------
    WeightsNotFoundError, WeightsIntegrityError
    """
    folder = Path(folder)
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise WeightsIntegrityError(f"{folder / name}: missing; a weights folder needs "
                                        f"{list(REQUIRED_FILES)}")
    load_weights_folder(folder, check_sums=False)
    path = write_checksums(folder)
    log.info("resealed %s (%d files)", folder, len(_checked_files(folder)))
    return path
