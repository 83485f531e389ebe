"""The training-set file: every mock realization of every design point, with provenance.

One compressed ``.npz`` (read without pickle) per dataset; the schema is in
``training/README.md`` and ``docs/CONTRACTS.md``. Statistics are on the bins ``r_edges``
(comoving h^-1 Mpc): ``xi`` (position-position), ``omega`` (position-orientation) and
``eta`` (orientation-orientation), each of shape (n_points, n_realizations, n_bins).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, npz_bytes
from .._io import sha256_file as file_sha256  # the one file hash, under its historic name here
from ..conventions import PARAM_NAMES, STATISTICS
from ..errors import IAEmuError

__all__ = ["IADataset", "DatasetFileError", "save_dataset", "load_dataset", "load_datasets", "concatenate_datasets",
           "input_layout", "file_sha256", "files_sha256", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
_ARRAYS = ("params", "xi", "omega", "eta", "r_edges", "n_gal", "n_cen", "n_sat", "seeds", "retries")
#: Provenance entries that datasets must share to be concatenated: same prior (design rule), halo
#: catalog and mass function, parameter order.
SHARED_PROVENANCE = ("design_rule", "halo_catalog", "halo_mass_function", "param_names")


class DatasetFileError(IAEmuError, ValueError):
    """A dataset file is unreadable, incomplete or holds non-numeric or non-finite values."""


@dataclasses.dataclass(frozen=True)
class IADataset:
    """All realizations of a set of design points.

    Attributes
    ----------
    params : ndarray, shape (n_points, 7)
        Parameters in :data:`~iaemu_likelihood.conventions.PARAM_NAMES` order.
    xi, omega, eta : ndarray, shape (n_points, n_realizations, n_bins)
        The statistic measured on every mock realization.
    r_edges : ndarray, shape (n_bins + 1,)
        Bin edges in comoving h^-1 Mpc.
    n_gal, n_cen, n_sat : ndarray of int, shape (n_points, n_realizations)
        Galaxy counts of each mock.
    seeds : ndarray of int, shape (n_points, n_realizations)
        Seed of each realization (populate_mock and alignment draws).
    retries : ndarray of int, shape (n_points, n_realizations)
        Extra attempts a realization needed because a statistic was not finite.
    provenance : dict
        Generation config, design rule, halo catalog hash and metadata, code versions, timings.
    """

    params: np.ndarray
    xi: np.ndarray
    omega: np.ndarray
    eta: np.ndarray
    r_edges: np.ndarray
    n_gal: np.ndarray
    n_cen: np.ndarray
    n_sat: np.ndarray
    seeds: np.ndarray
    retries: np.ndarray
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        n_points = self.params.shape[0]
        if self.params.ndim != 2 or self.params.shape[1] != len(PARAM_NAMES):
            raise ValueError(f"params must have shape (n_points, {len(PARAM_NAMES)}), got {self.params.shape}")
        shape = (n_points, self.xi.shape[1], self.r_edges.size - 1)
        for name in STATISTICS:
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")
        for name in ("n_gal", "n_cen", "n_sat", "seeds", "retries"):
            if getattr(self, name).shape != shape[:2]:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {shape[:2]}")

    @property
    def n_points(self) -> int:
        """Number of design points."""
        return self.params.shape[0]

    @property
    def n_realizations(self) -> int:
        """Realizations per point."""
        return self.xi.shape[1]

    def stat(self, name: str) -> np.ndarray:
        """Every realization of one statistic, shape (n_points, n_realizations, n_bins)."""
        if name not in STATISTICS:
            raise ValueError(f"statistic {name!r} unknown; allowed: {STATISTICS}")
        return getattr(self, name)

    def mean(self, name: str) -> np.ndarray:
        """Mean over realizations, shape (n_points, n_bins)."""
        return self.stat(name).mean(axis=1)

    def std(self, name: str, ddof: int = 1) -> np.ndarray:
        """Scatter of one realization about the point mean, shape (n_points, n_bins)."""
        return self.stat(name).std(axis=1, ddof=ddof)

    def subset(self, indices) -> IADataset:
        """A dataset holding only the design points ``indices`` (all their realizations); the
        per-point provenance ``point_inputs`` is subset with them."""
        idx = np.asarray(indices)
        arrays = {name: getattr(self, name)[idx] for name in _ARRAYS if name != "r_edges"}
        provenance = dict(self.provenance)
        if isinstance(provenance.get("point_inputs"), dict):
            rows = np.arange(self.n_points)[idx].tolist()
            provenance["point_inputs"] = {key: [values[i] for i in rows]
                                          for key, values in provenance["point_inputs"].items()}
        return IADataset(r_edges=self.r_edges, provenance=provenance, **arrays)

    def params_dict(self, i: int) -> dict:
        """Parameters of point ``i`` as a name -> value mapping."""
        return dict(zip(PARAM_NAMES, map(float, self.params[i])))

    def inputs(self, names, fixed=None) -> np.ndarray:
        """The emulator inputs ``names`` of every point, (n_points, len(names)), float64.

        The seven HOD + alignment parameters come from :attr:`params`; the cosmology and redshift
        inputs (``Omega_m``, ``sigma_8``, ``z``) from the per-point provenance ``point_inputs``
        (the box and snapshot each point was populated in; see
        :data:`~iaemu_likelihood.cosmology_inputs.DATASET_KEYS`), or from ``fixed``.

        Parameters
        ----------
        names : sequence of str
        fixed : dict, optional
            ``{name: value}`` for inputs the dataset does not hold, the same for every point (e.g.
            the cosmology and z of the one catalog a v1 test set was made in).

        Raises
        ------
        DatasetFileError
            Naming the input the dataset does not hold (and ``fixed`` does not give), an input
            both hold, or a ``point_inputs`` entry that is not one finite number per point.
        """
        from ..cosmology_inputs import DATASET_KEYS

        fixed = dict(fixed or {})
        columns = []
        for name in names:
            if name in PARAM_NAMES:
                if name in fixed:
                    raise DatasetFileError(f"fixed input {name}={fixed[name]!r}: the dataset holds "
                                           f"{name} per point; allowed fixed inputs: {list(DATASET_KEYS)}")
                columns.append(self.params[:, PARAM_NAMES.index(name)].astype(np.float64))
                continue
            key = DATASET_KEYS.get(name)
            values = (self.provenance.get("point_inputs") or {}).get(key) if key else None
            if values is not None and name in fixed:
                raise DatasetFileError(f"fixed input {name}={fixed[name]!r}: the dataset holds {name} "
                                       "per point (provenance point_inputs); leave it out")
            if values is None and name in fixed:
                columns.append(np.full(self.n_points, float(fixed[name])))
                continue
            if values is None:
                raise DatasetFileError(
                    f"dataset {self.provenance.get('name', '')!s}: input {name!r} is not in it; allowed: "
                    f"{list(PARAM_NAMES)} and, for a dataset generated over an N-body suite, "
                    f"{list(DATASET_KEYS)} (provenance point_inputs); or give it as a fixed value")
            try:
                column = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError):
                column = np.array([np.nan])
            if column.shape != (self.n_points,) or not np.all(np.isfinite(column)):
                raise DatasetFileError(f"dataset provenance point_inputs.{key}: allowed: {self.n_points} "
                                       "finite numbers, one per point")
            columns.append(column)
        return np.column_stack(columns) if columns else np.empty((self.n_points, 0))


def save_dataset(path: str | os.PathLike, dataset: IADataset, durable: bool = False) -> Path:
    """Write ``dataset`` to a compressed npz atomically (temporary file, then rename).

    ``durable=True`` flushes it to disk before returning (see
    :func:`iaemu_likelihood._io.atomic_write_bytes`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    provenance = dict(dataset.provenance)
    provenance.setdefault("schema_version", SCHEMA_VERSION)
    arrays = {name: np.asarray(getattr(dataset, name)) for name in _ARRAYS}
    arrays["provenance"] = np.array(json.dumps(provenance, sort_keys=True))
    atomic_write_bytes(path, npz_bytes(arrays, compressed=True), durable=durable)
    return path


def load_dataset(path: str | os.PathLike) -> IADataset:
    """Read a dataset written by :func:`save_dataset` (no pickle).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    DatasetFileError
        (a ValueError) If the file cannot be read, an array is missing, non-numeric or
        non-finite where it must not be, or shapes disagree; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in (*_ARRAYS, "provenance") if name not in data.files]
            if missing:
                raise DatasetFileError(f"dataset {path} lacks arrays {missing}")
            arrays = {name: data[name] for name in _ARRAYS}
            provenance_text = str(data["provenance"])
    except DatasetFileError:
        raise
    except Exception as exc:  # bad zip, bad CRC, pickled object, truncation
        raise DatasetFileError(f"dataset {path} cannot be read ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())})") from None
    try:
        provenance = json.loads(provenance_text)
    except ValueError:
        provenance = None
    if not isinstance(provenance, dict):
        raise DatasetFileError(f"dataset {path}: provenance is not a JSON object")
    if provenance.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise DatasetFileError(f"dataset {path} has schema_version {provenance.get('schema_version')}, "
                               f"this code reads {SCHEMA_VERSION}")
    max_retries = (provenance.get("config") or {}).get("max_retries")
    _check_values(path, arrays, max_retries if isinstance(max_retries, int) else 0)
    try:
        return IADataset(provenance=provenance, **arrays)
    except ValueError as exc:
        raise DatasetFileError(f"dataset {path}: {exc}") from None


def _check_values(path: Path, arrays: dict, max_retries: int) -> None:
    """Numbers only; params and r_edges finite, statistics finite except in failed realizations
    (``retries > max_retries``, see :func:`.generate.run_point`), counts non-negative."""
    for name, value in arrays.items():
        kinds = "iu" if name in ("n_gal", "n_cen", "n_sat", "seeds", "retries") else "iuf"
        if value.dtype.kind not in kinds:
            raise DatasetFileError(f"dataset {path}: {name!r} has dtype {value.dtype}, expected "
                                   f"{'integers' if kinds == 'iu' else 'numbers'}")
    for name in ("params", "r_edges"):
        if not np.all(np.isfinite(arrays[name])):
            raise DatasetFileError(f"dataset {path}: {name!r} has non-finite values")
    if arrays["r_edges"].ndim != 1 or np.any(np.diff(arrays["r_edges"]) <= 0) or np.any(arrays["r_edges"] <= 0):
        raise DatasetFileError(f"dataset {path}: 'r_edges' must be positive and strictly increasing")
    retries = arrays["retries"]
    for name in STATISTICS:
        value = arrays[name]
        if value.ndim != 3 or value.shape[:2] != retries.shape:
            continue  # the shape check of IADataset names it
        bad = ~np.all(np.isfinite(value), axis=2) & (retries <= max_retries)
        if np.any(bad):
            p, r = np.argwhere(bad)[0]
            raise DatasetFileError(f"dataset {path}: {name!r} has non-finite values in point {p}, "
                                   f"realization {r}, which is not recorded as failed")
    for name in ("n_gal", "n_cen", "n_sat", "retries"):
        if np.any(arrays[name] < 0):
            raise DatasetFileError(f"dataset {path}: {name!r} has negative values")


def files_sha256(paths) -> str:
    """SHA-256 identifying one file (its own digest) or an ordered list of files (the digest of
    their digests, one ``"<sha256>  <file name>"`` line each)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if len(paths) == 1:
        return file_sha256(paths[0])
    lines = "".join(f"{file_sha256(p)}  {Path(p).name}\n" for p in paths)
    return hashlib.sha256(lines.encode()).hexdigest()


def concatenate_datasets(datasets, labels=None) -> IADataset:
    """One dataset holding the design points of several (e.g. independently seeded Latin
    hypercubes over the same prior).

    Parameters
    ----------
    datasets : sequence of IADataset
        At least one; all with the same bins, number of realizations and the provenance entries
        of :data:`SHARED_PROVENANCE`.
    labels : sequence of str, optional
        Names for the error messages and the ``components`` provenance entry.

    Returns
    -------
    IADataset
        Points in the given order; provenance of the first dataset plus ``components`` (name,
        seed and number of points of each part); per-part design details (``unit_cube``,
        ``seed``, ``config``) are kept only in ``components``.

    Raises
    ------
    ValueError
        Naming the first dataset that does not match the first one, and how.
    """
    datasets = list(datasets)
    if not datasets:
        raise ValueError("concatenate_datasets needs at least one dataset")
    labels = list(labels) if labels is not None else [f"dataset {i}" for i in range(len(datasets))]
    if len(datasets) == 1:
        return datasets[0]
    first = datasets[0]
    for label, ds in zip(labels[1:], datasets[1:]):
        if ds.r_edges.shape != first.r_edges.shape or not np.allclose(ds.r_edges, first.r_edges,
                                                                      rtol=1e-12, atol=0):
            raise ValueError(f"{label}: r_edges differ from those of {labels[0]}")
        if ds.n_realizations != first.n_realizations:
            raise ValueError(f"{label}: {ds.n_realizations} realizations per point, {labels[0]} has "
                             f"{first.n_realizations}; concatenated datasets need the same number")
        for key in SHARED_PROVENANCE:
            if ds.provenance.get(key) != first.provenance.get(key):
                raise ValueError(f"{label}: provenance entry {key!r} differs from that of {labels[0]} "
                                 "(different prior, halo catalog or parameter order)")
    arrays = {name: np.concatenate([getattr(ds, name) for ds in datasets])
              for name in _ARRAYS if name != "r_edges"}
    provenance = {k: v for k, v in first.provenance.items() if k not in ("unit_cube", "seed", "config")}
    per_point = [ds.provenance.get("point_inputs") for ds in datasets]
    if any(p is not None for p in per_point):
        keys = set(per_point[0] or ())
        for label, entry in zip(labels, per_point):
            if not isinstance(entry, dict) or set(entry) != keys:
                raise ValueError(f"{label}: provenance point_inputs {sorted(entry or ())} differ from "
                                 f"those of {labels[0]} ({sorted(keys)}); concatenated datasets need the same")
        provenance["point_inputs"] = {k: [v for entry in per_point for v in entry[k]] for k in per_point[0]}
    provenance["name"] = "+".join(str(ds.provenance.get("name", label))
                                  for ds, label in zip(datasets, labels))
    provenance["components"] = [{"name": ds.provenance.get("name", label), "label": label,
                                 "seed": ds.provenance.get("seed"), "n_points": ds.n_points}
                                for ds, label in zip(datasets, labels)]
    provenance["n_failed_realizations"] = sum(int(ds.provenance.get("n_failed_realizations", 0))
                                              for ds in datasets)
    return IADataset(r_edges=first.r_edges, provenance=provenance, **arrays)


def load_datasets(paths) -> IADataset:
    """Load one dataset file, or several and concatenate them (:func:`concatenate_datasets`)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return concatenate_datasets([load_dataset(p) for p in paths], labels=[str(p) for p in paths])


def input_layout(dataset):
    """The emulator layout a dataset trains, and the cosmology inputs it holds fixed.

    The seven HOD + alignment inputs of :data:`~iaemu_likelihood.layout.DEFAULT_LAYOUT`, then,
    in :data:`~iaemu_likelihood.cosmology_inputs.V2_LAYOUT` order, every cosmology or redshift
    input of the per-point provenance ``point_inputs`` that takes more than one value across the
    points (a dataset of one snapshot redshift trains no ``z`` input); the statistics of the
    default layout.

    Returns
    -------
    layout : Layout
    fixed : dict
        ``{name: value}`` of the cosmology inputs that are the same at every point (recorded in
        the weights' metadata, not inputs).
    """
    from ..cosmology_inputs import COSMOLOGY_INPUTS, DATASET_KEYS
    from ..layout import DEFAULT_LAYOUT, Layout

    point_inputs = dataset.provenance.get("point_inputs") or {}
    extra, fixed = [], {}
    for item in COSMOLOGY_INPUTS:
        if DATASET_KEYS[item.name] not in point_inputs:
            continue
        column = dataset.inputs([item.name])[:, 0]
        if np.ptp(column) > 0:
            extra.append(item)
        else:
            fixed[item.name] = float(column[0])
    if not extra:
        return DEFAULT_LAYOUT, fixed
    return Layout(inputs=(*DEFAULT_LAYOUT.inputs, *extra), statistics=DEFAULT_LAYOUT.statistics), fixed
