"""Host-halo mass function across an N-body suite, tabulated per (box, z) and interpolated.

The derived ``n_gal`` and ``f_sat`` of emulator v2 sum the Zheng07 occupations over the host mass
function, which now depends on (Omega_m, sigma_8, z). Each finished (box, snapshot) of the suite
gives the cumulative density n(>M) of the hosts a mock populates (M > ``min_mass``, the one cut
of the generation config) on a fixed grid of log10 M; the table is a small npz (a few kB).

The table and its interpolation in (Omega_m, sigma_8, z) (:class:`MassFunctionInterpolator`) live
in the runtime package, :mod:`iaemu_likelihood.mass_function_table` (weights of emulator v2 carry
the table and evaluate it at each point's cosmology and z); they are re-exported here. Its
leave-one-box-out accuracy is measured by ``benchmarks/bench_mass_function.py``.

Build a table from the suite section of a generation config (only finished boxes count)::

    python -m iaemu_likelihood.training.mass_function training/configs/generate_v2.yaml OUT.npz
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, npz_bytes
from ..mass_function_table import (MassFunctionInterpolator, MassFunctionTable, MassFunctionTableError,
                                   load_table, table_arrays)

__all__ = ["MassFunctionTable", "MassFunctionInterpolator", "MassFunctionTableError", "tabulate_suite",
           "save_table", "load_table", "table_for_dataset", "LOG10_MASS_STEP", "LOG10_MASS_MAX", "main"]

logger = logging.getLogger(__name__)

#: Spacing of the tabulated log10 M grid, dex.
LOG10_MASS_STEP = 0.02
#: Upper end of the grid, log10(Msun/h) (above every suite halo at z <= 1).
LOG10_MASS_MAX = 15.6


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
    atomic_write_bytes(path, npz_bytes(table_arrays(table), compressed=True))
    return path


def table_for_dataset(path: str | os.PathLike, dataset) -> MassFunctionTable:
    """Load a table and check that it is the host mass function of ``dataset``'s mocks.

    The table must be of the dataset's suite and mass cut (``halo_catalog`` provenance), and hold
    every (box, z) of its points with the catalog those points were populated in (the catalogs'
    ``content_sha256``; a table made before a box was finished lacks it: make it again).

    Raises
    ------
    MassFunctionTableError
        Naming the file and the first mismatch.
    """
    table = load_table(path)
    prov, catalog = table["provenance"], dataset.provenance.get("halo_catalog") or {}
    for key in ("suite", "min_mass"):
        if prov.get(key) != catalog.get(key):
            raise MassFunctionTableError(f"mass-function table {path}: {key} = {prov.get(key)!r}, the dataset's is "
                                         f"{catalog.get(key)!r}; allowed: the table of its suite and mass cut")
    inputs = dataset.provenance.get("point_inputs") or {}
    hashes = prov.get("catalog_content_sha256") or {}
    for box, z, sha in dict.fromkeys(zip(inputs.get("box", ()), inputs.get("z", ()), inputs.get("catalog_sha256", ()))):
        name = f"{box} z={z:g}"
        if hashes.get(name) != sha:
            raise MassFunctionTableError(
                f"mass-function table {path}: {name} is {'not in it' if name not in hashes else 'another catalog'}; "
                "allowed: a table holding every (box, z) of the dataset (python -m "
                "iaemu_likelihood.training.mass_function GENERATION_CONFIG OUT.npz once their boxes are finished)")
    return table


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
