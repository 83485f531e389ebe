"""Writing, reading and verifying a weights folder (schema in ``trained_weights/README.md``).

Tensors are stored without pickle: ``weights.npz`` holds every ensemble member's state dict
under ``member{i}/{key}`` (floating arrays as float32), read back with ``allow_pickle=False``.
``SHA256SUMS`` (sha256sum format) covers every file but ``README.md`` and itself and is checked
before anything is read; the content is then validated too (:mod:`.weights_checks`), since sums
re-written after an edit prove nothing about it. :func:`reseal_folder` (``iaemu reseal``) re-seals
a folder edited on purpose, after the same validation.
"""
from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._io import atomic_write_bytes, declared_array_bytes, npz_bytes, read_json_file, sha256_file
from .errors import WeightsIntegrityError, WeightsNotFoundError
from .hod import MASS_FUNCTION_KEYS, validate_mass_function
from .layout import DEFAULT_LAYOUT, layout_of
from .weights import (CHECKSUM_FILE, CORRELATION_FILE, MASS_FUNCTION_FILE, MASS_FUNCTION_TABLE_FILE,
                      METADATA_FILE, REFERENCE_FILE, REQUIRED_FILES, WEIGHTS_FILE)
from .weights_checks import (check_correlation, check_mass_function_values, check_members, fail)
from .weights_schema import SCHEMA_VERSION, validate_metadata
from .weights_sums import checked_files, verify_checksums, write_checksums

__all__ = ["write_weights_folder", "write_checksums", "verify_checksums", "load_weights_folder",
           "validate_metadata", "read_metadata_file", "reseal_folder", "sha256_file", "SCHEMA_VERSION",
           "read_mass_function_table", "MASS_FUNCTION_TABLE_FILE",
           "WEIGHTS_FILE", "METADATA_FILE",
           "CORRELATION_FILE", "MASS_FUNCTION_FILE", "REFERENCE_FILE", "CHECKSUM_FILE",
           "check_declared_size", "MAX_DECLARED_BYTES",
           "REQUIRED_FILES"]

log = logging.getLogger(__name__)

#: Most bytes the arrays of one weights-folder file may declare (the shipped ones hold a few MB):
#: a small compressed file declaring more (a "zip bomb") is refused before anything is allocated.
MAX_DECLARED_BYTES = 1024 ** 3

_MEMBER_KEY = re.compile(r"^member(\d+)/(.+)$")


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


def write_weights_folder(folder, metadata: Mapping, member_state_dicts, residual_correlation,
                         halo_mass_function: Mapping, extra_files: Mapping | None = None,
                         mass_function_table=None) -> Path:
    """Write a complete weights folder and its ``SHA256SUMS``.

    Parameters
    ----------
    folder : path-like
        Created if needed; files already there are overwritten.
    metadata : mapping
        Content of ``metadata.json`` (validated with :func:`validate_metadata`). Filled in when
        absent: ``schema_version``, ``ensemble_size``, ``layout`` (the default layout), and from the
        layout ``param_names``, ``statistics`` and, when the statistics share one axis, ``r_edges``.
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
    mass_function_table : MassFunctionTable, optional
        The host mass function across an N-body suite
        (:mod:`iaemu_likelihood.mass_function_table`), for weights with cosmology or redshift
        inputs: written as ``halo_mass_function_table.npz``; ``metadata["mass_function_table"]``
        (default ``{"file": ..., "fixed": {}}``) names it and the values of Omega_m, sigma_8, z
        that are not inputs. It must cover the weights' redshift range.

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
    layout = layout_of(meta, str(folder / METADATA_FILE))
    meta.setdefault("param_names", list(layout.param_names))
    meta.setdefault("statistics", list(layout.statistic_names))
    if layout.shared_axis:  # one axis for every statistic: recorded as r_edges too
        meta.setdefault("r_edges", list(layout.statistics[0].edges))
    mass_function = validate_mass_function(halo_mass_function)
    if mass_function_table is not None:
        meta.setdefault("mass_function_table", {"file": MASS_FUNCTION_TABLE_FILE, "fixed": {}})
    elif "mass_function_table" in meta:
        fail(str(folder / METADATA_FILE), "mass_function_table", meta["mass_function_table"],
             "no entry when no table is written (mass_function_table=None)")
    validate_metadata(meta, n_members=len(members), where=str(folder / METADATA_FILE))
    if mass_function_table is not None:
        _checked_interpolator(mass_function_table, meta, layout, str(folder / MASS_FUNCTION_TABLE_FILE))
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
    if mass_function_table is not None:
        from .mass_function_table import table_arrays

        atomic_write_bytes(folder / MASS_FUNCTION_TABLE_FILE,
                           npz_bytes(table_arrays(mass_function_table), compressed=True))
    for name, content in (extra_files or {}).items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        data = bytes(content) if isinstance(content, (bytes, bytearray)) else Path(content).read_bytes()
        atomic_write_bytes(target, data)
    write_checksums(folder)
    log.info("wrote weights folder %s (%d members)", folder, len(members))
    return folder


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


def _checked_interpolator(table, meta: Mapping, layout, where: str):
    """The interpolator of a mass-function table, checked against the weights: at least 3 boxes
    not on one line, and its redshifts cover the weights' z range (or fixed z)."""
    from .mass_function_table import MassFunctionInterpolator, MassFunctionTableError

    try:
        interpolator = MassFunctionInterpolator(table)
    except MassFunctionTableError as exc:
        raise WeightsIntegrityError(f"{where}: {exc}") from None
    low, high = interpolator.z_range
    if "z" in layout.param_names:
        z_low, z_high = (float(v) for v in meta["bounds"]["z"])
    else:
        z_low = z_high = float(meta["mass_function_table"]["fixed"]["z"])
    if z_low < low or z_high > high:
        fail(where, "z", [low, high], f"tabulated redshifts covering the weights' z range [{z_low:g}, {z_high:g}]")
    return interpolator


def read_mass_function_table(folder, metadata: Mapping):
    """The host mass function across an N-body suite that a weights folder carries.

    Parameters
    ----------
    folder : path-like
        A weights folder whose checksums were verified (:func:`load_weights_folder`).
    metadata : mapping
        Its validated ``metadata.json``.

    Returns
    -------
    MassFunctionInterpolator or None
        None when ``metadata`` names no table (weights trained on one catalog).

    Raises
    ------
    WeightsIntegrityError
        The file is missing, unreadable (no pickle), inconsistent, has fewer than 3 boxes not on
        one line, or does not cover the weights' redshift range; one line naming the file.
    """
    from .mass_function_table import MassFunctionTableError, load_table

    entry = metadata.get("mass_function_table")
    if entry is None:
        return None
    path = Path(folder) / MASS_FUNCTION_TABLE_FILE
    if not path.is_file():
        raise WeightsIntegrityError(f"{path}: missing; {METADATA_FILE} names it (mass_function_table)")
    check_declared_size(path)
    try:
        table = load_table(path)
    except MassFunctionTableError as exc:
        raise WeightsIntegrityError(str(exc)) from None
    return _checked_interpolator(table, metadata, layout_of(metadata), str(path))


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
    metadata = load_weights_folder(folder, check_sums=False)[0]
    read_mass_function_table(folder, metadata)
    path = write_checksums(folder)
    log.info("resealed %s (%d files)", folder, len(checked_files(folder)))
    return path
