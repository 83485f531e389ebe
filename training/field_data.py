"""Training and test data of the field-level painter: (DM density mesh, HOD galaxy meshes) per box.

One *box* is a folder made by ``iaemu build-catalog`` (PySCo run kept under ``nbody/``, FoF halo
catalog ``halos.npz``). For it this module writes

* ``density_n{n}.npz``: the CIC dark-matter density ``rho / rho_mean`` of the z = 0 snapshot on an
  ``n^3`` mesh (:func:`.field_mesh.density_mesh`), with its provenance;
* ``galaxies_{tag}.npz``: HOD galaxies of the existing forward model (:class:`.forward_model.MockSimulator`,
  Zheng07 centrals + satellites on the FoF halos) at a Latin hypercube of HOD points, several
  seeded realizations each. Galaxy positions (float32, h^-1 Mpc) are stored, not meshes, so any
  mesh can be made from them (:func:`.field_mesh.count_mesh`); ``offsets`` cut them into
  realizations, point-major: realization ``r`` of point ``p`` is entry ``p * n_real + r``.

Only the five occupation parameters ``HOD_NAMES`` matter for positions (the alignment strengths
do not move galaxies); they are drawn with the emulator's prior (:class:`.design.DesignRule`).
Every file is written atomically and a finished file is reused, so an interrupted run resumes.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, npz_bytes
from ..conventions import PARAM_NAMES
from ..weights_io import sha256_file

__all__ = ["HOD_NAMES", "hod_design", "theta_from_hod", "build_density", "build_galaxies",
           "load_density", "GalaxySet", "load_galaxies"]

logger = logging.getLogger(__name__)

#: HOD parameters the painter is conditioned on, in this order (masses log10(Msun/h)).
HOD_NAMES = ("logMmin", "sigma_logM", "logM0", "logM1", "alpha")
_HOD_COLUMNS = [PARAM_NAMES.index(n) for n in HOD_NAMES]


def hod_design(n_points: int, seed: int, rule=None) -> np.ndarray:
    """Latin-hypercube HOD points (n_points, 5) in ``HOD_NAMES`` order over the emulator prior."""
    from .design import make_design

    _, params = make_design(n_points, seed, rule)
    return params[:, _HOD_COLUMNS]


def theta_from_hod(hod) -> np.ndarray:
    """The forward model's 7-parameter vector for 5 HOD values (alignment strengths 0)."""
    theta = np.zeros(len(PARAM_NAMES))
    theta[_HOD_COLUMNS] = np.asarray(hod, dtype=float)
    return theta


def _write_npz(path: Path, arrays: dict, provenance: dict) -> Path:
    arrays = dict(arrays, provenance=np.array(json.dumps(provenance, sort_keys=True)))
    atomic_write_bytes(path, npz_bytes(arrays))
    return path


def build_density(box_dir, n_mesh: int = 128) -> Path:
    """Write (or reuse) ``density_n{n_mesh}.npz`` of a box folder; returns its path."""
    from . import nbody
    from .field_mesh import density_mesh

    box_dir = Path(box_dir)
    out = box_dir / f"density_n{n_mesh}.npz"
    if out.is_file():
        return out
    config = json.loads((box_dir / "nbody" / "simulation_config.json").read_text())
    box_size = float(config["box_size"])
    snapshot = nbody.snapshot_path(box_dir / "nbody")
    t0 = time.perf_counter()
    positions, _ = nbody.read_snapshot(snapshot, box_size)
    rho = density_mesh(positions, box_size, n_mesh)
    seconds = time.perf_counter() - t0
    provenance = {"box_size": box_size, "n_mesh": n_mesh, "simulation": config,
                  "snapshot": snapshot.name, "snapshot_sha256": sha256_file(snapshot),
                  "assignment": "CIC (pysco.mesh.CIC), rho / rho_mean", "seconds": seconds}
    logger.info("density mesh %d^3 of %s in %.1f s", n_mesh, box_dir.name, seconds)
    return _write_npz(out, {"density": rho}, provenance)


def load_density(box_dir, n_mesh: int = 128) -> tuple[np.ndarray, dict]:
    """(density mesh float32 (n, n, n), provenance) of a box folder."""
    with np.load(Path(box_dir) / f"density_n{n_mesh}.npz", allow_pickle=False) as f:
        return f["density"], json.loads(str(f["provenance"]))


def build_galaxies(box_dir, tag: str, n_points: int, n_realizations: int, design_seed: int,
                   seed: int) -> Path:
    """Populate the box's halo catalog at a Latin hypercube of HOD points; write ``galaxies_{tag}.npz``.

    Parameters
    ----------
    box_dir : path-like
        Box folder with ``halos.npz``.
    tag : str
        Name of the set (e.g. ``train``, ``test``).
    n_points, n_realizations : int
        HOD points and realizations per point.
    design_seed : int
        Seed of the Latin hypercube (:func:`hod_design`).
    seed : int
        Realization ``r`` of point ``p`` uses the halotools seed ``seed + 1000 * p + r``.
    """
    from tqdm.auto import tqdm

    from .catalogs import OfflineHaloCatalog
    from .forward_model import MockSimulator

    box_dir = Path(box_dir)
    out = box_dir / f"galaxies_{tag}.npz"
    if out.is_file():
        return out
    if n_realizations > 1000:
        raise ValueError(f"n_realizations={n_realizations} must be <= 1000 (seed layout)")
    catalog = OfflineHaloCatalog(box_dir / "halos.npz")
    hod = hod_design(n_points, design_seed)
    seeds = seed + 1000 * np.arange(n_points)[:, None] + np.arange(n_realizations)[None, :]
    sim = MockSimulator(catalog)
    chunks, counts, seconds = [], [], []
    for p in tqdm(range(n_points), desc=f"populate {box_dir.name}/{tag}"):
        theta = theta_from_hod(hod[p])
        for r in range(n_realizations):
            t0 = time.perf_counter()
            table = sim.populate(theta, int(seeds[p, r]))
            pos = np.column_stack([np.asarray(table[c], dtype=np.float32) for c in "xyz"])
            seconds.append(time.perf_counter() - t0)
            chunks.append(pos)
            counts.append(len(pos))
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    provenance = {"tag": tag, "box_size": catalog.box_size, "catalog_sha256": catalog.provenance["content_sha256"],
                  "catalog_min_particles": catalog.min_particles, "hod_names": list(HOD_NAMES),
                  "design_seed": design_seed, "seed": seed, "n_points": n_points,
                  "n_realizations": n_realizations,
                  "forward_model": "iaemu_likelihood.training.forward_model.MockSimulator (Zheng07)",
                  "populate_seconds_median": float(np.median(seconds))}
    logger.info("%s: %d realizations, median populate %.2f s", out, len(counts), np.median(seconds))
    return _write_npz(out, {"hod": hod, "seeds": seeds, "offsets": offsets,
                            "positions": np.concatenate(chunks), "populate_seconds": np.array(seconds)},
                      provenance)


class GalaxySet:
    """The galaxies of one ``galaxies_{tag}.npz`` (see the module docstring).

    Attributes
    ----------
    hod : ndarray, shape (n_points, 5)
    seeds : ndarray of int, shape (n_points, n_realizations)
    box_size : float
    provenance : dict
    """

    def __init__(self, path):
        with np.load(path, allow_pickle=False) as f:
            self.hod = f["hod"]
            self.seeds = f["seeds"]
            self._offsets = f["offsets"]
            self._positions = f["positions"]
            self.populate_seconds = f["populate_seconds"]
            self.provenance = json.loads(str(f["provenance"]))
        self.box_size = float(self.provenance["box_size"])
        self.n_points, self.n_realizations = self.seeds.shape

    def positions(self, point: int, realization: int) -> np.ndarray:
        """Galaxy positions (n, 3), h^-1 Mpc, of one realization."""
        i = point * self.n_realizations + realization
        return self._positions[self._offsets[i]:self._offsets[i + 1]]

    def counts(self, point: int, realization: int, n_mesh: int) -> np.ndarray:
        """Galaxies per voxel (n_mesh, n_mesh, n_mesh) of one realization."""
        from .field_mesh import count_mesh

        return count_mesh(self.positions(point, realization), self.box_size, n_mesh)


def load_galaxies(box_dir, tag: str) -> GalaxySet:
    """The :class:`GalaxySet` ``galaxies_{tag}.npz`` of a box folder."""
    return GalaxySet(Path(box_dir) / f"galaxies_{tag}.npz")


def build_parser(prog: str):
    """``iaemu field-data``: density mesh and HOD galaxies of one box folder."""
    import argparse

    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("box_dir", help="box folder made by `iaemu build-catalog` (halos.npz, nbody/)")
    p.add_argument("--n-mesh", type=int, default=128, help="voxels per side of the density mesh")
    p.add_argument("--tag", default=None, help="galaxy set name; omit to write the density mesh only")
    p.add_argument("--n-points", type=int, default=32, help="HOD points (Latin hypercube)")
    p.add_argument("--n-realizations", type=int, default=4, help="realizations per point")
    p.add_argument("--design-seed", type=int, default=1, help="seed of the Latin hypercube")
    p.add_argument("--seed", type=int, default=100_000, help="base seed of the realizations")
    return p


def main(args) -> int:
    build_density(args.box_dir, args.n_mesh)
    if args.tag:
        build_galaxies(args.box_dir, args.tag, args.n_points, args.n_realizations, args.design_seed, args.seed)
    return 0
