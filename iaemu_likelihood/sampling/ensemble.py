"""Vectorised ensemble sampling (emcee) over the batched log-posterior.

Every step evaluates half of the walkers in one call: of :meth:`Posterior.logpost_batch` (one
batched numpy emulator pass and a stacked Cholesky), or of its compiled JAX twin
:class:`~.jax_model.BatchLogPosterior` (``backend="jax"``, the default where the weights have a
JAX mirror: 1.3-2.7x less per point on the 2-core VM, after a compilation that the persistent
cache of :mod:`.compile_cache` keeps between runs). Both equal Cobaya's log-posterior.

The move is emcee's differential-evolution ``DEMove``: on this 7-parameter posterior the default
stretch move mixed slowly (integrated autocorrelation ~190 steps, while its own estimate after 1,500
steps said ~60), ``DEMove`` alone mixed well (~83 steps), and adding ``DESnookerMove`` biased the
widths. Walkers move in coordinates where ``logMmin`` is sheared along the curve of constant central
density through the best point (:mod:`.shear`; unit Jacobian): on ``yamls/ia_hod.yaml`` it cut the
largest autocorrelation time from 57 to ~30 steps. Walkers start from draws of the Laplace
approximation at the best point (:mod:`.start`). The run is extended in blocks until ``n_walkers *
kept_steps / tau`` reaches ``min_ess`` for every parameter, with ``tau`` emcee's integrated
autocorrelation time of the kept steps (the first :data:`BURN_FRACTION` of the steps is dropped),
and the kept steps are at least :data:`MIN_TAUS` times ``tau`` long, so that ``tau`` itself is
trustworthy. The check runs every :data:`.defaults.ENSEMBLE_CHECK_EVERY` steps.
"""
from __future__ import annotations

import contextlib
import logging
import time

import numpy as np

from .defaults import (BACKENDS, DEFAULT_MAX_STEPS, DEFAULT_MIN_ESS, DEFAULT_WALKERS,
                       ENSEMBLE_CHECK_EVERY as CHECK_EVERY)
from .nuts import SamplerResult, diagnostics

__all__ = ["run_ensemble", "BURN_FRACTION", "MIN_TAUS", "log_posterior_function"]

log = logging.getLogger(__name__)

#: Fraction of the steps dropped as burn-in. A burn-in of 5 autocorrelation times instead (~280
#: of 2,200 steps) raised emcee's estimate of tau by ~25%: no fewer steps to ESS 1,000.
BURN_FRACTION = 0.25
#: Kept steps must be at least this many autocorrelation times.
MIN_TAUS = 30
#: How walkers move (saved with a state; a state saved in other coordinates is not resumed):
#: logMmin sheared along the curve of constant central density where it applies (:mod:`.shear`).
COORDINATES = "central-shear"


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
                 min_ess: float = DEFAULT_MIN_ESS, max_steps: int = DEFAULT_MAX_STEPS,
                 progress: bool = True, backend: str = "auto", state_file=None,
                 resume: bool = False) -> SamplerResult:
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
    state_file : pathlib.Path, optional
        Where to save the state after every block of ``ENSEMBLE_CHECK_EVERY`` steps (all steps so
        far, the last walker positions and log-posteriors, emcee's random state;
        :mod:`.checkpoint`).
    resume : bool
        Continue from ``state_file`` if it exists (same seed and walkers, same posterior). The
        continued run draws exactly the steps the uninterrupted run would have drawn (same
        random state, same block boundaries, so the same stopping point); with another
        ``backend`` than the saved run's it stays a valid chain but not the same one.

    Returns
    -------
    SamplerResult
        One chain: the kept steps of all walkers (step by step); R-hat computed with the walkers
        as chains. ``timings``: ``start`` (optimiser and Laplace start), ``compile`` (JAX
        compilation, within the other stages), ``sampling``, ``total``; ``info["evaluations"]``
        counts the log-posterior evaluations of the sampling, ``info["start_evaluations"]`` the
        start's.
    """
    d = posterior.dim
    if n_walkers < 2 * d:
        raise ValueError(f"n_walkers = {n_walkers} must be >= 2 x {d} sampled parameters")
    t0 = time.perf_counter()
    wall0 = time.time()
    # emcee's moves update half of the walkers per call (the first call: all of them)
    log_prob, backend = log_posterior_function(posterior, backend, (n_walkers + 1) // 2)
    timer = None
    if backend == "jax":
        from .compile_cache import CompileTimer
        from .jax_model import jax

        timer = CompileTimer(jax()[0])
    with timer or contextlib.nullcontext():
        result = _sample(posterior, seed, n_walkers, min_ess, max_steps, progress, log_prob,
                         state_file, resume, t0)
    result.info["backend"] = backend
    result.timings["compile"] = timer.seconds(wall0) if timer is not None else 0.0
    if timer is not None:
        result.info["compile_cache_hits"] = timer.cache_hits
    return result


def _sample(posterior, seed, n_walkers, min_ess, max_steps, progress, log_prob, state_file,
            resume, t0):
    """:func:`run_ensemble` after choosing the backend."""
    import emcee
    from tqdm.auto import tqdm

    from .checkpoint import load_state, posterior_fingerprint, save_state
    from .shear import CentralShear
    from .start import find_start

    d = posterior.dim
    counter = _Counter(log_prob)
    identity = {"sampler": "ensemble", "seed": int(seed), "walkers": int(n_walkers),
                "fingerprint": posterior_fingerprint(posterior), "coordinates": COORDINATES}
    saved = None
    if resume and state_file is not None and state_file.exists():
        saved = load_state(state_file, identity)
    if saved is None:
        start = find_start(posterior, seed, log_prob=counter)
        start_logpost, start_evals = start.logpost, counter.reset()
        reference = start.theta
    else:
        reference = saved[0]["shear_reference"]
    # walkers move in sheared coordinates (None: the sampled parameters themselves)
    shear = CentralShear.build(posterior, reference)
    to_theta = shear.to_theta if shear is not None else np.asarray

    def log_prob_sampled(u):
        return counter(to_theta(u))

    sampler = emcee.EnsembleSampler(n_walkers, d, log_prob_sampled, vectorize=True,
                                    moves=[emcee.moves.DEMove()])
    if saved is None:
        p0 = posterior.support.to_theta(start.draw_z(n_walkers, np.random.default_rng([seed, 2])))
        sampler.random_state = np.random.RandomState(seed).get_state()
        state = p0 if shear is None else shear.to_sampling(p0)
        done_chain, done_lp = np.empty((0, n_walkers, d)), np.empty((0, n_walkers))
        done_accepted, before = np.zeros(n_walkers), {"elapsed": 0.0, "evaluations": 0}
    else:
        meta, arrays = saved
        done_chain, done_lp = arrays["chain"], arrays["log_prob"]
        done_accepted, before = arrays["accepted"], meta
        start_logpost, start_evals = meta["start_logpost"], meta["start_evaluations"]
        random_state = ("MT19937", arrays["rng_key"], int(arrays["rng_pos"]),
                        int(arrays["rng_has_gauss"]), float(arrays["rng_cached_gaussian"]))
        state = emcee.State(done_chain[-1], log_prob=done_lp[-1], random_state=random_state)
        log.info("ensemble: resuming %s at step %d", state_file, len(done_chain))
    t_start = time.perf_counter()
    bar = tqdm(total=max_steps, initial=len(done_chain), desc="ensemble steps", unit="step",
               disable=not progress)
    while True:
        n = len(done_chain) + sampler.iteration
        if n:
            chain = np.concatenate([done_chain, sampler.get_chain()]) if sampler.iteration \
                else done_chain
            burn = int(BURN_FRACTION * n)
            kept = to_theta(chain[burn:])
            tau = emcee.autocorr.integrated_time(kept, tol=0, quiet=True)
            ess = n_walkers * kept.shape[0] / tau
            log.info("ensemble: %d steps, tau max %.1f, min ESS %.0f", n, tau.max(), ess.min())
            bar.set_postfix(min_ess=f"{ess.min():.0f}")
            if (ess.min() >= min_ess and kept.shape[0] >= MIN_TAUS * tau.max()) or n >= max_steps:
                break
        steps = min(CHECK_EVERY - n % CHECK_EVERY, max_steps - n)
        sampler.run_mcmc(state, steps, progress=False)
        bar.update(steps)
        state = None  # continue from the last step
        if state_file is not None:
            _save(save_state, state_file, identity, sampler, done_chain, done_lp, done_accepted,
                  {"start_logpost": float(start_logpost), "start_evaluations": int(start_evals),
                   "shear_reference": [float(v) for v in reference],
                   "elapsed": before["elapsed"] + time.perf_counter() - t0,
                   "evaluations": before["evaluations"] + counter.count})
    log_probs = np.concatenate([done_lp, sampler.get_log_prob()]) if sampler.iteration else done_lp
    accepted = done_accepted + (sampler.backend.accepted if sampler.iteration else 0)
    bar.close()
    wall = time.perf_counter() - t0
    _, rhat = diagnostics(np.swapaxes(kept, 0, 1), posterior.names)
    evaluations = before["evaluations"] + counter.count
    info = {"sampler": "ensemble", "implementation": f"emcee {emcee.__version__}", "move": "DEMove",
            "walkers": n_walkers, "steps": int(n), "burn_in_steps": burn, "seed": int(seed),
            "min_ess_target": float(min_ess), "check_every": CHECK_EVERY,
            "acceptance_fraction": float(np.mean(accepted / n)),
            "tau": {p: float(t) for p, t in zip(posterior.names, tau)},
            "evaluations": int(evaluations), "start_evaluations": int(start_evals),
            "evaluations_per_ess": round(evaluations / float(ess.min()), 2),
            "start_logpost": float(start_logpost),
            "coordinates": shear.describe() if shear is not None else "sampled parameters"}
    if saved is not None:
        info["resumed_at_step"] = int(len(done_chain))
    timings = {"start": t_start - t0, "sampling": wall - (t_start - t0),
               "total": before["elapsed"] + wall}
    return SamplerResult([kept.reshape(-1, d)], posterior.names,
                         {p: float(e) for p, e in zip(posterior.names, ess)}, rhat,
                         before["elapsed"] + wall, timings, info,
                         [log_probs[burn:].reshape(-1)])


class _Counter:
    """A vectorised log-posterior that counts the points it evaluates."""

    def __init__(self, f):
        self.f = f
        self.count = 0

    def __call__(self, theta):
        self.count += len(theta)
        return self.f(theta)

    def reset(self) -> int:
        count, self.count = self.count, 0
        return count


def _save(save_state, path, identity, sampler, done_chain, done_lp, done_accepted, counters):
    """Save all steps so far, the last walkers and emcee's random state (a :mod:`.checkpoint`)."""
    name, key, pos, has_gauss, cached = sampler.random_state
    arrays = {"chain": np.concatenate([done_chain, sampler.get_chain()]),
              "log_prob": np.concatenate([done_lp, sampler.get_log_prob()]),
              "accepted": done_accepted + sampler.backend.accepted,
              "rng_key": np.asarray(key), "rng_pos": np.int64(pos),
              "rng_has_gauss": np.int64(has_gauss), "rng_cached_gaussian": np.float64(cached)}
    save_state(path, {**identity, **counters, "steps": int(len(arrays["chain"]))}, arrays)
