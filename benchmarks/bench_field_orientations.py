#!/usr/bin/env python
"""Benchmark of painted galaxy orientations: omega(r) and eta(r) of painted galaxies against the IA mocks.

On a held-out box, for HOD points of its ``galaxies_{tag}.npz`` and the alignment strengths
``--mu-cen`` / ``--mu-sat``:

* **truth**: ``--n-real`` halotools-IA mocks of the project's forward model
  (:class:`~iaemu_likelihood.training.forward_model.MockSimulator`: ``CentralAlignment`` around the
  FoF halo's major axis, ``RadialSatelliteAlignment``) on the box's halo catalog;
* **painted**: as many paintings of the box's density
  (``GalaxyPainter.paint(..., alignment={"mu_cen": ..., "mu_sat": ...})``, no halos), oriented
  around the dark matter's local major axis (centrals) and their host centre (satellites),
  :mod:`iaemu_likelihood.field.orientation`;

both measured with the same estimator (:func:`~iaemu_likelihood.training.correlations.ia_correlations`,
the emulator's 20 bins; :func:`~iaemu_likelihood.training.field_alignment.compare_with_mocks`).
Reported per point and for all points together: ``omega_ratio`` and ``xi_ratio`` (painted over mock
statistic, means over realizations, summed over the bins with r >= ``--r-min``, above the painter's
voxel; :func:`~iaemu_likelihood.training.field_alignment.far_ratio`; all points: sums over points too,
and the median of the points' omega ratios), the mean eta over those bins for
both (eta is small there and noise-dominated, so no ratio), and the alignment of the reference axis
with the FoF halos' major axes on the test box (``axis_p2``: ``<P2(cos)>`` for the halos above
10^12.5 Msun/h with >= 50 shape particles; 1 for a perfect proxy, 0 for random axes).

Usage (after the data of training/README.md "Field-level painter")::

    python benchmarks/bench_field_orientations.py --data work_data/field --test-box box_1002
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

# this folder's painter benchmark
from bench_field import box_parser, box_side, log_means, refuse_training_box, save_figure, write_result

from iaemu_likelihood.conventions import R_EDGES
from iaemu_likelihood.field.orientation import ALIGNMENT_RADIUS, local_major_axes
from iaemu_likelihood.field.painter import GalaxyPainter
from iaemu_likelihood.training.field_alignment import STATISTICS, compare_with_mocks, far_ratio
from iaemu_likelihood.training.field_data import HOD_NAMES, load_density, load_galaxies

log = logging.getLogger("bench_field_orientations")


def axis_alignment(halos_path: Path, density: np.ndarray, n_mesh: int, box_size: float, input_factor: int,
                   radius: float, log_mass_min: float = 12.5, min_shape: int = 50) -> dict:
    """``<|cos|>`` and ``<P2(cos)>`` between the FoF halos' major axes and the local dark-matter axis of
    the voxel holding their centre (:func:`~iaemu_likelihood.field.orientation.local_major_axes`)."""
    with np.load(halos_path, allow_pickle=False) as h:
        mass, shape, centre, axis = h["mass"], h["n_shape"], h["centre"], h["axis_a"]
    keep = (np.log10(mass) > log_mass_min) & (shape >= min_shape)
    voxels = np.floor(np.mod(centre[keep], box_size) * (n_mesh / box_size)).astype(np.int64) % n_mesh
    cos = np.abs(np.sum(local_major_axes(density, voxels, input_factor, radius) * axis[keep], axis=1))
    return {"n_halos": int(keep.sum()), "axis_mean_abs_cos": float(cos.mean()),
            "axis_p2": float(np.mean(1.5 * cos ** 2 - 0.5)), "log_mass_min": log_mass_min,
            "min_shape_particles": min_shape}


def run(args) -> tuple[dict, dict]:
    import torch

    torch.set_num_threads(args.threads)
    test_dir = Path(args.data) / args.test_box
    painter = GalaxyPainter.load(args.weights)
    box = box_side(test_dir)
    n = int(round(box / painter.voxel_size))
    rho, prov = load_density(test_dir, n * painter.input_factor)
    refuse_training_box(painter, {prov["snapshot_sha256"]}, args.test_box)
    galaxies = load_galaxies(test_dir, args.tag)
    hods = [dict(zip(HOD_NAMES, map(float, h))) for h in galaxies.hod[:args.n_points]]
    strengths = {"mu_cen": args.mu_cen, "mu_sat": args.mu_sat}
    if args.uncalibrated:
        painter.metadata.pop("alignment", None)
    points = compare_with_mocks(painter, test_dir, hods, strengths, args.n_real, args.seed, args.threads)
    r = points[0]["r"]  # bin centres, h^-1 Mpc
    far = r >= args.r_min
    entries = [{"hod": pt["hod"], "n_gal_true": pt["n_gal_true"], "n_gal_painted": pt["n_gal_painted"],
                "omega_ratio": far_ratio([pt], "omega", args.r_min), "xi_ratio": far_ratio([pt], "xi", args.r_min),
                "eta_mean_truth": float(np.mean(pt["truth"]["eta"][far])),
                "eta_mean_painted": float(np.mean(pt["painted"]["eta"][far]))} for pt in points]
    mean = {"omega_ratio": far_ratio(points, "omega", args.r_min), "xi_ratio": far_ratio(points, "xi", args.r_min),
            "omega_ratio_median_over_points": float(np.median([e["omega_ratio"] for e in entries])),
            **{key: float(np.mean([e[key] for e in entries])) for key in ("eta_mean_truth", "eta_mean_painted")}}
    curves = [{"hod": pt["hod"], **{kind: {s: pt[kind][s].tolist() for s in STATISTICS}
                                    for kind in ("truth", "painted")}} for pt in points]
    result = {"painter": painter.metadata["version"], "test_box": args.test_box,
              "test_snapshot_sha256": prov["snapshot_sha256"], "tag": args.tag, **strengths,
              "alignment_calibration": painter.metadata.get("alignment"),
              "n_realizations": args.n_real, "r_min": args.r_min, "alignment_radius_voxels": ALIGNMENT_RADIUS,
              "r_bins": R_EDGES.tolist(), "points": entries, "mean": mean,
              "axes": axis_alignment(test_dir / "halos.npz", rho, n, box, painter.input_factor, ALIGNMENT_RADIUS),
              "paint_with_orientations_seconds": float(np.median([pt["paint_seconds"] for pt in points])),
              "curves": curves}
    return result, {"r": r, "curves": curves}


def figure(data: dict, path: Path, strengths: str) -> None:
    """omega(r) and eta(r) of the mocks and the paintings, one colour per HOD point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    r = data["r"]
    for i, c in enumerate(data["curves"]):
        for ax, s in zip(axes, ("omega", "eta")):
            ax.loglog(r, np.abs(c["truth"][s]), "-", color=f"C{i}", label=f"mock, point {i}" if s == "omega" else None)
            ax.loglog(r, np.abs(c["painted"][s]), "--", color=f"C{i}",
                      label=f"painted, point {i}" if s == "omega" else None)
    for ax, s in zip(axes, ("omega", "eta")):
        ax.set_xlabel("r [h^-1 Mpc]")
        ax.set_ylabel(f"|{s}(r)|")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"held-out box: mocks (FoF halos, solid) and paintings (no halos, dashed), {strengths}", fontsize=9)
    save_figure(fig, path)


def main(argv=None) -> int:
    p = box_parser(__doc__, "field_painter_orientations")
    p.add_argument("--weights", default=None, help="painter folder or shipped version (default: the default painter)")
    p.add_argument("--tag", default="bench", help="galaxy set whose HOD points are used")
    p.add_argument("--n-points", type=int, default=6, help="HOD points (the first of the set)")
    p.add_argument("--n-real", type=int, default=4, help="mock and painted realizations per point")
    p.add_argument("--mu-cen", type=float, default=0.8, help="central alignment strength")
    p.add_argument("--mu-sat", type=float, default=0.4, help="satellite alignment strength")
    p.add_argument("--r-min", type=float, default=2.0, help="smallest bin centre (h^-1 Mpc) in the ratios")
    p.add_argument("--uncalibrated", action="store_true",
                   help="ignore the painter's alignment calibration (painter.json 'alignment')")
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result, fig_data = run(args)
    write_result(result, args.output)
    figure(fig_data, Path(args.figure), f"mu_cen={args.mu_cen:g}, mu_sat={args.mu_sat:g}")
    log_means(log, result)
    log.info("axes: %s", json.dumps(result["axes"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
