"""Pure-numpy inference of an ensemble of :class:`~iaemu_likelihood.networks.MLPNet` members.

The members' weights are stacked, so one ``matmul`` per layer evaluates the whole ensemble, and
computed in float64 from the float32 state-dict arrays (:meth:`MLPEnsemble.astype` gives a
float32 copy for fast batched work). The input normalisation (physical ->
[-1, 1]) is folded into the first layer and the output de-standardisation of the means
(``y = mean * std + mu``) into the last one, so a forward pass is a handful of numpy calls:
that is what keeps a single-point prediction well under 0.1 ms.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from .alignment import alignment_p2_table

__all__ = ["MLPEnsemble", "FactorisedEnsemble", "softplus", "ACTIVATIONS", "mlp_shapes", "predict_in_blocks",
           "factorised_shapes", "factorised_box_config"]


def softplus(z: np.ndarray) -> np.ndarray:
    """``log(1 + exp(z))`` computed without overflow (``logaddexp(0, z)``; the same as
    ``torch.nn.functional.softplus`` up to its linear regime above z = 20, where the two differ by
    < exp(-20))."""
    return np.logaddexp(0.0, z)


def _silu_(h):
    # h * sigmoid(h), two ufunc calls: a single point costs the number of calls, not the flops
    h *= expit(h)
    return h


def _tanh_(h):
    return np.tanh(h, out=h)


def _gelu_(h):
    from scipy.special import erf  # exact (erf) gelu, torch's default

    t = erf(h * np.sqrt(0.5))
    t += 1.0
    t *= 0.5
    h *= t
    return h


#: activation name -> in-place numpy function
ACTIVATIONS = {"silu": _silu_, "tanh": _tanh_, "gelu": _gelu_}


class MLPEnsemble:
    """Stacked numpy forward pass of M ``MLPNet`` members.

    Parameters
    ----------
    state_dicts : list of dict
        Each member's state dict (``hidden.{i}.weight``/``bias``, ``out.weight``/``bias``) as
        numpy arrays (torch layout: weight (n_out, n_in)).
    activation : {"silu", "tanh", "gelu"}
    var_floor : float
        Added to the softplus variance (standardised units), as in ``MLPNet``.
    input_low, input_high : array_like, shape (7,)
        Physical values mapped to -1 and +1 before the network.
    output_mean, output_std : array_like, shape (60,)
        Standardisation of the 60 outputs (of log xi for log-transformed statistics).

    Notes
    -----
    :meth:`__call__` returns, per member, the de-standardised mean ``y`` (transformed space:
    log xi, omega, eta) and the standardised variance; multiply the latter by ``output_std**2``
    for the variance of ``y``.
    """

    def __init__(self, state_dicts, activation, var_floor, input_low, input_high, output_mean,
                 output_std):
        _check_members(state_dicts, activation, "hidden.0.weight", "MLPNet")
        self.n_members = len(state_dicts)
        self.var_floor = float(var_floor)
        self.n_out = n_out = len(output_mean)
        scale, offset = _input_map(input_low, input_high)
        # y = mean * std + mu folded into the mean half of the last layer; variances untouched
        out_scale = np.concatenate([np.asarray(output_std, dtype=np.float64), np.ones(n_out)])
        out_offset = np.concatenate([np.asarray(output_mean, dtype=np.float64), np.zeros(n_out)])
        self._net = _Stack(state_dicts, "hidden", "out", ACTIVATIONS[activation], scale, offset,
                           out_scale, out_offset)

    @classmethod
    def from_config(cls, members, config, input_low, input_high, output_mean, output_std, layout):
        """The architecture registry's builder (any layout)."""
        return cls(members, config["activation"], config["var_floor"], input_low, input_high,
                   output_mean, output_std)

    @property
    def dtype(self) -> np.dtype:
        """Floating-point type of the stacked weights (and of the outputs)."""
        return self._net.dtype

    def astype(self, dtype) -> MLPEnsemble:
        """A copy computing in ``dtype`` (e.g. ``np.float32``: ~2x the batched throughput, with
        relative differences ~1e-6 from float64, far below the emulator's own error). The
        normalisation stays folded in, computed in float64 before the cast."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._net = self._net.astype(dtype)
        return new

    def __call__(self, theta: np.ndarray):
        """Evaluate every member.

        Parameters
        ----------
        theta : ndarray, shape (n, 7)
            Physical parameters (validated by the caller).

        Returns
        -------
        y : ndarray, shape (M, n, 60)
            De-standardised means in transformed space (log xi, omega, eta).
        var_std : ndarray, shape (M, n, 60)
            Standardised variances (softplus + floor).
        """
        o = self._net(theta)
        var = softplus(o[..., self.n_out:])
        var += self.var_floor
        return o[..., :self.n_out], var


def _check_members(state_dicts, activation, required_key, kind):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation = {activation!r} is not one of {sorted(ACTIVATIONS)}")
    if not state_dicts:
        raise ValueError("state_dicts is empty: an ensemble needs at least one member")
    if required_key not in state_dicts[0]:
        raise ValueError(f"state dict has no {required_key!r}: not a {kind}")


def _input_map(input_low, input_high):
    """(scale, offset) of the map of [low, high] to [-1, 1]: ``x = theta * scale + offset``."""
    low = np.asarray(input_low, dtype=np.float64)
    high = np.asarray(input_high, dtype=np.float64)
    scale = 2.0 / (high - low)
    return scale, -1.0 - low * scale


class _Stack:
    """M stacked fully connected networks (hidden layers with an activation, then a linear
    output) as one ``matmul`` per layer, weights (M, n_in, n_out).

    The affine input map ``x = theta * in_scale + in_offset`` is folded into the first layer and
    ``out * out_scale + out_offset`` into the last one, in float64. :meth:`astype` gives a copy in
    another precision; below float64 the first layer is kept unfolded and the inputs are mapped in
    float64 first (folding would cancel digits: |theta * scale| ~ 10 for the masses).
    """

    def __init__(self, state_dicts, hidden_prefix, out_prefix, activation, in_scale, in_offset,
                 out_scale, out_offset):
        n_hidden = sum(1 for k in state_dicts[0]
                       if k.startswith(hidden_prefix + ".") and k.endswith(".weight"))

        def stack(key):
            return np.stack([np.asarray(sd[key], dtype=np.float64) for sd in state_dicts])

        Ws = [stack(f"{hidden_prefix}.{i}.weight").transpose(0, 2, 1) for i in range(n_hidden)]
        bs = [stack(f"{hidden_prefix}.{i}.bias")[:, None, :] for i in range(n_hidden)]
        Ws.append(stack(f"{out_prefix}.weight").transpose(0, 2, 1))
        bs.append(stack(f"{out_prefix}.bias")[:, None, :])
        Ws[-1] = Ws[-1] * out_scale
        bs[-1] = bs[-1] * out_scale + out_offset
        self.activation = activation
        self._in_scale, self._in_offset = in_scale, in_offset
        self._first = (Ws[0], bs[0])
        bs[0] = bs[0] + np.einsum("i,mij->mj", in_offset, Ws[0])[:, None, :]
        Ws[0] = Ws[0] * in_scale[None, :, None]
        self._Ws = [np.ascontiguousarray(w) for w in Ws]
        self._bs = bs

    @property
    def dtype(self) -> np.dtype:
        return self._Ws[0].dtype

    def astype(self, dtype) -> _Stack:
        dtype = np.dtype(dtype)
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        Ws, bs = list(self._Ws), list(self._bs)
        if dtype != np.float64:
            Ws[0], bs[0] = self._first
        new._Ws = [np.ascontiguousarray(w, dtype=dtype) for w in Ws]
        new._bs = [np.asarray(b, dtype=dtype) for b in bs]
        return new

    def __call__(self, theta):
        Ws, bs, act = self._Ws, self._bs, self.activation
        if Ws[0].dtype == np.float64:
            h = np.matmul(theta, Ws[0])
        else:
            x = theta * self._in_scale
            x += self._in_offset
            h = np.matmul(x.astype(Ws[0].dtype), Ws[0])
        h += bs[0]
        act(h)
        for W, b in zip(Ws[1:-1], bs[1:-1]):
            h = np.matmul(h, W)
            h += b
            act(h)
        o = np.matmul(h, Ws[-1])
        o += bs[-1]
        return o


class FactorisedEnsemble:
    """Stacked numpy forward pass of M :class:`~iaemu_likelihood.networks.FactorisedNet` members.

    Same call contract as :class:`MLPEnsemble`: ``(y, var_std)``, each (M, n, 60), ``y`` the
    de-standardised means in transformed space (log xi, omega, eta). The HOD basis is
    de-standardised in its last layer (xi: ``std * b + mean``; the omega and eta bases by their
    std, their mean being 0), then combined with ``c(mu)`` of :mod:`iaemu_likelihood.alignment`.

    Parameters
    ----------
    state_dicts : list of dict
        Members' state dicts as numpy arrays.
    activation : str
    var_floor : float
    input_low, input_high, output_mean, output_std : array_like
        As for :class:`MLPEnsemble`; ``output_mean`` must be 0 for omega and eta.
    """

    def __init__(self, state_dicts, activation, var_floor, input_low, input_high, output_mean,
                 output_std):
        _check_members(state_dicts, activation, "basis.weight", "FactorisedNet")
        mu = np.asarray(output_mean, dtype=np.float64)
        std = np.asarray(output_std, dtype=np.float64)
        if np.any(mu[20:] != 0):
            raise ValueError("a factorised network needs omega and eta standardised without "
                             "centring (output mean 0)")
        scale, offset = _input_map(input_low, input_high)
        self.n_members = len(state_dicts)
        self.var_floor = float(var_floor)
        act = ACTIVATIONS[activation]
        basis_scale = np.concatenate([std[:20], np.tile(std[20:40], 2), np.tile(std[40:], 3)])
        basis_offset = np.concatenate([mu[:20], np.zeros(100)])
        self._basis = _Stack(state_dicts, "hidden", "basis", act, scale[2:], offset[2:],
                             basis_scale, basis_offset)
        self._var = _Stack(state_dicts, "var_hidden", "var_out", act, scale, offset, 1.0, 0.0)
        # (120, 60) 0/1 matrix adding the weighted blocks: xi <- 0; omega <- 1, 2; eta <- 3, 4, 5
        blocks_to_stat = (0, 1, 1, 2, 2, 2)
        self._sum_blocks = np.zeros((6 * 20, 60))
        for k, stat in enumerate(blocks_to_stat):
            self._sum_blocks[20 * k:20 * (k + 1), 20 * stat:20 * (stat + 1)] = np.eye(20)
        self._sum_blocks32 = self._sum_blocks.astype(np.float32)

    @classmethod
    def from_config(cls, members, config, input_low, input_high, output_mean, output_std, layout):
        """The architecture registry's builder (mu_cen, mu_sat first, then any inputs; the basis
        takes every input but the two mu, as :class:`~iaemu_likelihood.networks.FactorisedNet`)."""
        return cls(members, config["activation"], config["var_floor"], input_low, input_high,
                   output_mean, output_std)

    def astype(self, dtype) -> FactorisedEnsemble:
        """A copy computing the networks in ``dtype`` (see :meth:`MLPEnsemble.astype`)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._basis, new._var = self._basis.astype(dtype), self._var.astype(dtype)
        return new

    @property
    def dtype(self) -> np.dtype:
        """Floating-point type of the networks (and of the outputs)."""
        return self._basis.dtype

    def __call__(self, theta: np.ndarray):
        var = softplus(self._var(theta))
        var += self.var_floor
        return self.means(theta), var

    def means(self, theta: np.ndarray) -> np.ndarray:
        """The de-standardised means ``y`` of :meth:`__call__` alone, (M, n, 60): the variance
        network is not run (the emulator's ``predict(..., aleatoric=False)``)."""
        b = self._basis(theta[:, 2:])
        c = alignment_p2_table(theta[:, :2])
        # per point, the factors of the six basis blocks [1, c_c, c_s, c_c^2, c_c c_s, c_s^2]
        if len(c) == 1:  # a sampler's single point: one small array instead of five operations
            cc, cs = c[0]
            g = np.array([[1.0, cc, cs, cc * cc, cc * cs, cs * cs]], dtype=b.dtype)
        else:
            g = np.empty((len(c), 6), dtype=b.dtype)
            g[:, 0] = 1.0
            g[:, 1:3] = c
            np.multiply(c[:, 0:1], c, out=g[:, 3:5])
            np.multiply(c[:, 1], c[:, 1], out=g[:, 5])
        w = b.reshape(b.shape[:-1] + (6, 20))
        w *= g[:, :, None]
        return np.matmul(b, self._sum_blocks if b.dtype == np.float64 else self._sum_blocks32)


def _chain(prefix: str, n_layers: int, n_in: int, width: int, out: str, n_out: int) -> dict:
    shapes, prev = {}, n_in
    for i in range(n_layers):
        shapes[f"{prefix}.{i}.weight"], shapes[f"{prefix}.{i}.bias"] = (width, prev), (width,)
        prev = width
    shapes[f"{out}.weight"], shapes[f"{out}.bias"] = (n_out, prev), (n_out,)
    return shapes


def _stored_chain(member, prefix: str, cfg, n_key: str, width_key: str):
    """(layers, width) of a hidden chain: from the config, else from the stored arrays."""
    n_layers = sum(1 for k in member if k.startswith(prefix + ".") and k.endswith(".weight"))
    first = np.shape(member.get(f"{prefix}.0.weight", ()))
    return int(cfg.get(n_key, n_layers)), int(cfg.get(width_key, first[0] if first else 0))


def mlp_shapes(config, member, layout) -> dict:
    """State-dict key -> shape of an ``MLPNet`` (registry ``shapes`` of "mlp")."""
    n_hidden, width = _stored_chain(member, "hidden", config, "n_hidden", "width")
    return _chain("hidden", n_hidden, layout.n_inputs, width, "out", 2 * layout.n_out)


def factorised_shapes(config, member, layout) -> dict:
    """State-dict key -> shape of a ``FactorisedNet`` (registry ``shapes`` of "factorised")."""
    n_in, n_bins = layout.n_inputs, layout.statistics[0].n_bins
    n_hidden, width = _stored_chain(member, "hidden", config, "n_hidden", "width")
    var_hidden, var_width = _stored_chain(member, "var_hidden", config, "var_hidden", "var_width")
    return {**_chain("hidden", n_hidden, n_in - 2, width, "basis", 6 * n_bins),
            **_chain("var_hidden", var_hidden, n_in, var_width, "var_out", layout.n_out)}


def factorised_box_config(config, low, high) -> dict:
    """Physical (mu_cen, mu_sat) at the input box edges, so the network can compute c(mu)."""
    return {**config, "mu_low": [float(low[0]), float(low[1])],
            "mu_high": [float(high[0]), float(high[1])]}


def predict_in_blocks(block, arr, n_out: int, epistemic: bool, block_size: int, threads: int = 1):
    """A large batch block by block, so every intermediate array stays in the CPU cache.

    ``block(points)`` returns (mean, aleatoric, epistemic or None), each (k, n_out), for up to
    ``block_size`` points; ``threads`` threads share the blocks (numpy releases the GIL). One BLAS
    thread: these matrices are small, and BLAS threads only contend with the caller's own
    parallelism (measured 15x slower with 2 threads on a busy 2-core machine).
    """
    from threadpoolctl import threadpool_limits

    n = len(arr)
    mean, alea = np.empty((n, n_out)), np.empty((n, n_out))
    epi = np.empty((n, n_out)) if epistemic else None
    starts = range(0, n, block_size)

    def run(chunk):
        for start in chunk:
            stop = start + block_size
            m, a, e = block(arr[start:stop])
            mean[start:stop], alea[start:stop] = m, a
            if epistemic:
                epi[start:stop] = e

    n_threads = min(threads, len(starts))
    with threadpool_limits(limits=1, user_api="blas"):
        if n_threads == 1:
            run(starts)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(n_threads) as pool:
                # interleaved blocks: every thread gets the same share of the work
                for future in [pool.submit(run, starts[i::n_threads]) for i in range(n_threads)]:
                    future.result()
    return mean, alea, epi
