"""Accuracy and calibration metrics of an emulator on a test set (pure functions).

Shapes: ``pred``/``true`` are (n_points, n_bins) unless said otherwise; every function returns
one value per bin, shape (n_bins,), reducing over points (NaN where a bin has no usable point).
``true`` is the mean over a point's realizations and ``sigma`` the scatter of ONE realization
(ddof=1); the realization mean is itself noisy with scatter ``sigma / sqrt(n_realizations)``,
which sets the noise floors given by :func:`noise_floor_fractional` and
:func:`noise_floor_median_sigma`.
"""
from __future__ import annotations

import numpy as np
from scipy import special, stats

__all__ = ["mean_abs_fractional_error", "significant_mask", "median_residual_sigma",
           "spearman_per_bin", "nrmse", "smape", "calibration_dex", "coverage",
           "epistemic_to_aleatoric", "noise_floor_fractional", "noise_floor_median_sigma",
           "expected_log10_std_bias", "interval_z"]


def _masked_reduce(values, mask, reducer):
    values = np.asarray(values, dtype=float)
    if mask is not None:
        values = np.where(np.asarray(mask, dtype=bool), values, np.nan)
    out = np.full(values.shape[1:], np.nan)
    counts = np.sum(np.isfinite(values), axis=0)
    if np.any(counts):
        with np.errstate(all="ignore"):
            out[counts > 0] = reducer(values[:, counts > 0], axis=0)
    return out


def mean_abs_fractional_error(pred, true, mask=None) -> np.ndarray:
    """Mean over points of ``|pred - true| / |true|``, per bin (only where ``mask`` is True)."""
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.abs(pred - true) / np.abs(true)
    return _masked_reduce(frac, mask, np.nanmean)


def significant_mask(true, sigma, n_realizations: int, nsigma: float = 3.0) -> np.ndarray:
    """True where ``|true| > nsigma * sigma / sqrt(n_realizations)`` (the mean is detected).

    Fractional errors of a statistic consistent with zero are meaningless; omega is scored
    only where this mask holds.
    """
    sigma_mean = np.asarray(sigma, dtype=float) / np.sqrt(n_realizations)
    return np.abs(np.asarray(true, dtype=float)) > nsigma * sigma_mean


def median_residual_sigma(pred, true, sigma, absolute: bool = True) -> np.ndarray:
    """Median over points of ``(pred - true) / sigma`` (of its absolute value by default)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (np.asarray(pred, dtype=float) - np.asarray(true, dtype=float)) / np.asarray(sigma, dtype=float)
    return _masked_reduce(np.abs(r) if absolute else r, None, np.nanmedian)


def spearman_per_bin(pred, true) -> np.ndarray:
    """Spearman rank correlation between prediction and truth across points, per bin."""
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    out = np.full(pred.shape[1], np.nan)
    for j in range(pred.shape[1]):
        if pred.shape[0] > 2 and np.ptp(true[:, j]) > 0 and np.ptp(pred[:, j]) > 0:
            out[j] = stats.spearmanr(pred[:, j], true[:, j]).statistic
    return out


def nrmse(pred, true) -> np.ndarray:
    """Root-mean-square error divided by the standard deviation of ``true`` over points."""
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    rmse = np.sqrt(np.mean((pred - true) ** 2, axis=0))
    spread = np.std(true, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread > 0, rmse / spread, np.nan)


def smape(pred, true) -> np.ndarray:
    """Symmetric mean absolute percentage error, ``mean 2|p - t| / (|p| + |t|)`` (0..2, not %)."""
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    den = np.abs(pred) + np.abs(true)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = np.where(den > 0, 2.0 * np.abs(pred - true) / den, 0.0)
    return val.mean(axis=0)


def calibration_dex(pred_sigma, true_sigma) -> np.ndarray:
    """Median over points of ``log10(pred_sigma / true_sigma)``: the aleatoric calibration bias.

    ``true_sigma`` estimated from ``n`` realizations is itself scattered; its median log10 bias is
    small (see :func:`expected_log10_std_bias`) but its scatter is not, so only the median is a
    useful per-point summary.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log10(np.asarray(pred_sigma, dtype=float) / np.asarray(true_sigma, dtype=float))
    return _masked_reduce(ratio, None, np.nanmedian)


def interval_z(level: float) -> float:
    """Half-width in sigma of the central Gaussian interval of probability ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return float(stats.norm.ppf(0.5 + 0.5 * level))


def coverage(pred, sigma, samples, level: float = 0.68) -> np.ndarray:
    """Fraction of ``samples`` inside the predicted central interval ``pred +- z(level) * sigma``.

    Parameters
    ----------
    pred, sigma : array_like, shape (n_points, n_bins)
        Predicted centre and standard deviation.
    samples : array_like, shape (n_points, n_bins) or (n_points, n_realizations, n_bins)
        Values the interval should contain (e.g. every test realization, which a predicted
        one-realization sigma should cover at the nominal rate).
    level : float
        Nominal probability, e.g. 0.68 or 0.95.
    """
    pred, sigma, samples = (np.asarray(a, dtype=float) for a in (pred, sigma, samples))
    if samples.ndim == 3:
        pred, sigma = pred[:, None, :], sigma[:, None, :]
    inside = np.abs(samples - pred) <= interval_z(level) * sigma
    return inside.reshape(-1, inside.shape[-1]).mean(axis=0)


def epistemic_to_aleatoric(epi_var, ale_var) -> np.ndarray:
    """Median over points of ``sqrt(epi_var / ale_var)``: epistemic sigma in units of aleatoric."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sqrt(np.asarray(epi_var, dtype=float) / np.asarray(ale_var, dtype=float))
    return _masked_reduce(ratio, None, np.nanmedian)


def noise_floor_fractional(true, sigma, n_realizations: int, mask=None) -> np.ndarray:
    """Mean |fractional error| a perfect emulator would show against an n-realization mean.

    The realization mean scatters as ``N(truth, sigma/sqrt(n))``, so
    ``E|error| = sqrt(2/pi) * sigma / sqrt(n)``, divided by ``|true|`` and averaged like
    :func:`mean_abs_fractional_error`.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.sqrt(2.0 / np.pi) * np.asarray(sigma, dtype=float) / np.sqrt(n_realizations) \
            / np.abs(np.asarray(true, dtype=float))
    return _masked_reduce(frac, mask, np.nanmean)


def noise_floor_median_sigma(n_realizations: int) -> float:
    """Median ``|residual| / sigma`` of a perfect emulator against an n-realization mean
    (``0.6745 / sqrt(n)``)."""
    return float(stats.norm.ppf(0.75) / np.sqrt(n_realizations))


def expected_log10_std_bias(n_realizations: int) -> float:
    """``E[log10 s] - log10 sigma`` for the ddof=1 sample std of ``n`` Gaussian draws.

    ``(n-1) s**2 / sigma**2`` is chi-square with ``n-1`` dof, whose log has mean
    ``digamma((n-1)/2) + log 2``; the result is about -0.025 dex for n = 10.
    """
    k = n_realizations - 1
    if k < 1:
        raise ValueError(f"need at least 2 realizations, got {n_realizations}")
    return float(0.5 * (special.digamma(k / 2) + np.log(2.0) - np.log(k)) / np.log(10.0))
