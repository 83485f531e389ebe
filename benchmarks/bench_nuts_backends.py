#!/usr/bin/env python
"""NUTS implementations side by side on yamls/ia_hod.yaml: NumPyro (shipped) vs BlackJAX.

Both sample the same density as ``iaemu sample --sampler nuts``: the potential of
:meth:`UnconstrainedModel.potential_for <iaemu_likelihood.sampling.jax_model.UnconstrainedModel>`
in the sheared unconstrained coordinates, from the same starts and initial inverse mass matrix
(:func:`iaemu_likelihood.sampling.nuts.chain_starts`: pre-run, shear, Laplace draws), with the
same chains, warm-up length, target acceptance (0.7), tree depth (at most 2^8 - 1 leapfrog steps)
and stopping rule (blocks of 100 draws per chain until ESS >= ``--min-ess`` for every parameter),
chains one after another in ONE process (the shipped default shares them among processes; that
would help either library alike):

* ``numpyro``: :func:`~iaemu_likelihood.sampling.nuts.run_nuts` with ``processes=1``, i.e. the
  shipped program (NumPyro's functional NUTS, windowed adaptation of step size and dense mass
  matrix);
* ``blackjax``: BlackJAX's ``window_adaptation`` (dense mass matrix from the same initial inverse
  mass matrix) then ``blackjax.nuts`` steps in a ``lax.scan`` per block, each chain through the
  same compiled programs.

Each backend runs twice per seed in the same process: the first run compiles, the second is
timed (``wall_seconds``: pre-run included, compilation not); ``first_wall_seconds`` keeps the
first. Reported per seed and as means: wall seconds, min ESS, gradients (leapfrog steps, warm-up
included) in all and per effective sample, ESS per second, max R-hat, divergences after the
warm-up. Saved to ``benchmarks/results/nuts_backends.json``.

BlackJAX is not an iaemu dependency: ``pip install blackjax`` first (1.7.1 measured).
Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/bench_nuts_backends.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "nuts_backends.json"
BLOCK = 100
_BLACKJAX_PROGRAMS = {}


def run_numpyro(posterior, model, seed, args):
    from iaemu_likelihood.sampling.nuts import run_nuts

    result = run_nuts(posterior, seed=seed, n_chains=args.chains, n_warmup=args.warmup,
                      min_ess=args.min_ess, max_samples=args.max_samples, progress=False,
                      model=model, processes=1, target_accept=args.target_accept, block=BLOCK)
    info = result.info
    return {"wall_seconds": result.timings["total"], "min_ess": result.min_ess,
            "gradients": info["gradient_evaluations"] + info["warmup_gradient_evaluations"],
            "samples_per_chain": info["samples_per_chain"],
            "max_rhat": max(result.rhat.values()), "divergences": info["divergences"]}


class BlackJAXChains:
    """BlackJAX's window adaptation and NUTS blocks for one chain at a time (compiled once)."""

    def __init__(self, potential, n_warmup: int, target_accept: float, max_depth: int):
        import blackjax

        from iaemu_likelihood.sampling.jax_model import jax

        j, _ = jax()
        self.j = j

        def logdensity(w):
            return -potential(w)

        def adapt(key, w, cov):
            warmup = blackjax.window_adaptation(
                blackjax.nuts, logdensity, is_mass_matrix_diagonal=False,
                initial_inverse_mass_matrix=cov, target_acceptance_rate=target_accept,
                max_num_doublings=max_depth)
            (state, params), info = warmup.run(key, w, num_steps=n_warmup)
            return state, params["step_size"], params["inverse_mass_matrix"], \
                info.info.num_integration_steps.sum()

        def block(key, state, step_size, inverse_mass_matrix):
            kernel = blackjax.nuts(logdensity, step_size=step_size,
                                   inverse_mass_matrix=inverse_mass_matrix,
                                   max_num_doublings=max_depth)

            def one(s, k):
                s, info = kernel.step(k, s)
                return s, (s.position, info.num_integration_steps, info.is_divergent)

            return j.lax.scan(one, state, j.random.split(key, BLOCK))

        self.adapt = j.jit(adapt)
        self.block = j.jit(block)


def run_blackjax(posterior, model, seed, args):
    from iaemu_likelihood.sampling.nuts import MAX_TREE_DEPTH, chain_starts, diagnostics

    t0 = time.perf_counter()
    _, shear, w0, cov = chain_starts(posterior, model, seed, args.chains)
    key = (None if shear is None else shear.coefficients)
    if key not in _BLACKJAX_PROGRAMS:  # compiled once per shear, reused by the timed run
        _BLACKJAX_PROGRAMS[key] = BlackJAXChains(model.potential_for(shear), args.warmup,
                                                 args.target_accept, MAX_TREE_DEPTH)
    chains = _BLACKJAX_PROGRAMS[key]
    j = chains.j
    keys = j.random.split(j.random.PRNGKey(seed), args.chains)
    states, params, gradients = [], [], 0
    for c in range(args.chains):
        k_adapt, k_sample = j.random.split(keys[c])
        state, step, imm, n = chains.adapt(k_adapt, w0[c], cov)
        states.append([state, k_sample])
        params.append((step, imm))
        gradients += int(n)
    draws, divergences = [], 0
    to_z = (lambda w: w) if shear is None else shear.to_z
    while True:
        parts = []
        for c in range(args.chains):
            k_block, states[c][1] = j.random.split(states[c][1])
            states[c][0], (w, n, div) = chains.block(k_block, states[c][0], *params[c])
            parts.append(np.asarray(w))
            gradients += int(np.sum(n))
            divergences += int(np.sum(div))
        draws.append(np.stack(parts))
        theta = posterior.support.to_theta(to_z(np.concatenate(draws, axis=1)))
        ess, rhat = diagnostics(theta, posterior.names)
        if min(ess.values()) >= args.min_ess or theta.shape[1] >= args.max_samples:
            break
    return {"wall_seconds": time.perf_counter() - t0, "min_ess": min(ess.values()),
            "gradients": gradients, "samples_per_chain": int(theta.shape[1]),
            "max_rhat": max(rhat.values()), "divergences": divergences}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yaml", default=str(REPO / "yamls" / "ia_hod.yaml"))
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--min-ess", type=float, default=1000.0)
    parser.add_argument("--max-samples", type=int, default=20000)
    parser.add_argument("--target-accept", type=float, default=0.7)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--backends", nargs="+", default=["numpyro", "blackjax"])
    parser.add_argument("--json", default=str(RESULT))
    args = parser.parse_args(argv)

    from iaemu_likelihood._io import atomic_write_bytes
    from iaemu_likelihood.sampling.jax_model import UnconstrainedModel
    from iaemu_likelihood.sampling.posterior import load_posterior

    posterior = load_posterior(args.yaml)
    runners = {"numpyro": run_numpyro, "blackjax": run_blackjax}
    settings = {k: getattr(args, k) for k in ("chains", "warmup", "min_ess", "target_accept",
                                              "seeds")}
    results = {"settings": {**settings, "block": BLOCK, "processes": 1, "cpus": os.cpu_count(),
                            "load_average_at_start": round(os.getloadavg()[0], 2)}}
    for name in args.backends:
        model = UnconstrainedModel(posterior)  # fresh functions: each backend compiles its own
        runs = []
        for seed in args.seeds:
            t = time.perf_counter()
            runners[name](posterior, model, seed, args)  # compiles (a new seed may retrace)
            first = time.perf_counter() - t
            run = runners[name](posterior, model, seed, args)
            run.update(first_wall_seconds=first, seed=seed,
                       gradients_per_ess=run["gradients"] / run["min_ess"],
                       ess_per_second=run["min_ess"] / run["wall_seconds"])
            runs.append({k: (round(v, 4) if isinstance(v, float) else v) for k, v in run.items()})
            print(name, runs[-1], flush=True)
        mean = {k: round(float(np.mean([r[k] for r in runs])), 3)
                for k in ("wall_seconds", "first_wall_seconds", "min_ess", "gradients",
                          "gradients_per_ess", "ess_per_second", "divergences")}
        results[name] = {"mean": mean, "runs": runs}
    results["settings"]["load_average_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(results, indent=2)
    atomic_write_bytes(Path(args.json), (text + "\n").encode())
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
