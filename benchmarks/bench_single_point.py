"""Single-point latency of ``IAEmulator.predict`` (the call a sampler makes), robust to a busy VM.

Prints and saves the best of several medians. To compare two releases side by side on the same
machine, run it once per release, e.g. for an older commit::

    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old python benchmarks/bench_single_point.py \\
        --weights /tmp/old/trained_weights/iaemu-factorised-v1 \\
        --label old --json benchmarks/results/single_point_old.json
    python benchmarks/bench_single_point.py --label new --json benchmarks/results/single_point_new.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

FIDUCIAL = np.array([0.8, 0.5, 12.02, 0.26, 11.38, 13.31, 1.06])
IMPORT_CODE = ("import time; t = time.perf_counter(); import iaemu_likelihood, iaemu_likelihood.training; "
               "print(time.perf_counter() - t)")


def import_seconds(repeats: int = 3) -> float:
    """Best of ``repeats`` fresh-process times (s) of ``import iaemu_likelihood, iaemu_likelihood.training``."""
    import subprocess
    import sys

    return min(float(subprocess.run([sys.executable, "-c", IMPORT_CODE], capture_output=True, text=True,
                                    check=True).stdout) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="weights folder or version (default: shipped default)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--label", default="installed")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    from iaemu_likelihood import IAEmulator

    emu = IAEmulator.load(args.weights)
    # weights with more inputs (cosmology, z): the fiducial HOD point at the centre of the others' box
    point = np.concatenate([FIDUCIAL, [np.mean(emu.bounds[n]) for n in emu.param_names[len(FIDUCIAL):]]])

    def best_median(call, points) -> float:
        """Best of ``args.repeats`` medians (us) of ``call(p)`` over ``args.calls`` calls cycling ``points``."""
        for k in range(500):
            call(points[k % len(points)])
        medians = []
        for _ in range(args.repeats):
            times = np.empty(args.calls)
            for i in range(args.calls):
                p = points[i % len(points)]
                start = time.perf_counter()
                call(p)
                times[i] = time.perf_counter() - start
            medians.append(float(np.median(times)) * 1e6)
        return medians

    medians = best_median(emu.predict, [point])
    # derived n_gal, f_sat of one point (a sampler's step): the same cosmology each call, and a new one
    # each call (weights with a mass-function table interpolate it then)
    derived_same = min(best_median(emu.derived, [point]))
    derived_moving = None  # only weights with inputs after the seven (cosmology, z) have this case
    if len(point) > len(FIDUCIAL):
        moved = [point.copy() for _ in range(7)]
        for k, p in enumerate(moved):
            p[len(FIDUCIAL)] += (k - 3) * 1e-4 * np.ptp(emu.bounds[emu.param_names[len(FIDUCIAL)]])
        derived_moving = round(min(best_median(emu.derived, moved)), 1)
    result = {"label": args.label, "weights": str(emu.folder), "best_median_us": round(min(medians), 1),
              "derived_us": round(derived_same, 1), "derived_new_cosmology_us": derived_moving,
              "medians_us": [round(m, 1) for m in medians], "calls": args.calls,
              "import_seconds": round(import_seconds(), 3),
              "machine": platform.machine(), "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}
    print(f"{args.label}: single point median {result['best_median_us']} us (best of {args.repeats} medians "
          f"of {args.calls} calls; load {result['load_average_1min']:.1f}); derived n_gal, f_sat "
          f"{result['derived_us']} us"
          + (f" ({derived_moving} us when the first input after the seven changes every call)"
             if derived_moving is not None else "")
          + f"; import {result['import_seconds']:.3f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
