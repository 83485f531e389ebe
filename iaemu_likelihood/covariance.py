"""The emulator covariance of the output vector at a point: aleatoric and epistemic terms.

``aleatoric``: ``D R D``, the covariance of ONE mock realization around the mean (``D`` the
predicted aleatoric standard deviations, ``R`` the shipped residual correlation). ``epistemic``:
``E C E``, the emulator's own uncertainty of the mean (``E`` the calibrated epistemic standard
deviations, ``C`` the correlation of the emulator's errors, or the identity for weights without
one). The vocabulary of terms is :data:`iaemu_likelihood.layout.COVARIANCE_TERMS`.
"""
from __future__ import annotations

import numpy as np

from .emulator_options import CHUNK_POINTS, check_n_samples
from .layout import parse_terms
from .prediction import check_prediction
from .support import check_batch_memory

__all__ = ["add_covariance", "point_covariance", "batch_covariance", "emulator_covariance"]


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
            cov = np.zeros((epi.size, epi.size)) if cov is None else cov
            cov[np.diag_indices(epi.size)] += epi
        else:
            se = np.sqrt(epi)
            part = np.multiply.outer(se, se)
            part *= epistemic_correlation
            cov = part if cov is None else cov + part
    return cov


def batch_covariance(var, epi, terms, residual_correlation, epistemic_correlation, chunk: int):
    """Covariances (m, n_out, n_out) of m points, the sum of the requested terms, built ``chunk``
    points at a time (the temporaries stay small next to the result).

    Parameters
    ----------
    var, epi : ndarray, shape (m, n_out), or None
        Aleatoric and epistemic variances (each may be None when its term is not requested).
    terms : tuple of str
        Validated terms.
    residual_correlation : ndarray, shape (n_out, n_out)
    epistemic_correlation : ndarray or None
    chunk : int
        Points per chunk.
    """
    ref = var if var is not None else epi
    cov = np.zeros(ref.shape + ref.shape[-1:])
    for start in range(0, len(ref), chunk):
        part = slice(start, start + chunk)
        add_covariance(cov[part], None if var is None else var[part],
                       None if epi is None else epi[part], terms, residual_correlation,
                       epistemic_correlation)
    return cov


def emulator_covariance(emulator, theta, terms, n_samples=None, prediction=None):
    """:meth:`IAEmulator.covariance <iaemu_likelihood.emulator.IAEmulator.covariance>`: the
    requested terms at one point (n_out, n_out) or n points (n, n_out, n_out)."""
    terms = parse_terms(terms, "terms", allow_empty=False)
    n_samples = check_n_samples(n_samples)
    epistemic = "epistemic" in terms
    matrix_bytes = emulator.n_out * emulator.n_out * 8
    if prediction is None:
        arr, single = emulator._as_array(
            theta, matrix_bytes + emulator._predict_bytes_per_point(epistemic, n_samples), "covariance")
        pred = emulator.predict(arr[0] if single else arr, epistemic=epistemic, n_samples=n_samples)
    else:
        pred = prediction
        check_prediction(pred, None if theta is None else emulator._domain.parse(theta), epistemic,
                         "aleatoric" in terms)
    mean = pred.vector()
    if mean.ndim == 2:
        check_batch_memory(len(mean), matrix_bytes, "covariance", emulator.max_batch_bytes)
    var = pred.variance_vector() if "aleatoric" in terms else None
    epi = pred.epistemic_vector() if epistemic else None
    if mean.ndim == 1:
        var = None if var is None else var[None, :]
        epi = None if epi is None else epi[None, :]
    cov = batch_covariance(var, epi, terms, emulator.residual_correlation,
                           emulator.epistemic_correlation, CHUNK_POINTS)
    return cov[0] if mean.ndim == 1 else cov
