"""The emulator covariance of the output vector at a point: aleatoric and epistemic terms.

``aleatoric``: ``D R D``, the covariance of ONE mock realization around the mean (``D`` the
predicted aleatoric standard deviations, ``R`` the shipped residual correlation). ``epistemic``:
``E C E``, the emulator's own uncertainty of the mean (``E`` the calibrated epistemic standard
deviations, ``C`` the correlation of the emulator's errors, or the identity for weights without
one). The vocabulary of terms is :data:`iaemu_likelihood.layout.COVARIANCE_TERMS`.
"""
from __future__ import annotations

import numpy as np

__all__ = ["add_covariance", "point_covariance"]


def add_covariance(out, var, epi, terms, residual_correlation, epistemic_correlation) -> None:
    """Add the requested terms for points ``var``/``epi`` (m, n_out) into ``out`` (m, n_out, n_out).

    Parameters
    ----------
    out : ndarray, shape (m, n_out, n_out)
        Accumulated in place.
    var, epi : ndarray, shape (m, n_out)
        Aleatoric and epistemic variances (``epi`` may be None without "epistemic").
    terms : tuple of str
        Validated terms.
    residual_correlation : ndarray, shape (n_out, n_out)
    epistemic_correlation : ndarray or None
    """
    if "aleatoric" in terms:
        sd = np.sqrt(var)
        out += (sd[:, :, None] * sd[:, None, :]) * residual_correlation  # exactly symmetric
    if "epistemic" in terms:
        if epistemic_correlation is None:
            idx = np.arange(out.shape[-1])
            out[:, idx, idx] += epi
        else:
            se = np.sqrt(epi)
            out += (se[:, :, None] * se[:, None, :]) * epistemic_correlation


def point_covariance(var, epi, terms, residual_correlation, epistemic_correlation):
    """The covariance (n_out, n_out) of ONE point: the sum of the requested terms, in as few array
    operations as a sampler's step allows (the same products as :func:`add_covariance`).

    Parameters
    ----------
    var, epi : ndarray, shape (n_out,)
        Aleatoric and epistemic variances (``epi`` may be None without "epistemic").
    terms : tuple of str
        Validated terms.
    residual_correlation : ndarray, shape (n_out, n_out)
    epistemic_correlation : ndarray or None
    """
    cov = None
    if "aleatoric" in terms:
        sd = np.sqrt(var)
        cov = np.multiply.outer(sd, sd)
        cov *= residual_correlation
    if "epistemic" in terms:
        if epistemic_correlation is None:
            cov = np.zeros((var.size, var.size)) if cov is None else cov
            cov[np.diag_indices(var.size)] += epi
        else:
            se = np.sqrt(epi)
            part = np.multiply.outer(se, se)
            part *= epistemic_correlation
            cov = part if cov is None else cov + part
    return cov
