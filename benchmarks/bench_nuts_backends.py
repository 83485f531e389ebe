#!/usr/bin/env python
"""NUTS implementations side by side on yamls/ia_hod.yaml: NumPyro (shipped) vs BlackJAX.

Both sample the same unconstrained log-density (:class:`UnconstrainedModel`: the JAX mirror of
the emulator, the support map and its Jacobian) from the same starts (draws of the Laplace
approximation at the pre-run's best point), with the same number of chains, warm-up steps
(dense mass matrix, target acceptance 0.8, at most 2^8 - 1 leapfrog steps) and draws, each
compiled once for all chains (NumPyro ``chain_method="vectorized"``; BlackJAX ``window_adaptation``
and a ``lax.scan`` of ``nuts`` steps under ``vmap``). NumPyro starts its adaptation from the
Laplace covariance (as ``iaemu sample`` does); BlackJAX's ``window_adaptation`` starts from the
identity. Printed and saved to ``benchmarks/results/nuts_backends.json``: wall seconds (compilation
included), min ESS over the parameters, ESS per second, leapfrog steps per draw, max R-hat.

BlackJAX is not an iaemu dependency: ``pip install blackjax`` first.
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


def run_numpyro(model, z0, cov, n_warmup, n_samples, seed):
    from numpyro.infer import MCMC, NUTS

    from iaemu_likelihood.sampling.jax_model import jax

    j, jnp = jax()
    kernel = NUTS(potential_fn=model.potential, dense_mass=True, max_tree_depth=8,
                  target_accept_prob=0.8, inverse_mass_matrix=jnp.asarray(cov))
    mcmc = MCMC(kernel, num_warmup=n_warmup, num_samples=n_samples, num_chains=len(z0),
                chain_method="vectorized", progress_bar=False)
    mcmc.run(j.random.PRNGKey(seed), init_params=jnp.asarray(z0), extra_fields=("num_steps",))
    steps = int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum())
    return np.asarray(mcmc.get_samples(group_by_chain=True)), steps


def run_blackjax(model, z0, cov, n_warmup, n_samples, seed):
    import blackjax

    from iaemu_likelihood.sampling.jax_model import jax

    j, jnp = jax()
    warmup = blackjax.window_adaptation(blackjax.nuts, model.log_density,
                                        is_mass_matrix_diagonal=False, target_acceptance_rate=0.8)
    n_chains = len(z0)
    keys = j.random.split(j.random.PRNGKey(seed), n_chains + 1)

    def adapt(key, z):
        (state, params), _ = warmup.run(key, z, num_steps=n_warmup)
        return state, params

    def sample(key, state, params):
        kernel = blackjax.nuts(model.log_density, **params, max_num_doublings=8)

        def one(s, k):
            s, info = kernel.step(k, s)
            return s, (s.position, info.num_integration_steps)

        _, (positions, n) = j.lax.scan(one, state, j.random.split(key, n_samples))
        return positions, n

    states, params = j.jit(j.vmap(adapt))(keys[:n_chains], jnp.asarray(z0))
    positions, n = j.jit(j.vmap(sample))(j.random.split(keys[n_chains], n_chains), states, params)
    return np.asarray(positions), int(np.asarray(n).sum())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yaml", default=str(REPO / "yamls" / "ia_hod.yaml"))
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backends", nargs="+", default=["numpyro", "blackjax"])
    parser.add_argument("--json", default=str(RESULT))
    args = parser.parse_args(argv)

    from iaemu_likelihood._io import atomic_write_bytes
    from iaemu_likelihood.sampling.jax_model import UnconstrainedModel
    from iaemu_likelihood.sampling.nuts import diagnostics
    from iaemu_likelihood.sampling.posterior import load_posterior
    from iaemu_likelihood.sampling.start import find_start

    posterior = load_posterior(args.yaml)
    start = find_start(posterior, args.seed)
    z0 = start.draw_z(args.chains, np.random.default_rng([args.seed, 1]))
    runners = {"numpyro": run_numpyro, "blackjax": run_blackjax}
    results = {"settings": {"chains": args.chains, "warmup": args.warmup, "samples": args.samples,
                            "seed": args.seed, "cpus": os.cpu_count(),
                            "load_average_at_start": round(os.getloadavg()[0], 2)}}
    for name in args.backends:
        model = UnconstrainedModel(posterior)  # fresh functions: each backend compiles its own
        t = time.perf_counter()
        z, steps = runners[name](model, z0, start.cov, args.warmup, args.samples, args.seed)
        wall = time.perf_counter() - t
        ess, rhat = diagnostics(posterior.support.to_theta(z), posterior.names)
        results[name] = {"wall_seconds": round(wall, 2), "min_ess": round(min(ess.values()), 1),
                         "ess_per_second": round(min(ess.values()) / wall, 3),
                         "leapfrog_per_draw": round(steps / (args.chains * args.samples), 2),
                         "max_rhat": round(max(rhat.values()), 5)}
        print(name, results[name], flush=True)
    results["settings"]["load_average_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(results, indent=2)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.json), (text + "\n").encode())
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
