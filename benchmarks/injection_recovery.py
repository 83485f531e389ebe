#!/usr/bin/env python
"""Injection-recovery test of the Cobaya pipeline: do the posteriors cover the truth as often as
they claim?

For each of ``--n-mocks`` held-out test points (drawn at random, with ``--seed``, from the test
set's points inside the weights' training range) the script

1. takes ONE mock realization of xi, omega, eta as the data vector;
2. gives it the matching covariance ``D R D``: ``D`` the per-bin standard deviation of that point's
   OTHER realizations (ddof = 1), ``R`` the weights' pooled residual correlation (a 60 x 60
   covariance cannot be estimated from ~10 realizations); ``--covariance emulator`` uses the
   emulator's aleatoric covariance at the true point instead;
3. fits all seven parameters -- and, for weights with cosmology and redshift inputs (emulator v2),
   also ``omegam`` and ``sigma8`` (Cobaya's names), with the redshift option set to the point's z --
   with :class:`IAEmuTheory` + :class:`IAEmuLikelihood` (emulator covariance terms
   ``--emulator-covariance``, default epistemic), as ``yamls/ia_hod.yaml``: by Cobaya's MCMC
   (``--sampler cobaya``, default) or by ``iaemu sample``'s ensemble on the same yaml content
   (``--sampler ensemble``: ESS >= ``--min-ess`` per parameter, seconds per fit), starting near the
   truth (``--start truth``, default): one realization of a 250 h^-1 Mpc box constrains the HOD
   tightly and its posterior can have distant secondary modes along HOD degeneracies, in which a
   chain started at the prior centre may stick (seen: acceptance 1%, R-1 ~ 50); the question here
   is whether the posterior's intervals are honest, not whether a local sampler finds the global
   mode;
4. records whether the truth lies in the equal-tailed 68% and 95% credible intervals.

It prints, per parameter, the fraction of mocks whose truth is covered (expect ~0.68 and ~0.95 with
binomial errors ``sqrt(p (1 - p) / n)``) and can write everything to JSON.

Real run (needs the held-out test set of the mock pipeline and trained weights)::

    python benchmarks/injection_recovery.py --test-set training/data/test.npz --n-mocks 20

Smoke test without real data: ``--synthetic`` draws the "test set" from the emulator itself
(realizations ~ N(emulator mean, emulator aleatoric covariance)), so coverage must be nominal::

    python benchmarks/injection_recovery.py --synthetic --weights /path/to/synthetic/weights \\
        --n-mocks 3 --max-samples 3000
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from iaemu_likelihood._io import atomic_write_bytes
from iaemu_likelihood.conventions import PARAM_NAMES, STATISTICS

log = logging.getLogger("injection_recovery")
REPO = Path(__file__).resolve().parents[1]
LEVELS = (0.68, 0.95)
BURN_IN = 0.3
#: scatter of the chains' starting points about the truth, in units of each parameter's range
START_SCATTER = 0.01


def fitted_parameters(emulator):
    """``[(Cobaya parameter, emulator input), ...]`` a fit samples: the seven HOD + alignment
    parameters, then the cosmology inputs the weights take (``omegam`` for ``Omega_m``...). A z
    input is not fitted: it is the theory's ``redshift`` option, set to the point's z."""
    from iaemu_likelihood.cosmology_inputs import COBAYA_PARAMETERS

    return [(p, p) for p in PARAM_NAMES] + [(COBAYA_PARAMETERS[n], n) for n in emulator.param_names
                                            if n in COBAYA_PARAMETERS]


def load_test_points(path, emulator):
    """(inputs (n, n_inputs) in the weights' input order, vectors (n, n_real, 60), boxes) of a
    held-out dataset (dataset_io format; cosmology and z from its per-point provenance); ``boxes``:
    the suite box of every point (``point_inputs``), None for a one-catalog test set."""
    from iaemu_likelihood.training.dataset_io import load_dataset

    ds = load_dataset(path)
    vectors = np.concatenate([ds.stat(s) for s in STATISTICS], axis=-1)
    boxes = (ds.provenance.get("point_inputs") or {}).get("box")
    if boxes is not None:
        boxes = [str(b) for b in boxes] if len(boxes) == ds.n_points else None
    return ds.inputs(emulator.param_names), vectors, boxes


def synthetic_test_points(emulator, n_points, n_real, seed):
    """A stand-in test set drawn from the emulator itself (central 80% of the training box,
    inside the training support)."""
    rng = np.random.default_rng(seed)
    names = emulator.param_names
    lo = np.array([emulator.bounds[p][0] for p in names])
    hi = np.array([emulator.bounds[p][1] for p in names])
    params = np.empty((0, len(names)))
    while len(params) < n_points:  # inside the training support (a band, not the whole box)
        draw = lo + (hi - lo) * rng.uniform(0.1, 0.9, size=(50 * n_points, len(names)))
        params = np.vstack([params, draw[emulator.in_support(draw)]])
    params = params[:n_points]
    vectors = np.empty((n_points, n_real, 60))
    for i, theta in enumerate(params):
        mean = emulator.predict(theta).vector()
        cov = emulator.covariance(theta, ["aleatoric"])
        vectors[i] = rng.multivariate_normal(mean, cov, size=n_real)
    return params, vectors


def mock_data(emulator, theta, realizations, mode):
    """Data vector (60,) and its covariance (60, 60) for one mock."""
    data = realizations[0]
    if mode == "emulator":
        return data, emulator.covariance(theta, ["aleatoric"])
    others = realizations[1:]
    if len(others) < 2:
        raise ValueError("need >= 3 realizations per point for the realization covariance")
    sd = others.std(axis=0, ddof=1)
    return data, sd[:, None] * emulator.residual_correlation * sd[None, :]


def weighted_interval(x, w, level):
    """Equal-tailed credible interval of weighted samples."""
    order = np.argsort(x)
    x, w = x[order], w[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    tail = 0.5 * (1.0 - level)
    return float(np.interp(tail, cdf, x)), float(np.interp(1.0 - tail, cdf, x))


def interior(emulator, params, margin):
    """Points at least ``margin`` (a fraction of the allowed range) inside every edge of the
    training prior: the box for mu_cen, mu_sat, logMmin and, where the weights record one, the
    band of the other HOD parameters around their lines in logMmin."""
    params = np.atleast_2d(params)
    low = np.array([emulator.bounds[p][0] for p in emulator.param_names])
    high = np.array([emulator.bounds[p][1] for p in emulator.param_names])
    pos = (params - low) / (high - low)
    if emulator._band is not None:
        pivot, dep, slope, lo_int, hi_int, floor = emulator._band
        x = params[:, pivot:pivot + 1]
        lo = np.maximum(lo_int + slope * x, floor)
        pos[:, dep] = (params[:, dep] - lo) / (hi_int + slope * x - lo)
    return np.all((pos >= margin) & (pos <= 1.0 - margin), axis=1)


def start_params(truth, bounds, pairs, fraction=START_SCATTER):
    """Cobaya ``params`` starting the chain near the truth: prior = the weights' box (the theory
    rejects points outside the training band), ref = normal about the truth with a scatter of
    ``fraction`` of the range. ``pairs``: :func:`fitted_parameters`."""
    from iaemu_likelihood.cobaya_theory import IAEmuTheory
    from iaemu_likelihood.cosmology_inputs import COSMOLOGY_INPUTS

    defaults = IAEmuTheory.get_defaults()["params"]
    latex = {i.name: i.latex for i in COSMOLOGY_INPUTS}
    params = {}
    for p, name in pairs:
        lo, hi = bounds[name]
        params[p] = {"prior": {"min": lo, "max": hi},
                     "ref": {"dist": "norm", "loc": truth[p], "scale": fraction * (hi - lo)},
                     "proposal": defaults[p]["proposal"] if p in defaults else 0.02 * (hi - lo),
                     "latex": defaults[p]["latex"] if p in defaults else latex[name]}
    return params


def fit(data_file, weights, args, output, truth=None, bounds=None, pairs=None, redshift=None):
    """Fit one mock; returns (samples dict, weights, converged flag). ``redshift``: the theory's
    option (weights with a z input)."""
    theory = {"weights": None if weights is None else str(weights)}
    if redshift is not None:
        theory["redshift"] = float(redshift)
    info = {
        "theory": {"iaemu_likelihood.IAEmuTheory": theory},
        "likelihood": {"iaemu_likelihood.IAEmuLikelihood": {
            "data_file": str(data_file), "emulator_covariance": args.emulator_covariance}},
        "output": str(output), "force": True,
    }
    if args.start == "truth":
        info["params"] = start_params(truth, bounds, pairs)
    if args.sampler == "ensemble":
        from iaemu_likelihood.sampling.ensemble import run_ensemble
        from iaemu_likelihood.sampling.posterior import load_posterior

        result = run_ensemble(load_posterior(info), seed=args.seed, min_ess=args.min_ess,
                              progress=False)
        chain = result.chains[0]
        values = {p: chain[:, k] for k, p in enumerate(result.names)}
        return values, np.ones(len(chain)), bool(result.min_ess >= args.min_ess)
    from cobaya.run import run

    info["sampler"] = {"mcmc": {"Rminus1_stop": args.rminus1, "Rminus1_cl_stop": 0.2,
                                "max_samples": args.max_samples, "max_tries": "1000d",
                                "learn_every": "80d", "seed": args.seed,
                                "covmat": str(args.covmat) if args.covmat else None}}
    _, sampler = run(info)
    sample = sampler.products()["sample"]
    n = len(sample)
    keep = slice(int(BURN_IN * n), n)
    w = np.asarray(sample["weight"])[keep]
    values = {p: np.asarray(sample[p])[keep] for p, _ in pairs}
    return values, w, bool(sampler.converged)


def _exit_with_parent():
    """Pool-worker initializer: on Linux, ask the kernel to SIGTERM this worker when the parent
    dies, so killing the script does not leave chains running (a no-op elsewhere)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _fit_one(i, truth, path, args, workdir, redshift=None):
    """Fit one mock and record whether its truth is inside each credible interval."""
    t0 = time.perf_counter()
    from iaemu_likelihood.emulator import IAEmulator

    emulator = IAEmulator.load(args.weights)
    pairs = fitted_parameters(emulator)
    values, w, converged = fit(path, args.weights, args, workdir / f"chain_{i:05d}", truth,
                               emulator.bounds, pairs, redshift)
    inside, posterior = {}, {}
    for p, _ in pairs:
        inside[p] = {}
        for level in LEVELS:
            a, b = weighted_interval(values[p], w, level)
            inside[p][f"{level:.2f}"] = bool(a <= truth[p] <= b)
        mean = float(np.average(values[p], weights=w))
        posterior[p] = {"mean": mean, "sd": float(np.sqrt(np.average((values[p] - mean) ** 2, weights=w)))}
    return {"test_point": i, "truth": truth, "redshift": redshift, "inside": inside, "posterior": posterior,
            "converged": converged, "n_samples": int(len(w)), "seconds": time.perf_counter() - t0}


def posterior_table(records, names):
    """Per parameter: median posterior sd and median (mean - truth) / sd over the mocks."""
    return {p: {"median_sd": float(np.median([r["posterior"][p]["sd"] for r in records])),
                "median_bias_sigma": float(np.median([(r["posterior"][p]["mean"] - r["truth"][p])
                                                      / r["posterior"][p]["sd"] for r in records]))}
            for p in names}


def coverage_table(records, names):
    """Per parameter and level: fraction of mocks whose truth is inside the interval."""
    table = {}
    for p in names:
        table[p] = {f"{level:.2f}": float(np.mean([r["inside"][p][f"{level:.2f}"] for r in records]))
                    for level in LEVELS}
    return table


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--test-set", default=str(REPO / "training" / "data" / "test.npz"),
                   help="held-out dataset (.npz, dataset_io format)")
    p.add_argument("--synthetic", action="store_true",
                   help="draw the test set from the emulator itself (smoke test)")
    p.add_argument("--weights", default=None, help="weights version or folder (default: shipped)")
    p.add_argument("--n-mocks", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--covariance", choices=("realizations", "emulator"), default="realizations")
    p.add_argument("--emulator-covariance", nargs="*", default=["epistemic"])
    p.add_argument("--sampler", choices=("cobaya", "ensemble"), default="cobaya",
                   help="Cobaya's MCMC, or iaemu sample's ensemble on the same model")
    p.add_argument("--min-ess", type=float, default=1000.0,
                   help="ensemble: effective sample size of every parameter")
    p.add_argument("--rminus1", type=float, default=0.02, help="R-1 stopping value of each chain")
    p.add_argument("--max-samples", type=int, default=60000, help="cap on accepted steps per chain")
    p.add_argument("--covmat", default=None, help="initial proposal covmat (e.g. yamls/ia_hod.covmat)")
    p.add_argument("--workdir", default=None, help="keep chains and data files here")
    p.add_argument("--jobs", type=int, default=1, help="chains run in parallel processes")
    p.add_argument("--margin", type=float, default=0.0,
                   help="only test points this fraction of the range inside every prior edge "
                        "(equal-tailed intervals of posteriors cut by a prior edge miss truths there)")
    p.add_argument("--start", choices=("truth", "prior"), default="truth",
                   help="start chains near the truth (default: tests the posterior, not the sampler's "
                        "search among HOD modes) or at the yaml's reference point")
    p.add_argument("--json", default=None, help="write all results to this JSON file")
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    from iaemu_likelihood.data import save_measurement
    from iaemu_likelihood.emulator import IAEmulator

    emulator = IAEmulator.load(args.weights)
    rng = np.random.default_rng(args.seed)
    boxes = None
    if args.synthetic:
        params, vectors = synthetic_test_points(emulator, args.n_mocks, 10, args.seed)
    else:
        if not Path(args.test_set).is_file():
            sys.stderr.write(f"test set {args.test_set} not found: it is made by the mock pipeline "
                             "(iaemu generate training/configs/test.yaml); use --synthetic for a smoke test\n")
            return 1
        params, vectors, boxes = load_test_points(args.test_set, emulator)
    ok = emulator.in_support(params)
    finite = np.isfinite(vectors).all(axis=(1, 2))  # empty small-r bins of sparse samples: no data
    if not finite.all():
        log.info("skipping %d of %d test points with non-finite statistics", int((~finite).sum()), len(finite))
    ok &= finite
    if args.margin > 0:
        ok &= interior(emulator, params, args.margin)
    candidates = np.flatnonzero(ok)
    if candidates.size < args.n_mocks:
        sys.stderr.write(f"only {candidates.size} test points inside the training range; "
                         f"{args.n_mocks} requested\n")
        return 1
    chosen = np.sort(rng.choice(candidates, size=args.n_mocks, replace=False))
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="iaemu_injection_"))
    workdir.mkdir(parents=True, exist_ok=True)
    records = []
    t_start = time.perf_counter()
    tasks = []
    pairs = fitted_parameters(emulator)
    names = [p for p, _ in pairs]
    columns = {name: emulator.param_names.index(name) for name in emulator.param_names}
    for i in chosen:
        theta = params[i]
        data, cov = mock_data(emulator, theta, vectors[i], args.covariance)
        truth = {p: float(theta[columns[name]]) for p, name in pairs}
        redshift = float(theta[columns["z"]]) if "z" in columns else None
        path = save_measurement(workdir / f"mock_{i:05d}.npz", emulator.r,
                                {s: data[20 * j:20 * (j + 1)] for j, s in enumerate(STATISTICS)},
                                cov, {"truth": truth, "test_point": int(i), "redshift": redshift})
        tasks.append((int(i), truth, path, redshift))
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_exit_with_parent)
        futures = [pool.submit(_fit_one, i, truth, path, args, workdir, z) for i, truth, path, z in tasks]
        results = (f.result() for f in futures)
    else:
        pool = None
        results = (_fit_one(i, truth, path, args, workdir, z) for i, truth, path, z in tasks)
    for k, record in enumerate(results):
        if boxes is not None:
            record["box"] = boxes[record["test_point"]]
        records.append(record)
        log.info("mock %d/%d (test point %d): %.0f s, converged=%s, truth in 68%%: %d/%d", k + 1,
                 args.n_mocks, record["test_point"], record["seconds"], record["converged"],
                 sum(v["0.68"] for v in record["inside"].values()), len(names))
    if pool is not None:
        pool.shutdown()
    table = coverage_table(records, names)
    n = len(records)
    lines = [f"Injection-recovery: {n} mocks, weights {emulator.version}, covariance {args.covariance}, "
             f"emulator terms {args.emulator_covariance or 'none'}, sampler {args.sampler}, "
             f"{sum(r['converged'] for r in records)} chains converged, "
             f"{time.perf_counter() - t_start:.0f} s",
             f"{'parameter':<12s} {'68% cover':>10s} {'95% cover':>10s}"]
    for p in names:
        lines.append(f"{p:<12s} {table[p]['0.68']:>10.2f} {table[p]['0.95']:>10.2f}")
    all68 = np.mean([table[p]["0.68"] for p in names])
    all95 = np.mean([table[p]["0.95"] for p in names])
    lines.append(f"{'mean':<12s} {all68:>10.2f} {all95:>10.2f}")
    lines.append(f"expected     0.68 +- {np.sqrt(0.68 * 0.32 / n):.2f}   0.95 +- {np.sqrt(0.95 * 0.05 / n):.2f}"
                 " (binomial, per parameter)")
    widths = posterior_table(records, names)
    lines.append(f"{'parameter':<12s} {'median sd':>10s} {'median (mean-truth)/sd':>24s}")
    lines += [f"{p:<12s} {widths[p]['median_sd']:>10.4g} {widths[p]['median_bias_sigma']:>24.2f}" for p in names]
    by_box = {}
    if boxes is not None:
        for box in sorted({r["box"] for r in records}):
            group = [r for r in records if r["box"] == box]
            cover = coverage_table(group, names)
            by_box[box] = {"n_mocks": len(group), "coverage": cover, "posterior": posterior_table(group, names)}
            lines.append(f"box {box} ({len(group)} mocks): mean 68% / 95% coverage "
                         f"{np.mean([cover[p]['0.68'] for p in names]):.2f} / "
                         f"{np.mean([cover[p]['0.95'] for p in names]):.2f}")
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(
            {"coverage": table, "posterior": widths, "by_box": by_box, "mocks": records,
             "options": vars(args)}, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
