#!/usr/bin/env python
"""Where the field painter falls short of its targets: a decomposition of its misses on a held-out box.

``bench_field.py`` measures the painter against the issue's targets; this script says *why* the two it
misses (precision at recall 0.90, P(k) within 5% / 15%) are missed. For every HOD point of the test
box's ``galaxies_{tag}.npz`` (the same points, truth and oracle realizations as ``bench_field.py``):

**Classification at recall 0.90, by what the voxel holds.** Each voxel is labelled by the most
massive FoF halo whose centre lies in it (``no halo`` when none; the halo catalog is read here only
to *explain* the scores, the painter never sees it), in bins of log10 M [Msun/h] (``MASS_EDGES``).
The painter (score: its expected count) and the oracle (the HOD on the true halos; score: its mean
count over the oracle realizations) are each cut at their own threshold of recall 0.90 against a truth
realization (the mean over ``N_LABELS``). Per bin: ``share_of_positives`` (share of the truth's
occupied voxels), ``recall`` (painter, oracle), ``selected`` (selected voxels per truth-occupied voxel
of the whole box) and ``precision`` (painter, oracle). A painter short of the oracle's precision
selects more voxels; the bins say where those extra voxels are (empty voxels around halos, or halos
whose HOD draw left them empty) and which occupied voxels it must reach down for.

**P(k), by scale.** ``<P_painted>/<P_true>`` and ``<P_oracle>/<P_true>`` per k shell (``n_truth``
realizations each, shot noise subtracted: ``bench_field.py``'s estimate), their means in the bands
k <= 0.2, 0.2-0.5 and 0.5-1 h/Mpc; ``bgm_ratio``: the painter's large-scale galaxy-matter bias over
the truth's (``P_gm`` of the expected painted field over that of the truth's mean field, k <= 0.2;
~1 means the 2-halo amplitude is right and a large-scale P(k) error is stochastic or 1-halo);
``pairs_ratio``: same-voxel galaxy pairs ``sum N (N - 1)``, painter (expected) over truth (mean),
with ``pair_white_term``, V pairs / N^2 in (h^-1 Mpc)^3 (their white-noise term of P(k));
``n_halos_with_satellite`` (halos whose HOD mean satellite number is >= 1) and
``pairs_share_above_1e14`` (share of the truth's same-voxel pairs in voxels of halos >= 10^14) and
``top_halos_count_ratio`` (the painter's expected galaxies over the truth's mean in the 3x3x3 voxels
around each of the ``N_TOP`` most massive halos, summed; ``top_halos_share``: the truth's share of all
galaxies there): a point whose 1-halo term rests on a few clusters has a truth P(k) that the painter,
which sees their mass only through the density, cannot match to 5%.

Writes ``benchmarks/results/field_painter_shortfall.json`` (``points``, ``mean``) and a figure.
Usage (after the data of training/README.md "Field-level painter")::

    python benchmarks/bench_field_shortfall.py --data work_data/field --test-box box_1002 --n-truth 16
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

# this folder's painter benchmark
from bench_field import (N_LABELS, _spectra_stats, box_parser, box_side, log_means, refuse_training_box,
                         save_figure, write_result)

from iaemu_likelihood.field.network import expected_pairs
from iaemu_likelihood.field.painter import GalaxyPainter
from iaemu_likelihood.field.sampling import mean_counts, sample_counts
from iaemu_likelihood.hod import mean_nsat
from iaemu_likelihood.training.field_data import HOD_NAMES, load_density, load_galaxies
from iaemu_likelihood.training.field_mesh import voxel_index
from iaemu_likelihood.training.field_metrics import threshold_at_recall
from iaemu_likelihood.training.field_spectra import overdensity, power_spectra

log = logging.getLogger("bench_field_shortfall")
#: log10 M [Msun/h] edges of the host-halo bins of the voxels (below the first: "no halo").
MASS_EDGES = (11.0, 12.0, 12.5, 13.0, 13.5, 14.0, 16.0)
#: k bands (h/Mpc) of the P(k) ratios.
K_BANDS = ((0.0, 0.2), (0.2, 0.5), (0.5, 1.0))
RECALL = 0.90
#: Most massive halos whose neighbourhoods' galaxy counts are compared.
N_TOP = 10


def bin_names() -> list[str]:
    """Names of the voxel bins: ``no halo``, then ``[lo, hi)`` in log10 M."""
    return ["no halo"] + [f"{lo:g}-{hi:g}" for lo, hi in zip(MASS_EDGES[:-1], MASS_EDGES[1:])]


def host_mass_mesh(halos_path: Path, box_size: float, n_mesh: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log10 M of the most massive halo centred in each voxel (-inf where none), every halo's log10 M,
    and the flat voxel index of every halo's centre."""
    with np.load(halos_path, allow_pickle=False) as h:
        log_mass, centre = np.log10(h["mass"]), h["centre"]
    idx = voxel_index(centre, box_size, n_mesh)
    host = np.full(n_mesh ** 3, -np.inf)
    np.maximum.at(host, idx, log_mass)
    return host.reshape((n_mesh,) * 3), log_mass, idx


def neighbourhood_mask(centres: np.ndarray, n_mesh: int) -> np.ndarray:
    """Boolean mesh of the 3x3x3 voxels (periodic) around each flat voxel index in ``centres``."""
    from scipy import ndimage

    mask = np.zeros(n_mesh ** 3, dtype=bool)
    mask[centres] = True
    return ndimage.maximum_filter(mask.reshape((n_mesh,) * 3), size=3, mode="wrap")


def voxel_bins(host: np.ndarray) -> np.ndarray:
    """Bin of each voxel: 0 for no halo, i for ``MASS_EDGES[i - 1] <= log M < MASS_EDGES[i]``."""
    return np.digitize(host, MASS_EDGES[:-1])


def classification_by_bin(score: np.ndarray, truths, bins: np.ndarray) -> dict:
    """Per voxel bin, summed over the truth realizations: occupied voxels, selected voxels at the
    threshold of recall ``RECALL`` and the occupied ones among them."""
    n_bins = len(MASS_EDGES)
    sums = np.zeros((3, n_bins))
    for t in truths:
        occupied = t >= 1
        selected = score >= threshold_at_recall(score, occupied, RECALL)
        for row, mask in enumerate((occupied, selected, selected & occupied)):
            sums[row] += np.bincount(bins[mask], minlength=n_bins)
    positives, selected, hits = sums
    total = positives.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"share_of_positives": positives / total, "recall": hits / positives,
                "selected": selected / total, "precision": hits / selected}


def bands(k: np.ndarray, ratio: np.ndarray) -> list[float]:
    """Mean of ``ratio`` over the shells of each band of :data:`K_BANDS`."""
    return [float(ratio[(k > lo) & (k <= hi)].mean()) for lo, hi in K_BANDS]


def large_scale_bias_ratio(painted_mean: np.ndarray, truth_mean: np.ndarray, delta_dm: np.ndarray,
                           box_size: float, k_max: float = 0.2) -> float:
    """Mean over k <= ``k_max`` of P_gm(painted expected field) / P_gm(truth mean field)."""
    painted = power_spectra(overdensity(painted_mean), box_size, delta_dm, k_max=k_max)
    truth = power_spectra(overdensity(truth_mean), box_size, delta_dm, k_max=k_max)
    return float(np.mean(painted.cross / truth.cross))


def _clean(values) -> list:
    """A list for JSON: NaN (an empty bin) as None."""
    return [None if not np.isfinite(v) else float(v) for v in values]


def run(args) -> tuple[dict, dict]:
    import torch

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    test_dir = data / args.test_box
    painter = GalaxyPainter.load(args.weights, device=args.device)
    n = int(round(box_side(test_dir) / painter.voxel_size))
    rho, _ = load_density(test_dir, n)
    rho_in, dprov = load_density(test_dir, n * painter.input_factor)
    refuse_training_box(painter, {dprov["snapshot_sha256"]}, args.test_box)
    test = load_galaxies(test_dir, args.tag)
    n_truth = args.n_truth
    if test.n_realizations < 2 * n_truth:
        raise SystemExit(f"{test_dir}: {test.n_realizations} realizations per point; --n-truth {n_truth} needs "
                         f">= {2 * n_truth} (truth and oracle samples)")
    box = test.box_size
    host, halo_log_mass, halo_voxel = host_mass_mesh(test_dir / "halos.npz", box, n)
    bins = voxel_bins(host)
    top = neighbourhood_mask(halo_voxel[np.argsort(halo_log_mass)[::-1][:N_TOP]], n)
    delta_dm = overdensity(rho)
    hods = [dict(zip(HOD_NAMES, map(float, test.hod[p]))) for p in range(test.n_points)]
    predictions = painter.predictions(rho_in, hods, box_size=box)
    points, curves = [], []
    for p, hod in enumerate(hods):
        pred = next(predictions)
        truths = [test.counts(p, r, n) for r in range(n_truth)]
        oracle_all = [test.counts(p, r, n) for r in range(n_truth, test.n_realizations)]
        mean = mean_counts(pred["p"], pred["mu"]).astype(np.float64)
        samples = [sample_counts(pred["p"], pred["mu"], pred["r"], np.random.default_rng(args.seed + 100 * p + i))
                   for i in range(n_truth)]
        k, ratio, _, _, _ = _spectra_stats(samples, truths, box)
        _, ratio_o, _, _, _ = _spectra_stats(oracle_all[:n_truth], truths, box)
        painted_cls = classification_by_bin(mean, truths[:N_LABELS], bins)
        oracle_cls = classification_by_bin(np.mean(oracle_all, axis=0), truths[:N_LABELS], bins)
        truth_pairs = [t.astype(np.float64) * (t - 1) for t in truths]
        pairs_true = float(np.mean([tp.sum() for tp in truth_pairs]))
        pairs_painted = expected_pairs(pred["p"].astype(np.float64), pred["mu"].astype(np.float64),
                                       pred["r"].astype(np.float64))
        n_true = float(np.mean([t.sum() for t in truths]))
        truth_top = float(np.mean([t[top].sum() for t in truths]))
        volume = box ** 3
        massive = host >= 14.0
        entry = {
            "hod": hod, "n_gal_true": n_true,
            "classification": {"bins": bin_names(), "share_of_positives": _clean(painted_cls["share_of_positives"]),
                               **{f"{key}_{who}": _clean(cls[key]) for who, cls in (("painter", painted_cls),
                                                                                    ("oracle", oracle_cls))
                                  for key in ("recall", "selected", "precision")}},
            "selected_per_positive_painter": float(np.sum(painted_cls["selected"])),
            "selected_per_positive_oracle": float(np.sum(oracle_cls["selected"])),
            "pk_bands": [f"{lo:g}-{hi:g}" for lo, hi in K_BANDS],
            "pk_ratio_bands": bands(k, ratio), "oracle_pk_ratio_bands": bands(k, ratio_o),
            "bgm_ratio": large_scale_bias_ratio(mean, np.mean(truths, axis=0), delta_dm, box),
            "pairs_true": pairs_true, "pairs_ratio": pairs_painted / pairs_true,
            "pair_white_term_true": volume * pairs_true / n_true ** 2,
            "n_halos_with_satellite": int(np.sum(mean_nsat(halo_log_mass, hod["logM0"], hod["logM1"],
                                                           hod["alpha"]) >= 1)),
            "pairs_share_above_1e14": float(np.mean([tp[massive].sum() / max(tp.sum(), 1.0)
                                                     for tp in truth_pairs])),
            "top_halos_count_ratio": float(mean[top].sum()) / truth_top, "top_halos_share": truth_top / n_true,
        }
        points.append(entry)
        curves.append({"hod": hod, "k": k, "painted": ratio, "oracle": ratio_o})
        log.info("point %d %s: selected/positive %.2f (oracle %.2f); P(k) ratio bands %s (oracle %s); "
                 "b_gm ratio %.3f; pairs ratio %.2f; %d halos with a satellite; "
                 "top-%d halos' galaxies %.2f (%.3f of all)", p,
                 {k_: round(v, 2) for k_, v in hod.items()}, entry["selected_per_positive_painter"],
                 entry["selected_per_positive_oracle"], np.round(entry["pk_ratio_bands"], 3),
                 np.round(entry["oracle_pk_ratio_bands"], 3), entry["bgm_ratio"], entry["pairs_ratio"],
                 entry["n_halos_with_satellite"], N_TOP, entry["top_halos_count_ratio"], entry["top_halos_share"])
    mean = {key: float(np.mean([pt[key] for pt in points]))
            for key in ("selected_per_positive_painter", "selected_per_positive_oracle", "bgm_ratio", "pairs_ratio",
                        "top_halos_count_ratio")}
    mean["classification"] = {"bins": bin_names(), **{
        key: _clean(np.nanmean([pt["classification"][key] for pt in points], axis=0))
        for key in points[0]["classification"] if key != "bins"}}
    mean["pk_ratio_bands"] = _clean(np.mean([pt["pk_ratio_bands"] for pt in points], axis=0))
    mean["oracle_pk_ratio_bands"] = _clean(np.mean([pt["oracle_pk_ratio_bands"] for pt in points], axis=0))
    result = {"painter": painter.metadata["version"], "test_box": args.test_box,
              "test_snapshot_sha256": dprov["snapshot_sha256"], "tag": args.tag, "n_points": test.n_points,
              "n_truth_realizations": n_truth, "n_label_realizations": N_LABELS, "recall": RECALL, "n_top_halos": N_TOP,
              "mass_edges_log10": list(MASS_EDGES), "points": points, "mean": mean}
    return result, {"curves": curves, "classification": mean["classification"]}


def figure(data: dict, path: Path) -> None:
    """P(k) ratios per point (painter and oracle) and recall / selection by host-halo bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    for i, c in enumerate(data["curves"]):
        label = f"logMmin {c['hod']['logMmin']:.2f}, logM1 {c['hod']['logM1']:.2f}"
        ax1.semilogx(c["k"], c["painted"], "-", color=f"C{i}", label=label)
        ax1.semilogx(c["k"], c["oracle"], ":", color=f"C{i}", lw=0.8)
    ax1.axhspan(0.95, 1.05, color="0.9")
    ax1.axvline(0.5, color="0.7", lw=0.8)
    ax1.set_xlabel("k [h/Mpc]")
    ax1.set_ylabel("<P_painted> / <P_true> (solid), oracle (dotted)")
    ax1.legend(fontsize=7)
    cls = data["classification"]
    x = np.arange(len(cls["bins"]))
    bars = (("share_of_positives", "0.6", 1.0, "share of occupied voxels"),
            ("recall_painter", "C0", 1.0, "recall, painter"), ("recall_oracle", "C2", 1.0, "recall, oracle"),
            ("selected_painter", "C0", 0.45, "selected voxels per occupied voxel, painter"),
            ("selected_oracle", "C2", 0.45, "selected voxels per occupied voxel, oracle"))
    for i, (key, color, alpha, label) in enumerate(bars):
        ax2.bar(x + 0.16 * (i - 2), [np.nan if v is None else v for v in cls[key]], 0.16, color=color,
                alpha=alpha, label=label)
    ax2.set_xticks(x, cls["bins"], fontsize=8)
    ax2.set_xlabel("most massive halo centred in the voxel, log10 M [Msun/h]")
    ax2.set_title(f"at recall {RECALL:g} (mean over points)", fontsize=9)
    ax2.legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None) -> int:
    p = box_parser(__doc__, "field_painter_shortfall")
    p.add_argument("--weights", default="iaemu-painter-v6", help="painter folder or shipped version")
    p.add_argument("--tag", default="bench", help="galaxy set of the benchmark points")
    p.add_argument("--seed", type=int, default=7, help="seed of the painted realizations")
    p.add_argument("--n-truth", type=int, default=16, help="truth realizations per point (and painted, oracle)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result, fig_data = run(args)
    write_result(result, args.output)
    figure(fig_data, Path(args.figure))
    log_means(log, result)
    cls = result["mean"]["classification"]
    for i, name in enumerate(cls["bins"]):
        log.info("bin %-9s share %.3f | recall painter %s oracle %s | selected painter %.3f oracle %.3f | "
                 "precision painter %s oracle %s", name, cls["share_of_positives"][i], cls["recall_painter"][i],
                 cls["recall_oracle"][i], cls["selected_painter"][i], cls["selected_oracle"][i],
                 cls["precision_painter"][i], cls["precision_oracle"][i])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
