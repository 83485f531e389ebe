#!/usr/bin/env python
"""Samplers side by side on yamls/ia_hod.yaml: cobaya-run (mcmc), iaemu sample NUTS and ensemble.

One run times all three on the same yaml (shipped weights, bundled example data) and writes
``benchmarks/results/samplers.json``. Per sampler:

* ``wall_seconds``: from start to its stopping rule, set-up included -- ``cobaya-run`` as a
  process (R-1 < 0.01, the yaml's sampler block); NUTS and the ensemble in this process from
  reading the yaml (Cobaya builds the model) to ESS >= ``--min-ess`` for every parameter
  (``setup_seconds`` of it is reading the yaml and building the model). For NUTS and the
  ensemble also ``compile_seconds`` (JAX tracing and compilation or retrieval from the
  persistent cache, inside the wall time), ``wall_seconds_without_compile``, ``cpu_seconds``
  (CPU time of this process and of NUTS's worker processes: on a shared machine the wall time
  also counts other jobs' turns),
  ``timings`` per stage (start, warm-up, sampling) and, in ``settings``, the evaluation counts
  (``evaluations_per_ess``, ``gradient_evaluations_per_ess``, ``warmup_gradient_evaluations``);
* ``min_ess`` and ``ess_per_second`` (``min_ess / wall_seconds``): Cobaya's ESS is GetDist's
  ``getEffectiveSamples`` of the chain after the burn-in, NUTS' NumPyro's multi-chain ESS, the
  ensemble's ``walkers x kept steps / tau`` (emcee's integrated autocorrelation time);
* ``max_mean_shift_sigma``: the largest ``|mean - mean_cobaya| / sigma_cobaya`` over the seven
  parameters, and ``max_width_ratio_dev`` the largest ``|w / w_cobaya - 1|`` of the equal-tailed
  68% interval widths (Cobaya's chain after dropping the first ``--burn-in`` of its rows).

Also the gradient: one log-posterior plus its gradient (JAX, compiled, single point) against one
``model.logposterior`` of Cobaya (median over points inside the support); and the cost per point
of one batch of 16 log-posteriors (the ensemble's call) with the numpy path and the compiled JAX
path. NUTS and the JAX ensemble compile their programs unless JAX's persistent compilation cache
(:mod:`iaemu_likelihood.sampling.compile_cache`) already holds them: ``machine.jax_cache`` says
how many entries it held before the run (0: every compilation is inside the wall times). The
machine's load averages (1, 5, 15 min) before and after are recorded: the 2-core machine is shared.

Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/bench_samplers.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "samplers.json"


def run_cobaya(yaml_path: Path, workdir: Path):
    """Wall seconds of the installed cobaya-run on the yaml, and its output prefix."""
    info = yaml.safe_load(yaml_path.read_text())
    mcmc = (info.get("sampler") or {}).get("mcmc") or {}
    if isinstance(mcmc.get("covmat"), str) and not Path(mcmc["covmat"]).is_absolute():
        mcmc["covmat"] = str((REPO / mcmc["covmat"]).resolve())
    prefix = workdir / "cobaya" / "ia_hod"
    info.update(output=str(prefix), force=True)
    path = workdir / "cobaya.yaml"
    path.write_text(yaml.safe_dump(info, sort_keys=False))
    script = Path(sys.executable).with_name("cobaya-run")
    t = time.perf_counter()
    proc = subprocess.run([str(script), str(path)], cwd=workdir, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    return wall, prefix


def cobaya_reference(prefix, names, burn_in):
    """Weighted samples of the Cobaya chain after the burn-in, and GetDist's ESS per parameter."""
    from iaemu_likelihood.plotting import load_chains

    samples = load_chains([str(prefix)], burn_in=burn_in)[0]
    index = [samples.index[n] for n in names]
    ess = {n: float(samples.getEffectiveSamples(i)) for n, i in zip(names, index)}
    return samples.samples[:, index], samples.weights, ess


def summary(values, weights=None):
    """Mean, standard deviation and equal-tailed 68% width per column."""
    w = np.ones(len(values)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    mean = w @ values
    sd = np.sqrt(w @ (values - mean) ** 2)
    widths = []
    for k in range(values.shape[1]):
        order = np.argsort(values[:, k])
        cdf = np.cumsum(w[order])
        lo, hi = np.interp([0.16, 0.84], cdf, values[order, k])
        widths.append(hi - lo)
    return mean, sd, np.array(widths)


def compare(samples, reference):
    mean, _, width = summary(samples)
    ref_mean, ref_sd, ref_width = reference
    shift = np.abs(mean - ref_mean) / ref_sd
    dev = np.abs(width / ref_width - 1.0)
    return float(shift.max()), float(dev.max()), shift, dev


def time_gradient(posterior, model, n_points=20, repeat=200):
    """Median seconds of one JAX log-posterior + gradient and of one Cobaya logposterior."""
    from cobaya.model import get_model

    from iaemu_likelihood.sampling.jax_model import jax

    j, jnp = jax()
    grad = j.jit(j.value_and_grad(model.log_density))
    cobaya_model = get_model({k: posterior.info[k] for k in ("theory", "likelihood", "params")
                              if k in posterior.info})
    rng = np.random.default_rng(0)
    z = rng.normal(0, 0.5, (n_points, posterior.dim))
    theta = posterior.support.to_theta(z)
    j.block_until_ready(grad(jnp.asarray(z[0])))  # compile
    t_grad, t_cobaya = [], []
    for zi, ti in zip(z, theta):
        zi = jnp.asarray(zi)
        t = time.perf_counter()
        for _ in range(repeat):
            out = grad(zi)
        j.block_until_ready(out)
        t_grad.append((time.perf_counter() - t) / repeat)
        point = dict(zip(posterior.names, ti))
        t = time.perf_counter()
        for _ in range(repeat):
            cobaya_model.logposterior(point, cached=False)
        t_cobaya.append((time.perf_counter() - t) / repeat)
    return float(np.median(t_grad)), float(np.median(t_cobaya))


def time_batches(posterior, batch=16, repeat=20):
    """Median seconds per point of one batch: numpy ``logpost_batch`` and the compiled JAX one."""
    from iaemu_likelihood.sampling.jax_model import BatchLogPosterior

    rng = np.random.default_rng(1)
    theta = posterior.support.to_theta(rng.normal(0, 0.5, (batch, posterior.dim)))
    jax_batch = BatchLogPosterior(posterior, batch)
    jax_batch(theta)  # compile
    times = {"numpy": [], "jax": []}
    for _ in range(5):
        for name, f in (("numpy", posterior.logpost_batch), ("jax", jax_batch)):
            t = time.perf_counter()
            for _ in range(repeat):
                f(theta)
            times[name].append((time.perf_counter() - t) / (repeat * batch))
    return {k: float(np.median(v)) for k, v in times.items()}


def _cache_entries():
    from iaemu_likelihood.sampling.compile_cache import cache_folder

    folder = cache_folder()
    if folder is None or not folder.is_dir():
        return str(folder), 0
    return str(folder), sum(1 for p in folder.iterdir() if p.name.endswith("-cache"))


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (NUTS's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yaml", default=str(REPO / "yamls" / "ia_hod.yaml"))
    parser.add_argument("--min-ess", type=float, default=1000.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--burn-in", type=float, default=0.3,
                        help="fraction of the Cobaya chain dropped (as iaemu plot)")
    parser.add_argument("--json", default=str(RESULT))
    parser.add_argument("--nuts-processes", type=int, default=None,
                        help="processes sharing the NUTS chains (default: iaemu sample's, one per "
                             "available core)")
    parser.add_argument("--skip-cobaya-run", default=None, metavar="PREFIX",
                        help="use an existing Cobaya chain of the yaml instead of running it")
    args = parser.parse_args(argv)

    from iaemu_likelihood._io import atomic_write_bytes
    from iaemu_likelihood.sampling.chain_workers import spawn_for
    from iaemu_likelihood.sampling.defaults import DEFAULT_CHAINS
    from iaemu_likelihood.sampling.ensemble import run_ensemble
    from iaemu_likelihood.sampling.jax_model import UnconstrainedModel
    from iaemu_likelihood.sampling.nuts import run_nuts
    from iaemu_likelihood.sampling.posterior import load_posterior

    yaml_path = Path(args.yaml).resolve()
    os.chdir(REPO)  # the yaml's relative paths (covmat, output) are relative to the repository
    load = os.getloadavg()
    cache_dir, cache_entries = _cache_entries()
    results = {}
    workdir = Path(tempfile.mkdtemp(prefix="iaemu_bench_samplers_"))
    if args.skip_cobaya_run:
        cobaya_wall, prefix = None, Path(args.skip_cobaya_run)
    else:
        cobaya_wall, prefix = run_cobaya(yaml_path, workdir)
    print(f"cobaya-run: {cobaya_wall} s", flush=True)

    runs = {}
    for name in ("nuts", "ensemble"):
        load_before = os.getloadavg()
        t0, cpu0 = time.perf_counter(), _cpu_seconds()
        # as iaemu sample: NUTS's worker processes start before the posterior is built
        spawned = spawn_for(DEFAULT_CHAINS, args.nuts_processes) if name == "nuts" else []
        posterior = load_posterior(yaml_path)
        setup = time.perf_counter() - t0
        if name == "nuts":
            result = run_nuts(posterior, seed=args.seed, min_ess=args.min_ess, progress=False,
                              processes=args.nuts_processes, spawned=spawned)
        else:
            result = run_ensemble(posterior, seed=args.seed, min_ess=args.min_ess, progress=False)
        cpu = _cpu_seconds() - cpu0
        runs[name] = (posterior, result, setup, cpu, load_before)
        print(f"{name}: {setup + result.wall_seconds:.1f} s ({cpu:.1f} CPU s), min ESS "
              f"{result.min_ess:.0f}", flush=True)

    posterior = runs["nuts"][0]
    names = list(posterior.names)
    ref_values, ref_weights, ref_ess = cobaya_reference(prefix, names, args.burn_in)
    reference = summary(ref_values, ref_weights)
    if cobaya_wall is not None:
        results["cobaya"] = {"wall_seconds": round(cobaya_wall, 2),
                             "min_ess": round(min(ref_ess.values()), 1),
                             "ess_per_second": round(min(ref_ess.values()) / cobaya_wall, 2),
                             "ess": {k: round(v, 1) for k, v in ref_ess.items()},
                             "stopping_rule": "R-1 < 0.01 (yaml)", "burn_in_dropped": args.burn_in,
                             "max_mean_shift_sigma": 0.0, "max_width_ratio_dev": 0.0}
    for name, (_post, result, setup, cpu, load_before) in runs.items():
        samples = np.concatenate(result.chains)
        shift, dev, shifts, devs = compare(samples, reference)
        wall = setup + result.wall_seconds
        compile_s = result.timings.get("compile", 0.0)
        results[name] = {
            "wall_seconds": round(wall, 2), "setup_seconds": round(setup, 2),
            "sampler_seconds": round(result.wall_seconds, 2),
            "compile_seconds": round(compile_s, 2),
            "wall_seconds_without_compile": round(wall - compile_s, 2),
            "cpu_seconds": round(cpu, 2),
            "load_average_at_start": [round(v, 2) for v in load_before],
            "timings": {k: round(v, 2) for k, v in result.timings.items()},
            "min_ess": round(result.min_ess, 1), "ess_per_second": round(result.min_ess / wall, 2),
            "ess": {k: round(v, 1) for k, v in result.ess.items()},
            "rhat": {k: round(v, 5) for k, v in result.rhat.items()},
            "stopping_rule": f"ESS >= {args.min_ess:g} for every parameter",
            "max_mean_shift_sigma": round(shift, 4), "max_width_ratio_dev": round(dev, 4),
            "mean_shift_sigma": dict(zip(names, np.round(shifts, 4).tolist())),
            "width_ratio_dev": dict(zip(names, np.round(devs, 4).tolist())),
            "settings": result.info}
    model = UnconstrainedModel(posterior)
    t_grad, t_cobaya = time_gradient(posterior, model)
    results["gradient"] = {"jax_logpost_and_grad_us": round(1e6 * t_grad, 1),
                           "cobaya_logposterior_us": round(1e6 * t_cobaya, 1),
                           "ratio": round(t_grad / t_cobaya, 3)}
    batch = time_batches(posterior)
    results["batch_of_16"] = {"numpy_us_per_point": round(1e6 * batch["numpy"], 1),
                              "jax_us_per_point": round(1e6 * batch["jax"], 1)}
    results["machine"] = {"cpus": os.cpu_count(),
                          "load_average_at_start": [round(v, 2) for v in load],
                          "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
                          "jax_cache": {"folder": cache_dir, "entries_before": cache_entries},
                          "python": platform.python_version(), "yaml": str(yaml_path.relative_to(REPO))
                          if yaml_path.is_relative_to(REPO) else str(yaml_path)}
    text = json.dumps(results, indent=2)
    print(text)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, (text + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
