#!/usr/bin/env python
"""Cobaya benchmark: wall time of ``cobaya-run yamls/ia_hod.yaml`` to convergence, and the cost of
one posterior evaluation split into emulator, likelihood and Cobaya overhead.

* per evaluation (``model.logposterior(point, cached=False)`` at random points of the training
  range): ``emulator`` is the theory's ``calculate`` (emulator mean, covariance terms and derived
  parameters), ``likelihood`` the Gaussian log-likelihood given those products, ``overhead`` the
  rest (Cobaya's parameter handling, prior, caching);
* ``cobaya-run``: the installed script on the yaml (weights / data overridden if asked), timed
  from start to exit; the ``.progress`` file gives the final R-1, accepted steps and acceptance
  rate (evaluations ~ accepted / acceptance rate).

* ``--compare PATH``: the same per-evaluation timing of another checkout of the repository (e.g.
  ``git worktree add /tmp/prev <commit>``), side by side in one run: two worker processes, one per
  checkout, are asked for a round of timings in turn (``--rounds``), so machine load hits both
  alike; the medians over rounds and their ratio are printed (and saved with ``--json``).
* ``--floor``: Cobaya's own floor, the same sampler and settings on a trivial likelihood (a
  Gaussian in the sampled parameters with the yaml's proposal covariance), timed like the demo.

Real weights: ``python benchmarks/bench_cobaya.py`` (needs shipped weights and the example data).
Before they exist: ``python benchmarks/bench_cobaya.py --synthetic`` uses synthetic test weights
and a synthetic measurement (timings are representative only if the network size matches).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from iaemu_likelihood.conventions import PARAM_NAMES, STATISTICS

REPO = Path(__file__).resolve().parents[1]
THEORY = "iaemu_likelihood.IAEmuTheory"
LIKE = "iaemu_likelihood.IAEmuLikelihood"
_MARK = "@@bench "
FIDUCIAL = dict(zip(PARAM_NAMES, (0.8, 0.5, 12.02, 0.26, 11.38, 13.31, 1.06)))


def synthetic_inputs(folder: Path):
    """Synthetic weights and one synthetic measurement at the example fiducial point."""
    from iaemu_likelihood.data import save_measurement
    from iaemu_likelihood.emulator import IAEmulator
    from iaemu_likelihood.testing import write_synthetic_weights

    weights = write_synthetic_weights(folder / "weights")
    emu = IAEmulator.load(weights)
    mean = emu.predict(FIDUCIAL).vector()
    cov = emu.covariance(FIDUCIAL, ["aleatoric"])
    data = np.random.default_rng(1).multivariate_normal(mean, cov)
    path = save_measurement(folder / "measurement.npz", emu.r,
                            {s: data[20 * i:20 * (i + 1)] for i, s in enumerate(STATISTICS)}, cov,
                            {"truth": FIDUCIAL, "synthetic": True})
    return weights, path


def _best(fn, repeat):
    """Median time of ``fn`` over ``repeat`` calls, seconds."""
    times = np.empty(repeat)
    for k in range(repeat):
        t = time.perf_counter()
        fn()
        times[k] = time.perf_counter() - t
    return float(np.median(times))


def time_evaluations(info, n_points, repeat, seed=0, model=None):
    """Median seconds per evaluation: total, emulator (theory), likelihood, at ``n_points`` random
    points (``seed``) of the prior's central region."""
    from cobaya.model import get_model

    if model is None:
        model = get_model({k: v for k, v in info.items() if k in ("theory", "likelihood", "params")})
    theory, like = model.theory[THEORY], model.likelihood[LIKE]
    rng = np.random.default_rng(seed)
    bounds = model.prior.bounds()
    names = list(model.parameterization.sampled_params())
    fixed = model.parameterization.constant_params()
    totals, emus, likes = [], [], []
    for _ in range(100 * n_points):  # points outside the support band are drawn again
        if len(totals) == n_points:
            break
        sampled = dict(zip(names, bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * rng.uniform(0.3, 0.7, len(names))))
        full = {**fixed, **sampled}
        if not np.isfinite(model.logposterior(sampled).logpost):
            continue
        theta = {p: full[p] for p in PARAM_NAMES}
        # default arguments bind this point now (_best calls the lambda before the loop moves on anyway)
        totals.append(_best(lambda s=sampled: model.logposterior(s, cached=False), repeat))
        emus.append(_best(lambda t=theta: theory.calculate({"derived": {}}, True, **t), repeat))
        likes.append(_best(lambda: like.logp(), repeat))  # the provider holds this point's products
    return float(np.median(totals)), float(np.median(emus)), float(np.median(likes))


def _worker(info_path: str, n_points: int, repeat: int) -> int:
    """Worker of ``--compare``: load the model once, then one timing round per input line."""
    info = json.loads(Path(info_path).read_text())
    import iaemu_likelihood

    from cobaya.model import get_model

    model = get_model({k: v for k, v in info.items() if k in ("theory", "likelihood", "params")})
    print(_MARK + json.dumps({"package": str(Path(iaemu_likelihood.__file__).parent)}), flush=True)
    for line in sys.stdin:
        print(_MARK + json.dumps(time_evaluations(info, n_points, repeat, int(line), model)), flush=True)
    return 0


def _reply(proc):
    """The next result line of a worker (its other output, e.g. Cobaya's log, is skipped)."""
    for line in proc.stdout:
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise RuntimeError("a --compare worker stopped without answering (see its output above)")


def compare(info, other: Path, rounds: int, n_points: int, repeat: int, workdir: Path) -> dict:
    """Per-evaluation medians of this checkout and ``other``, timed in alternating rounds."""
    info_path = workdir / "compare_info.json"
    info_path.write_text(json.dumps(info))
    workers = {}
    for label, root in (("this", REPO), ("previous", Path(other).resolve())):
        env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(info_path),
                                 "--points", str(n_points), "--repeat", str(repeat)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                cwd=workdir)
        workers[label] = (proc, _reply(proc)["package"])
    results = {label: [] for label in workers}
    try:
        for k in range(rounds):
            order = list(workers) if k % 2 == 0 else list(workers)[::-1]  # alternate who goes first
            for label in order:
                proc = workers[label][0]
                proc.stdin.write(f"{k}\n")  # round k: the same points for both
                proc.stdin.flush()
                results[label].append(_reply(proc))
    finally:
        for proc, _ in workers.values():
            proc.stdin.close()
            proc.wait()
    out = {}
    for label, rows in results.items():
        arr = np.array(rows)  # rounds x (total, emulator, likelihood)
        out[label] = {"package": workers[label][1], "total_us": 1e6 * float(np.median(arr[:, 0])),
                      "emulator_us": 1e6 * float(np.median(arr[:, 1])),
                      "likelihood_us": 1e6 * float(np.median(arr[:, 2])), "rounds": len(rows)}
    this, prev = np.array(results["this"]), np.array(results["previous"])
    # paired by round (same points, adjacent in time): robust to the load drifting
    out["paired_ratio_median"] = float(np.median((this[:, 1] + this[:, 2]) / (prev[:, 1] + prev[:, 2])))
    return out


def floor_info(info):
    """The yaml's sampler and priors on a trivial Gaussian likelihood (Cobaya's own floor)."""
    mcmc = info["sampler"]["mcmc"]
    names = list(mcmc.get("covmat_params") or PARAM_NAMES)
    cov = np.asarray(mcmc["covmat"], dtype=float)
    inv = np.linalg.inv(cov)
    params = {}
    for name in names:
        block = dict(info.get("params", {}).get(name) or {})
        if "prior" not in block:  # the theory's default prior: read from its yaml defaults
            from iaemu_likelihood.cobaya_theory import IAEmuTheory

            block = dict(IAEmuTheory.get_defaults()["params"][name])
        params[name] = {k: block[k] for k in ("prior", "ref", "proposal") if k in block}
    centre = np.array([params[n]["ref"]["loc"] if isinstance(params[n].get("ref"), dict)
                       else 0.5 * sum(params[n]["prior"].values()) for n in names])

    from cobaya.likelihood import Likelihood

    class Trivial(Likelihood):
        """A Gaussian in the sampled parameters: no emulator, nothing to compute."""

        def get_can_support_params(self):
            return names

        def logp(self, **values):
            d = np.array([values[n] for n in names]) - centre
            return -0.5 * float(d @ inv @ d)

    return {"params": params, "likelihood": {"trivial": {"external": Trivial}},
            "sampler": info["sampler"]}


def run_floor(info, workdir):
    """Wall seconds of ``cobaya.run`` of :func:`floor_info` in this process, and its progress."""
    from cobaya.run import run

    out = workdir / "floor" / "trivial"
    t = time.perf_counter()
    run(dict(floor_info(info), output=str(out), force=True))
    wall = time.perf_counter() - t
    rows = [line.split() for line in (workdir / "floor" / "trivial.progress").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    n, _, acc, rm1, rm1cl = rows[-1][:5]
    return wall, int(float(n)), float(acc), float(rm1), float(rm1cl)


def run_to_convergence(info, workdir):
    """Wall seconds of the installed cobaya-run and the last line of the .progress file."""
    path = workdir / "bench.yaml"
    info = dict(info, output=str(workdir / "chains" / "ia_hod"), force=True)
    path.write_text(yaml.safe_dump(info, sort_keys=False))
    script = Path(sys.executable).with_name("cobaya-run")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t = time.perf_counter()
    proc = subprocess.run([str(script), str(path)], cwd=workdir, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    rows = [line.split() for line in (workdir / "chains" / "ia_hod.progress").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    n, _, acc, rm1, rm1cl = rows[-1][:5]
    return wall, int(float(n)), float(acc), float(rm1), float(rm1cl)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yaml", default=str(REPO / "yamls" / "ia_hod.yaml"))
    parser.add_argument("--weights", default=None, help="override the yaml's weights")
    parser.add_argument("--data-file", default=None, help="override the yaml's data_file")
    parser.add_argument("--synthetic", action="store_true",
                        help="synthetic test weights and data (before real weights exist)")
    parser.add_argument("--points", type=int, default=20, help="points for the per-evaluation timing")
    parser.add_argument("--repeat", type=int, default=50, help="calls per point (median)")
    parser.add_argument("--skip-run", action="store_true", help="only the per-evaluation timing")
    parser.add_argument("--compare", default=None, metavar="PATH",
                        help="another checkout of the repository to time side by side (interleaved)")
    parser.add_argument("--rounds", type=int, default=40,
                        help="alternating rounds of --compare (each: --points new points)")
    parser.add_argument("--floor", action="store_true",
                        help="also run the sampler on a trivial likelihood (Cobaya's own floor)")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker, args.points, args.repeat)

    workdir = Path(tempfile.mkdtemp(prefix="iaemu_bench_"))
    info = yaml.safe_load(Path(args.yaml).read_text())
    weights, data_file = args.weights, args.data_file
    if args.synthetic:
        weights, data_file = synthetic_inputs(workdir)
    if weights is not None:
        info["theory"][THEORY]["weights"] = str(weights)
    if data_file is not None:
        info["likelihood"][LIKE]["data_file"] = str(data_file)
    covmat = info.get("sampler", {}).get("mcmc", {}).get("covmat")
    if isinstance(covmat, str) and not Path(covmat).is_absolute():
        info["sampler"]["mcmc"]["covmat"] = str((REPO / covmat).resolve())

    label = "SYNTHETIC weights" if args.synthetic else f"weights {weights or 'shipped default'}"
    print(f"Cobaya benchmark ({label}, {os.cpu_count()} CPUs visible, load average "
          f"{os.getloadavg()[0]:.2f})")
    figures = {"load_average": os.getloadavg()[0]}
    if args.compare:
        both = compare(info, Path(args.compare), args.rounds, args.points, args.repeat, workdir)
        figures["compare"] = both
        print(f"side by side, {args.rounds} interleaved rounds (median over rounds of the median per "
              "point), us per posterior evaluation:")
        print(f"  {'':10s} {'total':>9s} {'emulator':>9s} {'likelihood':>10s} {'emu+like':>9s}")
        for name, row in both.items():
            if not isinstance(row, dict):
                continue
            print(f"  {name:10s} {row['total_us']:9.1f} {row['emulator_us']:9.1f} "
                  f"{row['likelihood_us']:10.1f} {row['emulator_us'] + row['likelihood_us']:9.1f}"
                  f"  ({row['package']})")
        ratio = ((both["this"]["emulator_us"] + both["this"]["likelihood_us"])
                 / (both["previous"]["emulator_us"] + both["previous"]["likelihood_us"]))
        figures["emulator_plus_likelihood_ratio"] = ratio
        print(f"  emulator + likelihood: this / previous = {ratio:.3f} (ratio of medians); "
              f"{both['paired_ratio_median']:.3f} (median of the per-round ratios)")
    total, emu, like = time_evaluations(info, args.points, args.repeat)
    figures.update(total_us=1e6 * total, emulator_us=1e6 * emu, likelihood_us=1e6 * like)
    print("time per posterior evaluation (median):")
    print(f"  total     {1e6 * total:8.1f} us")
    print(f"  emulator  {1e6 * emu:8.1f} us  (theory calculate: mean, covariance terms, n_gal, f_sat)")
    print(f"  likelihood{1e6 * like:8.1f} us  (selection, Cholesky, chi2 + log det)")
    print(f"  overhead  {1e6 * max(total - emu - like, 0.0):8.1f} us  (Cobaya: parameters, prior, caching)")
    if not args.skip_run:
        wall, n, acc, rm1, rm1cl = run_to_convergence(info, workdir)
        figures["demo"] = {"wall_s": wall, "accepted": n, "acceptance": acc, "Rminus1": rm1}
        print(f"cobaya-run {Path(args.yaml).name}: {wall:.1f} s wall to R-1 = {rm1:.4f} "
              f"(bounds {rm1cl:.3f}); {n} accepted steps, acceptance {acc:.3f}, "
              f"~{n / max(acc, 1e-9):.0f} evaluations, {1e6 * wall * acc / max(n, 1):.0f} us per evaluation "
              "in the sampler loop")
    if args.floor:
        wall, n, acc, rm1, rm1cl = run_floor(info, workdir)
        figures["floor"] = {"wall_s": wall, "accepted": n, "acceptance": acc, "Rminus1": rm1}
        print(f"Cobaya's floor (same sampler, trivial Gaussian likelihood): {wall:.1f} s wall to "
              f"R-1 = {rm1:.4f}; {n} accepted steps, acceptance {acc:.3f}, "
              f"{1e6 * wall * acc / max(n, 1):.0f} us per evaluation in the sampler loop")
    if args.json:
        from iaemu_likelihood._io import atomic_write_bytes

        atomic_write_bytes(Path(args.json), (json.dumps(figures, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
