"""Post-hoc calibration of the epistemic variance on the validation split.

A deep ensemble of a few members (or a set of MC-dropout passes) measures the spread of networks
that saw the same data; it does not know how far the whole ensemble's mean is from the truth, and
it usually under-states it (for the first shipped weights, 54% of held-out xi means fell inside
the nominal 68% interval). The standard remedy (variance scaling, Kuleshov et al. 2018; Levi et
al. 2019) multiplies the epistemic variance by one factor per statistic, fitted on data the
networks were not trained on: here the validation split, never the test set.

The factor ``s`` of a statistic is the one at which the mean emulator error is covered at the
nominal rate, pooled over validation points and bins::

    fraction of |pred - truth| <= z_68 * sqrt(s * epi_var + sigma**2 / n)  =  0.68

where ``truth`` is the mean of the point's ``n`` realizations and ``sigma**2 / n`` the noise of
that mean (``sigma``: their ddof = 1 scatter). The emulator multiplies its epistemic variance by
``s`` (``metadata["epistemic"]["scale"]``).
"""
from __future__ import annotations

import logging

import numpy as np
from scipy.stats import norm

from ..conventions import STATISTICS

__all__ = ["fit_epistemic_scale", "fit_epistemic_correlation", "coverage_of_means", "SCALE_RANGE",
           "LEVEL", "CORRELATION_SHRINKAGE"]

log = logging.getLogger(__name__)

#: Nominal level matched by the fit.
LEVEL = 0.68
#: Factors are searched (and clipped) in this range.
SCALE_RANGE = (1e-2, 1e4)
#: Weight of the identity in the shrunk correlation estimate (keeps it well conditioned).
CORRELATION_SHRINKAGE = 0.05


def coverage_of_means(pred, epi_var, truth, noise_var, scale: float = 1.0,
                      level: float = LEVEL) -> float:
    """Fraction of ``|pred - truth| <= z * sqrt(scale * epi_var + noise_var)`` (all entries).

    Parameters
    ----------
    pred, epi_var, truth, noise_var : ndarray of one shape
        Emulator means and epistemic variances; truth (mean of realizations) and its variance.
    scale : float
        Factor on ``epi_var``.
    level : float
        Two-sided Gaussian level giving ``z``.
    """
    z = norm.ppf(0.5 + 0.5 * level)
    err = np.abs(np.asarray(pred, float) - np.asarray(truth, float))
    width = z * np.sqrt(scale * np.asarray(epi_var, float) + np.asarray(noise_var, float))
    return float(np.mean(err <= width))


def fit_epistemic_scale(pred: dict, samples: dict, level: float = LEVEL) -> dict:
    """Variance-scale factor per statistic (see the module docstring).

    Parameters
    ----------
    pred : dict
        ``pred[s]`` (n, 20) ensemble means and ``pred[s + "_epi_var"]`` (n, 20) epistemic
        variances, physical units, for each statistic ``s``.
    samples : dict
        ``samples[s]`` (n, n_realizations, 20): the validation realizations (n_realizations >= 2).
    level : float
        Coverage to match.

    Returns
    -------
    dict
        statistic -> {"scale": s, "coverage_before": ..., "coverage_after": ...}.
    """
    out = {}
    lo, hi = np.log(SCALE_RANGE[0]), np.log(SCALE_RANGE[1])
    for stat in STATISTICS:
        real = np.asarray(samples[stat], dtype=float)
        n_real = real.shape[1]
        if n_real < 2:
            raise ValueError(f"{stat}: need >= 2 realizations per point, got {n_real}")
        truth = real.mean(axis=1)
        noise = real.var(axis=1, ddof=1) / n_real
        p, epi = np.asarray(pred[stat], float), np.asarray(pred[f"{stat}_epi_var"], float)
        if not (np.isfinite(p).all() and np.isfinite(epi).all() and (epi >= 0).all()):
            raise ValueError(f"{stat}: predictions or epistemic variances are not finite and >= 0")

        def cover(log_s):
            return coverage_of_means(p, epi, truth, noise, np.exp(log_s), level)  # noqa: B023  (used in this iteration only)

        before = cover(0.0)
        if cover(lo) >= level:
            log_s = lo  # even a vanishing epistemic term over-covers
        elif cover(hi) < level:
            log_s = hi
        else:  # coverage grows monotonically with s: bisection
            a, b = lo, hi
            for _ in range(60):
                mid = 0.5 * (a + b)
                a, b = (a, mid) if cover(mid) >= level else (mid, b)
            log_s = b
        scale = float(np.exp(log_s))
        out[stat] = {"scale": scale, "coverage_before": before, "coverage_after": cover(log_s)}
        log.info("epistemic scale %s: %.3g (validation coverage of the means %.3f -> %.3f)", stat,
                 scale, before, out[stat]["coverage_after"])
    return out


def fit_epistemic_correlation(pred: dict, samples: dict, scale: dict,
                              shrinkage: float = CORRELATION_SHRINKAGE) -> np.ndarray:
    """Correlation (60, 60) of the emulator's errors across bins and statistics.

    The validation errors ``pred - truth`` of each point, divided by their predicted standard
    deviation ``sqrt(scale * epi_var + sigma**2 / n)``, are pooled over points; their correlation
    matrix, shrunk towards the identity (``(1 - shrinkage) C + shrinkage I``), is what
    :meth:`~iaemu_likelihood.emulator.IAEmulator.covariance` combines with the epistemic standard
    deviations. (The truth-noise part of the errors has the realizations' own correlation; with
    ``sigma**2 / n`` small next to the emulator error it is a minor admixture.)

    Parameters
    ----------
    pred, samples : dict
        As for :func:`fit_epistemic_scale`.
    scale : dict
        Statistic -> the fitted variance factor.
    shrinkage : float
        In [0, 1].

    Returns
    -------
    ndarray, shape (60, 60)
        Symmetric, unit diagonal, positive definite for ``shrinkage > 0``.
    """
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage = {shrinkage!r} must be in [0, 1]")
    z = []
    for stat in STATISTICS:
        real = np.asarray(samples[stat], dtype=float)
        n_real = real.shape[1]
        truth = real.mean(axis=1)
        noise = real.var(axis=1, ddof=1) / n_real
        sd = np.sqrt(scale[stat] * np.asarray(pred[f"{stat}_epi_var"], float) + noise)
        z.append((np.asarray(pred[stat], float) - truth) / np.where(sd > 0, sd, 1.0))
    z = np.concatenate(z, axis=1)
    if z.shape[0] < 3:
        raise ValueError(f"need >= 3 validation points for a correlation, got {z.shape[0]}")
    corr = np.corrcoef(z, rowvar=False)
    corr = np.where(np.isfinite(corr), corr, 0.0)
    np.fill_diagonal(corr, 1.0)
    corr = (1.0 - shrinkage) * corr + shrinkage * np.eye(corr.shape[0])
    return 0.5 * (corr + corr.T)
