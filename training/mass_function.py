"""Host-halo mass function across an N-body suite, tabulated per (box, z) and interpolated.

The derived ``n_gal`` and ``f_sat`` of emulator v2 sum the Zheng07 occupations over the host mass
function, which now depends on (Omega_m, sigma_8, z). Each finished (box, snapshot) of the suite
gives the cumulative density n(>M) of the hosts a mock populates (M > ``min_mass``, the one cut
of the generation config) on a fixed grid of log10 M; the table is a small npz (a few kB).

Interpolation (:class:`MassFunctionInterpolator`):

* in mass: the table holds log10 n(>M) at the grid masses (a floor of half a halo per box
  volume where no halo is that heavy), so bin counts between grid masses are differences of a
  monotone function;
* in (Omega_m, sigma_8), at each tabulated z: a thin-plate-spline radial basis function with a
  linear polynomial (scipy ``RBFInterpolator``, exact at the boxes) of the whole log10 n(>M)
  vector, on coordinates scaled by the suite's ranges;
* in z: linear between the two neighbouring snapshots; outside the tabulated z range it refuses.

The result is a binned mass function in the form :mod:`iaemu_likelihood.hod` sums over
(``log10_mass_edges``, ``counts``, ``mean_log10_mass``, ``volume``). Its leave-one-box-out
accuracy is measured by ``benchmarks/bench_mass_function.py``.

Build a table from the suite section of a generation config (only finished boxes count)::

    python -m iaemu_likelihood.training.mass_function training/configs/generate_v2.yaml OUT.npz
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, npz_bytes
from ..errors import IAEmuError

__all__ = ["MassFunctionTable", "MassFunctionInterpolator", "MassFunctionTableError", "tabulate_suite",
           "save_table", "load_table", "LOG10_MASS_STEP", "LOG10_MASS_MAX", "main"]

logger = logging.getLogger(__name__)

#: Spacing of the tabulated log10 M grid, dex.
LOG10_MASS_STEP = 0.02
#: Upper end of the grid, log10(Msun/h) (above every suite halo at z <= 1).
LOG10_MASS_MAX = 15.6
_TABLE_ARRAYS = ("log10_mass", "omega_m", "sigma8", "z", "log10_n_above", "volume", "provenance")


class MassFunctionTableError(IAEmuError, ValueError):
    """A mass-function table is unreadable or inconsistent, or a point is outside what it covers."""


class MassFunctionTable(dict):
    """The tabulated cumulative host densities (a dict of arrays).

    Keys: ``log10_mass`` (n_m,) grid, log10(Msun/h); ``omega_m``, ``sigma8`` (n_box,);
    ``z`` (n_z,) increasing; ``log10_n_above`` (n_box, n_z, n_m), log10 of n(>M) in (h/Mpc)^3;
    ``volume`` (box volume, (h^-1 Mpc)^3); ``provenance`` (dict: suite, boxes, catalog hashes,
    mass cut).
    """


def _n_above(log10_mass: np.ndarray, grid: np.ndarray, volume: float) -> np.ndarray:
    """log10 n(>M) at the grid masses, floored at half a halo per volume."""
    sorted_mass = np.sort(log10_mass)
    count = sorted_mass.size - np.searchsorted(sorted_mass, grid, side="right")
    return np.log10(np.maximum(count, 0.5) / volume)


def tabulate_suite(selection, log10_mass_max: float = LOG10_MASS_MAX,
                   step: float = LOG10_MASS_STEP) -> MassFunctionTable:
    """Tabulate n(>M) of every finished box of a generation config's suite selection.

    Parameters
    ----------
    selection : SuiteSelection
        The ``suite`` section of a generation config (:mod:`.generation_snapshots`): boxes,
        redshifts and the mass cut ``min_mass``; boxes not finished yet are skipped (logged).
    log10_mass_max, step : float
        Grid from log10(min_mass) up to ``log10_mass_max`` in steps of ``step`` dex.

    Raises
    ------
    MassFunctionTableError
        If no box is finished, or the boxes differ in volume.
    """
    from tqdm import tqdm

    z_list = sorted({s.z for s in selection.snapshots})
    grid = np.arange(np.log10(selection.min_mass), log10_mass_max + 0.5 * step, step)
    boxes, rows, hashes, volume = [], [], {}, None
    names = list(dict.fromkeys(s.box for s in selection.snapshots))
    for name in tqdm(names, desc="mass functions", unit="box"):
        ks = [k for k, s in enumerate(selection.snapshots) if s.box == name]
        if selection.record(ks[0]) is None:
            logger.info("box %s is not finished: left out of the table", name)
            continue
        row = {}
        for k in ks:
            catalog = selection.load_catalog(k)
            vol = catalog.box_size ** 3
            if volume is not None and vol != volume:
                raise MassFunctionTableError(f"box {name}: volume {vol} differs from the other boxes' {volume}")
            volume = vol
            row[selection.snapshots[k].z] = _n_above(catalog.host_log10_mass(), grid, vol)
            hashes[f"{name} z={selection.snapshots[k].z:g}"] = catalog.provenance["content_sha256"]
        boxes.append(selection.snapshots[ks[0]])
        rows.append([row[z] for z in z_list])
    if not boxes:
        raise MassFunctionTableError(f"no box of {selection.config_path.name} is finished: nothing to tabulate")
    return MassFunctionTable(
        log10_mass=grid, omega_m=np.array([b.omega_m for b in boxes]), sigma8=np.array([b.sigma8 for b in boxes]),
        z=np.array(z_list), log10_n_above=np.array(rows), volume=float(volume),
        provenance={"suite": selection.suite.name, "min_mass": float(selection.min_mass),
                    "boxes": [b.box for b in boxes], "catalog_content_sha256": hashes,
                    "quantity": "log10 n(>M), hosts with M > min_mass, (h/Mpc)^3; floor 0.5 / volume"})


def save_table(path: str | os.PathLike, table: MassFunctionTable) -> Path:
    """Write ``table`` to a compressed npz atomically (no pickle: provenance as JSON text)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(table[k]) for k in _TABLE_ARRAYS if k != "provenance"}
    arrays["provenance"] = np.array(json.dumps(table["provenance"], sort_keys=True))
    atomic_write_bytes(path, npz_bytes(arrays, compressed=True))
    return path


def load_table(path: str | os.PathLike) -> MassFunctionTable:
    """Read and check a table written by :func:`save_table`.

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
    missing = [k for k in _TABLE_ARRAYS if k not in arrays]
    if missing:
        raise MassFunctionTableError(f"mass-function table {path} lacks arrays {missing}")
    try:
        provenance = json.loads(str(arrays["provenance"]))
    except ValueError:
        raise MassFunctionTableError(f"mass-function table {path}: provenance is not JSON") from None
    table = MassFunctionTable({k: np.asarray(arrays[k], dtype=float) for k in _TABLE_ARRAYS if k != "provenance"},
                              provenance=provenance)
    table["volume"] = float(table["volume"])
    _check_table(table, str(path))
    return table


def _check_table(table, where: str) -> None:
    n_box, n_z, n_m = table["omega_m"].size, table["z"].size, table["log10_mass"].size
    if table["sigma8"].shape != (n_box,) or table["log10_n_above"].shape != (n_box, n_z, n_m):
        raise MassFunctionTableError(
            f"mass-function table {where}: log10_n_above has shape {table['log10_n_above'].shape} and sigma8 "
            f"{table['sigma8'].shape}; expected ({n_box}, {n_z}, {n_m}) and ({n_box},)")
    for key in ("log10_mass", "z"):
        if table[key].ndim != 1 or table[key].size < (2 if key == "log10_mass" else 1) \
                or np.any(np.diff(table[key]) <= 0):
            raise MassFunctionTableError(f"mass-function table {where}: {key} must be a 1-d increasing list")
    for key in ("omega_m", "sigma8", "log10_n_above"):
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
        from scipy.interpolate import RBFInterpolator

        _check_table(table, "(in memory)")
        self.table = table
        points = np.column_stack([table["omega_m"], table["sigma8"]])
        if points.shape[0] < 3 or np.linalg.matrix_rank(points - points.mean(axis=0)) < 2:
            raise MassFunctionTableError(f"mass-function table has {points.shape[0]} boxes; the interpolation "
                                         "needs at least 3 not on one line in (Omega_m, sigma_8)")
        self._low, self._span = points.min(axis=0), np.ptp(points, axis=0)
        scaled = (points - self._low) / self._span
        self._rbf = [RBFInterpolator(scaled, table["log10_n_above"][:, j, :], kernel="thin_plate_spline", degree=1)
                     for j in range(table["z"].size)]

    def log10_n_above(self, omega_m: float, sigma8: float, z: float) -> np.ndarray:
        """log10 n(>M) (h/Mpc)^3 at the table's grid masses, shape (n_m,).

        Raises
        ------
        MassFunctionTableError
            If ``z`` is outside the tabulated redshifts or a value is not finite.
        """
        zs = self.table["z"]
        values = {"Omega_m": omega_m, "sigma_8": sigma8, "z": z}
        bad = [f"{k} = {v!r}" for k, v in values.items() if not np.isfinite(v)]
        if bad:
            raise MassFunctionTableError(f"mass function asked at {', '.join(bad)}; allowed: finite numbers")
        if not zs[0] <= z <= zs[-1]:
            raise MassFunctionTableError(f"mass function asked at z = {z!r}; the table covers z in "
                                         f"[{zs[0]:g}, {zs[-1]:g}]")
        x = ((np.array([omega_m, sigma8]) - self._low) / self._span)[None, :]
        j = min(int(np.searchsorted(zs, z, side="right")) - 1, zs.size - 1)
        low = self._rbf[j](x)[0]
        if j == zs.size - 1 or z == zs[j]:
            return low
        weight = (z - zs[j]) / (zs[j + 1] - zs[j])
        return (1.0 - weight) * low + weight * self._rbf[j + 1](x)[0]

    def mass_function(self, omega_m: float, sigma8: float, z: float) -> dict:
        """The binned host mass function (:func:`iaemu_likelihood.hod.validate_mass_function` form):
        one bin between neighbouring grid masses, at its centre, holding volume x (n(>M_lo) -
        n(>M_hi)). The table's floor (half a halo: "none") is subtracted and n(>M) made
        non-increasing first, so no count is negative and masses above every halo hold none."""
        grid = self.table["log10_mass"]
        volume = self.table["volume"]
        n_above = 10.0 ** self.log10_n_above(omega_m, sigma8, z) - 0.5 / volume
        n_above = np.maximum(np.minimum.accumulate(n_above), 0.0)
        counts = volume * (n_above[:-1] - n_above[1:])
        return {"log10_mass_edges": grid, "counts": counts, "mean_log10_mass": 0.5 * (grid[1:] + grid[:-1]),
                "volume": np.float64(volume)}


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="generation config YAML with a 'suite' section")
    p.add_argument("output", help="table .npz to write")
    return p


def main(argv=None) -> int:
    from .generation_config import load_config

    args = build_parser("python -m iaemu_likelihood.training.mass_function").parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    if config.suite is None:
        raise MassFunctionTableError(f"{args.config} has no 'suite' section: nothing to tabulate")
    table = tabulate_suite(config.suite)
    path = save_table(args.output, table)
    logger.info("%d boxes x %d redshifts x %d masses -> %s", table["omega_m"].size, table["z"].size,
                table["log10_mass"].size, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
