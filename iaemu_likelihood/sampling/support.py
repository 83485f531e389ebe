"""The region a sampler explores: prior box, fixed values and the emulator's training-support band.

Cobaya's posterior for ``IAEmuTheory`` is uniform on the prior box of the sampled parameters
and zero where the emulator refuses a point. Where the weights record a ``linear_band`` support
(``metadata["support"]``), each dependent HOD parameter ``p`` must lie in
``[max(lo_p + s_p x, floor_p), hi_p + s_p x]`` around a line in the pivot ``x = logMmin``. With
the prior box this gives, for a given pivot value, an interval per parameter, so the support is
``{x in [x_lo, x_hi], p in [a_p(x), b_p(x)]}``. :class:`Support` holds those arrays;
:func:`conditional_bounds` evaluates ``a_p(x), b_p(x)``, and :meth:`Support.to_theta` maps
unconstrained coordinates onto the support (normal-CDF maps), with the log-Jacobian
:meth:`Support.log_jacobian`, so samplers see no hard edges (numpy or jax.numpy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..conventions import PARAM_NAMES
from ..errors import IAEmuError

__all__ = ["Support", "SupportError", "conditional_bounds"]


class SupportError(IAEmuError, ValueError):
    """Fixed values or priors leave no point inside the emulator's training support."""


@dataclass(frozen=True)
class Support:
    """Sampled region of a posterior.

    Attributes
    ----------
    names : tuple of str
        Sampled parameters, in sampling order.
    index : ndarray of int, shape (d,)
        Position of each sampled parameter among the emulator's inputs.
    base : ndarray, shape (n_inputs,)
        Full input vector with the fixed values (NaN at sampled positions).
    low, high : ndarray, shape (d,)
        Bounds of the sampled parameters: the prior box cut to the emulator's training ranges
        (their own units: log10(Msun/h) for masses).
    pivot : int or None
        Position (in ``names``) of the sampled band pivot, None if the pivot is fixed or there
        is no band.
    pivot_value : float or None
        The fixed pivot value, when the pivot is fixed and a band exists.
    pivot_range : (float, float)
        Pivot values for which every band interval is non-empty (equal to the prior bounds when
        the band does not narrow them).
    slope, low_intercept, high_intercept, floor : ndarray, shape (d,)
        Band of each sampled parameter (0, -inf, inf, -inf for parameters outside the band).
    """

    names: tuple
    index: np.ndarray
    base: np.ndarray
    low: np.ndarray
    high: np.ndarray
    pivot: int | None
    pivot_value: float | None
    pivot_range: tuple
    slope: np.ndarray
    low_intercept: np.ndarray
    high_intercept: np.ndarray
    floor: np.ndarray

    @property
    def dim(self) -> int:
        """Number of sampled parameters."""
        return len(self.names)

    @classmethod
    def build(cls, names, low, high, fixed: dict, support_metadata: dict | None,
              input_names=PARAM_NAMES, input_bounds: dict | None = None) -> Support:
        """Support of sampled ``names`` with prior bounds ``low``/``high`` and ``fixed`` values.

        Parameters
        ----------
        names : sequence of str
            Sampled emulator inputs (a subset of ``input_names``).
        low, high : array_like, shape (d,)
            Finite prior bounds.
        fixed : dict
            ``{name: value}`` of every non-sampled emulator input.
        support_metadata : dict or None
            The weights' ``metadata["support"]`` (None: box only).
        input_names : sequence of str
            The emulator's inputs in order (default the seven HOD + alignment parameters).
        input_bounds : dict, optional
            ``{name: (low, high)}`` training ranges of the inputs (``IAEmulator.bounds``): the
            prior box is cut to them (the emulator refuses points outside).

        Raises
        ------
        SupportError
            The fixed values and priors leave no point inside the band.
        """
        names, input_names = tuple(names), list(input_names)
        low = np.array(low, dtype=float)
        high = np.array(high, dtype=float)
        for j, name in enumerate(names):
            if input_bounds and name in input_bounds:
                low[j] = max(low[j], float(input_bounds[name][0]))
                high[j] = min(high[j], float(input_bounds[name][1]))
        index = np.array([input_names.index(n) for n in names], dtype=int)
        base = np.full(len(input_names), np.nan)
        for name, value in fixed.items():
            base[input_names.index(name)] = float(value)
        d = len(names)
        slope, lo_int = np.zeros(d), np.full(d, -np.inf)
        hi_int, floor = np.full(d, np.inf), np.full(d, -np.inf)
        if not support_metadata:
            return cls(names, index, base, low, high, None, None, (math.nan, math.nan), slope,
                       lo_int, hi_int, floor)
        from ..support import band_arrays  # the one reading of metadata["support"]

        piv, dep, s_all, lo_all, hi_all, fl_all = band_arrays(support_metadata, input_names)
        pivot_name = input_names[piv]
        pivot = names.index(pivot_name) if pivot_name in names else None
        if pivot is None:
            x_lo = x_hi = float(base[piv])
        else:
            x_lo, x_hi = float(low[pivot]), float(high[pivot])
        # linear constraints a x + b <= 0 on the pivot, from every band parameter
        constraints = []
        for k, p in enumerate(dep):
            s, lo_k, hi_k, fl_k = s_all[k], lo_all[k], hi_all[k], fl_all[k]
            name = input_names[p]
            if name in names:
                j = names.index(name)
                slope[j], lo_int[j], hi_int[j], floor[j] = s, lo_k, hi_k, fl_k
                constraints += [(-s, low[j] - hi_k, name), (s, lo_k - high[j], name)]
                if math.isfinite(fl_k):
                    constraints += [(-s, fl_k - hi_k, name), (0.0, fl_k - high[j], name)]
            else:
                v = float(base[p])
                constraints += [(s, lo_k - v, name), (-s, v - hi_k, name), (0.0, fl_k - v, name)]
        for a, b, name in constraints:
            if a > 0:
                x_hi = min(x_hi, -b / a)
            elif a < 0:
                x_lo = max(x_lo, -b / a)
            elif b > 0:
                x_lo, x_hi = math.inf, -math.inf
            if not x_lo <= x_hi:
                what = (f"{pivot_name} prior [{low[pivot]:g}, {high[pivot]:g}]" if pivot is not None
                        else f"{pivot_name} fixed to {base[piv]:g}")
                raise SupportError(
                    f"parameter {name!r}: with {what} its prior or fixed value leaves no point "
                    f"inside the emulator's training support "
                    f"({support_metadata.get('description', 'band around linear relations')}); "
                    "see `iaemu info` for the band")
        return cls(names, index, base, low, high, pivot,
                   None if pivot is not None else float(base[piv]), (x_lo, x_hi), slope, lo_int,
                   hi_int, floor)

    def full(self, theta):
        """Full emulator inputs (..., 7) from sampled values (..., d) (numpy)."""
        theta = np.asarray(theta, dtype=float)
        out = np.broadcast_to(self.base, theta.shape[:-1] + self.base.shape).copy()
        out[..., self.index] = theta
        return out

    def pivot_of(self, theta, xp=np):
        """Pivot value(s) of sampled points (..., d)."""
        if self.pivot is not None:
            return theta[..., self.pivot]
        return xp.full(theta.shape[:-1], np.nan if self.pivot_value is None else self.pivot_value)

    def to_theta(self, z, xp=np):
        """Map unconstrained points ``z`` (..., d) onto the support (box and band).

        The pivot is ``x_lo + (x_hi - x_lo) Phi(z_x)`` over :attr:`pivot_range`, every other
        parameter ``a(x) + (b(x) - a(x)) Phi(z)`` over its interval given the pivot
        (:func:`conditional_bounds`), with ``Phi`` the standard normal CDF. ``xp`` is ``numpy``
        or ``jax.numpy``.

        The normal CDF rather than the logistic: where the posterior is flat up to an edge (here
        ``logM0`` down to the band, ``sigma_logM`` down to its 0.05 floor) the logistic map turns
        the flat part into an exponential tail in ``z`` (``logM0``'s kurtosis 9.5 on a Cobaya
        chain of ia_hod.yaml), the normal CDF into a Gaussian one (kurtosis 6.0); and the uniform
        prior becomes a standard normal in ``z``.
        """
        a, b = conditional_bounds(self, self._pivot_from_z(z, xp), xp)
        return _scale(a, b, z, xp)

    def log_jacobian(self, z, xp=np):
        """``ln |det dtheta/dz|`` of :meth:`to_theta` at ``z`` (..., d).

        The map is triangular (the pivot first, then each parameter given the pivot), so the
        determinant is the product of the diagonal terms ``(b - a) phi(z)``.
        """
        a, b = conditional_bounds(self, self._pivot_from_z(z, xp), xp)
        return xp.sum(xp.log(b - a) - 0.5 * z * z - _LN_SQRT_2PI, axis=-1)

    def to_z(self, theta):
        """Inverse of :meth:`to_theta` for points strictly inside the support (numpy)."""
        from scipy.special import ndtri

        theta = np.asarray(theta, dtype=float)
        a, b = conditional_bounds(self, self.pivot_of(theta))
        low = (theta - a) / (b - a)
        # the upper half from its own distance to b: 1 - low loses the digits near b
        return np.where(low < 0.5, ndtri(low), -ndtri((b - theta) / (b - a)))

    def _pivot_from_z(self, z, xp):
        if self.pivot is None:
            return self.pivot_value
        lo, hi = self.pivot_range
        return _scale(lo, hi, z[..., self.pivot], xp)

    def contains(self, theta, xp=np):
        """Whether sampled points (..., d) lie in the box and the band (bool array; ``xp``:
        ``numpy`` or ``jax.numpy``, for use inside a compiled function)."""
        theta = xp.asarray(theta, dtype=float)
        lo, hi = conditional_bounds(self, self.pivot_of(theta, xp), xp)
        return xp.all((theta >= lo) & (theta <= hi), axis=-1)


_LN_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _scale(a, b, z, xp):
    """``a + (b - a) Phi(z)``, written from the nearer end (``b - (b - a) Phi(-z)`` for z > 0) so
    that both ends keep their digits; numpy (scipy) or jax.numpy."""
    if xp is np:
        from scipy.special import ndtr
    else:
        from jax.scipy.special import ndtr
    return xp.where(z < 0, a + (b - a) * ndtr(z), b - (b - a) * ndtr(-z))


def conditional_bounds(support: Support, pivot_value, xp=np):
    """Bounds ``(a, b)`` of every sampled parameter given the pivot value.

    Parameters
    ----------
    support : Support
    pivot_value : array_like, shape (...)
        logMmin (log10 Msun/h); ignored (may be NaN) when there is no band.
    xp : module
        ``numpy`` or ``jax.numpy``.

    Returns
    -------
    a, b : arrays, shape (..., d)
        ``a = max(low, lo_int + s x, floor)``, ``b = min(high, hi_int + s x)``; the pivot itself
        gets its feasible range :attr:`Support.pivot_range`.
    """
    low, high = xp.asarray(support.low), xp.asarray(support.high)
    if support.pivot is None and support.pivot_value is None:
        shape = np.shape(pivot_value) + (support.dim,)
        return xp.broadcast_to(low, shape), xp.broadcast_to(high, shape)
    x = xp.asarray(pivot_value)[..., None]
    x = xp.where(xp.isfinite(x), x, 0.0)
    s = xp.asarray(support.slope)
    with np.errstate(invalid="ignore"):
        a = xp.maximum(xp.maximum(low, xp.asarray(support.low_intercept) + s * x),
                       xp.asarray(support.floor))
        b = xp.minimum(high, xp.asarray(support.high_intercept) + s * x)
    if support.pivot is not None:
        onehot = np.zeros(support.dim, dtype=bool)
        onehot[support.pivot] = True
        a = xp.where(onehot, support.pivot_range[0], a)
        b = xp.where(onehot, support.pivot_range[1], b)
    return a, b
