#!/usr/bin/env python
"""Benchmark of the field-level painter on a held-out box, beside the HOD oracle and the local-bias baseline.

For every HOD point of the test box's ``galaxies_{tag}.npz`` (Latin hypercube over the prior;
realizations ``0 .. n_truth - 1`` are the *truth*, the others the *oracle*: the HOD on the true halos):

* ``ap`` / ``oracle_ap`` / ``baseline_ap``: average precision of "voxel holds >= 1 galaxy" against
  one truth realization (the mean over the first ``N_LABELS`` truth realizations, each scored
  alone), scoring voxels by the painter's expected count, the oracle's mean count over its
  realizations, and the baseline's Poisson mean;
* ``precision_at_recall_090`` and ``_095`` (the seed's operating point), same three scores;
* ``n_gal_ratio``: painted / true galaxies (means over ``n_truth`` painted and true realizations);
* ``pk_max_dev_k05`` / ``pk_max_dev_k1``: max |<P_painted> / <P_true> - 1| over k <= 0.5 / 1 h/Mpc,
  spectra of ``n_truth`` realizations each, shot noise 1/nbar subtracted (also for the oracle, whose
  samples are ``n_truth`` of its realizations, and the baseline): the oracle's figure is the noise
  floor of this estimate;
* ``rk_ratio_min_k05``: min over k <= 0.5 of r_painted,true(k) / r_oracle,true(k), each r the mean
  over ``n_truth`` pairs of independent realizations (shot noise included, as in the issue's oracle figures);
* ``paint_seconds``: painting one box from its density (network + sampling, torch threads as given);
  ``paint_next_point_seconds``: one more HOD point on the same density
  (:meth:`GalaxyPainter.predictions`, which encodes the density once when the network allows); and
  ``truth_seconds``: FoF + halo properties (``iaemu build-catalog``'s logged duration less its
  N-body part) + one ``populate``, for the same box; ``density_seconds``: reading the snapshot + CIC
  (the painter's own input cost, reported beside it).

``--density-box`` paints the density of another box folder, a run of the test box's initial conditions
(e.g. with fewer time steps: ``iaemu build-catalog --courant-factor --max-aexp-step``), and judges it
against the test box's galaxies; ``--occupancy`` chooses how the painter draws occupied voxels, and
``--symmetries`` over how many cube rotations/flips it averages its network (timed the same way).

Writes ``benchmarks/results/field_painter.json`` (``points``, ``mean``, ``targets``) and a figure.
Usage (after the data of training/README.md "Field-level painter")::

    python benchmarks/bench_field.py --data work_data/field --test-box box_1002 \
        --train-boxes box_1001 --weights trained_weights/iaemu-painter-v6 --n-truth 16
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from iaemu_likelihood._io import atomic_write_bytes
from iaemu_likelihood.field.painter import GalaxyPainter
from iaemu_likelihood.field.sampling import DEFAULT_OCCUPANCY, OCCUPANCY, mean_counts, sample_counts
from iaemu_likelihood.training.field_baseline import fit_local_bias
from iaemu_likelihood.training.field_data import HOD_NAMES, load_density, load_galaxies
from iaemu_likelihood.training.field_metrics import average_precision, precision_at_recall
from iaemu_likelihood.training.field_spectra import overdensity, power_spectra

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_field")
N_LABELS = 4  # truth realizations the classification metrics are averaged over
K_MAX = 1.0
TARGETS = {"ap_over_oracle": 0.85, "p090_over_oracle": 0.8, "pk_max_dev_k05": 0.05, "pk_max_dev_k1": 0.15,
           "rk_ratio_min_k05": 0.95, "n_gal_dev": 0.03, "speedup": 10.0}


def _spectra_stats(samples, truths, box_size):
    """<P_sample>/<P_true> (shot-noise subtracted) and mean r(sample_i, true_i) per k shell."""
    volume = box_size ** 3
    ps, pt, rs = [], [], []
    for s, t in zip(samples, truths):
        spec = power_spectra(overdensity(s), box_size, overdensity(t), k_max=K_MAX)
        ps.append(spec.auto_a - volume / s.sum())
        pt.append(spec.auto_b - volume / t.sum())
        rs.append(spec.r())
    return spec.k, np.mean(ps, 0) / np.mean(pt, 0), np.mean(rs, 0), np.mean(ps, 0), np.mean(pt, 0)


def _classification(score, truths, prefix=""):
    """Classification metrics of ``score`` against each truth realization, averaged."""
    rows = [(average_precision(score, t >= 1), precision_at_recall(score, t >= 1, 0.90),
             precision_at_recall(score, t >= 1, 0.95)) for t in truths]
    ap, p90, p95 = np.mean(rows, axis=0)
    return {f"{prefix}ap": float(ap), f"{prefix}precision_at_recall_090": float(p90),
            f"{prefix}precision_at_recall_095": float(p95)}


def simulation_config(box_dir: Path) -> dict:
    """The N-body settings of a box folder (``nbody/simulation_config.json`` of ``iaemu build-catalog``)."""
    return json.loads((box_dir / "nbody" / "simulation_config.json").read_text())


def write_result(result: dict, path) -> None:
    """``result`` as indented JSON at ``path`` (atomically; folders made)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, (json.dumps(result, indent=2) + "\n").encode())


def log_means(logger: logging.Logger, result: dict) -> None:
    """Log every number of ``result["mean"]`` (nested lists and tables are left to the JSON)."""
    for key, value in result["mean"].items():
        if isinstance(value, (int, float)):
            logger.info("mean %-40s %.4g", key, value)


def refuse_training_box(painter, snapshot_sha256s: set, name: str) -> None:
    """Stop when any of these N-body snapshots is one the painter was trained on (a held-out box is needed)."""
    if snapshot_sha256s & {b["snapshot_sha256"] for b in painter.metadata["training"]["boxes"]}:
        raise SystemExit(f"{name} is one of the painter's training boxes: pick a held-out box")


def save_figure(fig, path) -> None:
    """Lay out, write (110 dpi) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def box_parser(description: str, result_name: str) -> argparse.ArgumentParser:
    """The painter benchmarks' parser with the options they share: ``--data``, ``--test-box``,
    ``--threads`` and ``--output`` / ``--figure`` (default ``benchmarks/results/{result_name}.json`` / ``.png``)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(REPO / "work_data" / "field"), help="folder of the box folders")
    p.add_argument("--test-box", required=True, help="held-out box folder name")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results" / f"{result_name}.json"))
    p.add_argument("--figure", default=str(REPO / "benchmarks" / "results" / f"{result_name}.png"))
    return p


def box_side(box_dir: Path) -> float:
    """Box side (h^-1 Mpc) of a box folder, from its simulation config."""
    return float(simulation_config(box_dir)["box_size"])


def same_initial_conditions(test_dir: Path, density_dir: Path) -> Path:
    """``density_dir`` after checking that its N-body run shares the test box's initial conditions."""
    keys = ("seed", "box_size", "n_particles_1d", "z_start", "cosmology")
    configs = [simulation_config(d) for d in (test_dir, density_dir)]
    differ = [k for k in keys if configs[0].get(k) != configs[1].get(k)]
    if differ:
        raise SystemExit(f"--density-box {density_dir.name}: its run differs from {test_dir.name}'s in {differ}; "
                         "it must share the seed, box, particles, starting redshift and cosmology")
    return density_dir


def nbody_seconds(box_dir: Path) -> float:
    """The N-body part of ``iaemu build-catalog``'s run for a box (catalog provenance), seconds."""
    from iaemu_likelihood.training.catalogs import OfflineHaloCatalog

    return float(OfflineHaloCatalog(box_dir / "halos.npz").provenance["timings_s"]["nbody"])


def truth_seconds(box_dir: Path, populate_s: float) -> dict:
    """FoF + halo properties and one populate for a box, seconds.

    ``iaemu build-catalog`` logs its own duration (CAMB + PySCo + reading the snapshot + FoF + halo
    properties + saving, without the interpreter start-up); less the N-body part recorded in the
    catalog's provenance that is the halo-finding cost.
    """
    import re

    from iaemu_likelihood.training.catalogs import OfflineHaloCatalog

    # "saved PATH (N s)" (earlier builders: "saved K halos to PATH (N s)")
    match = re.search(r"saved (?:\d+ halos to )?\S*halos\.npz \((\d+) s\)", (box_dir / "build.log").read_text())
    if match is None:
        raise SystemExit(f"{box_dir}/build.log has no 'saved .../halos.npz (N s)' line of iaemu build-catalog")
    timings = OfflineHaloCatalog(box_dir / "halos.npz").provenance["timings_s"]
    halos = float(match.group(1)) - timings["nbody"]
    return {"truth_seconds": halos + populate_s, "fof_and_properties_seconds": halos,
            "fof_seconds": timings["fof"], "populate_seconds": populate_s, "nbody_seconds": timings["nbody"]}


def run(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    n_truth = args.n_truth
    data = Path(args.data)
    test_dir = data / args.test_box
    # the density that is painted: the test box's own, or a cheaper run of the same initial conditions
    density_dir = same_initial_conditions(test_dir, data / args.density_box) if args.density_box else test_dir
    painter = GalaxyPainter.load(args.weights, device=args.device)
    n_test = int(round(box_side(test_dir) / painter.voxel_size))
    rho, _ = load_density(density_dir, n_test)  # the baseline's input and the figure's
    # the painter's input: its own density mesh (finer when input_factor > 1)
    rho_in, dprov = load_density(density_dir, n_test * painter.input_factor)
    test_sha = (dprov if density_dir == test_dir else load_density(test_dir, n_test)[1])["snapshot_sha256"]
    refuse_training_box(painter, {dprov["snapshot_sha256"], test_sha}, args.test_box)
    test = load_galaxies(test_dir, args.tag)
    if test.n_realizations < 2 * n_truth:
        raise SystemExit(f"{test_dir}: {test.n_realizations} realizations per point; --n-truth {n_truth} needs "
                         f">= {2 * n_truth} (truth and oracle samples)")
    train_rho = [load_density(data / b, int(round(box_side(data / b) / painter.voxel_size)))[0]
                 for b in args.train_boxes]
    train_sets = [load_galaxies(data / b, args.tag) for b in args.train_boxes]
    for b, s in zip(args.train_boxes, train_sets):
        if not np.allclose(s.hod, test.hod):
            raise SystemExit(f"{b}/galaxies_{args.tag}.npz has other HOD points than the test box")
    n, box = n_test, test.box_size
    points, figure_data = [], None
    paint_times, next_point_times = [], []
    hods = [dict(zip(HOD_NAMES, map(float, test.hod[p]))) for p in range(test.n_points)]
    predictions = painter.predictions(rho_in, hods, box_size=box, symmetries=args.symmetries)
    for p in range(test.n_points):
        hod = hods[p]
        truths = [test.counts(p, r, n) for r in range(n_truth)]
        oracle_all = [test.counts(p, r, n) for r in range(n_truth, test.n_realizations)]
        oracle_mean = np.mean(oracle_all, axis=0)
        oracle_samples = oracle_all[:n_truth]
        labels = truths[0] >= 1
        t0 = time.perf_counter()
        samples = [painter.paint(rho_in, hod, seed=args.seed + 100 * p, box_size=box,
                                 occupancy=args.occupancy, symmetries=args.symmetries)]  # a whole painting, timed
        paint_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pred = next(predictions)  # the same distribution, the density encoded once for all points
        samples.append(sample_counts(pred["p"], pred["mu"], pred["r"], np.random.default_rng(args.seed + 100 * p + 1),
                                     args.occupancy))
        next_point_times.append(time.perf_counter() - t0)
        mean = mean_counts(pred["p"], pred["mu"])
        # the further realizations: paint(seed=s) draws exactly this from the same distribution
        samples += [sample_counts(pred["p"], pred["mu"], pred["r"], np.random.default_rng(args.seed + 100 * p + i),
                                  args.occupancy) for i in range(2, n_truth)]
        model = fit_local_bias(train_rho, [[s.counts(p, r, rt.shape[0]) for r in range(s.n_realizations)]
                                           for s, rt in zip(train_sets, train_rho)], painter.voxel_size)
        rng = np.random.default_rng(args.seed + 100 * p)
        base_mean = model.mean(rho)
        base_samples = [model.sample(rho, rng) for _ in range(n_truth)]
        k, ratio, r_paint, pk_paint, pk_true = _spectra_stats(samples, truths, box)
        _, ratio_o, r_oracle, pk_oracle, _ = _spectra_stats(oracle_samples, truths, box)
        _, ratio_b, r_base, pk_base, _ = _spectra_stats(base_samples, truths, box)
        k05, k1 = k <= 0.5, k <= 1.0
        n_true = np.mean([t.sum() for t in truths])
        entry = {"hod": hod, "n_gal_true": float(n_true), "voxel_fraction_occupied": float(labels.mean()),
                 **_classification(mean, truths[:N_LABELS]),
                 **_classification(oracle_mean, truths[:N_LABELS], "oracle_"),
                 **_classification(base_mean, truths[:N_LABELS], "baseline_"),
                 "n_gal_ratio": float(np.mean([s.sum() for s in samples]) / n_true),
                 "oracle_n_gal_ratio": float(np.mean([s.sum() for s in oracle_samples]) / n_true),
                 "baseline_n_gal_ratio": float(np.mean([s.sum() for s in base_samples]) / n_true),
                 "pk_max_dev_k05": float(np.max(np.abs(ratio[k05] - 1))),
                 "pk_max_dev_k1": float(np.max(np.abs(ratio[k1] - 1))),
                 "oracle_pk_max_dev_k05": float(np.max(np.abs(ratio_o[k05] - 1))),
                 "oracle_pk_max_dev_k1": float(np.max(np.abs(ratio_o[k1] - 1))),
                 "baseline_pk_max_dev_k05": float(np.max(np.abs(ratio_b[k05] - 1))),
                 "baseline_pk_max_dev_k1": float(np.max(np.abs(ratio_b[k1] - 1))),
                 "rk_ratio_min_k05": float(np.min(r_paint[k05] / r_oracle[k05])),
                 "baseline_rk_ratio_min_k05": float(np.min(r_base[k05] / r_oracle[k05])),
                 "baseline_smoothing_mpc_h": model.radius}
        points.append(entry)
        log.info("point %d %s: ap %.3f (oracle %.3f, baseline %.3f), P(k) dev %.3f, r ratio %.3f, n ratio %.3f",
                 p, hod, entry["ap"], entry["oracle_ap"], entry["baseline_ap"], entry["pk_max_dev_k05"],
                 entry["rk_ratio_min_k05"], entry["n_gal_ratio"])
        if figure_data is None or abs(hod["logMmin"] - 12.0) < abs(figure_data["hod"]["logMmin"] - 12.0):
            figure_data = {"hod": hod, "rho": rho, "truth": truths[0], "painted": samples[0], "k": k,
                           "pk": {"truth": pk_true, "painted": pk_paint, "oracle": pk_oracle, "baseline": pk_base},
                           "r": {"painted": r_paint, "oracle": r_oracle, "baseline": r_base}}
    mean = {key: float(np.mean([pt[key] for pt in points])) for key in points[0] if key != "hod"}
    timing = truth_seconds(test_dir, float(np.median(test.populate_seconds)))
    timing.update(paint_seconds=float(np.median(paint_times)), density_seconds=float(dprov["seconds"]),
                  # averaged over symmetries, the points are computed together at the first: the mean per point
                  paint_next_point_seconds=float(np.median(next_point_times[1:] or next_point_times)
                                                 if args.symmetries == 1 else np.mean(next_point_times)))
    mean.update(timing)
    targets = {
        "ap >= 0.85 oracle_ap": mean["ap"] >= TARGETS["ap_over_oracle"] * mean["oracle_ap"],
        "precision_at_recall_090 >= 0.8 oracle": mean["precision_at_recall_090"]
        >= TARGETS["p090_over_oracle"] * mean["oracle_precision_at_recall_090"],
        "pk_max_dev_k05 <= 0.05": mean["pk_max_dev_k05"] <= TARGETS["pk_max_dev_k05"],
        "pk_max_dev_k1 <= 0.15": mean["pk_max_dev_k1"] <= TARGETS["pk_max_dev_k1"],
        "rk_ratio_min_k05 >= 0.95": mean["rk_ratio_min_k05"] >= TARGETS["rk_ratio_min_k05"],
        "|n_gal_ratio - 1| <= 0.03": abs(mean["n_gal_ratio"] - 1) <= TARGETS["n_gal_dev"],
        "ap > baseline_ap": mean["ap"] > mean["baseline_ap"],
        "pk_max_dev_k05 < baseline": mean["pk_max_dev_k05"] < mean["baseline_pk_max_dev_k05"],
        "rk_ratio_min_k05 > baseline": mean["rk_ratio_min_k05"] > mean["baseline_rk_ratio_min_k05"],
        "truth_seconds >= 10 paint_seconds": timing["truth_seconds"] >= TARGETS["speedup"] * timing["paint_seconds"],
    }
    return {"painter": painter.metadata["version"], "weights_created": painter.metadata.get("created"),
            "test_box": args.test_box, "test_snapshot_sha256": test_sha,
            "density_box": args.density_box or args.test_box, "density_snapshot_sha256": dprov["snapshot_sha256"],
            "density_nbody_seconds": nbody_seconds(density_dir), "test_nbody_seconds": nbody_seconds(test_dir),
            "density_simulation": simulation_config(density_dir),
            "train_boxes_for_baseline": list(args.train_boxes), "tag": args.tag,
            "n_points": test.n_points, "n_truth_realizations": n_truth, "n_label_realizations": N_LABELS,
            "n_oracle_realizations": test.n_realizations - n_truth, "threads": args.threads,
            "device": args.device, "occupancy": args.occupancy,
            "symmetries": args.symmetries, "points": points, "mean": mean,
            "targets": {k: bool(v) for k, v in targets.items()}}, figure_data


def figure(data: dict, path: Path) -> None:
    """Slices of DM, true and painted galaxies; P(k) and r(k) with the oracle and the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 8.5))
    slab = slice(0, 4)
    panels = [("dark matter log10(1 + rho/rho_mean)", np.log10(1 + data["rho"][slab].mean(0))),
              ("true galaxies (HOD on FoF halos)", data["truth"][slab].sum(0)),
              ("painted galaxies (network, no halos)", data["painted"][slab].sum(0))]
    for i, (title, img) in enumerate(panels):
        ax = fig.add_subplot(2, 3, i + 1)
        ax.imshow(img.T, origin="lower", cmap="magma" if i == 0 else "Greys",
                  vmax=None if i == 0 else 2)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    k = data["k"]
    ax = fig.add_subplot(2, 2, 3)
    for name, style in (("truth", "k-"), ("painted", "C0-"), ("oracle", "C2--"), ("baseline", "C3:")):
        ax.loglog(k, data["pk"][name], style, label=name)
    ax.set_xlabel("k [h/Mpc]")
    ax.set_ylabel("P(k) - 1/nbar [(Mpc/h)^3]")
    ax.legend(fontsize=8)
    ax = fig.add_subplot(2, 2, 4)
    for name, style in (("painted", "C0-"), ("oracle", "C2--"), ("baseline", "C3:")):
        ax.semilogx(k, data["r"][name], style, label=f"r({name}, truth)")
    ax.axvline(0.5, color="0.7", lw=0.8)
    ax.set_xlabel("k [h/Mpc]")
    ax.set_ylabel("cross-correlation r(k)")
    ax.legend(fontsize=8)
    hod = ", ".join(f"{k_}={v:.3g}" for k_, v in data["hod"].items())
    fig.suptitle(f"held-out box, {hod}", fontsize=9)
    save_figure(fig, path)


def main(argv=None) -> int:
    p = box_parser(__doc__, "field_painter")
    p.add_argument("--density-box", default=None,
                   help="paint the density of this box folder instead of the test box's: a run of the same "
                        "initial conditions (e.g. fewer time steps), judged against the test box's galaxies")
    p.add_argument("--train-boxes", nargs="+", required=True, help="training box folder names (baseline fit)")
    p.add_argument("--weights", default="iaemu-painter-v6", help="painter folder or shipped version")
    p.add_argument("--tag", default="bench", help="galaxy set of the benchmark points")
    p.add_argument("--seed", type=int, default=7, help="seed of the painted and baseline realizations")
    p.add_argument("--n-truth", type=int, default=4,
                   help="truth realizations per point (P(k), r(k), n_gal); as many painted, baseline and oracle "
                        "samples; the rest of the set is the oracle's mean")
    p.add_argument("--occupancy", choices=OCCUPANCY, default=DEFAULT_OCCUPANCY,
                   help="how the painter draws occupied voxels (iaemu_likelihood.field.sampling)")
    p.add_argument("--symmetries", type=int, default=1,
                   help="cube symmetries the painter averages its network over (GalaxyPainter.predictions)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result, fig_data = run(args)
    write_result(result, args.output)
    figure(fig_data, Path(args.figure))
    log_means(log, result)
    for key, ok in result["targets"].items():
        log.info("target %-45s %s", key, "PASS" if ok else "MISS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
