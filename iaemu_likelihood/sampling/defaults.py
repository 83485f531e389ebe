"""Defaults of an ``iaemu sample`` run, shared by the samplers and the command line.

:mod:`.nuts` and :mod:`.ensemble` take them as their keyword defaults and :mod:`.cli` states them
in its help, so a default changed here changes everywhere. How each sampler steps and when it
checks convergence (burn-in, tree depth, target acceptance) stays with the sampler.
"""
from __future__ import annotations

__all__ = ["DEFAULT_MIN_ESS", "DEFAULT_CHAINS", "DEFAULT_WARMUP", "DEFAULT_MAX_SAMPLES",
           "DEFAULT_WALKERS", "DEFAULT_MAX_STEPS", "BACKENDS", "NUTS_BLOCK",
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
