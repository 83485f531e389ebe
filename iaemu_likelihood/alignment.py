"""How the halotools alignment strength ``mu`` enters the correlation functions.

halotools' ``CentralAlignment`` and ``RadialSatelliteAlignment`` draw each galaxy's major axis
``e`` around a reference axis ``a`` (the host halo's major axis for centrals, the radial direction
to the halo centre for satellites): the polar angle follows a Dimroth-Watson distribution,
``p(x) ∝ exp(kappa x^2)`` with ``x = cos(theta)`` and ``kappa = tan(pi mu / 2)``
(``halotools.empirical_models.ia_models.ia_strength_models.alignment_strength`` returns
``-kappa`` in its own sign convention), and the azimuth is uniform. By the addition theorem of
Legendre polynomials, for any fixed unit vector ``n``::

    E[P2(e . n)] = c(mu) P2(a . n),    c(mu) = E[P2(x)] = (3 <x^2> - 1) / 2.

The estimators are sums over pairs of ``|e . r|^2 - 1/3 = (2/3) P2(e . r)`` (omega) and
``|e_i . e_j|^2 - 1/3`` (eta), with orientations drawn independently of each other and of the
positions, so the mean over realizations of a mock is EXACTLY

* ``xi(r)``: independent of ``mu_cen`` and ``mu_sat``;
* ``omega(r) = c(mu_cen) W_c(r) + c(mu_sat) W_s(r)``;
* ``eta(r) = c(mu_cen)^2 E_cc(r) + c(mu_cen) c(mu_sat) E_cs(r) + c(mu_sat)^2 E_ss(r)``,

where ``W`` and ``E`` depend on the HOD parameters only. The ``"factorised"`` emulator
(:class:`iaemu_likelihood.networks.FactorisedNet`) learns those HOD-only functions.

``c`` rises monotonically from -1/2 (mu = -1, axes perpendicular) through 0 (random) to 1
(mu = 1, perfectly aligned). Here ``<x^2> = 1 / (2 y D(y)) - 1 / (2 kappa)`` for
``kappa = y^2 > 0`` (``D``: Dawson's integral), and ``1 / (2 a) - exp(-a) / (sqrt(pi a) erf(sqrt a))``
for ``kappa = -a < 0``; a series near 0.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import dawsn, erf

__all__ = ["alignment_p2", "alignment_p2_derivative", "alignment_p2_table", "torch_alignment_p2",
           "TABLE_SIZE"]

_SMALL_KAPPA = 1e-4
#: step of the central difference giving dc/dmu (c is smooth on [-1, 1])
_DERIVATIVE_STEP = 1e-5
#: Grid points of the interpolation table of :func:`alignment_p2_table` over [-1, 1].
TABLE_SIZE = 2 ** 17 + 1
_TABLE = {}


def _mean_x2(kappa: np.ndarray) -> np.ndarray:
    """<cos^2 theta> under p(x) ∝ exp(kappa x^2) on [-1, 1]."""
    kappa = np.asarray(kappa, dtype=np.float64)
    out = np.empty_like(kappa)
    small = np.abs(kappa) < _SMALL_KAPPA
    pos = (kappa > 0) & ~small
    neg = (kappa < 0) & ~small
    k = kappa[small]
    out[small] = 1.0 / 3.0 + (4.0 / 45.0) * k + (8.0 / 945.0) * k * k
    y = np.sqrt(kappa[pos])
    out[pos] = 0.5 / (y * dawsn(y)) - 0.5 / kappa[pos]
    a = -kappa[neg]
    out[neg] = 0.5 / a - np.exp(-a) / (np.sqrt(np.pi * a) * erf(np.sqrt(a)))
    return out


def _mean_x2_scalar(kappa: float) -> float:
    """:func:`_mean_x2` of one float (same branches and formulas)."""
    kappa = float(kappa)
    if abs(kappa) < _SMALL_KAPPA:
        return 1.0 / 3.0 + (4.0 / 45.0) * kappa + (8.0 / 945.0) * kappa * kappa
    if kappa > 0:
        y = math.sqrt(kappa)
        return 0.5 / (y * float(dawsn(y))) - 0.5 / kappa
    a = -kappa
    return 0.5 / a - math.exp(-a) / (math.sqrt(math.pi * a) * math.erf(math.sqrt(a)))


def alignment_p2(mu) -> np.ndarray:
    """``c(mu) = E[P2(cos theta)]`` of halotools' misalignment distribution (module docstring).

    Parameters
    ----------
    mu : array_like
        Alignment strengths in [-1, 1].

    Returns
    -------
    ndarray
        Same shape as ``mu``; -1/2 at mu = -1, 0 at mu = 0, 1 at mu = 1.
    """
    mu = np.asarray(mu, dtype=np.float64)
    ok = (mu >= -1.0) & (mu <= 1.0)
    if not ok.all():
        raise ValueError(f"alignment strength mu = {float(mu[~ok].ravel()[0])!r} is outside [-1, 1]")
    kappa = np.tan(0.5 * np.pi * mu)  # +-1.6e16 at mu = +-1: the limits to float64 precision
    if mu.size <= 4:  # a sampler's single point: scalar functions beat masked array work
        return np.array([1.5 * _mean_x2_scalar(k) - 0.5 for k in kappa.ravel()]).reshape(mu.shape)
    return 1.5 * _mean_x2(np.atleast_1d(kappa)).reshape(mu.shape) - 0.5


def alignment_p2_derivative(mu) -> np.ndarray:
    """``dc/dmu`` by a central difference (one-sided within one step of +-1)."""
    mu = np.asarray(mu, dtype=np.float64)
    h = _DERIVATIVE_STEP
    hi = np.minimum(mu + h, 1.0)
    lo = np.maximum(mu - h, -1.0)
    return (alignment_p2(hi) - alignment_p2(lo)) / (hi - lo)


def torch_alignment_p2(mu, table: bool = True):
    """:func:`alignment_p2` of a torch tensor, differentiable (float64 numpy underneath).

    With ``table`` (default) the values come from :func:`alignment_p2_table`, as in the numpy
    inference, so torch and numpy predictions agree to round-off; the gradient is always the
    exact ``dc/dmu`` (:func:`alignment_p2_derivative`).
    """
    import torch

    values = alignment_p2_table if table else alignment_p2

    class _P2(torch.autograd.Function):
        @staticmethod
        def forward(ctx, m):
            ctx.save_for_backward(m)
            value = values(m.detach().cpu().double().numpy())
            return torch.as_tensor(value, dtype=m.dtype, device=m.device)

        @staticmethod
        def backward(ctx, grad):
            (m,) = ctx.saved_tensors
            d = alignment_p2_derivative(m.detach().cpu().double().numpy())
            return grad * torch.as_tensor(d, dtype=grad.dtype, device=grad.device)

    return _P2.apply(mu)


def alignment_p2_table(mu) -> np.ndarray:
    """:func:`alignment_p2` by linear interpolation in a table of :data:`TABLE_SIZE` exact values
    (built on first use, ~10 ms): a few microseconds for a sampler's single point, absolute
    error < 1e-9 (tested), far below anything the emulator resolves. ``mu`` is clipped to
    [-1, 1]; callers validate it."""
    if not _TABLE:
        grid = np.linspace(-1.0, 1.0, TABLE_SIZE)
        _TABLE["grid"], _TABLE["values"] = grid, alignment_p2(grid)
    return np.interp(mu, _TABLE["grid"], _TABLE["values"])
