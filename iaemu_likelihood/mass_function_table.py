"""Host-halo mass function across an N-body suite: the table and its interpolation in (Omega_m, sigma_8, z).

The derived ``n_gal`` and ``f_sat`` of emulator v2 sum the Zheng07 occupations over the host mass
function, which depends on (Omega_m, sigma_8, z). The table (built from the suite's catalogs by
:func:`iaemu_likelihood.training.mass_function.tabulate_suite`, shipped in a weights folder as
``halo_mass_function_table.npz``) holds, per (box, snapshot), the cumulative density n(>M) of the
hosts a mock populates (M > the generation's one mass cut) on a fixed grid of log10 M.

Interpolation (:class:`MassFunctionInterpolator`):

* in mass: the table holds log10 n(>M) at the grid masses (a floor of half a halo per box
  volume where no halo is that heavy), so bin counts between grid masses are differences of a
  monotone function;
* in (Omega_m, sigma_8), at each tabulated z: a thin-plate-spline radial basis function with a
  linear polynomial (exact at the boxes; the interpolant of scipy's ``RBFInterpolator`` with
  ``kernel="thin_plate_spline", degree=1``, fitted and evaluated here in a few small matrix
  products) of the whole log10 n(>M) vector, on coordinates scaled by the suite's ranges;
* in z: linear between the two neighbouring snapshots; outside the tabulated z range it refuses.

The result is a binned mass function in the form :mod:`iaemu_likelihood.hod` sums over
(``log10_mass_edges``, ``counts``, ``mean_log10_mass``, ``volume``), one point at a time
(:meth:`MassFunctionInterpolator.mass_function`) or as counts of many points at once
(:meth:`MassFunctionInterpolator.counts`). Files are read without pickle (provenance as JSON text).
"""
from __future__ import annotations

import json
import math
import os
from bisect import bisect_right
from pathlib import Path

import numpy as np

from .errors import IAEmuError

__all__ = ["MassFunctionTable", "MassFunctionInterpolator", "MassFunctionTableError", "TABLE_ARRAYS",
           "load_table", "check_table", "table_arrays"]

#: Arrays of a table file (``provenance``: JSON text).
TABLE_ARRAYS = ("log10_mass", "omega_m", "sigma8", "z", "log10_n_above", "volume", "provenance")


class MassFunctionTableError(IAEmuError, ValueError):
    """A mass-function table is unreadable or inconsistent, or a point is outside what it covers."""


class MassFunctionTable(dict):
    """The tabulated cumulative host densities (a dict of arrays).

    Keys: ``log10_mass`` (n_m,) grid, log10(Msun/h); ``omega_m``, ``sigma8`` (n_box,);
    ``z`` (n_z,) increasing; ``log10_n_above`` (n_box, n_z, n_m), log10 of n(>M) in (h/Mpc)^3;
    ``volume`` (box volume, (h^-1 Mpc)^3); ``provenance`` (dict: suite, boxes, catalog hashes,
    mass cut).
    """


def table_arrays(table: MassFunctionTable) -> dict:
    """The arrays of ``table`` as a file stores them (provenance as JSON text, no objects)."""
    arrays = {k: np.asarray(table[k]) for k in TABLE_ARRAYS if k != "provenance"}
    arrays["provenance"] = np.array(json.dumps(table["provenance"], sort_keys=True))
    return arrays


def load_table(path: str | os.PathLike) -> MassFunctionTable:
    """Read and check a table file (written by ``training.mass_function.save_table``).

    Raises
    ------
    MassFunctionTableError
        Naming the file: unreadable, missing arrays, shapes that disagree, non-finite values,
        a grid or z list that is not increasing.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as exc:  # zip, CRC, pickle refusal: all mean "not a table"
        raise MassFunctionTableError(f"mass-function table {path} cannot be read ({type(exc).__name__}: "
                                     f"{' '.join(str(exc).split())})") from None
    missing = [k for k in TABLE_ARRAYS if k not in arrays]
    if missing:
        raise MassFunctionTableError(f"mass-function table {path} lacks arrays {missing}")
    try:
        provenance = json.loads(str(arrays["provenance"]))
    except ValueError:
        raise MassFunctionTableError(f"mass-function table {path}: provenance is not JSON") from None
    try:
        values = {k: np.asarray(arrays[k], dtype=float) for k in TABLE_ARRAYS if k != "provenance"}
    except (TypeError, ValueError):
        raise MassFunctionTableError(f"mass-function table {path}: arrays must be numbers") from None
    table = MassFunctionTable(values, provenance=provenance)
    if table["volume"].shape != ():
        raise MassFunctionTableError(f"mass-function table {path}: volume must be one number")
    table["volume"] = float(table["volume"])
    check_table(table, str(path))
    return table


def check_table(table, where: str) -> None:
    """Shapes, finiteness and ordering of a table (MassFunctionTableError naming ``where``)."""
    n_box, n_z, n_m = table["omega_m"].size, table["z"].size, table["log10_mass"].size
    if table["sigma8"].shape != (n_box,) or table["log10_n_above"].shape != (n_box, n_z, n_m):
        raise MassFunctionTableError(
            f"mass-function table {where}: log10_n_above has shape {table['log10_n_above'].shape} and sigma8 "
            f"{table['sigma8'].shape}; expected ({n_box}, {n_z}, {n_m}) and ({n_box},)")
    for key in ("log10_mass", "z"):
        if table[key].ndim != 1 or table[key].size < (2 if key == "log10_mass" else 1) \
                or np.any(np.diff(table[key]) <= 0):
            raise MassFunctionTableError(f"mass-function table {where}: {key} must be a 1-d increasing list")
    for key in ("omega_m", "sigma8", "z", "log10_mass", "log10_n_above"):
        if not np.all(np.isfinite(table[key])):
            raise MassFunctionTableError(f"mass-function table {where}: {key} holds non-finite values")
    if not (np.isfinite(table["volume"]) and table["volume"] > 0):
        raise MassFunctionTableError(f"mass-function table {where}: volume = {table['volume']}; must be > 0")


class MassFunctionInterpolator:
    """n(>M) and the binned host mass function at any (Omega_m, sigma_8, z) the table covers.

    Parameters
    ----------
    table : MassFunctionTable
        At least 3 boxes not on one line in (Omega_m, sigma_8) (the linear polynomial of the RBF).
    """

    def __init__(self, table: MassFunctionTable):
        check_table(table, "(in memory)")
        self.table = table
        points = np.column_stack([table["omega_m"], table["sigma8"]])
        if points.shape[0] < 3 or np.linalg.matrix_rank(points - points.mean(axis=0)) < 2:
            raise MassFunctionTableError(f"mass-function table has {points.shape[0]} boxes; the interpolation "
                                         "needs at least 3 not on one line in (Omega_m, sigma_8)")
        self._low, self._span = points.min(axis=0), np.ptp(points, axis=0)
        self._centres = (points - self._low) / self._span
        self._rbf = [self._fit(table["log10_n_above"][:, j, :]) for j in range(table["z"].size)]
        self._z_list = table["z"].tolist()
        grid = table["log10_mass"]
        #: the binned mass function's bin edges and centres, log10(Msun/h)
        self.log10_mass_edges = grid
        self.mean_log10_mass = 0.5 * (grid[1:] + grid[:-1])
        self.volume = float(table["volume"])

    @staticmethod
    def _kernel(r2: np.ndarray) -> np.ndarray:
        """Thin-plate spline r^2 log r of squared distances (0 at r = 0)."""
        safe = np.where(r2 > 0, r2, 1.0)
        return 0.5 * r2 * np.log(safe)

    def _fit(self, values: np.ndarray):
        """Weights (n_box, n_m) and linear-polynomial coefficients (3, n_m) of the thin-plate spline
        through ``values`` at the scaled box coordinates: the interpolation conditions plus the
        polynomial's orthogonality (the same interpolant as scipy's ``RBFInterpolator`` with
        ``kernel="thin_plate_spline", degree=1``, evaluated here with a few small matrix products:
        a sampler calls it once per new cosmology)."""
        x = self._centres
        n = len(x)
        poly = np.column_stack([np.ones(n), x])
        system = np.zeros((n + 3, n + 3))
        system[:n, :n] = self._kernel(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
        system[:n, n:], system[n:, :n] = poly, poly.T
        rhs = np.vstack([values, np.zeros((3, values.shape[1]))])
        solution = np.linalg.solve(system, rhs)
        return solution[:n], solution[n:]

    def _evaluate(self, k: int, x: np.ndarray) -> np.ndarray:
        """The snapshot-``k`` spline at scaled points ``x`` (n, 2): (n, n_m)."""
        weights, coefficients = self._rbf[k]
        r2 = ((x[:, None, :] - self._centres[None, :, :]) ** 2).sum(axis=2)
        return self._kernel(r2) @ weights + coefficients[0] + x @ coefficients[1:]

    @property
    def z_range(self) -> tuple:
        """(lowest, highest) tabulated redshift."""
        return float(self.table["z"][0]), float(self.table["z"][-1])

    def log10_n_above(self, omega_m: float, sigma8: float, z: float) -> np.ndarray:
        """log10 n(>M) (h/Mpc)^3 at the table's grid masses, shape (n_m,).

        Raises
        ------
        MassFunctionTableError
            If ``z`` is outside the tabulated redshifts or a value is not finite.
        """
        return self.log10_n_above_many([omega_m], [sigma8], [z])[0]

    def log10_n_above_many(self, omega_m, sigma8, z) -> np.ndarray:
        """:meth:`log10_n_above` of n points (1-d arrays of one length), shape (n, n_m)."""
        omega_m, sigma8, z = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (omega_m, sigma8, z))
        zs = self.table["z"]
        if z.size == 1 and math.isfinite(omega_m[0]) and math.isfinite(sigma8[0]) and zs[0] <= z[0] <= zs[-1]:
            return self._one(float(omega_m[0]), float(sigma8[0]), float(z[0]))
        for name, values in (("Omega_m", omega_m), ("sigma_8", sigma8), ("z", z)):
            bad = values[~np.isfinite(values)]
            if bad.size:
                raise MassFunctionTableError(f"mass function asked at {name} = {float(bad[0])!r}; "
                                             "allowed: finite numbers")
        outside = z[(z < zs[0]) | (z > zs[-1])]
        if outside.size:
            raise MassFunctionTableError(f"mass function asked at z = {float(outside[0])!r}; the table covers z in "
                                         f"[{zs[0]:g}, {zs[-1]:g}]")
        x = (np.column_stack([omega_m, sigma8]) - self._low) / self._span
        j = np.minimum(np.searchsorted(zs, z, side="right") - 1, zs.size - 1)
        out = np.empty((z.size, self.table["log10_mass"].size))
        for k in np.unique(j):
            rows = np.flatnonzero(j == k)
            low = self._evaluate(k, x[rows])
            if k == zs.size - 1:
                out[rows] = low
                continue
            weight = ((z[rows] - zs[k]) / (zs[k + 1] - zs[k]))[:, None]
            moving = np.flatnonzero(weight[:, 0] > 0)
            if moving.size:  # the upper snapshot only where it counts (exact at tabulated z)
                high = self._evaluate(k + 1, x[rows[moving]])
                low[moving] = (1.0 - weight[moving]) * low[moving] + weight[moving] * high
            out[rows] = low
        return out

    def _one(self, omega_m: float, sigma8: float, z: float) -> np.ndarray:
        """:meth:`log10_n_above_many` of one checked point (a sampler's step), (1, n_m)."""
        zs = self._z_list
        x = np.array([[(omega_m - self._low[0]) / self._span[0], (sigma8 - self._low[1]) / self._span[1]]])
        k = min(bisect_right(zs, z) - 1, len(zs) - 1)
        low = self._evaluate(k, x)
        if k == len(zs) - 1 or z == zs[k]:
            return low
        weight = (z - zs[k]) / (zs[k + 1] - zs[k])
        return (1.0 - weight) * low + weight * self._evaluate(k + 1, x)

    def counts(self, omega_m, sigma8, z) -> np.ndarray:
        """Halo counts per mass bin of n points, (n, n_m - 1): for each point, volume x (n(>M_lo) -
        n(>M_hi)) between neighbouring grid masses. The table's floor (half a halo: "none") is
        subtracted and n(>M) made non-increasing first, so no count is negative and masses above
        every halo hold none."""
        n_above = 10.0 ** self.log10_n_above_many(omega_m, sigma8, z) - 0.5 / self.volume
        n_above = np.maximum(np.minimum.accumulate(n_above, axis=1), 0.0)
        return self.volume * (n_above[:, :-1] - n_above[:, 1:])

    def mass_function(self, omega_m: float, sigma8: float, z: float) -> dict:
        """The binned host mass function of one point (:func:`iaemu_likelihood.hod.validate_mass_function`
        form): one bin between neighbouring grid masses, at its centre, holding :meth:`counts`."""
        return {"log10_mass_edges": self.log10_mass_edges, "counts": self.counts([omega_m], [sigma8], [z])[0],
                "mean_log10_mass": self.mean_log10_mass, "volume": np.float64(self.volume)}
