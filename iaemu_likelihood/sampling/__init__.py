"""Samplers beside Cobaya: one log-posterior, read from a Cobaya input file, sampled by NUTS
(gradient-based, through a JAX mirror of the emulator) or by a vectorised ensemble (emcee over
the batched emulator: compiled JAX, or numpy).

Modules (each imports its heavy dependency only when used):

* :mod:`.support` -- the sampled region: prior box, fixed values and the training-support band;
* :mod:`.posterior` -- :class:`~.posterior.Posterior` from a Cobaya yaml, numpy log-posterior equal
  to Cobaya's;
* :mod:`.jax_model` -- JAX mirror of the numpy forward pass, log-posterior and the unconstrained
  reparametrisation with its Jacobian;
* :mod:`.nuts` -- NUTS through NumPyro; :mod:`.ensemble` -- emcee ensemble;
* :mod:`.compile_cache` -- JAX's persistent compilation cache in a private per-user folder;
* :mod:`.start` -- starting points (maximum posterior from several starts);
* :mod:`.output` -- Cobaya-style chain files; :mod:`.cli` -- ``iaemu sample``.

Install the dependencies with ``pip install 'iaemu-likelihood[sampling]'``.
"""
