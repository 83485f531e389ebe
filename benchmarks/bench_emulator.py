"""Emulator speed: single-point latency and batched throughput, "mlp" ensemble vs "paper" network.

Both architectures are timed in the same run on the same machine. Weights are synthetic (random
features, the sizes given on the command line; predictions cost the same as trained weights of
that size) unless ``--weights`` names a weights version, which is then timed in place of the
synthetic "mlp" ensemble.

Run: ``.venv/bin/python benchmarks/bench_emulator.py [--width 128 --n-hidden 3 --members 4]``.
Single-point latency is the median over many calls of ``IAEmulator.predict`` on a float64 (7,)
array (validation included); throughput is points per second of one ``predict`` call on an (n, 7)
array of valid points (inside the bounds and the training support; best of a few repeats), for
float64 and float32 batch arithmetic and each ``--threads`` count.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.testing import write_synthetic_weights


def single_point_latency(emu, n_calls):
    """Median and 90th percentile of one ``predict`` call, in microseconds."""
    theta = emu.reference_point.copy()
    for _ in range(min(n_calls, 50)):  # warm-up
        emu.predict(theta)
    times = []
    clock = time.perf_counter_ns
    for _ in range(n_calls):
        t0 = clock()
        emu.predict(theta)
        times.append(clock() - t0)
    times.sort()
    return statistics.median(times) / 1e3, times[int(0.9 * len(times))] / 1e3


def valid_points(emu, n, seed=0):
    """n uniform points inside the bounds and, for weights that record one, the training support."""
    low = np.array([b[0] for b in emu.bounds.values()])
    high = np.array([b[1] for b in emu.bounds.values()])
    rng = np.random.default_rng(seed)
    kept = []
    while sum(len(k) for k in kept) < n:
        theta = low + (high - low) * rng.random((max(n, 1000), 7))
        kept.append(theta[emu.in_support(theta)])
    return np.concatenate(kept)[:n]


def throughput(emu, n, repeats):
    """Best points per second of ``predict`` on n valid points."""
    theta = valid_points(emu, n)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        emu.predict(theta)
        best = min(best, time.perf_counter() - t0)
    return n / best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=128, help="mlp hidden width")
    parser.add_argument("--n-hidden", type=int, default=3, help="mlp hidden layers")
    parser.add_argument("--members", type=int, default=4, help="mlp ensemble size")
    parser.add_argument("--weights", default=None, help="time this weights version instead of a "
                        "synthetic mlp ensemble")
    parser.add_argument("--calls", type=int, default=20000, help="single-point calls (mlp)")
    parser.add_argument("--paper-calls", type=int, default=300, help="single-point calls (paper)")
    parser.add_argument("--batch", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--paper-batch", type=int, nargs="+", default=[1_000, 4_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="IAEmulator(threads=...) values to time for mlp batches")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.weights:
            mlp = IAEmulator.load(args.weights)
            label = f"{mlp.architecture} {mlp.version} ({mlp.ensemble_size} members)"
        else:
            folder = write_synthetic_weights(Path(tmp) / "mlp", width=args.width,
                                             n_hidden=args.n_hidden, ensemble_size=args.members,
                                             reference_points=0)
            mlp = IAEmulator.load(folder)
            label = f"mlp {args.members} x ({args.n_hidden} x {args.width})"
        paper = IAEmulator.load(write_synthetic_weights(Path(tmp) / "paper", architecture="paper",
                                                        reference_points=0))
        rows = []
        median, p90 = single_point_latency(mlp, args.calls)
        for precision in ("float64", "float32"):
            for threads in args.threads:
                mlp.batch_precision, mlp.threads = precision, threads
                rates = {n: throughput(mlp, n, args.repeats) for n in args.batch}
                rows.append((f"{label}, batches {precision}, {threads} thr", median, p90, rates))
        median, p90 = single_point_latency(paper, args.paper_calls)
        rates = {n: throughput(paper, n, args.repeats) for n in args.paper_batch}
        rows.append(("paper (1 network, torch float32)", median, p90, rates))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (1 min)")
    for name, median, p90, rates in rows:
        rate_text = ", ".join(f"n={n}: {r:,.0f} points/s" for n, r in rates.items())
        print(f"{name:<58s} single point: median {median:8.1f} us (p90 {p90:.1f}); {rate_text}")
    ratio_single = rows[-1][1] / rows[0][1]
    ratio_batch = max(max(r[3].values()) for r in rows[:-1]) / max(rows[-1][3].values())
    print(f"mlp vs paper: {ratio_single:.0f}x faster per point, {ratio_batch:.0f}x more points/s batched")


if __name__ == "__main__":
    main()
