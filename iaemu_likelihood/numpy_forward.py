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

__all__ = ["MLPEnsemble", "softplus", "ACTIVATIONS"]

N_OUTPUTS = 60


def softplus(z: np.ndarray) -> np.ndarray:
    """``log(1 + exp(z))`` computed without overflow (same as ``torch.nn.functional.softplus``
    up to its linear regime above z = 20, where the two differ by < exp(-20))."""
    out = np.exp(-np.abs(z))
    np.log1p(out, out=out)
    out += np.maximum(z, 0.0)
    return out


def _silu_(h):
    t = np.negative(h)
    np.exp(t, out=t)
    t += 1.0
    h /= t
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
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation = {activation!r} is not one of {sorted(ACTIVATIONS)}")
        if not state_dicts:
            raise ValueError("state_dicts is empty: an ensemble needs at least one member")
        n_hidden = sum(1 for k in state_dicts[0] if k.startswith("hidden.") and k.endswith(".weight"))
        if n_hidden < 1:
            raise ValueError("state dict has no 'hidden.{i}.weight' arrays: not an MLPNet")
        self.n_members = len(state_dicts)
        self.activation = ACTIVATIONS[activation]
        self.var_floor = float(var_floor)

        def stack(key):
            return np.stack([np.asarray(sd[key], dtype=np.float64) for sd in state_dicts])

        # weights as (M, n_in, n_out) so that h @ W works on (M, n, n_in)
        Ws = [stack(f"hidden.{i}.weight").transpose(0, 2, 1) for i in range(n_hidden)]
        bs = [stack(f"hidden.{i}.bias")[:, None, :] for i in range(n_hidden)]
        Ws.append(stack("out.weight").transpose(0, 2, 1))
        bs.append(stack("out.bias")[:, None, :])

        low = np.asarray(input_low, dtype=np.float64)
        high = np.asarray(input_high, dtype=np.float64)
        scale = 2.0 / (high - low)
        offset = -1.0 - low * scale
        # float64: fold x_norm = theta * scale + offset into the first layer; lower precisions
        # keep the first layer as it is and normalise the inputs in float64 first (folding would
        # cancel digits: |theta * scale| ~ 10 for the masses)
        self._in_scale, self._in_offset = scale, offset
        self._first = (Ws[0], bs[0])
        bs[0] = bs[0] + np.einsum("i,mij->mj", offset, Ws[0])[:, None, :]
        Ws[0] = Ws[0] * scale[None, :, None]
        # fold y = mean * std + mu into the mean half of the last layer
        mu = np.asarray(output_mean, dtype=np.float64)
        std = np.asarray(output_std, dtype=np.float64)
        Ws[-1] = Ws[-1].copy()
        bs[-1] = bs[-1].copy()
        Ws[-1][:, :, :N_OUTPUTS] *= std
        bs[-1][:, :, :N_OUTPUTS] = bs[-1][:, :, :N_OUTPUTS] * std + mu
        self._Ws = [np.ascontiguousarray(w) for w in Ws]
        self._bs = bs

    @property
    def dtype(self) -> np.dtype:
        """Floating-point type of the stacked weights (and of the outputs)."""
        return self._Ws[0].dtype

    def astype(self, dtype) -> "MLPEnsemble":
        """A copy computing in ``dtype`` (e.g. ``np.float32``: ~2x the batched throughput, with
        relative differences ~1e-6 from float64, far below the emulator's own error). The
        normalisation stays folded in, computed in float64 before the cast."""
        dtype = np.dtype(dtype)
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        Ws, bs = list(self._Ws), list(self._bs)
        if dtype != np.float64:
            Ws[0], bs[0] = self._first
        new._Ws = [np.ascontiguousarray(w, dtype=dtype) for w in Ws]
        new._bs = [np.asarray(b, dtype=dtype) for b in bs]
        return new

    def __call__(self, theta: np.ndarray):
        """Evaluate every member.

        Parameters
        ----------
        theta : ndarray, shape (n, 7)
            Physical parameters (validated by the caller), cast to :attr:`dtype`.

        Returns
        -------
        y : ndarray, shape (M, n, 60)
            De-standardised means in transformed space (log xi, omega, eta).
        var_std : ndarray, shape (M, n, 60)
            Standardised variances (softplus + floor).
        """
        return self._forward(theta)

    def _forward(self, theta):
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
        var = softplus(o[..., N_OUTPUTS:])
        var += self.var_floor
        return o[..., :N_OUTPUTS], var
