"""Defaults of an ``iaemu sample`` run, shared by the samplers and the command line.

:mod:`.nuts` and :mod:`.ensemble` take them as their keyword defaults and :mod:`.cli` states them
in its help, so a default changed here changes everywhere. How each sampler steps and when it
checks convergence (burn-in, tree depth) stays with the sampler.
"""
from __future__ import annotations

__all__ = ["DEFAULT_MIN_ESS", "DEFAULT_CHAINS", "DEFAULT_WARMUP", "DEFAULT_MAX_SAMPLES",
           "DEFAULT_WALKERS", "DEFAULT_MAX_STEPS", "BACKENDS", "NUTS_BLOCK", "DEFAULT_TARGET_ACCEPT",
           "ENSEMBLE_CHECK_EVERY"]

#: Effective sample size every parameter must reach before a run stops (both samplers).
DEFAULT_MIN_ESS = 1000
#: NUTS: chains run side by side, warm-up steps per chain, most post-warm-up samples per chain.
DEFAULT_CHAINS, DEFAULT_WARMUP, DEFAULT_MAX_SAMPLES = 4, 400, 20000
#: Ensemble: walkers, most steps per walker.
DEFAULT_WALKERS, DEFAULT_MAX_STEPS = 32, 40000
#: How the ensemble evaluates the log-posterior: "auto" is "jax" where the weights have a JAX
#: mirror, else "numpy".
BACKENDS = ("auto", "jax", "numpy")
#: Blocks between convergence checks and state saves (a run stops, and a resumed run restarts,
#: at a block boundary): NUTS samples per chain, ensemble steps per walker.
NUTS_BLOCK, ENSEMBLE_CHECK_EVERY = 100, 100
#: NUTS's target mean acceptance probability of the step-size adaptation (NumPyro's default is 0.8;
#: ``iaemu sample --target-accept``). On
#: ia_hod.yaml over seeds 1-5 (``benchmarks/bench_nuts_warmup.py --target-accepts``,
#: results/nuts_target_accept.json): 0.7 took 14% fewer gradients and 6% less time to ESS >= 1000
#: than 0.8, with no divergence; 0.65 26% fewer gradients but divergences (at the sigma_logM
#: cliff) in 2 of 5 runs; 0.55 up to 8x more gradients. Beskos et al. (2013) put HMC's optimum
#: near 0.65 in high dimension.
DEFAULT_TARGET_ACCEPT = 0.7
