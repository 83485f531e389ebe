"""JAX mirror of the emulator's numpy forward pass, the log-posterior, and the unconstrained map.

The networks are rebuilt from the same weights file the numpy emulator reads
(:func:`iaemu_likelihood.weights_io.load_weights_folder`, checksums verified) and follow
:mod:`iaemu_likelihood.numpy_forward` step by step ("mlp" and "factorised" architectures), so
predictions, covariances and the log-posterior agree with the numpy path to round-off (tested);
``jax.grad`` then gives exact gradients for NUTS.

:class:`UnconstrainedModel` is what NUTS samples: the log-posterior of
``theta = Support.to_theta(z)`` plus ``Support.log_jacobian(z)``
(:mod:`iaemu_likelihood.sampling.support`), smooth in ``z`` with no hard edges.

JAX is imported when a function here is first called, and 64-bit floats are switched on then
(``jax_enable_x64``): the log-posterior must match the float64 numpy path. If JAX was not yet
imported, XLA's CPU operations are limited to one thread (:data:`XLA_CPU_FLAGS`, unless
``XLA_FLAGS`` is already set), and the CPU client is created with a thread pool of one thread
(:func:`_one_thread_client`): the operations of one gradient are tiny, and on a busy 2-core
machine the pool's synchronisation made a 4-chain gradient 3.6x slower; with a pool of one thread
NUTS on ia_hod.yaml sampled in 14-20% less time on an idle 2-core machine and used 96% of one core instead
of 121% (``benchmarks/README.md``), which matters when chain workers (:mod:`.chain_workers`) fill
the other cores. Compiled programs are kept between runs in the user's cache folder
(:mod:`.compile_cache`).
"""
from __future__ import annotations

import logging
import math
import os
import sys

import numpy as np

from ..conventions import STATISTICS
from ..likelihood_math import LN_2PI

__all__ = ["jax", "build_forward", "build_logpost", "BatchLogPosterior", "UnconstrainedModel",
           "JAX_ARCHITECTURES"]

#: Architectures with a JAX mirror (the "paper" network runs in torch only).
JAX_ARCHITECTURES = ("mlp", "factorised")
N_OUT = 60
#: XLA flags set (if ``XLA_FLAGS`` is unset) before JAX's first import: single-threaded CPU ops.
XLA_CPU_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
#: Points per call of the starting-point search's log-posterior (a finite-difference gradient
#: of 7 parameters takes 15); the ensemble's 32 walkers call it with 16 too (one compilation).
START_BATCH = 16
_STATE = {"cache": False}  # whether jax() has set up the compilation cache


def _one_thread_client(jax_module) -> None:
    """Create JAX's CPU client with a thread pool of one thread.

    XLA sizes the pool of its CPU client by the cores the creating thread may run on, and no
    option sets it; so the client is created while this thread is limited to one core, and
    then this thread and every thread the client started get back the cores they had (Linux;
    elsewhere the client is left to JAX).
    """
    if not hasattr(os, "sched_setaffinity"):  # pragma: no cover - not Linux
        return
    cores = os.sched_getaffinity(0)
    tasks = "/proc/self/task"
    try:
        before = set(os.listdir(tasks))
        os.sched_setaffinity(0, {min(cores)})
    except OSError:  # pragma: no cover - no /proc, or affinity not allowed
        return
    try:
        jax_module.devices("cpu")
    except RuntimeError:  # no CPU backend in JAX_PLATFORMS: nothing to set up here
        pass
    finally:
        os.sched_setaffinity(0, cores)
        for tid in set(os.listdir(tasks)) - before:
            try:
                os.sched_setaffinity(int(tid), cores)
            except OSError:  # a thread that already ended
                pass


def jax():
    """``(jax, jax.numpy)`` with 64-bit floats enabled and the persistent compilation cache of
    :mod:`.compile_cache` switched on (first call). When JAX is first imported here, its CPU
    operations and thread pool are limited to one thread (:data:`XLA_CPU_FLAGS`,
    :func:`_one_thread_client`)."""
    first = "jax" not in sys.modules
    if first:
        os.environ.setdefault("XLA_FLAGS", XLA_CPU_FLAGS)
        # its INFO line about a missing TPU library is noise on every CPU machine
        logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    import jax as _jax

    if first:
        _one_thread_client(_jax)

    _jax.config.update("jax_enable_x64", True)
    if not _STATE["cache"]:
        from .compile_cache import enable_compilation_cache

        _STATE["cache"] = True
        enable_compilation_cache(_jax)
    return _jax, _jax.numpy


#: Pre-activations are clipped here inside ``exp`` of SiLU: beyond it ``exp(-h)`` overflows and
#: the gradient of ``h / (1 + exp(-h))`` would be ``inf / inf``; SiLU is ~-1e-302 there anyway.
_SILU_CLIP = -700.0


def _activation(name):
    """The activations of :mod:`iaemu_likelihood.numpy_forward`, written the same way (SiLU as
    ``h / (1 + exp(-h))``: ``jax.nn.silu`` costs ~3x more per call on CPU)."""
    j, jnp = jax()
    from jax.scipy.special import erf

    return {"silu": lambda h: h / (1.0 + jnp.exp(-jnp.maximum(h, _SILU_CLIP))), "tanh": jnp.tanh,
            "gelu": lambda h: 0.5 * h * (1.0 + erf(h * math.sqrt(0.5)))}[name]


def _softplus(z):
    """``log(1 + exp(z))`` as :func:`iaemu_likelihood.numpy_forward.softplus`."""
    _, jnp = jax()
    return jnp.log1p(jnp.exp(-jnp.abs(z))) + jnp.maximum(z, 0.0)


def _uniform_interp(x, start, step, values):
    """Linear interpolation of ``values`` tabulated at ``start + step * k`` (``np.interp`` on that
    grid, clipped to its ends): the cell index is computed, not searched (``jnp.interp`` searches
    the 131,073-point alignment table at every call, ~5x the cost of the whole SiLU network)."""
    _, jnp = jax()
    t = jnp.clip((x - start) / step, 0.0, values.shape[0] - 1.0)
    k = jnp.minimum(jnp.floor(t).astype(jnp.int32), values.shape[0] - 2)
    f = t - k
    return values[k] * (1.0 - f) + values[k + 1] * f


def _stack(state_dicts, hidden_prefix, out_prefix):
    """Stacked (M, n_in, n_out) weights and (M, 1, n_out) biases of every layer, float64."""
    n_hidden = sum(1 for k in state_dicts[0]
                   if k.startswith(hidden_prefix + ".") and k.endswith(".weight"))
    keys = [f"{hidden_prefix}.{i}" for i in range(n_hidden)] + [out_prefix]
    Ws = [np.stack([np.asarray(sd[k + ".weight"], np.float64).T for sd in state_dicts]) for k in keys]
    bs = [np.stack([np.asarray(sd[k + ".bias"], np.float64)[None, :] for sd in state_dicts])
          for k in keys]
    return Ws, bs


def _mlp(Ws, bs, act, x):
    """Members' outputs (M, n, n_out) of inputs x (n, n_in) already mapped to [-1, 1]."""
    _, jnp = jax()
    h = x
    for W, b in zip(Ws[:-1], bs[:-1]):
        h = act(jnp.matmul(h, W) + b)
    return jnp.matmul(h, Ws[-1]) + bs[-1]


def build_forward(emulator):
    """A JAX function ``theta (n, 7) -> (mean, aleatoric, epistemic)``, each (n, 60).

    Parameters
    ----------
    emulator : IAEmulator
        Loaded emulator ("mlp" or "factorised" weights); its weights folder is read again.

    Returns
    -------
    callable
        Pure JAX function (jit-able, differentiable) in physical units: the ensemble means of
        ``[xi, omega, eta]``, the aleatoric variance of one realization and the calibrated
        epistemic variance (zeros for a single member), as :meth:`IAEmulator.predict`.
    """
    from ..weights_io import load_weights_folder

    if emulator.architecture not in JAX_ARCHITECTURES:
        raise ValueError(f"weights architecture {emulator.architecture!r} has no JAX mirror "
                         f"(supported: {list(JAX_ARCHITECTURES)})")
    j, jnp = jax()
    meta, members, _, _ = load_weights_folder(emulator.folder)
    cfg = {"activation": "silu", "var_floor": 1e-6, **meta.get("architecture_config", {})}
    act = _activation(cfg["activation"])
    var_floor = float(cfg["var_floor"])
    norm = meta["normalisation"]
    in_low = np.asarray(norm["input"]["low"], np.float64)
    in_high = np.asarray(norm["input"]["high"], np.float64)
    in_scale = 2.0 / (in_high - in_low)
    out_mean = np.concatenate([np.asarray(norm["output"][s]["mean"], float) for s in STATISTICS])
    out_std = np.concatenate([np.asarray(norm["output"][s]["std"], float) for s in STATISTICS])
    log_mask = np.concatenate([np.full(20, norm["output"][s]["transform"] == "log")
                               for s in STATISTICS])
    epi_scale = np.asarray(emulator.epistemic_scale, np.float64)
    n_members = len(members)

    if emulator.architecture == "mlp":
        Ws, bs = _stack(members, "hidden", "out")

        def members_forward(theta):
            o = _mlp(Ws, bs, act, (theta - in_low) * in_scale - 1.0)
            return o[..., :N_OUT] * out_std + out_mean, _softplus(o[..., N_OUT:]) + var_floor
    else:
        from ..alignment import TABLE_SIZE, alignment_p2

        Wb, bb = _stack(members, "hidden", "basis")
        Wv, bv = _stack(members, "var_hidden", "var_out")
        basis_scale = np.concatenate([out_std[:20], np.tile(out_std[20:40], 2),
                                      np.tile(out_std[40:], 3)])
        basis_offset = np.concatenate([out_mean[:20], np.zeros(100)])
        grid = np.linspace(-1.0, 1.0, TABLE_SIZE)  # the table of alignment_p2_table
        table = jnp.asarray(alignment_p2(grid))
        step = 2.0 / (TABLE_SIZE - 1)

        def members_forward(theta):
            x = (theta - in_low) * in_scale - 1.0
            b = _mlp(Wb, bb, act, x[:, 2:]) * basis_scale + basis_offset  # (M, n, 120)
            c = _uniform_interp(theta[:, :2], -1.0, step, table)
            cc, cs = c[:, 0:1], c[:, 1:2]
            w = b.reshape(b.shape[:-1] + (6, 20))
            y = jnp.concatenate([w[..., 0, :], cc * w[..., 1, :] + cs * w[..., 2, :],
                                 cc * cc * w[..., 3, :] + cc * cs * w[..., 4, :]
                                 + cs * cs * w[..., 5, :]], axis=-1)
            return y, _softplus(_mlp(Wv, bv, act, x)) + var_floor

    def forward(theta):
        y, var_std = members_forward(theta)
        var_y = var_std * out_std ** 2
        value = jnp.where(log_mask, jnp.exp(y), y)
        var = jnp.where(log_mask, value * value * var_y, var_y)  # delta method for log xi
        mean = value.mean(axis=0)
        alea = var.mean(axis=0)
        epi = (value.var(axis=0) * epi_scale if n_members > 1 else jnp.zeros_like(mean))
        return mean, alea, epi

    return forward


def build_logpost(posterior):
    """JAX log-posterior of one sampled point, equal to :meth:`Posterior.logpost` inside the support.

    Parameters
    ----------
    posterior : iaemu_likelihood.sampling.posterior.Posterior

    Returns
    -------
    callable
        ``theta (d,) -> float``: log prior (uniform box) plus the Gaussian log-likelihood with
        parameter-dependent covariance, log-determinant and ``n ln 2 pi``; ``-inf`` where the
        covariance is not positive definite or a value is not finite. It does not test the
        support: :meth:`Support.to_theta <.support.Support.to_theta>` never leaves it.
    """
    j, jnp = jax()
    forward = build_forward(posterior.emulator)
    gaussian = _build_gaussian()
    support = posterior.support
    base = jnp.asarray(np.nan_to_num(support.base))
    index = jnp.asarray(support.index)
    idx = np.asarray(posterior.emulator_indices)
    data = jnp.asarray(posterior.data)
    data_cov = jnp.asarray(posterior.data_cov)
    terms = posterior.terms
    residual = jnp.asarray(posterior.emulator.residual_correlation[np.ix_(idx, idx)])
    corr_e = posterior.emulator.epistemic_correlation
    corr_e = None if corr_e is None else jnp.asarray(corr_e[np.ix_(idx, idx)])
    const = posterior.log_prior_value - 0.5 * len(idx) * LN_2PI

    def logpost(theta):
        full = base.at[index].set(theta)
        mean, alea, epi = forward(full[None, :])
        model, alea, epi = mean[0, idx], alea[0, idx], epi[0, idx]
        cov = data_cov
        if "aleatoric" in terms:
            sd = jnp.sqrt(alea)
            cov = cov + sd[:, None] * sd[None, :] * residual
        if "epistemic" in terms:
            se = jnp.sqrt(epi)
            cov = cov + (jnp.diag(epi) if corr_e is None else se[:, None] * se[None, :] * corr_e)
        value = const + gaussian(data - model, cov)
        return jnp.where(jnp.isfinite(value), value, -jnp.inf)

    return logpost


def _build_gaussian():
    """``g(r, C) = -(r^T C^-1 r + ln det C) / 2`` with a hand-written gradient (JAX).

    The value alone (no gradient asked) comes from the Cholesky factor ``L`` of ``C`` and one
    triangular solve against ``r``; when a gradient is asked, the forward pass also forms
    ``L^-1`` (one triangular solve against the identity), which the gradient reuses:
    ``dg/dr = -a`` and ``dg/dC = (a a^T - C^-1) / 2`` with ``a = C^-1 r``, ``C^-1 = L^-T L^-1``.
    Differentiating through the Cholesky factorisation instead costs ~1.5-2x more per gradient
    on CPU. NaN where ``C`` is not positive definite (the caller turns it into -inf).
    """
    j, jnp = jax()
    from jax.scipy.linalg import solve_triangular

    def forward(resid, cov):
        chol = jnp.linalg.cholesky(cov)
        inv_chol = solve_triangular(chol, jnp.eye(cov.shape[-1], dtype=cov.dtype), lower=True)
        white = inv_chol @ resid
        value = -0.5 * (white @ white) - jnp.sum(jnp.log(jnp.diagonal(chol)))
        return value, (inv_chol, white)

    def backward(saved, g):
        inv_chol, white = saved
        a = white @ inv_chol
        return -g * a, (0.5 * g) * (jnp.outer(a, a) - inv_chol.T @ inv_chol)

    def value(resid, cov):
        # without a gradient (the ensemble's calls) one triangular solve against r suffices:
        # the inverse L^-1 against the identity cost ~60% of the value here
        chol = jnp.linalg.cholesky(cov)
        white = solve_triangular(chol, resid, lower=True)
        return -0.5 * (white @ white) - jnp.sum(jnp.log(jnp.diagonal(chol)))

    gaussian = j.custom_vjp(value)
    gaussian.defvjp(forward, backward)
    return gaussian


def _require_mirror(posterior, hint: str):
    """Refuse weights whose architecture has no JAX mirror (UnsupportedInputError, one line)."""
    if posterior.emulator.architecture not in JAX_ARCHITECTURES:
        from .posterior import UnsupportedInputError

        raise UnsupportedInputError(
            f"weights architecture {posterior.emulator.architecture!r} has no JAX mirror "
            f"(supported: {list(JAX_ARCHITECTURES)}); {hint}")


class BatchLogPosterior:
    """Compiled, vectorised JAX log-posterior of sampled points (n, d), ``-inf`` outside the support.

    Equal to :meth:`Posterior.logpost_batch <.posterior.Posterior.logpost_batch>` (round-off apart,
    tested): the vmapped :func:`build_logpost`, compiled once for a fixed batch of ``batch`` points
    (inputs are cut into batches and the last one padded, so a sampler's calls never trigger a
    new compilation), and ``-inf`` wherever the point lies outside the prior box or the training
    support (the test of :meth:`Support.contains <.support.Support.contains>`, compiled into the
    same program, so a call costs one dispatch and no numpy work).
    On the 2-core VM it cost 1.3x (load average 4) to 2.7x (load average 10) less per point than
    the numpy path in batches of 16 (``benchmarks/bench_samplers.py``).

    Parameters
    ----------
    posterior : Posterior
    batch : int
        Points per compiled call (the ensemble's half of the walkers).
    logpost : callable, optional
        :func:`build_logpost` of this posterior, if already built.
    """

    def __init__(self, posterior, batch: int, logpost=None):
        j, jnp = jax()
        _require_mirror(posterior, "use the ensemble's numpy backend (--backend numpy)")
        self.posterior = posterior
        self.batch = int(batch)
        one = logpost or build_logpost(posterior)
        support = posterior.support
        # a point inside the support, to pad the last batch with (and to evaluate instead of
        # points outside it)
        self._pad = support.to_theta(np.zeros(posterior.dim))

        def checked(theta):
            # the support lies inside the prior box (Support.build cuts the box to the training
            # ranges), so its test is the whole test
            inside = support.contains(theta, jnp)
            # a point outside is not evaluated (its value could be NaN): the pad point is
            return jnp.where(inside, one(jnp.where(inside, theta, self._pad)), -jnp.inf)

        self._logpost = j.jit(j.vmap(checked))

    def __call__(self, theta) -> np.ndarray:
        """Log-posteriors (n,) of points (n, d)."""
        theta = np.asarray(theta, dtype=float)
        if len(theta) == self.batch:
            return np.asarray(self._logpost(theta))
        out = np.empty(len(theta))
        for start in range(0, len(theta), self.batch):
            part = theta[start:start + self.batch]
            pts = np.broadcast_to(self._pad, (self.batch, part.shape[1])).copy()
            pts[:len(part)] = part
            out[start:start + len(part)] = np.asarray(self._logpost(pts))[:len(part)]
        return out


class UnconstrainedModel:
    """A :class:`~iaemu_likelihood.sampling.posterior.Posterior` in the unconstrained space.

    ``log_density(z) = logpost(Support.to_theta(z)) + Support.log_jacobian(z)`` (JAX functions),
    what NUTS samples; its samples mapped by ``Support.to_theta`` follow the posterior.

    Parameters
    ----------
    posterior : Posterior
    """

    def __init__(self, posterior):
        j, jnp = jax()
        _require_mirror(posterior, "use --sampler ensemble --backend numpy")
        self.posterior = posterior
        self.names = posterior.names
        self.dim = posterior.dim
        self.logpost_jax = build_logpost(posterior)
        support = posterior.support

        def log_density(z):
            return self.logpost_jax(support.to_theta(z, jnp)) + support.log_jacobian(z, jnp)

        self.log_density = log_density
        # jitted: NumPyro evaluates the potential and its gradient outside its compiled loops
        # too (initial state, step-size search), where a plain function runs op by op and
        # compiles each of its hundreds of operations separately (~60 s at load average 5)
        self.potential = j.jit(lambda z: -log_density(z))
        #: compiled batched log-posterior for the starting-point search (:mod:`.start`)
        self.batch_logpost = BatchLogPosterior(posterior, START_BATCH, self.logpost_jax)
        #: NumPyro MCMC objects built for this model (see :func:`.nuts.run_nuts`)
        self.mcmc_cache = {}
        self._potentials = {None: self.potential}

    def potential_for(self, shear):
        """The jitted potential of NUTS's coordinates ``w`` (:class:`.shear.UnconstrainedShear`
        ``shear``: ``z = shear.to_z(w)``, unit Jacobian; None: ``w = z``), built once per shear."""
        key = None if shear is None else shear.coefficients
        if key not in self._potentials:
            j, jnp = jax()
            self._potentials[key] = j.jit(lambda w: -self.log_density(shear.to_z(w, jnp)))
        return self._potentials[key]
