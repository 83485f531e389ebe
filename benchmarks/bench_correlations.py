"""Fused ``ia_correlations`` against halotools ``tpcf`` + ``ed_3d`` + ``ee_3d`` on a realistic mock.

Builds a seeded clustered mock (~90k galaxies in a 250 h^-1 Mpc periodic box: Gaussian blobs around
random centres on a uniform background, blob members' major axes partly aligned with the radial
direction from their centre), then times, side by side in this one run, the three halotools calls
and ``iaemu_likelihood.training.correlations.ia_correlations`` with 1 and 2 threads on the 20 bins
``np.logspace(-1, 1.2, 21)``, checks that the results agree and prints the timings and speed ratios.

Usage::

    NUMBA_THREADING_LAYER=workqueue .venv/bin/python benchmarks/bench_correlations.py [--repeat 3]
"""
import argparse
import os
import platform
import sys
import time

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

import numpy as np  # noqa: E402

from iaemu_likelihood.conventions import R_EDGES  # noqa: E402
from iaemu_likelihood.training.correlations import ia_correlations  # noqa: E402

RTOL = 1e-8
LBOX = 250.0
N_GAL = 90_000


def make_mock(seed=0, n_gal=N_GAL, lbox=LBOX, blob_fraction=0.6, n_blobs=3000, sigma=0.8,
              alignment_noise=0.7):
    """Clustered mock: positions (n, 3) in comoving h^-1 Mpc and orientations (n, 3)."""
    rng = np.random.default_rng(seed)
    n_blob_gal = int(blob_fraction * n_gal)
    centres = rng.uniform(0, lbox, size=(n_blobs, 3))
    host = rng.integers(0, n_blobs, size=n_blob_gal)
    offset = rng.normal(0.0, sigma, size=(n_blob_gal, 3))
    blob_pos = (centres[host] + offset) % lbox
    radial = offset / np.linalg.norm(offset, axis=1)[:, None]
    blob_ori = radial + alignment_noise * rng.normal(size=(n_blob_gal, 3))
    field_pos = rng.uniform(0, lbox, size=(n_gal - n_blob_gal, 3))
    field_ori = rng.normal(size=(n_gal - n_blob_gal, 3))
    return np.vstack([blob_pos, field_pos]), np.vstack([blob_ori, field_ori])


def best_time(func, repeat):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timings per case (best is kept)")
    parser.add_argument("--halotools-repeat", type=int, default=1)
    args = parser.parse_args(argv)

    from halotools.mock_observables import tpcf
    from halotools.mock_observables.ia_correlations import ed_3d, ee_3d

    pos, ori = make_mock()
    rbins = np.asarray(R_EDGES)
    write = sys.stdout.write
    write(f"mock: {len(pos)} galaxies, Lbox = {LBOX} h^-1 Mpc, {len(rbins) - 1} bins "
          f"{rbins[0]:.3g}-{rbins[-1]:.4g} h^-1 Mpc; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, NUMBA_THREADING_LAYER={os.environ['NUMBA_THREADING_LAYER']}\n")

    t0 = time.perf_counter()
    ia_correlations(pos[:100], ori[:100], rbins, LBOX)
    write(f"numba warm-up (compile or cache load): {time.perf_counter() - t0:.2f} s\n")

    def halotools_all(nt):
        return (tpcf(pos, rbins, period=LBOX, num_threads=nt),
                ed_3d(pos, ori, pos, rbins, period=LBOX, num_threads=nt),
                ee_3d(pos, ori, pos, ori, rbins, period=LBOX, num_threads=nt))

    timings, results = {}, {}
    for nt in (1, 2):
        timings[f"halotools x3, {nt} thr"], results[f"ht{nt}"] = best_time(
            lambda nt=nt: halotools_all(nt), args.halotools_repeat)
        timings[f"ia_correlations, {nt} thr"], results[f"ia{nt}"] = best_time(
            lambda nt=nt: ia_correlations(pos, ori, rbins, LBOX, num_threads=nt), args.repeat)

    ok = True
    ref = results["ht1"]
    for key in ("ht2", "ia1", "ia2"):
        for name, a, b in zip(("xi", "omega", "eta"), results[key], ref):
            err = np.max(np.abs(a - b) / np.abs(b))
            good = np.allclose(a, b, rtol=RTOL, atol=0.0)
            ok &= good
            write(f"  {key:4s} vs halotools(1 thr) {name:5s}: max rel diff {err:.2e} "
                  f"{'ok' if good else 'FAIL'}\n")
    write(f"  omega range {ref[1].min():.4f}..{ref[1].max():.4f}, "
          f"eta range {ref[2].min():.4f}..{ref[2].max():.4f}, xi[0] = {ref[0][0]:.1f}\n")

    for label, t in timings.items():
        write(f"{label:24s} {t:8.3f} s\n")
    for nt in (1, 2):
        write(f"speed ratio, {nt} thread(s): halotools / ia_correlations = "
              f"{timings[f'halotools x3, {nt} thr'] / timings[f'ia_correlations, {nt} thr']:.1f}x\n")
    best_halotools = min(timings['halotools x3, 1 thr'], timings['halotools x3, 2 thr'])
    best_ia = min(timings['ia_correlations, 1 thr'], timings['ia_correlations, 2 thr'])
    write(f"best vs best: {best_halotools / best_ia:.1f}x\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
