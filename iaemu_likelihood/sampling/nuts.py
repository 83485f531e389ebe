"""NUTS (NumPyro) on the log-posterior of a Cobaya yaml, in the unconstrained space.

Several chains (NumPyro's NUTS kernel; ``block`` steps of a chain in one compiled program,
:class:`_BlockProgram`; the chains shared among processes by :mod:`.chain_workers`), started
from draws of the Laplace approximation at the best point (:mod:`.start`, evaluated with the
compiled :class:`~.jax_model.BatchLogPosterior`), with a dense
mass matrix initialised to the Laplace covariance and adapted during the warm-up. After the
warm-up the chains are extended in blocks until the effective sample size of every parameter
reaches ``min_ess`` (NumPyro's multi-chain ESS, on the parameters, not the unconstrained
coordinates), or ``max_samples`` per chain is reached.
"""
from __future__ import annotations

import logging
import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from .defaults import (DEFAULT_CHAINS, DEFAULT_MAX_SAMPLES, DEFAULT_MIN_ESS,
                       DEFAULT_TARGET_ACCEPT, DEFAULT_WARMUP, NUTS_BLOCK)

__all__ = ["run_nuts", "SamplerResult", "diagnostics", "chain_starts"]

log = logging.getLogger(__name__)

#: Trees of at most 2^8 - 1 leapfrog steps (the adapted trees need ~15).
MAX_TREE_DEPTH = 8


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


#: How chains move (saved with a state; a state saved in other coordinates is not resumed): the
#: unconstrained z with logMmin sheared along the constant-central-density curve where it applies
#: (:class:`.shear.UnconstrainedShear`).
COORDINATES = "central-shear"


def run_nuts(posterior, seed: int = 0, n_chains: int = DEFAULT_CHAINS,
             n_warmup: int = DEFAULT_WARMUP, min_ess: float = DEFAULT_MIN_ESS,
             max_samples: int = DEFAULT_MAX_SAMPLES, progress: bool = True, model=None,
             state_file=None, resume: bool = False, block: int = NUTS_BLOCK,
             target_accept: float = DEFAULT_TARGET_ACCEPT,
             processes: int | None = None, spawned=None) -> SamplerResult:
    """Sample a posterior with NumPyro's NUTS until every parameter has ``min_ess``.

    Parameters
    ----------
    posterior : Posterior
    seed : int
        Seeds the starting points and the chains (same seed, same chains).
    n_chains : int
        Chains; within a process they run one after another inside each compiled block
        (vectorised chains cost 1.2-1.5x more per gradient on this CPU,
        ``benchmarks/bench_nuts_geometry.py``, and every step waits for the chain with the
        longest tree).
    n_warmup : int
        Adaptation steps per chain (step size and dense mass matrix).
    min_ess : float
        Stop once the ESS of every parameter reaches this.
    max_samples : int
        Most post-warm-up samples per chain.
    progress : bool
        A progress bar of the draws after the warm-up, updated per block (the warm-up is
        announced in the log).
    model : UnconstrainedModel, optional
        Reuse an already built model.
    state_file : pathlib.Path, optional
        Where to save the state after the warm-up and after every block of ``block``
        samples per chain (the samples so far and NumPyro's last state: positions, gradients,
        adapted step size and mass matrix, random keys; :mod:`.checkpoint`).
    resume : bool
        Continue from ``state_file`` if it exists (same seed, chains and warm-up length, same
        posterior): no new warm-up, the chains go on from their saved state with the saved keys,
        so they draw the samples the uninterrupted run would have drawn (bit-identical where
        the compiled program is the same).
    target_accept : float
        Target mean acceptance probability of the step-size adaptation, in (0, 1).
    processes : int, optional
        Processes that share the chains (:mod:`.chain_workers`; the draws do not depend on it);
        default: one per available core, at most one per chain.
    spawned : list of subprocess.Popen, optional
        Worker processes already started by :func:`.chain_workers.spawn_processes` (e.g. before
        the posterior was built, so that their imports overlap with it); used, or stopped if not
        needed, and stopped at the end in any case.
    block : int
        Steps per chain of one compiled call: the warm-up runs in ``ceil(n_warmup / block)`` of
        them (draws past the warm-up in its last block are kept), then draws until the ESS
        check passes; checks and state saves come after every block.

    Returns
    -------
    SamplerResult
        ``timings``: ``start`` (optimiser and Laplace start), ``warmup``, ``sampling``,
        ``compile`` (JAX compilation, part of the stages before), ``total``;
        ``info["gradient_evaluations"]`` the leapfrog steps of all chains after the warm-up
        (``info["warmup_gradient_evaluations"]`` during it).
    """
    from .chain_workers import stop_processes
    from .compile_cache import CompileTimer
    from .jax_model import jax

    t0 = time.perf_counter()
    wall0 = time.time()
    try:
        if isinstance(n_chains, bool) or not isinstance(n_chains, numbers.Integral) \
                or n_chains < 1:
            raise ValueError(f"n_chains = {n_chains!r} must be a positive integer")
        j, _ = jax()
        with CompileTimer(j) as timer:
            result = _sample(posterior, seed, int(n_chains), n_warmup, min_ess, max_samples,
                             progress, model, state_file, resume, t0, block, target_accept,
                             processes, spawned)
    except BaseException:
        stop_processes(spawned or [])  # those not yet given to a run
        raise
    result.timings["compile"] = timer.seconds(wall0)
    result.info["compile_cache_hits"] = timer.cache_hits
    return result


def _sample(posterior, seed, n_chains, n_warmup, min_ess, max_samples, progress, model,
            state_file, resume, t0, block, target_accept, processes, spawned):
    """:func:`run_nuts` inside its compilation timer, with its worker processes."""
    from .chain_workers import default_processes, start_workers, stop_processes

    # the workers rebuild the posterior while this process looks for the starting point (on a
    # failure here run_nuts stops the spawned processes)
    workers = start_workers(posterior, n_chains, default_processes(n_chains, processes), spawned)
    try:
        return _sample_with(posterior, seed, n_chains, n_warmup, min_ess, max_samples, progress,
                            model, state_file, resume, t0, block, target_accept, workers)
    finally:
        stop_processes([worker.process for worker in workers])


def _sample_with(posterior, seed, n_chains, n_warmup, min_ess, max_samples, progress, model,
                 state_file, resume, t0, block, target_accept, workers):
    """:func:`_sample` once its workers run."""
    from jax import random
    from tqdm.auto import tqdm

    from .chain_workers import ParallelChains
    from .checkpoint import load_state, posterior_fingerprint, save_state
    from .jax_model import UnconstrainedModel
    from .shear import UnconstrainedShear

    model = model or UnconstrainedModel(posterior)
    identity = {"sampler": "nuts", "seed": int(seed), "chains": int(n_chains),
                "warmup": int(n_warmup), "target_accept": float(target_accept),
                "fingerprint": posterior_fingerprint(posterior),
                "coordinates": COORDINATES}
    saved = None
    if resume and state_file is not None and state_file.exists():
        saved = load_state(state_file, identity)
    block = min(block, max_samples)
    if saved is None:
        start_logpost, shear, w0, cov = chain_starts(posterior, model, seed, n_chains)
    else:
        meta, arrays = saved
        start_logpost, cov = meta["start_logpost"], arrays["start_cov"]
        shear = (None if meta["shear"] is None else
                 UnconstrainedShear(meta["shear"]["pivot"], meta["shear"]["sigma"],
                                    meta["shear"]["coefficients"]))
        log.info("NUTS: resuming %s at %d samples per chain", state_file, arrays["z"].shape[1])
    to_z = (lambda w: w) if shear is None else shear.to_z
    shear_meta = None if shear is None else {"pivot": shear.pivot, "sigma": shear.sigma,
                                             "coefficients": list(shear.coefficients)}
    t_start = time.perf_counter()
    # one compiled program per model and settings, reused by every block of every run; this
    # process runs the first share of the chains, the workers the others
    key = (n_warmup, block, target_accept, None if shear is None else shear.coefficients)
    program = model.mcmc_cache.get(key)
    if program is None:
        program = model.mcmc_cache[key] = _BlockProgram(model.potential_for(shear), posterior.dim,
                                                         n_warmup, block, target_accept)
    chains = ParallelChains(program, workers, n_chains, {
        "shear": shear_meta, "n_warmup": int(n_warmup), "block": int(block),
        "target_accept": float(target_accept)})
    counters = {"elapsed": 0.0, "gradient_evaluations": 0, "warmup_gradient_evaluations": 0,
                "divergences": 0}
    if saved is None:
        keys = random.split(random.PRNGKey(seed), n_chains)
        chains.start(keys, w0, cov)
        z = []
    else:
        counters.update({k: meta.get(k, 0) for k in counters})
        chains.restore(_unflatten_state(arrays))
        z = [arrays["z"]] if arrays["z"].shape[1] else []
    sampled_here = False

    def save():
        if state_file is not None:
            zs = np.concatenate(z, axis=1) if z else np.empty((n_chains, 0, posterior.dim))
            elapsed = counters["elapsed"] + time.perf_counter() - t0
            save_state(state_file, {**identity, **counters, "elapsed": elapsed,
                                    "start_logpost": start_logpost, "shear": shear_meta},
                       {**_flatten_state(chains.state), "z": zs, "start_cov": np.asarray(cov)})

    def advance():
        """One block of steps of every chain; the draws after the warm-up are kept."""
        nonlocal sampled_here, steps, diverging
        first = chains.local.step_index
        draws, steps, diverging = chains.advance()
        warm = max(0, min(block, n_warmup - first))  # steps of this block inside the warm-up
        counters["warmup_gradient_evaluations"] += int(steps[:, :warm].sum())
        counters["gradient_evaluations"] += int(steps[:, warm:].sum())
        counters["divergences"] += int(diverging[:, warm:].sum())
        steps, diverging = steps[:, warm:], diverging[:, warm:]
        if warm < block:
            z.append(draws[:, warm:])
            sampled_here = True

    steps = diverging = None
    if saved is None:
        log.info("NUTS: warm-up, %d steps per chain", n_warmup)
        for _ in range(-(-n_warmup // block)):
            advance()
        save()
    t_warm = time.perf_counter()
    bar = tqdm(total=max_samples, initial=sum(part.shape[1] for part in z), unit="draw",
               desc=f"NUTS draws per chain ({n_chains} chains)", disable=not progress)
    while True:
        n = sum(part.shape[1] for part in z)
        if n:
            theta = posterior.support.to_theta(to_z(np.concatenate(z, axis=1)[:, :max_samples]))
            ess, rhat = diagnostics(theta, model.names)
            log.info("NUTS: %d samples per chain, min ESS %.0f, max R-hat %.4f", n,
                     min(ess.values()), np.nanmax(list(rhat.values())))
            bar.set_postfix(min_ess=f"{min(ess.values()):.0f}")
            if min(ess.values()) >= min_ess or n >= max_samples:
                break
        before = n
        advance()
        bar.update(sum(part.shape[1] for part in z) - before)
        save()
    bar.close()
    wall = time.perf_counter() - t0
    total = counters["elapsed"] + wall
    info = {"sampler": "nuts", "implementation": "numpyro", "chains": n_chains, "warmup": n_warmup,
            "samples_per_chain": int(theta.shape[1]), "seed": int(seed),
            "min_ess_target": float(min_ess), "dense_mass": True,
            "target_accept_prob": float(target_accept), "max_tree_depth": MAX_TREE_DEPTH,
            "chains_run": "each by the same one-chain compiled block program, one after another "
                          "within a process",
            "block": int(block),
            "start_logpost": float(start_logpost),
            "coordinates": shear.describe() if shear is not None else "unconstrained z",
            "step_size": float(np.mean(np.asarray(chains.state.adapt_state.step_size))),
            "processes": 1 + len(workers),
            "worker_failures": list(chains.failures),
            **{k: int(v) for k, v in counters.items() if k != "elapsed"}}
    if info["divergences"]:
        log.warning("NUTS: %d divergent transitions after the warm-up (in %d draws of %d chains): "
                    "the chains may miss regions of high curvature; rerun with a higher "
                    "--target-accept (now %g), e.g. 0.9", info["divergences"], theta.shape[1],
                    n_chains, target_accept)
    info["gradient_evaluations_per_ess"] = round(
        info["gradient_evaluations"] / min(ess.values()), 2)
    if saved is not None:
        info["resumed_at_samples_per_chain"] = int(arrays["z"].shape[1])
    if sampled_here:
        info["mean_tree_size_last_block"] = float(np.mean(steps))
        info["divergences_last_block"] = int(np.sum(diverging))
    chains = [theta[c] for c in range(n_chains)]
    # for the chain files: the compiled batch log-posterior, not the numpy one point by point
    logpost = [model.batch_logpost(c) for c in chains]
    return SamplerResult(chains, model.names, ess, rhat, total,
                         {"start": t_start - t0, "warmup": t_warm - t_start,
                          "sampling": time.perf_counter() - t_warm, "total": total}, info, logpost)


def chain_starts(posterior, model, seed: int, n_chains: int):
    """Where NUTS's chains start, in the coordinates they move in.

    The pre-run (:func:`.start.find_start`: best point and Laplace covariance in the
    unconstrained ``z``), the shear of ``logMmin`` along the constant-central-density curve
    through it (:class:`.shear.UnconstrainedShear`; None where it does not apply), and
    ``n_chains`` draws of the Laplace approximation carried over to the sheared ``w``.

    Returns
    -------
    start_logpost : float
        Log-posterior of the best point.
    shear : UnconstrainedShear or None
        ``z = shear.to_z(w)``.
    w0 : ndarray, shape (n_chains, d)
        Starting points.
    cov : ndarray, shape (d, d)
        The Laplace covariance in ``w``: the initial inverse mass matrix.
    """
    from .shear import CentralShear, UnconstrainedShear
    from .start import find_start

    start = find_start(posterior, seed, log_prob=model.batch_logpost)
    shear = UnconstrainedShear.build(posterior, CentralShear.build(posterior, start.theta),
                                     start.z)
    z0 = start.draw_z(n_chains, np.random.default_rng([seed, 1]))
    if shear is None:
        return float(start.logpost), None, z0, start.cov
    jac = shear.jacobian_w_of_z(start.z)
    return float(start.logpost), shear, shear.to_w(z0), jac @ start.cov @ jac.T


class _BlockProgram:
    """NumPyro's NUTS kernel driven block by block through one compiled program per chain.

    ``init`` starts one chain from a key, a point and an initial inverse mass matrix (arguments,
    not constants of the program: runs with other seeds or starting points compile the same
    program, which JAX's persistent cache then serves), ``run_block`` advances one chain by
    ``block`` steps in one compiled call (a ``lax.scan`` of the kernel's step); NumPyro's
    functional NUTS (:func:`numpyro.infer.hmc.hmc`) with the settings of its ``NUTS`` class.
    Chains run one after another, each through the same program, in whichever process
    (:mod:`.chain_workers`): so a chain's draws do not depend on how many chains or processes
    there are (one program for several chains, under
    ``lax.map`` or ``vmap``, compiles differently for different chain counts and changes the
    round-off; under ``vmap`` every step also waits for the chain with the longest tree, and a
    gradient costs 1.2-1.5x more per chain). The kernel adapts the step size and the dense mass
    matrix while a chain's step counter is below ``n_warmup`` (NumPyro's windowed adaptation)
    and samples after it, so the warm-up and the sampling run the same program: JAX traces it
    once per model and settings, not once per block as repeated ``MCMC.run`` calls do (~1-2 s
    each on the 2-core VM).

    Parameters
    ----------
    potential : callable
        Jitted potential energy (minus the log-density) of one point.
    dim : int
        Dimension of a point.
    n_warmup, block : int
        Adaptation steps per chain; steps of one ``run_block`` call.
    target_accept : float
        Target acceptance probability of the step-size adaptation.
    """

    def __init__(self, potential, dim: int, n_warmup: int, block: int, target_accept: float):
        from numpyro.infer.hmc import hmc

        from .jax_model import jax

        j, jnp = jax()
        init_kernel, sample_kernel = hmc(potential_fn=potential, algo="NUTS")

        def init(key, w, cov):
            # as NumPyro's NUTS.init: half of the key starts the kernel (the other half would
            # initialise a model's parameters); NUTS's defaults (adapted step size from 1, dense
            # adapted mass matrix, regularised)
            key = j.random.split(key)[0]
            return init_kernel(w, n_warmup, step_size=1.0, inverse_mass_matrix=cov,
                               adapt_step_size=True, adapt_mass_matrix=True, dense_mass=True,
                               target_accept_prob=target_accept, trajectory_length=None,
                               max_tree_depth=MAX_TREE_DEPTH, rng_key=key)

        def run_block(state):
            def body(s, _):
                s = sample_kernel(s)
                return s, (s.z, s.num_steps, s.diverging)

            return j.lax.scan(body, state, None, length=block)

        self.init = j.jit(init)
        self._run_block = j.jit(run_block)
        self._compiled_block = None
        # the kernel builds its step function in its first init: traced here on shapes alone, so
        # that a resumed run (no init, a saved state) can step at once
        self._state_shapes = j.eval_shape(
            self.init, j.ShapeDtypeStruct((2,), jnp.uint32),
            j.ShapeDtypeStruct((dim,), jnp.float64), j.ShapeDtypeStruct((dim, dim), jnp.float64))
        self.state_structure = j.tree_util.tree_structure(self._state_shapes)

    def compile_block(self) -> None:
        """Compile ``run_block`` now, for the state ``init`` returns (ahead of time: a chain
        worker does it while the sampling process compiles ``init``, and each then finds the
        other's program in JAX's persistent cache)."""
        self._compiled_block = self._run_block.lower(self._state_shapes).compile()

    def run_block(self, state):
        """``block`` steps of one chain: its new state and (draws, tree sizes, divergences)."""
        if self._compiled_block is not None:
            try:
                return self._compiled_block(state)
            except TypeError:  # a state of other types (a resumed one): the jitted function
                self._compiled_block = None
        return self._run_block(state)


def _flatten_state(state) -> dict:
    """NumPyro's ``HMCState`` of all chains (leading axis: chain) as named arrays
    (``state.<path>``) and its structure."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    arrays = {f"state{jax.tree_util.keystr(path)}": np.asarray(leaf) for path, leaf in leaves}
    arrays["state_structure"] = np.array(str(treedef))
    return arrays


def _unflatten_state(arrays):
    """Inverse of :func:`_flatten_state` (the structure must be this NumPyro's ``HMCState``)."""
    import jax
    from numpyro.infer.hmc import HMCState
    from numpyro.infer.hmc_util import HMCAdaptState

    from .checkpoint import ResumeError

    # the structure of a dense-mass NUTS state: r and trajectory_length are not kept
    adapt = HMCAdaptState(*([0] * 4), (0,) * 5, (0,) * 3, 0, 0)
    template = HMCState(*([0] * 5), None, None, *([0] * 4), adapt, 0)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    if str(treedef) != str(arrays["state_structure"]):
        raise ResumeError("the saved NUTS state was written by another NumPyro version "
                          f"({arrays['state_structure']}); pass --force to start over")
    values = [jax.numpy.asarray(arrays[f"state{jax.tree_util.keystr(path)}"])
              for path, _ in leaves]
    return jax.tree_util.tree_unflatten(treedef, values)
