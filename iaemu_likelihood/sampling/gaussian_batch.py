"""Gaussian log-likelihoods of many points at once (numpy), equal to :func:`gaussian_terms`.

The samplers evaluate a stack of models ``m_k`` and parameter-dependent covariances ``C_k`` per
call; looping :func:`iaemu_likelihood.likelihood_math.gaussian_terms` over them costs ~200 us per
60-vector in Python overhead. :func:`gaussian_loglike_batch` factorises the whole stack with one
``np.linalg.cholesky`` call and solves it with one batched triangular solve, with the same
convention (``-(chi2 + ln det C + n ln 2 pi) / 2``) and the same refusals (``-inf`` where a value
is not finite or ``C_k`` is not positive definite).

It lives here until :mod:`iaemu_likelihood.likelihood_math` offers a batched core function.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular

from ..likelihood_math import LN_2PI, gaussian_terms

__all__ = ["gaussian_loglike_batch"]


def _solve_lower(chol: np.ndarray, resid: np.ndarray) -> np.ndarray:
    """``L_k^-1 r_k`` for stacks (n, m, m) and (n, m); scipy >= 1.15 solves a stack at once."""
    try:
        return solve_triangular(chol, resid[..., None], lower=True, check_finite=False)[..., 0]
    except ValueError:  # older scipy: 2-d matrices only
        return np.stack([solve_triangular(c, r, lower=True, check_finite=False)
                         for c, r in zip(chol, resid)])


def gaussian_loglike_batch(data, models, covs) -> np.ndarray:
    """Normalised Gaussian log-likelihoods of a stack of models and covariances.

    Parameters
    ----------
    data : array_like, shape (m,)
        Data vector (e.g. the selected xi, omega, eta values; dimensionless).
    models : array_like, shape (n, m)
        Model vectors, same units as ``data``.
    covs : array_like, shape (n, m, m)
        Covariance of ``data - models[k]`` for each point (only lower triangles are read).

    Returns
    -------
    ndarray, shape (n,)
        ``-(chi2 + ln det C + m ln 2 pi) / 2`` per point, ``-inf`` where
        :func:`~iaemu_likelihood.likelihood_math.gaussian_terms` fails (a non-finite value, a
        covariance that is not positive definite, a non-finite result). Never NaN.
    """
    data = np.asarray(data, dtype=float)
    models = np.asarray(models, dtype=float)
    covs = np.asarray(covs, dtype=float)
    n, m = models.shape
    if data.shape != (m,) or covs.shape != (n, m, m):
        raise ValueError(f"shapes data {data.shape}, models {models.shape}, covs {covs.shape}; "
                         "expected (m,), (n, m), (n, m, m)")
    out = np.full(n, -np.inf)
    resid = data - models
    ok = np.isfinite(resid).all(axis=1) & np.isfinite(covs).all(axis=(1, 2))
    if not ok.all():
        models, resid, covs = models[ok], resid[ok], covs[ok]
    try:
        chol = np.linalg.cholesky(covs)
    except np.linalg.LinAlgError:  # one of them is not positive definite: point by point
        out[ok] = [gaussian_terms(data, mk, ck).loglike() for mk, ck in zip(models, covs)]
        return out
    diag = np.diagonal(chol, axis1=1, axis2=2)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        white = _solve_lower(chol, resid)
        value = -0.5 * (np.einsum("ij,ij->i", white, white) + 2.0 * np.log(diag).sum(axis=1)
                        + m * LN_2PI)
    value[~((diag > 0).all(axis=1) & np.isfinite(value))] = -np.inf
    out[ok] = value
    return out
