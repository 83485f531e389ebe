"""Measurement files read by the iaemu likelihoods (Cobaya and CosmoSIS).

File format
-----------
One ``.npz`` file (read without pickle) with the keys

============== ======================= ==========================================================
key            shape / type            meaning
============== ======================= ==========================================================
``r``          (n_r,) float            separations, comoving h^-1 Mpc, strictly increasing; each
                                       must be one of the emulator's bin centres (relative
                                       tolerance 1e-6). **Any subset** of the 20 bins is allowed
                                       (e.g. a measurement already cut to large scales), but no
                                       interpolation is done: other separations are an error.
``xi``         (n_r,) float            position-position correlation (optional)
``omega``      (n_r,) float            position-orientation correlation (optional)
``eta``        (n_r,) float            orientation-orientation correlation (optional)
``statistics`` (n_stat,) str           which of xi/omega/eta are present; at least one. All
                                       present statistics share ``r``.
``cov``        (n, n) float            covariance of the concatenation of the present statistics
                                       in the order xi, omega, eta (``n = n_stat * n_r``);
                                       symmetric (relative 1e-8) and positive definite.
``metadata``   () str, optional        JSON object: provenance, fiducial ``truth`` parameters...
============== ======================= ==========================================================

All values must be finite. :func:`load_measurement` raises :class:`DataFileError` naming the file
and the problem; :func:`save_measurement` validates the same way and writes atomically.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._io import atomic_write_bytes, declared_array_bytes, npz_bytes
from .conventions import STATISTICS, r_centres
from .errors import IAEmuError
from .weights import unique_json_keys
from .likelihood_math import (match_bins, normalise_r_limits, normalise_statistics,
                              scale_cut_mask)

__all__ = ["DataFileError", "Measurement", "load_measurement", "save_measurement", "example_data_path",
           "resolve_data_file", "EXAMPLES", "EXAMPLE_FILE", "REQUIRED_KEYS", "SYMMETRY_RTOL"]

REQUIRED_KEYS = ("r", "statistics", "cov")
#: Largest total size the arrays of a measurement file may declare (the 60 x 60 covariance is 28 kB).
MAX_MEASUREMENT_BYTES = 64 * 2**20
#: largest allowed |C - C^T| relative to max |C|
SYMMETRY_RTOL = 1e-8


class DataFileError(IAEmuError, ValueError):
    """A measurement file is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class Measurement:
    """A measured data vector with its covariance.

    Attributes
    ----------
    r : numpy.ndarray, shape (n_r,)
        Separations, comoving h^-1 Mpc.
    statistics : tuple of str
        Present statistics, in STATISTICS order.
    values : dict
        ``{statistic: (n_r,) array}``.
    cov : numpy.ndarray, shape (n, n)
        Covariance of :meth:`vector` (exactly symmetric).
    metadata : dict
        Free-form provenance (``truth`` holds fiducial parameters of simulated data).
    source : str
        Where it was read from (for messages).
    """

    r: np.ndarray
    statistics: tuple
    values: dict
    cov: np.ndarray
    metadata: dict = field(default_factory=dict)
    source: str = "<memory>"

    def __post_init__(self):
        _validate(self)

    @property
    def n_r(self) -> int:
        return self.r.size

    def vector(self) -> np.ndarray:
        """Concatenation of the present statistics (STATISTICS order), shape (n_stat * n_r,)."""
        return np.concatenate([self.values[s] for s in self.statistics])

    def selection(self, statistics=None, r_min=None, r_max=None, r_bins=None, layout=None):
        """Indices of a statistics selection and scale cuts in this data and in the emulator vector.

        Parameters
        ----------
        statistics : str, iterable of str or None
            Subset of :attr:`statistics` (None: all present).
        r_min, r_max : float, mapping {statistic: float} or None
            Inclusive cuts on ``r`` (h^-1 Mpc), one value or per statistic.
        r_bins : array_like, shape (n_bins,), optional
            Emulator bin centres (default :func:`conventions.r_centres`).
        layout : Layout, optional
            The emulator's layout: indices then point into its output vector, each statistic
            matched against its own bins (``r_bins`` is then not used).

        Returns
        -------
        data_idx, emu_idx : numpy.ndarray of int
            ``vector()[data_idx]`` matches ``emulator_vector[emu_idx]``, where the emulator
            vector is ``[xi(n_bins), omega(n_bins), eta(n_bins)]``.

        Raises
        ------
        ValueError
            Statistics not present, bad cuts, cuts that leave nothing, or ``r`` not on the bins.
        """
        r_bins = r_centres() if r_bins is None else np.asarray(r_bins, dtype=float)
        stats = normalise_statistics(statistics, available=self.statistics)
        lo = normalise_r_limits(r_min, stats, 0.0, "r_min")
        hi = normalise_r_limits(r_max, stats, math.inf, "r_max")
        bins = match_bins(self.r, r_bins) if layout is None else None
        data_idx, emu_idx = [], []
        for s in stats:
            keep = np.flatnonzero(scale_cut_mask(self.r, lo[s], hi[s]))
            if keep.size == 0:
                raise ValueError(f"scale cuts r_min={lo[s]}, r_max={hi[s]} h^-1 Mpc leave no bin of "
                                 f"{s} (data r spans {self.r.min():.4g}-{self.r.max():.4g})")
            data_idx.append(self.statistics.index(s) * self.n_r + keep)
            if layout is None:
                emu_idx.append(STATISTICS.index(s) * r_bins.size + bins[keep])
            elif s not in layout.slices:
                raise ValueError(f"statistic {s} is not emulated by these weights (they emulate "
                                 f"{list(layout.statistic_names)})")
            else:
                emu_idx.append(layout.slices[s].start
                               + match_bins(self.r, layout.statistic(s).centres)[keep])
        return np.concatenate(data_idx), np.concatenate(emu_idx)


def _fail(source, problem):
    raise DataFileError(f"measurement file {source}: {problem}")


def _numeric(src, key, value) -> np.ndarray:
    """``value`` as a float64 array; DataFileError naming the key if it is not real numbers."""
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged nesting
        _fail(src, f"{key!r} is not an array of real numbers (ragged nesting)")
    if arr.dtype.kind not in "iuf":
        first = arr.ravel()[0] if arr.size else None
        example = f", e.g. {first.item() if isinstance(first, np.generic) else first!r}" if arr.size else ""
        _fail(src, f"{key!r} must hold real numbers, got dtype {arr.dtype}{example}")
    return arr.astype(np.float64)


def _validate(m: Measurement):
    """Check and normalise a Measurement in place (frozen: via object.__setattr__)."""
    src = m.source
    r = _numeric(src, "r", m.r)
    if r.ndim != 1 or r.size == 0:
        _fail(src, f"'r' must be a non-empty 1-d array, got shape {r.shape}")
    if not np.isfinite(r).all() or (r <= 0).any():
        _fail(src, "'r' must be finite and positive (comoving h^-1 Mpc)")
    if (np.diff(r) <= 0).any():
        _fail(src, "'r' must be strictly increasing")
    stats = tuple(str(s) for s in np.atleast_1d(m.statistics))
    try:
        canonical = normalise_statistics(stats)
    except ValueError as exc:
        _fail(src, f"'statistics': {exc}")
    if canonical != stats:
        _fail(src, f"'statistics' must be in the order {list(STATISTICS)}, got {list(stats)}")
    values = {}
    for s in stats:
        if s not in m.values:
            _fail(src, f"'statistics' lists {s!r} but the key {s!r} is missing")
        v = _numeric(src, s, m.values[s])
        if v.shape != r.shape:
            _fail(src, f"{s!r} has shape {v.shape}, expected {r.shape} (one value per r)")
        if not np.isfinite(v).all():
            i = int(np.flatnonzero(~np.isfinite(v))[0])
            _fail(src, f"{s!r} contains non-finite values (e.g. {v[i]} at index {i})")
        values[s] = v
    extra = [s for s in m.values if s not in stats]
    if extra:
        _fail(src, f"keys {extra} are present but not listed in 'statistics' {list(stats)}")
    n = len(stats) * r.size
    cov = _numeric(src, "cov", m.cov)
    if cov.shape != (n, n):
        _fail(src, f"'cov' has shape {cov.shape}, expected {(n, n)} "
                   f"({len(stats)} statistics x {r.size} separations)")
    if not np.isfinite(cov).all():
        bad = np.argwhere(~np.isfinite(cov))[0]
        _fail(src, f"'cov' contains non-finite values (e.g. {cov[tuple(bad)]} at {tuple(bad.tolist())})")
    scale = np.abs(cov).max()
    if scale == 0 or np.abs(cov - cov.T).max() > SYMMETRY_RTOL * scale:
        _fail(src, "'cov' is not symmetric" if scale else "'cov' is zero")
    cov = 0.5 * (cov + cov.T)
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        eig = np.linalg.eigvalsh(cov)
        _fail(src, f"'cov' is not positive definite (smallest eigenvalue {eig[0]:.3g})")
    if not isinstance(m.metadata, dict):
        _fail(src, f"'metadata' must be a JSON object, got {type(m.metadata).__name__}")
    r.setflags(write=False)
    cov.setflags(write=False)
    for v in values.values():
        v.setflags(write=False)
    object.__setattr__(m, "r", r)
    object.__setattr__(m, "statistics", stats)
    object.__setattr__(m, "values", values)
    object.__setattr__(m, "cov", cov)


def load_measurement(path, r_bins=None) -> Measurement:
    """Read and validate a measurement file.

    Parameters
    ----------
    path : str or path-like
        ``.npz`` file in the format described in the module docstring.
    r_bins : array_like, optional
        Emulator bin centres (h^-1 Mpc); if given, every ``r`` must be one of them.

    Raises
    ------
    DataFileError
        Missing or unreadable file, missing keys, shape mismatches, non-finite values,
        a covariance that is not symmetric positive definite, or separations off the bins.
    """
    path = Path(path)
    src = str(path)
    if not path.is_file():
        _fail(src, "no such file")
    declared = declared_array_bytes(path)
    if declared > MAX_MEASUREMENT_BYTES:  # a few kB of compressed zeros can declare GBs
        _fail(src, f"its arrays declare {declared / 2**20:,.0f} MiB; a measurement holds at most "
                   f"{MAX_MEASUREMENT_BYTES / 2**20:,.0f} MiB")
    try:
        with np.load(path, allow_pickle=False) as f:
            raw = {k: f[k] for k in f.files}
    except Exception as exc:  # any unreadable file is reported the same way
        _fail(src, f"cannot be read as a .npz archive without pickle ({exc})")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        _fail(src, f"missing key(s) {missing}; present: {sorted(raw)}")
    unknown = sorted(set(raw) - set(REQUIRED_KEYS) - set(STATISTICS) - {"metadata"})
    if unknown:
        _fail(src, f"unknown key(s) {unknown}")
    if raw["statistics"].dtype.kind not in "US":
        _fail(src, "'statistics' must be an array of strings")
    metadata = {}
    if "metadata" in raw:
        try:
            metadata = json.loads(str(raw["metadata"][()]), object_pairs_hook=unique_json_keys)
        except (json.JSONDecodeError, TypeError, ValueError, RecursionError) as exc:
            text = "nesting too deep" if isinstance(exc, RecursionError) else " ".join(str(exc).split())
            _fail(src, f"'metadata' is not valid JSON ({text})")
    m = Measurement(r=raw["r"], statistics=tuple(np.atleast_1d(raw["statistics"])),
                    values={s: raw[s] for s in STATISTICS if s in raw}, cov=raw["cov"],
                    metadata=metadata, source=src)
    if r_bins is not None:
        try:
            match_bins(m.r, r_bins)
        except ValueError as exc:
            _fail(src, str(exc))
    return m


def save_measurement(path, r, values, cov, metadata=None) -> Path:
    """Validate and write a measurement file atomically.

    Parameters
    ----------
    path : str or path-like
        Destination (``.npz`` is not appended automatically).
    r : array_like, shape (n_r,)
        Separations, comoving h^-1 Mpc.
    values : mapping
        ``{statistic: (n_r,) array}`` for any non-empty subset of xi, omega, eta.
    cov : array_like, shape (n, n)
        Covariance of the present statistics concatenated in STATISTICS order.
    metadata : dict, optional
        JSON-serialisable provenance.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    stats = tuple(s for s in STATISTICS if s in values)
    m = Measurement(r=r, statistics=stats, values=dict(values), cov=cov,
                    metadata=dict(metadata or {}), source=str(path))
    arrays = {"r": m.r, "statistics": np.array(m.statistics), "cov": m.cov,
              "metadata": np.array(json.dumps(m.metadata, sort_keys=True))}
    arrays.update(m.values)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, npz_bytes(arrays))
    return path


#: bundled example measurements inside ``iaemu_likelihood/data``, by the name that selects them
#: (``data_file: NAME`` in Cobaya and CosmoSIS, ``iaemu plot --truth NAME``): "example" for the
#: one-cosmology weights (z = 0), "example_cosmology" for weights with cosmology and z inputs
EXAMPLES = {"example": "example_measurement.npz",
            "example_cosmology": "example_measurement_cosmology.npz"}
EXAMPLE_FILE = EXAMPLES["example"]


def example_data_path(name: str = "example") -> Path:
    """Path of a bundled example measurement (package data).

    Parameters
    ----------
    name : str
        A key of :data:`EXAMPLES`.

    Raises
    ------
    DataFileError
        Unknown name, or this installation has no such file (they are made by
        ``scripts/make_example_data.py`` from the mock pipeline).
    """
    from importlib import resources

    if name not in EXAMPLES:
        raise DataFileError(f"example measurement {name!r}: unknown; allowed: {sorted(EXAMPLES)}")
    path = Path(str(resources.files("iaemu_likelihood") / "data" / EXAMPLES[name]))
    if not path.is_file():
        raise DataFileError(f"measurement file {path}: the example measurement is not bundled in this "
                            "installation (it is made by scripts/make_example_data.py); pass data_file")
    return path


def resolve_data_file(data_file) -> Path:
    """Path of a ``data_file`` option (Cobaya likelihood and CosmoSIS module).

    ``None``, ``""`` or a name of :data:`EXAMPLES` (``"example"``, ``"example_cosmology"``) selects
    a measurement bundled with the package; other values have ``~`` and ``$VARS`` expanded, and a
    relative path is taken relative to the current working directory (as Cobaya does for
    ``output``: Cobaya does not tell components where their yaml file lies, so write absolute
    paths or ``${VAR}/...`` in yamls that are run from elsewhere).

    Raises
    ------
    DataFileError
        An example is requested but not bundled.
    """
    from ._io import expand_user_path

    text = "" if data_file is None else str(data_file).strip()
    if not text or text in EXAMPLES:
        return example_data_path(text or "example")
    return Path(expand_user_path(text)).absolute()
