"""NUTS (NumPyro) on the log-posterior of a Cobaya yaml, in the unconstrained space.

Several chains run vectorised (one compiled kernel for all of them, ``chain_method="vectorized"``),
started from draws of the Laplace approximation at the best point (:mod:`.start`, evaluated with
the compiled :class:`~.jax_model.BatchLogPosterior`), with a dense
mass matrix initialised to the Laplace covariance and adapted during the warm-up. After the warm-up the chains are
extended in blocks until the effective sample size of every parameter reaches ``min_ess`` (NumPyro's multi-chain ESS, on
the parameters, not the unconstrained coordinates), or ``max_samples`` per chain is reached.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["run_nuts", "SamplerResult", "diagnostics", "DEFAULT_CHAINS", "DEFAULT_WARMUP",
           "DEFAULT_MIN_ESS"]

log = logging.getLogger(__name__)

DEFAULT_CHAINS = 4
DEFAULT_WARMUP = 400
DEFAULT_MIN_ESS = 1000
#: Samples per chain of each block drawn until the ESS target is met.
BLOCK = 500
TARGET_ACCEPT = 0.8
#: Trees of at most 2^8 - 1 leapfrog steps (the adapted trees need ~15).
MAX_TREE_DEPTH = 8
EXTRA_FIELDS = ("num_steps", "diverging")


@dataclass
class SamplerResult:
    """Chains of sampled parameters and their diagnostics.

    Attributes
    ----------
    chains : list of ndarray, each (n, d)
        Post-warm-up samples per chain (ensemble: one chain of all walkers' kept steps).
    names : tuple of str
    ess : dict
        Effective sample size per parameter.
    rhat : dict
        Split R-hat per parameter (NaN where not defined, e.g. one ensemble chain).
    wall_seconds : float
        Sampling time, start-up (model, compilation, starting point) included.
    timings : dict
        Seconds spent per stage.
    info : dict
        Sampler settings and counts, written to the chain's yaml.
    logpost : list of ndarray, each (n,), optional
        Log-posterior of every sample, when the sampler has it (the chain files then need no
        second evaluation); None: :func:`.output.write_chains` evaluates it.
    """

    chains: list
    names: tuple
    ess: dict
    rhat: dict
    wall_seconds: float
    timings: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    logpost: list | None = None

    @property
    def min_ess(self) -> float:
        return float(min(self.ess.values()))


def diagnostics(chains: np.ndarray, names) -> tuple[dict, dict]:
    """ESS and split R-hat per parameter of chains (n_chains, n, d) (NumPyro's estimators)."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    chains = np.asarray(chains, dtype=float)
    ess = effective_sample_size(chains)
    rhat = split_gelman_rubin(chains) if chains.shape[0] > 1 or chains.shape[1] >= 4 else \
        np.full(chains.shape[-1], np.nan)
    return ({n: float(v) for n, v in zip(names, ess)}, {n: float(v) for n, v in zip(names, rhat)})


def run_nuts(posterior, seed: int = 0, n_chains: int = DEFAULT_CHAINS,
             n_warmup: int = DEFAULT_WARMUP, min_ess: float = DEFAULT_MIN_ESS,
             max_samples: int = 20000, progress: bool = True, model=None,
             chain_method: str = "vectorized") -> SamplerResult:
    """Sample a posterior with NumPyro's NUTS until every parameter has ``min_ess``.

    Parameters
    ----------
    posterior : Posterior
    seed : int
        Seeds the starting points and the chains (same seed, same chains).
    n_chains : int
        Chains, run vectorised.
    n_warmup : int
        Adaptation steps per chain (step size and dense mass matrix).
    min_ess : float
        Stop once the ESS of every parameter reaches this.
    max_samples : int
        Most post-warm-up samples per chain.
    progress : bool
        Progress bars.
    model : UnconstrainedModel, optional
        Reuse an already built model.
    chain_method : {"vectorized", "sequential"}
        NumPyro's ``chain_method``: all chains in one compiled kernel, or one after another.

    Returns
    -------
    SamplerResult
    """
    from jax import random
    from numpyro.infer import MCMC, NUTS

    from .jax_model import UnconstrainedModel, jax
    from .start import find_start

    t0 = time.perf_counter()
    _, jnp = jax()
    model = model or UnconstrainedModel(posterior)
    start = find_start(posterior, seed, log_prob=model.batch_logpost)
    t_start = time.perf_counter()
    rng = np.random.default_rng([seed, 1])
    z0 = start.draw_z(n_chains, rng)
    block = min(BLOCK, max_samples)
    # NumPyro compiles per MCMC object (tens of seconds): a model keeps the ones it built, reused
    # only with identical settings and starting covariance, i.e. an identical kernel
    key = (n_chains, n_warmup, block, progress, chain_method, start.cov.tobytes())
    mcmc = model.mcmc_cache.get(key)
    if mcmc is None:
        # the Laplace covariance preconditions the warm-up: without it the first adaptation
        # windows build trees of hundreds of steps
        kernel = NUTS(potential_fn=model.potential, target_accept_prob=TARGET_ACCEPT,
                      dense_mass=True, inverse_mass_matrix=jnp.asarray(start.cov),
                      max_tree_depth=MAX_TREE_DEPTH)
        mcmc = MCMC(kernel, num_warmup=n_warmup, num_samples=block, num_chains=n_chains,
                    chain_method=chain_method, progress_bar=progress)
        model.mcmc_cache[key] = mcmc
    mcmc.post_warmup_state = None
    mcmc.run(random.PRNGKey(seed), init_params=jnp.asarray(z0), extra_fields=EXTRA_FIELDS)
    z = [np.asarray(mcmc.get_samples(group_by_chain=True))]
    t_first = time.perf_counter()
    while True:
        zs = np.concatenate(z, axis=1)
        theta = posterior.support.to_theta(zs)
        ess, rhat = diagnostics(theta, model.names)
        n = zs.shape[1]
        log.info("NUTS: %d samples per chain, min ESS %.0f, max R-hat %.4f", n,
                 min(ess.values()), np.nanmax(list(rhat.values())))
        if min(ess.values()) >= min_ess or n >= max_samples:
            break
        mcmc.post_warmup_state = mcmc.last_state
        mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=EXTRA_FIELDS)
        z.append(np.asarray(mcmc.get_samples(group_by_chain=True)))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    n_steps = extra.get("num_steps")
    wall = time.perf_counter() - t0
    info = {"sampler": "nuts", "implementation": "numpyro", "chains": n_chains, "warmup": n_warmup,
            "samples_per_chain": int(n), "seed": int(seed), "min_ess_target": float(min_ess),
            "dense_mass": True, "target_accept_prob": TARGET_ACCEPT,
            "start_logpost": float(start.logpost)}
    if n_steps is not None:
        info["mean_tree_size_last_block"] = float(np.mean(np.asarray(n_steps)))
    if extra.get("diverging") is not None:
        info["divergences_last_block"] = int(np.sum(np.asarray(extra["diverging"])))
    chains = [theta[c] for c in range(n_chains)]
    # for the chain files: the compiled batch log-posterior, not the numpy one point by point
    logpost = [model.batch_logpost(c) for c in chains]
    return SamplerResult(chains, model.names, ess, rhat, wall,
                         {"start": t_start - t0, "first_block_with_warmup": t_first - t_start,
                          "total": wall}, info, logpost)
