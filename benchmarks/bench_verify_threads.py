"""How far a weights version's predictions move with the thread count: the basis of the
tolerances of ``iaemu verify`` (``verify.REFERENCE_TOLERANCES``).

For each weights version, the stored ``reference_predictions.npz`` points are recomputed with
1, 2, 4 and 8 BLAS/OpenMP and torch threads (the thread count a user may have; the machine may have
fewer cores, which only changes the speed, not the order of the sums). Printed per version and
thread count: the largest difference of any stored array from (a) the stored reference and (b) the
one-thread result, in the metric of :func:`iaemu_likelihood.verify.check_reference_predictions`
(|difference| / max(|reference|, atol), atol = fraction x max |reference| of that array), for the
float64 atol fraction 1e-9 and the float32 one 1e-5; the largest difference as a fraction of the
array's largest |value|; and whether the check passes with the
tolerance ``iaemu verify`` uses for that version's arithmetic.

Run: ``.venv/bin/python benchmarks/bench_verify_threads.py [--weights V ...] [--json out.json]``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys

import numpy as np

from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.verify import REFERENCE_TOLERANCES, reference_tolerance
from iaemu_likelihood.weights import available_versions, resolve_weights_dir
from iaemu_likelihood.weights_io import REFERENCE_FILE

THREADS = (1, 2, 4, 8)
ATOL_FRACTIONS = (1e-9, 1e-5)


def predictions(emu, points, keys, threads):
    """Predictions at ``points`` with ``threads`` BLAS and torch threads (restored after)."""
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    old = torch.get_num_threads() if torch else None
    try:
        with threadpool_limits(limits=threads):
            if torch:
                torch.set_num_threads(threads)
            pred = emu.predict(points, epistemic=any("epi" in k for k in keys)).as_dict()
    finally:
        if torch:
            torch.set_num_threads(old)
    return {k: np.asarray(pred[k]) for k in keys}


def max_difference(got, expected, atol_fraction):
    """Largest |got - expected| / max(|expected|, atol) over every array."""
    worst = 0.0
    for key, ref in expected.items():
        atol = atol_fraction * float(np.max(np.abs(ref), initial=0.0))
        err = np.abs(got[key] - ref)
        worst = max(worst, float(np.max(err / np.maximum(np.abs(ref), atol or np.finfo(float).tiny))))
    return worst


def max_scaled_difference(got, expected):
    """Largest |got - expected| / max |expected| over every array (the scale of the atol)."""
    return max(float(np.max(np.abs(got[k] - ref)) / max(float(np.max(np.abs(ref))), np.finfo(float).tiny))
               for k, ref in expected.items())


def passes(got, expected, rtol, atol_fraction):
    for key, ref in expected.items():
        atol = atol_fraction * float(np.max(np.abs(ref), initial=0.0))
        if not np.all(np.abs(got[key] - ref) <= atol + rtol * np.abs(ref)):
            return False
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=None, help="versions (default: all shipped)")
    parser.add_argument("--json", help="save the figures to this JSON file")
    args = parser.parse_args(argv)
    results = {"machine": platform.platform(), "processor": platform.processor(), "versions": {}}
    for version in args.weights or available_versions():
        emu = IAEmulator.load(version)
        with np.load(resolve_weights_dir(version) / REFERENCE_FILE, allow_pickle=False) as ref:
            points = ref["points"]
            stored = {k: ref[k] for k in ref.files if k not in ("points", "param_names")}
        rtol, atol_fraction = reference_tolerance(emu)
        one = predictions(emu, points, stored, 1)
        rows = {}
        for threads in THREADS:
            got = predictions(emu, points, stored, threads)
            rows[threads] = {
                **{f"vs_reference_atol{a:g}": max_difference(got, stored, a) for a in ATOL_FRACTIONS},
                **{f"vs_1_thread_atol{a:g}": max_difference(got, one, a) for a in ATOL_FRACTIONS},
                "vs_reference_over_max_abs": max_scaled_difference(got, stored),
                "passes_verify_tolerance": passes(got, stored, rtol, atol_fraction),
            }
            print(f"{version:<22s} {emu.point_precision} threads {threads}: "
                  + ", ".join(f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in rows[threads].items()), flush=True)
        results["versions"][version] = {"precision": emu.point_precision, "rtol": rtol,
                                        "atol_fraction": atol_fraction, "threads": rows}
    results["tolerances"] = {k: list(v) for k, v in REFERENCE_TOLERANCES.items()}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
