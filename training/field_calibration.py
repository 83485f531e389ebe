"""``iaemu field-calibrate``: post-hoc count calibration of a painter on its training boxes.

A painter trained briefly ranks voxels better than it counts them: its occupation probabilities
and count means can be biased by tens of percent, differently at different HOD points. For each
training HOD point this finds the logit offset ``b`` that makes the expected number of occupied
voxels ``sum p`` equal to the truth's (mean over realizations), then the scale ``s`` of the
negative-binomial mean that makes ``sum p (1 + s mu)`` equal to the truth's galaxy number, then the
ratio ``q`` of the truth's number of galaxy pairs sharing a voxel, ``sum N (N - 1)``, to the painter's
expected one, ``sum p E[N (N - 1) | N >= 1]`` (``--pairs``, off by default; these pairs are a
white-noise term of the galaxy power spectrum: ~20% of P(k) at k = 0.5 h/Mpc); ``b``, ``log s`` (and
``log q``) are then fitted by least squares as linear functions of ``[1, normalised HOD]`` and stored
in ``painter.json`` (``calibration``), which :class:`iaemu_likelihood.field.GalaxyPainter` applies.
The ranking of voxels (hence the average precision) is unchanged; the number of galaxies and the
amplitude of their clustering are what it corrects. Only training boxes are used.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes
from .field_data import HOD_NAMES, load_density, load_galaxies

__all__ = ["point_corrections", "training_mass_function", "fit_calibration", "write_calibration", "build_parser",
           "main"]

logger = logging.getLogger(__name__)


def point_corrections(p: np.ndarray, mu: np.ndarray, n_occupied: float, n_gal: float,
                      r: np.ndarray | None = None, n_pairs: float | None = None) -> tuple[float, ...]:
    """(logit offset b, log scale of mu[, log pair ratio]) matching the occupied-voxel and galaxy
    numbers of one point; with ``r`` and ``n_pairs`` (the truth's same-voxel galaxy pairs
    ``sum N (N - 1)``) also the log of ``n_pairs`` over the painter's expected pairs after ``b`` and
    the mean scale (:func:`iaemu_likelihood.field.network.expected_pairs`).
    """
    from iaemu_likelihood.field.network import logit_offset_for_total

    logit = np.log(np.clip(p, 1e-12, 1 - 1e-7)) - np.log1p(-np.clip(p, 1e-12, 1 - 1e-7))
    b = logit_offset_for_total(logit, n_occupied, bound=20.0)
    if b is None:
        raise ValueError(f"no logit offset in [-20, 20] gives {n_occupied:g} occupied voxels")
    pb = 1.0 / (1.0 + np.exp(-(logit + b)))
    extra = float(np.sum(pb * mu))
    scale = max((n_gal - float(pb.sum())) / extra, 1e-3) if extra > 0 else 1.0
    if r is None or n_pairs is None:
        return float(b), float(np.log(scale))
    from iaemu_likelihood.field.network import expected_pairs

    painted = expected_pairs(pb, scale * mu, r)
    if not (n_pairs > 0 and painted > 0):
        raise ValueError(f"same-voxel galaxy pairs: truth {n_pairs:g}, painter {painted:g}; need both > 0")
    return float(b), float(np.log(scale)), float(np.log(n_pairs / painted))


def training_mass_function(boxes) -> dict:
    """The binned host-mass function of the training boxes together (the halos a mock populates), as JSON lists.

    The painter scales its occupation so that the expected galaxy number of a painted box equals the
    HOD's number density in this mass function times the box volume
    (:meth:`iaemu_likelihood.field.GalaxyPainter.expected_galaxies`): the galaxy number is a
    one-point property the HOD fixes, not something the network should guess.
    """
    from .catalogs import OfflineHaloCatalog, binned_mass_function

    catalogs = [OfflineHaloCatalog(Path(box) / "halos.npz") for box in boxes]
    binned = binned_mass_function(np.concatenate([c.host_log10_mass() for c in catalogs]),
                                  sum(c.box_size ** 3 for c in catalogs))
    return {k: np.asarray(v).tolist() for k, v in binned.items()}


def fit_calibration(painter, boxes, tag: str = "train", mass_function: bool = True, pairs: bool = False) -> dict:
    """The ``calibration`` entry for ``painter`` (a :class:`GalaxyPainter` without one) from training boxes.

    ``mass_function``: also store the boxes' host-mass function (:func:`training_mass_function`, needs each
    box's ``halos.npz``), which then fixes the expected galaxy number of every painting.
    ``pairs``: also fit the same-voxel pair ratio (``log_pair_scale``). Off by default: for
    iaemu-painter-v4 it moved the P(k) deviation on a training box's benchmark points by 0.007 (0.262
    with, 0.269 without) and its linear fit extrapolated badly at a corner of the prior.
    """
    from tqdm.auto import tqdm

    from iaemu_likelihood.field.network import normalise_hod

    low = [painter.bounds[k][0] for k in HOD_NAMES]
    high = [painter.bounds[k][1] for k in HOD_NAMES]
    rows, targets = [], []
    keys = ("logit_offset", "log_mu_scale", "log_pair_scale")[:3 if pairs else 2]
    for box in boxes:
        gals = load_galaxies(box, tag)
        n = int(round(gals.box_size / painter.voxel_size))
        rho, _ = load_density(box, n * painter.input_factor)
        hods = [dict(zip(HOD_NAMES, h.tolist())) for h in gals.hod]
        predictions = painter.predictions(rho, hods, box_size=gals.box_size)  # the density encoded once
        for i in tqdm(range(gals.n_points), desc=f"calibrate {Path(box).name}"):
            pred = next(predictions)
            meshes = [gals.counts(i, r, n) for r in range(gals.n_realizations)]
            n_occ = float(np.mean([(m >= 1).sum() for m in meshes]))
            n_gal = float(np.mean([m.sum() for m in meshes]))
            n_pairs = float(np.mean([np.sum(m * (m - 1.0)) for m in meshes])) if pairs else None
            targets.append(point_corrections(pred["p"].astype(np.float64), pred["mu"].astype(np.float64), n_occ,
                                             n_gal, pred["r"].astype(np.float64) if pairs else None, n_pairs))
            rows.append(np.r_[1.0, normalise_hod(gals.hod[i], low, high)])
    x, y = np.asarray(rows), np.asarray(targets)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    return {"features": ["1", *[f"normalised {k}" for k in HOD_NAMES]],
            **{key: coef[:, i].tolist() for i, key in enumerate(keys)},
            "n_points": int(len(y)),
            "rms_residual": {key: float(np.sqrt(np.mean(resid[:, i] ** 2))) for i, key in enumerate(keys)},
            **({"mass_function": training_mass_function(boxes)} if mass_function else {}),
            "boxes": [Path(b).name for b in boxes], "tag": tag,
            "description": "per training point: logit offset matching the mean number of occupied voxels, then "
                           "a scale of the NB mean matching the mean galaxy number"
                           + (", then the ratio of the mean number of same-voxel galaxy pairs to the painter's (met "
                              "at paint time by scaling the NB dispersion 1/r)" if pairs else "")
                           + "; least squares in the HOD"}


def write_calibration(folder, calibration: dict, key: str = "calibration") -> None:
    """Store ``calibration`` as ``painter.json`` entry ``key`` (``calibration``: counts; ``alignment``:
    :func:`.field_alignment.fit_alignment`) and refresh ``SHA256SUMS``."""
    from iaemu_likelihood.field.weights import PAINTER_FILE

    from ..weights_io import write_checksums

    folder = Path(folder)
    meta = json.loads((folder / PAINTER_FILE).read_text())
    meta[key] = calibration
    atomic_write_bytes(folder / PAINTER_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    write_checksums(folder)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="painter folder to calibrate (painter.json is rewritten)")
    p.add_argument("--boxes", nargs="+", required=True, help="its training box folders")
    p.add_argument("--tag", default="train", help="galaxy set of the boxes")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--pairs", action="store_true",
                   help="also match the same-voxel galaxy pairs sum N(N-1) (log_pair_scale; off by default)")
    p.add_argument("--alignment", action="store_true",
                   help="also fit the alignment calibration of painted centrals on the first box (painter.json "
                        "'alignment'; needs halotools: mocks of the box's halos against paintings)")
    p.add_argument("--no-counts", action="store_true",
                   help="keep the painter's count calibration (with --alignment: fit only that)")
    return p


def main(args) -> int:
    import torch

    from iaemu_likelihood.field.painter import GalaxyPainter

    if args.no_counts and not args.alignment:
        raise ValueError("--no-counts leaves nothing to fit: add --alignment")
    torch.set_num_threads(args.threads)
    if not args.no_counts:
        painter = GalaxyPainter.load(args.folder)
        painter.metadata.pop("calibration", None)  # fit on the raw network
        calibration = fit_calibration(painter, args.boxes, args.tag, pairs=args.pairs)
        write_calibration(args.folder, calibration)
        logger.info("calibration of %s: %s", args.folder, json.dumps(calibration["rms_residual"]))
    if args.alignment:
        from .field_alignment import fit_alignment

        alignment = fit_alignment(GalaxyPainter.load(args.folder), args.boxes[0], args.tag, threads=args.threads)
        write_calibration(args.folder, alignment, key="alignment")
        logger.info("alignment calibration of %s: central_p2_scale %.3f (painted / mock omega %.3f)", args.folder,
                    alignment["central_p2_scale"], alignment["omega_ratio_uncalibrated"])
    return 0
