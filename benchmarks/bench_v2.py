"""Accuracy of cosmology- and redshift-dependent weights on held-out (box, z) mocks, per redshift and per box,
beside the one-cosmology v1 weights where they apply (issue 15, emulator v2).

Runs ``iaemu evaluate`` (:func:`iaemu_likelihood.training.evaluate.evaluate_folder`, the same report as the
shipped weights') on a test set generated over the N-body suite, and on its subsets of one z and of one box
(``point_inputs``); the v1 weights (one cosmology, z = 0) are evaluated on the test points at their own
cosmology and z = 0 only (the box at the fiducial cosmology with other phases; its HOD points inside v1's
prior). Prints a table of the mean absolute fractional errors of xi and omega (omega where |omega| > 3
sigma of the realization mean), the median |residual| / sigma of eta, each beside the test set's noise
floor, the 68% coverage, the aleatoric calibration (dex), and the derived n_gal against the mocks'
galaxy counts (median |n_gal / (mean count / box volume) - 1|; the v2
weights' n_gal comes from the suite's mass function at each point's Omega_m, sigma_8, z), and saves
everything as JSON. With ``--deep`` (v1's deep test set, one 250 h^-1 Mpc catalog at the fiducial
cosmology and z = 0) it also evaluates both weights there, the v2 weights at that cosmology and z = 0
(the target: v2 no worse than v1 at the fiducial cosmology). Then a table of issue 15's targets on the
held-out cosmologies (every test box but ``--phase-box``), pooled and per z, beside the phase box's values.

Usage::

    .venv/bin/python benchmarks/bench_v2.py WEIGHTS TEST.npz [--v1 iaemu-factorised-v1] \\
        [--phase-box fid_phase2] [--deep training/data/test_deep.npz --fiducial-cosmology 0.307 0.823] \\
        [--json benchmarks/results/v2.json] [--work DIR]
"""
import argparse
import functools
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from iaemu_likelihood._io import atomic_write_bytes
from iaemu_likelihood.training.dataset_io import load_dataset, save_dataset
from iaemu_likelihood.training.evaluate import evaluate_folder

logger = logging.getLogger("bench_v2")
HELD_OUT = "held-out cosmologies"
#: summary keys shown per statistic: (key, label)
COLUMNS = (("xi_mean_abs_frac_error", "xi frac"), ("xi_noise_floor_frac_error", "(floor)"),
           ("omega_mean_abs_frac_error", "omega frac"), ("omega_noise_floor_frac_error", "(floor)"),
           ("eta_median_abs_residual_sigma", "eta |res|/sig"),
           ("eta_noise_floor_median_abs_residual_sigma", "(floor)"),
           ("xi_coverage_68", "xi cov68"), ("omega_coverage_68", "omega cov68"),
           ("xi_calibration_dex", "xi cal dex"), ("omega_calibration_dex", "om cal dex"),
           ("eta_calibration_dex", "eta cal dex"))
#: issue 15's targets on held-out cosmologies: (label, summary key, low, high)
TARGETS = (("xi mean |frac error| <= 3%", "xi_mean_abs_frac_error", 0.0, 0.03),
           ("omega mean |frac error| <= 6%", "omega_mean_abs_frac_error", 0.0, 0.06),
           ("eta median |res|/sigma <= 0.5", "eta_median_abs_residual_sigma", 0.0, 0.5),
           ("xi calibration within 0.1 dex", "xi_calibration_dex", -0.1, 0.1),
           ("omega calibration within 0.1 dex", "omega_calibration_dex", -0.1, 0.1),
           ("eta calibration within 0.1 dex", "eta_calibration_dex", -0.1, 0.1),
           ("xi 68% coverage in [0.60, 0.76]", "xi_coverage_68", 0.60, 0.76),
           ("omega 68% coverage in [0.60, 0.76]", "omega_coverage_68", 0.60, 0.76))


def _subsets(dataset, phase_box: str) -> dict:
    """name -> point indices: all; the held-out cosmologies (every box but ``phase_box``, the fiducial
    cosmology with other phases), pooled and per z; each box; ``phase_box`` per z."""
    inputs = dataset.provenance["point_inputs"]
    box, z = np.array(inputs["box"]), np.array(inputs["z"], dtype=float)
    held = box != phase_box
    out = {"all": np.arange(dataset.n_points), HELD_OUT: np.flatnonzero(held)}
    out.update({f"{HELD_OUT} z={v:g}": np.flatnonzero(held & (z == v)) for v in np.unique(z)})
    out.update({f"box {b}": np.flatnonzero(box == b) for b in np.unique(box)})
    out.update({f"box {phase_box} z={v:g}": np.flatnonzero((box == phase_box) & (z == v)) for v in np.unique(z)})
    return out


def _target_lines(rows: dict, phase_row: str) -> tuple[list, dict]:
    """Each target on the held-out cosmologies, pooled and per z, beside the other-phases box."""
    names = [n for n in rows if n.startswith(HELD_OUT) and rows[n] is not None]
    lines = [f"{'target':<36}" + "".join(f"{n.replace(HELD_OUT, 'held-out'):>17}" for n in names)
             + f"{'(' + phase_row + ')':>28}"]
    verdict = {}
    for label, key, low, high in TARGETS:
        cells = ""
        for n in names:
            value = rows[n][key]
            ok = value is not None and low <= value <= high
            verdict.setdefault(n, {})[label] = {"value": value, "pass": bool(ok)}
            cells += f"{(f'{value:.3f}' if value is not None else '-') + (' ok' if ok else ' MISS'):>17}"
        floor = (rows.get(phase_row) or {}).get(key)
        cells += f"{float('nan') if floor is None else floor:>28.3f}"
        lines.append(f"{label:<36}{cells}")
    return lines, verdict


@functools.cache
def _emulator(weights):
    """The weights, loaded once however many subsets are evaluated."""
    from iaemu_likelihood.emulator import IAEmulator

    return IAEmulator.load(weights)


def _n_gal_error(weights, dataset, volume: float):
    """Median |derived n_gal / measured - 1| over the points inside the weights' support (the measured
    number density: the mean galaxy count of a point's mocks / the box volume)."""
    emu = _emulator(weights)
    inputs = dataset.inputs(emu.param_names)
    keep = np.atleast_1d(emu.in_support(inputs))
    if not emu.derived_names or keep.sum() == 0:
        return None
    derived = emu.derived(inputs[keep])["n_gal"]
    measured = dataset.n_gal[keep].mean(axis=1) / volume
    return float(np.median(np.abs(derived / measured - 1.0)))


def _evaluate(weights, dataset, idx, work: Path, name: str, volume: float):
    """The report's summary on the points ``idx`` (None when fewer than 3 are usable)."""
    path = work / (name.replace(" ", "_").replace("=", "") + ".npz")
    subset = dataset.subset(idx)
    save_dataset(path, subset)
    try:
        report = evaluate_folder(weights, path, output=work / "reports" / path.stem / Path(str(weights)).name,
                                 figures=False, latency=False)
    except ValueError as exc:  # fewer than 3 usable points
        logger.warning("%s on %s: %s", weights, name, exc)
        return None
    return {"n_used": report["test_set"]["n_used"], **{k: report["summary"].get(k) for k, _ in COLUMNS},
            "n_gal_median_abs_rel_error": _n_gal_error(weights, subset, volume)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", help="weights folder with Omega_m, sigma_8, z inputs")
    p.add_argument("test", help="test dataset generated over the suite (held-out boxes)")
    p.add_argument("--v1", default="iaemu-factorised-v1", help="one-cosmology weights to compare at the fiducial")
    p.add_argument("--phase-box", default="fid_phase2",
                   help="the test box at the v1 weights' cosmology with other phases (the floor)")
    p.add_argument("--json", default="benchmarks/results/v2.json")
    p.add_argument("--work", help="folder for the subsets and reports (default: a temporary one)")
    p.add_argument("--box-volume", type=float, default=125.0 ** 3,
                   help="volume of the test boxes, (h^-1 Mpc)^3 (suite_v2: 125^3)")
    p.add_argument("--deep", help="v1's test set (one catalog, no per-point cosmology), e.g. "
                                  "training/data/test_deep.npz")
    p.add_argument("--fiducial-cosmology", nargs=2, type=float, default=(0.307, 0.823),
                   metavar=("OMEGA_M", "SIGMA_8"), help="the --deep catalog's cosmology (z = 0)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    dataset = load_dataset(args.test)
    subsets = _subsets(dataset, args.phase_box)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        rows = {name: _evaluate(args.weights, dataset, idx, work, name, args.box_volume)
                for name, idx in subsets.items()}
        fid = f"box {args.phase_box} z=0"
        rows[f"v1 on {fid}"] = _evaluate(args.v1, dataset, subsets[fid], work, f"v1 {fid}", args.box_volume)
        if args.deep:
            om, s8 = args.fiducial_cosmology
            fixed = {"Omega_m": om, "sigma_8": s8, "z": 0.0}
            for label, weights, given in (("v2", args.weights, fixed), ("v1", args.v1, None)):
                report = evaluate_folder(weights, args.deep, output=work / "reports" / f"deep_{label}",
                                         figures=False, latency=False, fixed_inputs=given)
                rows[f"{label} on {Path(args.deep).name}"] = {
                    "n_used": report["test_set"]["n_used"],
                    **{k: report["summary"].get(k) for k, _ in COLUMNS},
                    "n_gal_median_abs_rel_error": None}
    header = f"{'subset':<38}{'n':>4}" + "".join(f"{label:>14}" for _, label in COLUMNS) + f"{'n_gal err':>11}"
    lines = [header]
    for name, row in rows.items():
        if row is None:
            lines.append(f"{name:<38}  (fewer than 3 usable points)")
            continue
        cells = "".join(f"{row[k]:>14.3f}" if row[k] is not None else f"{'-':>14}" for k, _ in COLUMNS)
        n_gal = row["n_gal_median_abs_rel_error"]
        cells += f"{n_gal:>11.3f}" if n_gal is not None else f"{'-':>11}"
        lines.append(f"{name:<38}{row['n_used']:>4}{cells}")
    target_lines, verdict = _target_lines(rows, f"box {args.phase_box}")
    print("\n".join(lines + [""] + target_lines))
    result = {"weights": str(args.weights), "test_set": Path(args.test).name, "v1": args.v1, "rows": rows,
              "targets": verdict}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, (json.dumps(result, indent=1) + "\n").encode())
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
