"""Gaussian likelihood maths and scale cuts, free of any sampler.

Everything the Cobaya (and CosmoSIS) likelihoods compute lives here as plain numpy functions,
so it can be tested and reused without a sampler.

Convention for the log-likelihood (used by every iaemu likelihood)::

    ln L = -1/2 [ chi^2 + ln det C + n ln(2 pi) ],    chi^2 = (d - m)^T C^{-1} (d - m)

i.e. the fully normalised multivariate Gaussian density of the data vector ``d`` (length ``n``)
given the model ``m(theta)`` and the covariance ``C(theta)``. The log-determinant is essential:
``C`` contains the emulator's parameter-dependent uncertainty, and without ``ln det C`` the
posterior drifts to where the emulator is least certain. The constant ``n ln(2 pi)`` does not
change posteriors; it is kept so that ``ln L`` is a proper log-density (comparable between scale
cuts only together with the change of ``n``).

Vectors follow the emulator layout of :mod:`iaemu_likelihood.conventions`: 60 elements
``[xi(20), omega(20), eta(20)]``, each statistic ordered by increasing separation ``r``
(comoving h^-1 Mpc).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
from scipy.linalg import solve_triangular
from scipy.linalg.lapack import dpotrf, dtrtrs

from .conventions import STATISTICS

__all__ = ["LN_2PI", "GaussianTerms", "gaussian_terms", "gaussian_loglike", "gaussian_loglike_batched",
           "cholesky_terms", "scale_cut_mask", "match_bins", "normalise_statistics",
           "normalise_r_limits", "FitMonitor", "POOR_FIT_PVALUE"]

LN_2PI = math.log(2.0 * math.pi)

#: relative tolerance when matching measured separations to emulator bin centres
R_MATCH_RTOL = 1e-6
#: a best point whose chi^2 has a smaller probability to exceed (n degrees of freedom) is reported
POOR_FIT_PVALUE = 1e-6


class GaussianTerms(NamedTuple):
    """Terms of a Gaussian log-likelihood; see :func:`gaussian_terms`."""

    chi2: float
    """(d - m)^T C^-1 (d - m)"""
    logdet: float
    """natural log of det C"""
    n: int
    """length of the data vector"""

    def loglike(self, include_constant: bool = True) -> float:
        """``-(chi2 + logdet [+ n ln 2 pi]) / 2``; -inf if any term is not finite."""
        value = -0.5 * (self.chi2 + self.logdet + (self.n * LN_2PI if include_constant else 0.0))
        return value if math.isfinite(value) else -math.inf


_FAILED = GaussianTerms(math.inf, math.inf, 0)


def gaussian_terms(data, model, cov) -> GaussianTerms:
    """Chi-square and log-determinant of a Gaussian, by Cholesky factorisation.

    Parameters
    ----------
    data, model : array_like, shape (n,)
        Data vector and model prediction (same units, e.g. xi is dimensionless).
    cov : array_like, shape (n, n)
        Covariance of ``data - model``. Only its lower triangle is read.

    Returns
    -------
    GaussianTerms
        ``(chi2, logdet, n)``. If any input is not finite, the shapes disagree, or ``cov`` is not
        positive definite, ``chi2`` and ``logdet`` are ``+inf`` (so the log-likelihood is -inf):
        this function never returns NaN and never raises for bad numbers.

    Examples
    --------
    >>> t = gaussian_terms([1.0, 2.0], [0.0, 0.0], np.diag([1.0, 4.0]))
    >>> round(t.chi2, 12), round(t.logdet, 12)
    (2.0, 1.38629436112)
    """
    d = np.asarray(data, dtype=float)
    m = np.asarray(model, dtype=float)
    c = np.asarray(cov, dtype=float)
    n = d.shape[0] if d.ndim == 1 else -1
    if n < 1 or m.shape != d.shape or c.shape != (n, n):
        return _FAILED
    chi2, logdet = cholesky_terms(d - m, c)
    if not (math.isfinite(chi2) and math.isfinite(logdet)):
        return _FAILED
    return GaussianTerms(chi2, logdet, n)


def cholesky_terms(resid: np.ndarray, cov: np.ndarray):
    """(chi2, logdet) of one residual (n,) and covariance (n, n); (inf, inf) when not computable.

    The one Gaussian kernel of every iaemu likelihood (Cobaya, CosmoSIS, the batched form below):
    ``chi2 = |L^-1 r|^2`` and ``logdet = 2 sum log diag L`` with ``C = L L^T``."""
    # LAPACK directly: the same factorisation as numpy.linalg.cholesky without its per-call
    # overhead (this runs once per sampler step); potrf reads the lower triangle only. Not-finite
    # inputs need no separate scan: a NaN or inf in the residual or the lower triangle either
    # stops potrf (info > 0) or reaches the diagonal or the whitened residual, so chi2 or logdet
    # is not finite and the point is refused below (log of a NaN diagonal raises no warning)
    chol, info = dpotrf(cov, lower=1, clean=0)
    if info != 0:
        return math.inf, math.inf
    white, info = dtrtrs(chol, resid, lower=1)
    with np.errstate(over="ignore"):  # chi2 overflowing to inf: refused below, no warning
        chi2, logdet = float(white @ white), 2.0 * float(np.log(np.diagonal(chol)).sum())
    if info != 0 or not (math.isfinite(chi2) and math.isfinite(logdet)):
        return math.inf, math.inf
    return chi2, logdet


def _solve_lower(chol: np.ndarray, resid: np.ndarray) -> np.ndarray:
    """``L_k^-1 r_k`` for stacks (k, n, n) and (k, n); scipy >= 1.15 solves a stack at once."""
    try:
        return solve_triangular(chol, resid[..., None], lower=True, check_finite=False)[..., 0]
    except ValueError:  # older scipy: 2-d matrices only
        return np.stack([solve_triangular(c, r, lower=True, check_finite=False)
                         for c, r in zip(chol, resid)])


def gaussian_loglike_batched(data, model, cov, include_constant: bool = True) -> np.ndarray:
    """:func:`gaussian_loglike` over leading axes: many models and covariances against one data vector.

    One ``np.linalg.cholesky`` factorises the whole stack and one batched triangular solve whitens
    the residuals (the samplers' batches of walkers; looping :func:`gaussian_terms` costs ~200 us
    per 60-vector in Python overhead).

    Parameters
    ----------
    data : array_like, shape (n,)
        Selected data vector (e.g. xi, omega, eta values; dimensionless).
    model : array_like, shape (..., n)
        Predictions (e.g. a batch of walkers' points), same units as ``data``.
    cov : array_like, shape (..., n, n)
        Total covariances (data plus emulator covariance at each point), broadcast against
        ``model``'s leading axes. Only lower triangles are read.
    include_constant : bool
        Add ``-n ln(2 pi) / 2``.

    Returns
    -------
    ndarray, shape (...)
        The log-likelihood of each point; ``-inf`` where the model or covariance is not finite,
        the covariance is not positive definite or the result is not finite (never NaN). Equal
        to :func:`gaussian_loglike` point by point.
    """
    d = np.asarray(data, dtype=float)
    m = np.asarray(model, dtype=float)
    c = np.asarray(cov, dtype=float)
    n = d.shape[-1]
    lead = np.broadcast_shapes(m.shape[:-1], c.shape[:-2])
    resid = np.broadcast_to(d - m, lead + (n,)).reshape(-1, n)
    c = np.broadcast_to(c, lead + (n, n)).reshape(-1, n, n)
    out = np.full(len(resid), -math.inf)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        good = np.isfinite(resid).all(axis=1) & np.isfinite(c).all(axis=(1, 2))
        if good.all():
            ok_resid, ok_c = resid, c
        else:
            ok_resid, ok_c = resid[good], c[good]
        if len(ok_c):
            try:
                chol = np.linalg.cholesky(ok_c)
            except np.linalg.LinAlgError:  # one covariance not positive definite: point by point
                chol = None
                value = np.array([GaussianTerms(*cholesky_terms(r, ck), n).loglike(include_constant)
                                  for r, ck in zip(ok_resid, ok_c)])
            if chol is not None:
                diag = np.diagonal(chol, axis1=1, axis2=2)
                white = _solve_lower(chol, ok_resid)
                value = -0.5 * (np.einsum("ij,ij->i", white, white) + 2.0 * np.log(diag).sum(axis=1)
                                + (n * LN_2PI if include_constant else 0.0))
                value[~(diag > 0).all(axis=1)] = -math.inf
            out[good] = value
        out[~np.isfinite(out)] = -math.inf
    return out.reshape(lead)


class FitMonitor:
    """What a likelihood has seen over a run: evaluations, rejections and the best point.

    A sampler can end on a point that is no fit at all: e.g. a gradient minimiser whose first step
    leaves the emulator's training support (zero likelihood there) stops at its starting point and
    may still report success. The likelihoods feed every evaluation to a monitor and log
    :meth:`problems` when they are closed, so such a run says so.
    """

    def __init__(self):
        self.n_evaluations = 0
        self.n_rejected = 0
        self.best: GaussianTerms | None = None
        self.best_loglike = -math.inf

    def record(self, terms: GaussianTerms, loglike: float) -> None:
        """Count one evaluation (``loglike`` = -inf for a rejected point)."""
        self.n_evaluations += 1
        if not math.isfinite(loglike):
            self.n_rejected += 1
        elif loglike > self.best_loglike:
            self.best_loglike, self.best = loglike, terms

    def reject(self) -> None:
        """Count a point rejected before the likelihood was computed (e.g. outside the support)."""
        self.n_evaluations += 1
        self.n_rejected += 1

    def best_pvalue(self) -> float | None:
        """Probability that chi^2 with n degrees of freedom exceeds the best point's chi^2."""
        if self.best is None:
            return None
        from scipy.stats import chi2

        return float(chi2.sf(self.best.chi2, self.best.n))

    def summary(self) -> str:
        """One line: evaluations, rejections and the best point's chi^2."""
        text = f"{self.n_evaluations} evaluations, {self.n_rejected} rejected (zero likelihood)"
        if self.best is not None:
            text += (f"; best point: chi2 = {self.best.chi2:.6g} for {self.best.n} data points "
                     f"(p = {self.best_pvalue():.3g})")
        return text

    def problems(self) -> list[str]:
        """Warnings for a run that never reached an acceptable fit (empty if none)."""
        if self.n_evaluations == 0:
            return []
        if self.best is None:
            return [f"every one of the {self.n_evaluations} points evaluated had zero likelihood "
                    "(outside the emulator's training support or not computable): no fit was found"]
        p = self.best_pvalue()
        if p < POOR_FIT_PVALUE:
            return [f"the best point evaluated has chi2 = {self.best.chi2:.6g} for {self.best.n} "
                    f"data points (p = {p:.3g} < {POOR_FIT_PVALUE:g}): the data are not fitted. If "
                    f"this was a minimisation, it failed ({self.n_rejected} of "
                    f"{self.n_evaluations} points were rejected; a gradient method stops where the "
                    "support band cuts the posterior): use a derivative-free method or other starts"]
        return []


def gaussian_loglike(data, model, cov, include_constant: bool = True) -> float:
    """Log-likelihood of a multivariate Gaussian with (possibly parameter-dependent) covariance.

    ``ln L = -1/2 [chi^2 + ln det C + n ln(2 pi)]`` (the last term only if ``include_constant``).

    Parameters
    ----------
    data, model : array_like, shape (n,)
    cov : array_like, shape (n, n)
        Total covariance (e.g. data covariance plus emulator covariance at this point).
    include_constant : bool
        Add ``-n ln(2 pi) / 2``.

    Returns
    -------
    float
        Finite value, or ``-inf`` for non-finite inputs, mismatched shapes or a covariance that
        is not positive definite. Never NaN.
    """
    return gaussian_terms(data, model, cov).loglike(include_constant)


def normalise_statistics(statistics, available: Iterable[str] = STATISTICS) -> tuple[str, ...]:
    """Validate a selection of statistics and return it in canonical (STATISTICS) order.

    Parameters
    ----------
    statistics : str, iterable of str or None
        ``"xi"``, ``["omega", "eta"]``...; None selects everything in ``available``.
    available : iterable of str
        What may be selected.

    Raises
    ------
    ValueError
        Unknown or unavailable names, duplicates, or an empty selection.
    """
    available = tuple(available)
    if statistics is None:
        chosen = available
    elif isinstance(statistics, str):
        chosen = (statistics,)
    elif isinstance(statistics, (list, tuple, np.ndarray)):
        chosen = tuple(str(s) for s in statistics)
    else:
        raise ValueError(f"statistics = {statistics!r}: give a name or a list of names from "
                         f"{list(STATISTICS)}")
    unknown = [s for s in chosen if s not in STATISTICS]
    if unknown:
        raise ValueError(f"unknown statistic(s) {unknown}; known: {list(STATISTICS)}")
    missing = [s for s in chosen if s not in available]
    if missing:
        raise ValueError(f"statistic(s) {missing} not available (available: {list(available)})")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"statistics listed more than once: {list(chosen)}")
    if not chosen:
        raise ValueError("no statistic selected")
    return tuple(s for s in STATISTICS if s in chosen)


def normalise_r_limits(limit, statistics: Iterable[str], default: float,
                       name: str = "r limit") -> dict[str, float]:
    """Turn a scale-cut option into ``{statistic: value}``.

    Parameters
    ----------
    limit : float, mapping or None
        One separation (comoving h^-1 Mpc) for every statistic, ``{statistic: value}`` (missing
        statistics get ``default``), or None for ``default`` everywhere.
    statistics : iterable of str
    default : float
        ``0`` for lower limits, ``inf`` for upper ones.
    name : str
        Option name for error messages.
    """
    statistics = tuple(statistics)
    if limit is None:
        return dict.fromkeys(statistics, float(default))
    if isinstance(limit, Mapping):
        extra = set(limit) - set(STATISTICS)
        if extra:
            raise ValueError(f"{name}: unknown statistic(s) {sorted(extra)}; known: {list(STATISTICS)}")
        out = {s: (default if limit.get(s) is None else limit[s]) for s in statistics}
    else:
        out = dict.fromkeys(statistics, limit)
    result = {}
    for s, v in out.items():
        try:
            value = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{name} for {s} must be a number (h^-1 Mpc), got {v!r}") from None
        if math.isnan(value) or value < 0:
            raise ValueError(f"{name} for {s} must be >= 0 h^-1 Mpc, got {v!r}")
        result[s] = value
    return result


def scale_cut_mask(r, r_min: float = 0.0, r_max: float = math.inf):
    """Boolean mask of separations kept by a scale cut ``r_min <= r <= r_max`` (h^-1 Mpc)."""
    r = np.asarray(r, dtype=float)
    return (r >= r_min) & (r <= r_max)


def match_bins(r_data, r_bins, rtol: float = R_MATCH_RTOL) -> np.ndarray:
    """Position of each measured separation among the emulator bin centres.

    Parameters
    ----------
    r_data : array_like, shape (n,)
        Separations of a measurement, strictly increasing, h^-1 Mpc.
    r_bins : array_like, shape (n_r,)
        Emulator bin centres, h^-1 Mpc.
    rtol : float
        Relative tolerance of the match.

    Returns
    -------
    numpy.ndarray of int, shape (n,)
        ``r_bins[result] ~= r_data``.

    Raises
    ------
    ValueError
        If a separation is not one of the bin centres (the message names the first ones).
    """
    r_data = np.asarray(r_data, dtype=float)
    r_bins = np.asarray(r_bins, dtype=float)
    idx = np.abs(r_data[:, None] / r_bins[None, :] - 1.0).argmin(axis=1)
    bad = np.abs(r_data / r_bins[idx] - 1.0) > rtol
    if bad.any():
        raise ValueError(f"separations {r_data[bad][:3].tolist()} h^-1 Mpc are not emulator bin centres "
                         f"(rtol {rtol}); the emulator's centres are {np.round(r_bins, 6).tolist()}")
    return idx
