"""Vectorised ensemble sampling (emcee) over the batched log-posterior.

Every step evaluates half of the walkers in one call: of :meth:`Posterior.logpost_batch` (one
batched numpy emulator pass and a stacked Cholesky), or of its compiled JAX twin
:class:`~.jax_model.BatchLogPosterior` (``backend="jax"``, the default where the weights have a
JAX mirror: 1.3-2.7x less per point on the 2-core VM, after a compilation that the persistent
cache of :mod:`.compile_cache` keeps between runs). Both equal Cobaya's log-posterior.

The move is emcee's differential-evolution ``DEMove``: on this 7-parameter
posterior the default stretch move mixed slowly (integrated autocorrelation ~190 steps, while its
own estimate after 1,500 steps said ~60), ``DEMove`` alone mixed well (~83 steps), and adding
``DESnookerMove`` biased the widths. Walkers start from draws of the Laplace approximation at the
best point (:mod:`.start`). The run is extended in blocks until ``n_walkers * kept_steps / tau``
reaches ``min_ess`` for every parameter, with ``tau`` emcee's integrated autocorrelation time
of the kept steps (the first :data:`BURN_FRACTION` of the steps is dropped), and the kept steps
are at least :data:`MIN_TAUS` times ``tau`` long, so that ``tau`` itself is trustworthy.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from .nuts import SamplerResult, diagnostics

__all__ = ["run_ensemble", "DEFAULT_WALKERS", "BURN_FRACTION", "MIN_TAUS", "BACKENDS",
           "log_posterior_function"]

log = logging.getLogger(__name__)

DEFAULT_WALKERS = 32
#: Steps per block between convergence checks.
CHECK_EVERY = 500
#: Fraction of the steps dropped as burn-in.
BURN_FRACTION = 0.25
#: Kept steps must be at least this many autocorrelation times.
MIN_TAUS = 30
#: Evaluation backends: "auto" is "jax" where the weights have a JAX mirror, else "numpy".
BACKENDS = ("auto", "jax", "numpy")


def log_posterior_function(posterior, backend: str, batch: int):
    """``(f, name)``: the vectorised log-posterior ``f(theta (n, d)) -> (n,)`` of a backend.

    Raises
    ------
    ValueError
        Unknown backend.
    UnsupportedInputError
        ``"jax"`` for weights without a JAX mirror.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend = {backend!r}; allowed: {list(BACKENDS)}")
    if backend == "auto":
        from .jax_model import JAX_ARCHITECTURES

        backend = "jax" if posterior.emulator.architecture in JAX_ARCHITECTURES else "numpy"
    if backend == "numpy":
        return posterior.logpost_batch, backend
    from .jax_model import BatchLogPosterior

    return BatchLogPosterior(posterior, batch), backend


def run_ensemble(posterior, seed: int = 0, n_walkers: int = DEFAULT_WALKERS,
                 min_ess: float = 1000, max_steps: int = 40000,
                 progress: bool = True, backend: str = "auto") -> SamplerResult:
    """Sample a posterior with emcee (``vectorize=True``, ``DEMove``) until ESS >= ``min_ess``.

    Parameters
    ----------
    posterior : Posterior
    seed : int
        Seeds the starting points and emcee's random state.
    n_walkers : int
        Walkers (>= 2 d).
    min_ess : float
        Target effective sample size of every parameter.
    max_steps : int
        Most steps per walker.
    progress : bool
        tqdm progress bars.
    backend : {"auto", "jax", "numpy"}
        How the log-posterior is evaluated (:func:`log_posterior_function`).

    Returns
    -------
    SamplerResult
        One chain: the kept steps of all walkers (step by step); R-hat computed with the walkers
        as chains.
    """
    import emcee

    from .start import find_start

    d = posterior.dim
    if n_walkers < 2 * d:
        raise ValueError(f"n_walkers = {n_walkers} must be >= 2 x {d} sampled parameters")
    t0 = time.perf_counter()
    # emcee's moves update half of the walkers per call (the first call: all of them)
    log_prob, backend = log_posterior_function(posterior, backend, (n_walkers + 1) // 2)
    start = find_start(posterior, seed, log_prob=log_prob)
    t_start = time.perf_counter()
    p0 = posterior.support.to_theta(start.draw_z(n_walkers, np.random.default_rng([seed, 2])))
    sampler = emcee.EnsembleSampler(n_walkers, d, log_prob, vectorize=True,
                                    moves=[emcee.moves.DEMove()])
    sampler.random_state = np.random.RandomState(seed).get_state()
    state = p0
    while True:
        sampler.run_mcmc(state, min(CHECK_EVERY, max_steps - sampler.iteration), progress=progress)
        state = None  # continue from the last step
        chain = sampler.get_chain()
        n = chain.shape[0]
        burn = int(BURN_FRACTION * n)
        kept = chain[burn:]
        tau = emcee.autocorr.integrated_time(kept, tol=0, quiet=True)
        ess = n_walkers * kept.shape[0] / tau
        log.info("ensemble: %d steps, tau max %.1f, min ESS %.0f, acceptance %.3f", n,
                 tau.max(), ess.min(), float(np.mean(sampler.acceptance_fraction)))
        if (ess.min() >= min_ess and kept.shape[0] >= MIN_TAUS * tau.max()) or n >= max_steps:
            break
    wall = time.perf_counter() - t0
    _, rhat = diagnostics(np.swapaxes(kept, 0, 1), posterior.names)
    info = {"sampler": "ensemble", "implementation": f"emcee {emcee.__version__}", "move": "DEMove",
            "backend": backend,
            "walkers": n_walkers, "steps": int(n), "burn_in_steps": burn, "seed": int(seed),
            "min_ess_target": float(min_ess),
            "acceptance_fraction": float(np.mean(sampler.acceptance_fraction)),
            "tau": {p: float(t) for p, t in zip(posterior.names, tau)},
            "evaluations": int(n * n_walkers), "start_logpost": float(start.logpost)}
    return SamplerResult([kept.reshape(-1, d)], posterior.names,
                         {p: float(e) for p, e in zip(posterior.names, ess)}, rhat, wall,
                         {"start": t_start - t0, "sampling": wall - (t_start - t0), "total": wall},
                         info, [sampler.get_log_prob()[burn:].reshape(-1)])
