"""``iaemu paint``: paint HOD galaxies onto a dark-matter density mesh or a PySCo snapshot.

Input: a mesh ``.npy``, a ``.npz`` with a ``density`` array (mass per cell, any unit, on the painter's
density mesh: ``iaemu info``-style summary in ``painter.json`` ``mesh.density_n_mesh``; e.g. the
``density_n256.npz`` of ``iaemu field-data --n-mesh 256``), or a PySCo HDF5 snapshot (``.h5``, needs
``--box-size``; CIC-assigned here, which needs the training extra). Output: an ``.npz`` catalog with
``positions`` (n_gal, 3) float32 in comoving h^-1 Mpc and ``counts`` (the painted mesh), with
``--mu-cen``/``--mu-sat`` also ``orientations`` (n_gal, 3) float32 unit major axes (the mocks' alignment
model on the dark matter's local axes, :mod:`iaemu_likelihood.field.orientation`), or with
``--mode mean`` only ``mean_counts``; written atomically.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from ..cli import subcommand_parser
from .sampling import DEFAULT_OCCUPANCY, OCCUPANCY

logger = logging.getLogger(__name__)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = subcommand_parser(prog, __doc__)
    p.add_argument("--density", required=True, help="density mesh (.npy / .npz) or PySCo snapshot (.h5)")
    p.add_argument("--output", required=True, help="catalog .npz to write")
    p.add_argument("--hod", nargs="+", required=True, metavar="NAME=VALUE",
                   help="the five HOD parameters, e.g. logMmin=12.0 sigma_logM=0.3 logM0=11.8 "
                        "logM1=13.2 alpha=1.0 (log10 Msun/h)")
    p.add_argument("--seed", type=int, default=None, help="seed of the realization")
    p.add_argument("--mode", choices=("sample", "mean"), default="sample",
                   help="a realization (catalog) or the expected count per voxel")
    p.add_argument("--occupancy", choices=OCCUPANCY, default=DEFAULT_OCCUPANCY,
                   help="how occupied voxels are drawn: grouped around the local maxima of the occupation "
                        "probability (one central per peak, as in the HOD) or independently")
    p.add_argument("--tile", type=int, default=None,
                   help="paint in cubes of this many galaxy voxels per side (bounded memory; a .npy density is "
                        "read tile by tile); default: whole boxes up to 160 voxels per side, 128-voxel tiles above")
    p.add_argument("--symmetries", type=int, default=1,
                   help="average the network over this many cube rotations/flips of the density (1-8; more "
                        "accurate, each costs one more encoding of the density)")
    p.add_argument("--mu-cen", type=float, default=None,
                   help="central alignment strength in [-1, 1]: also write galaxy orientations (with --mu-sat)")
    p.add_argument("--mu-sat", type=float, default=None,
                   help="satellite alignment strength in [-1, 1] (with --mu-cen)")
    p.add_argument("--box-size", type=float, default=None,
                   help="box side, h^-1 Mpc (required for .h5; default for meshes: the painter's box)")
    p.add_argument("--weights", default=None, help="painter folder or shipped version (default iaemu-painter-v6)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    return p


def _parse_hod(items) -> dict:
    from ..errors import InputShapeError

    hod = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            number = float(value)
        except ValueError:
            raise InputShapeError(f"--hod item {item!r} is not NAME=NUMBER") from None
        if name.strip() in hod:
            raise InputShapeError(f"--hod {name.strip()} is given twice ({hod[name.strip()]:g} and "
                                  f"{number:g}); give each parameter once")
        hod[name.strip()] = number
    return hod


def read_density(path, box_size: float | None, n_mesh: int) -> np.ndarray:
    """A density mesh from ``.npy``/``.npz`` (key ``density``), or CIC of a PySCo ``.h5`` snapshot."""
    from ..errors import InputShapeError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--density {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":  # memory-mapped: a tiled painting reads only its tiles
        return np.load(path, allow_pickle=False, mmap_mode="r")
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            if "density" not in f.files:
                raise InputShapeError(f"--density {path} has no 'density' array (it has {f.files})")
            return f["density"]
    if suffix in (".h5", ".hdf5"):
        if box_size is None:
            raise InputShapeError(f"--density {path} is a snapshot: pass --box-size (h^-1 Mpc)")
        from ..training.field_mesh import density_mesh
        from ..training.nbody import read_snapshot

        positions, _ = read_snapshot(path, box_size)
        return density_mesh(positions, box_size, n_mesh)
    raise InputShapeError(f"--density {path}: unknown file type {suffix!r}; allowed .npy, .npz, .h5")


def main(args) -> int:
    from .._io import atomic_write_bytes, npz_bytes
    from .painter import SYMMETRIES, GalaxyPainter

    out = Path(args.output)
    if out.is_dir() or not out.name:
        raise IsADirectoryError(f"--output {args.output}: is a folder; give the catalog file to write (.npz)")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed {args.seed}: must be a non-negative integer")
    if args.tile is not None and args.tile < 1:
        raise ValueError(f"--tile {args.tile}: must be a positive number of galaxy voxels per side")
    if not 1 <= args.symmetries <= len(SYMMETRIES):
        raise ValueError(f"--symmetries {args.symmetries}: must be from 1 to {len(SYMMETRIES)}")
    alignment = None
    if (args.mu_cen is None) != (args.mu_sat is None):
        raise ValueError("give both --mu-cen and --mu-sat (galaxy orientations) or neither")
    if args.mu_cen is not None:
        if args.mode == "mean":
            raise ValueError("--mu-cen/--mu-sat need --mode sample (a mean field has no galaxies to orient)")
        alignment = {"mu_cen": args.mu_cen, "mu_sat": args.mu_sat}
    hod = _parse_hod(args.hod)
    painter = GalaxyPainter.load(args.weights, device=args.device)
    n_mesh = painter.n_mesh if args.box_size is None else int(round(args.box_size / painter.voxel_size))
    density = read_density(args.density, args.box_size, n_mesh * painter.input_factor)
    meta = {"painter": painter.metadata.get("version"), "hod": hod, "seed": args.seed, "mode": args.mode,
            "occupancy": args.occupancy if args.mode == "sample" else None, "tile": args.tile,
            "symmetries": args.symmetries, "alignment": alignment,
            "box_size": args.box_size or painter.box_size, "density": str(args.density)}
    if args.mode == "mean":
        mean = painter.paint(density, hod, mode="mean", box_size=args.box_size, tile=args.tile,
                             symmetries=args.symmetries)
        arrays = {"mean_counts": mean.astype(np.float32)}
        logger.info("expected galaxies: %.1f", float(mean.sum()))
    else:
        counts, pos, *axes = painter.paint(density, hod, seed=args.seed, box_size=args.box_size, positions=True,
                                           occupancy=args.occupancy, tile=args.tile, symmetries=args.symmetries,
                                           alignment=alignment)
        arrays = {"positions": pos.astype(np.float32), "counts": counts,
                  **({"orientations": axes[0].astype(np.float32)} if axes else {})}
        logger.info("painted %d galaxies", len(pos))
    arrays["metadata"] = np.array(json.dumps(meta, sort_keys=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, npz_bytes(arrays))
    logger.info("wrote %s", out)
    return 0
