#!/usr/bin/env python
"""Why NUTS needs ~50 gradients per effective sample on yamls/ia_hod.yaml, and what one costs.

Measured on the posterior NUTS samples (the unconstrained, sheared coordinates ``w`` of
:mod:`iaemu_likelihood.sampling.shear`), with posterior draws from ``iaemu sample``'s ensemble
(same seed, ESS >= 1000):

* ``whitened_hessian``: the eigenvalues of the Hessian of ``-log p(w)`` in coordinates whitened by
  the posterior covariance, at ``--points`` random draws. For a Gaussian posterior they are all 1,
  and NUTS with a mass matrix equal to that covariance takes steps of ~1; the step size it can
  afford at 80% acceptance falls like ``1 / sqrt(largest eigenvalue)``. Reported: median and 90%
  quantile of the largest eigenvalue, the median smallest, and which parameter dominates the
  stiffest direction how often.
* ``slice``: ``log p`` and its second derivative along ``w_sigma_logM`` through the posterior mean
  (the other coordinates fixed): a plateau, where the data allow any small ``sigma_logM``, ending
  in a cliff whose curvature is what limits the step size.
* ``gradient_us``: one log-density + gradient inside a compiled loop (as NUTS runs it), for one
  chain and for 4 chains under ``vmap`` (per chain): why ``iaemu sample`` runs its chains one
  after another.

Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/bench_nuts_geometry.py``;
writes ``benchmarks/results/nuts_geometry.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "nuts_geometry.json"


def loop_seconds(j, fn, x, steps: int) -> float:
    """Seconds per call of ``fn`` inside a compiled ``fori_loop`` of ``steps`` calls."""
    def body(_, carry):
        value, grad = fn(carry)
        return carry + 1e-12 * grad  # a dependency, so no call is hoisted out of the loop

    run = j.jit(lambda x0: j.lax.fori_loop(0, steps, body, x0))
    run(x).block_until_ready()
    t = time.perf_counter()
    run(x).block_until_ready()
    return (time.perf_counter() - t) / steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yaml", default=str(REPO / "yamls" / "ia_hod.yaml"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--points", type=int, default=60)
    parser.add_argument("--json", default=str(RESULT))
    args = parser.parse_args(argv)

    from iaemu_likelihood._io import atomic_write_bytes
    from iaemu_likelihood.sampling.ensemble import run_ensemble
    from iaemu_likelihood.sampling.jax_model import UnconstrainedModel, jax
    from iaemu_likelihood.sampling.posterior import load_posterior
    from iaemu_likelihood.sampling.shear import CentralShear, UnconstrainedShear
    from iaemu_likelihood.sampling.start import find_start

    j, jnp = jax()
    posterior = load_posterior(args.yaml)
    names = list(posterior.names)
    model = UnconstrainedModel(posterior)
    draws = np.concatenate(run_ensemble(posterior, seed=args.seed, progress=False).chains)
    # NUTS's coordinates: the shear it builds from its own start
    start = find_start(posterior, args.seed, log_prob=model.batch_logpost)
    shear = UnconstrainedShear.build(posterior, CentralShear.build(posterior, start.theta),
                                     start.z)
    w = posterior.support.to_z(draws)
    if shear is not None:
        w = shear.to_w(w)
    mean, cov = w.mean(axis=0), np.cov(w.T)
    chol = np.linalg.cholesky(cov)
    potential = model.potential_for(shear)
    hessian = j.jit(j.hessian(lambda u: potential(jnp.asarray(mean) + jnp.asarray(chol) @ u)))
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(w), size=min(args.points, len(w)), replace=False)
    largest, smallest, stiff = [], [], []
    for i in pick:
        u = np.linalg.solve(chol, w[i] - mean)
        values, vectors = np.linalg.eigh(np.asarray(hessian(jnp.asarray(u))))
        largest.append(values[-1])
        smallest.append(values[0])
        # the stiffest direction back in w, its largest component (per posterior sd)
        direction = chol @ vectors[:, -1] / np.sqrt(np.diag(cov))
        stiff.append(names[int(np.argmax(np.abs(direction)))])
    largest, smallest = np.array(largest), np.array(smallest)
    stiff_counts = {n: stiff.count(n) for n in names if stiff.count(n)}

    sig = names.index("sigma_logM")
    grid = mean[sig] + np.sqrt(cov[sig, sig]) * np.linspace(-3.0, 2.5, 111)
    points = np.tile(mean, (len(grid), 1))
    points[:, sig] = grid
    logp = -np.asarray(j.jit(j.vmap(potential))(jnp.asarray(points)))
    curvature = np.gradient(np.gradient(logp, grid), grid) * cov[sig, sig]  # per posterior variance

    grad = j.value_and_grad(potential)
    x1 = jnp.asarray(w[pick[0]])
    x4 = jnp.asarray(w[pick[:4]])
    one = loop_seconds(j, grad, x1, 2000)
    four = loop_seconds(j, j.vmap(grad), x4, 500) / len(x4)

    results = {
        "yaml": str(Path(args.yaml).resolve().relative_to(REPO)) if Path(args.yaml).resolve()
        .is_relative_to(REPO) else args.yaml,
        "draws": int(len(draws)), "points": int(len(pick)), "seed": args.seed,
        "coordinates": shear.describe() if shear is not None else "unconstrained z",
        "whitened_hessian": {
            "largest_eigenvalue_median": round(float(np.median(largest)), 2),
            "largest_eigenvalue_q90": round(float(np.quantile(largest, 0.9)), 2),
            "smallest_eigenvalue_median": round(float(np.median(smallest)), 3),
            "negative_smallest_fraction": round(float(np.mean(smallest < 0)), 3),
            "stiffest_direction_parameter": stiff_counts,
            "gaussian_reference": 1.0},
        "slice": {
            "parameter": "sigma_logM (w coordinate, posterior sds from the mean)",
            "sd_from_mean": np.round((grid - mean[sig]) / np.sqrt(cov[sig, sig]), 2).tolist(),
            "logp_minus_max": np.round(logp - logp.max(), 3).tolist(),
            "curvature_per_posterior_variance": np.round(curvature, 2).tolist(),
            "most_negative_curvature": round(float(curvature.min()), 2)},
        "gradient_us": {"one_chain": round(1e6 * one, 1), f"vmap_{len(x4)}_chains_per_chain": round(1e6 * four, 1),
                        "ratio": round(four / one, 2)},
    }
    summary = {k: v for k, v in results.items() if k != "slice"}
    summary["slice"] = {"most_negative_curvature": results["slice"]["most_negative_curvature"]}
    print(json.dumps(summary, indent=2))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, (json.dumps(results, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
