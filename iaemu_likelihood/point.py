"""One point-evaluation path shared by every adapter (Cobaya, CosmoSIS, the samplers).

:class:`PointEvaluator` turns parameters into what a sampler needs at a point: the prediction,
the emulator covariance terms that were requested, the derived parameters, or a named rejection
(outside the training support, or a non-finite output) instead of an exception or a NaN.
:class:`SelectedGaussian` is the one Gaussian log-likelihood of a selected data vector given the
prediction and the emulator covariance at that point (also batched over leading axes). The
adapters only map names and units onto these two; see ``docs/ARCHITECTURE.md``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .covariance import point_covariance
from .errors import OutOfRangeError
from .layout import parse_terms
from .likelihood_math import GaussianTerms, cholesky_terms, gaussian_loglike_batched

__all__ = ["PointEvaluator", "PointResult", "SelectedGaussian"]


@dataclass
class PointResult:
    """What :meth:`PointEvaluator.evaluate` found at one point.

    Attributes
    ----------
    theta : ndarray, shape (n_inputs,)
    prediction : EmulatorPrediction or None
        None when rejected.
    covariances : dict
        ``{terms: (n_out, n_out) covariance}`` for every requested tuple of terms.
    derived : dict
        ``{name: float}`` of the requested derived parameters.
    rejection : str or None
        One line saying why the point was rejected (None if it was not).
    error : Exception or None
        The out-of-range error behind a rejection, for adapters that stop instead of rejecting.
    """

    theta: np.ndarray
    prediction: object = None
    covariances: dict = field(default_factory=dict)
    derived: dict = field(default_factory=dict)
    rejection: str | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.rejection is None


class PointEvaluator:
    """Parameters in -> prediction, covariance terms, derived parameters, or a named rejection.

    Parameters
    ----------
    emulator : IAEmulator
    covariance_requests : iterable of term selections
        Each a term name or a sequence of names (:data:`~iaemu_likelihood.layout.COVARIANCE_TERMS`);
        one covariance is built per distinct selection. More can be added with :meth:`request`.
    variances : bool
        Whether the adapter hands on the aleatoric variances of the prediction (CosmoSIS writes
        them). False (Cobaya, whose products are the means and the covariances) computes them
        only when a requested covariance has the aleatoric term; the prediction then holds None.
    """

    def __init__(self, emulator, covariance_requests=(), variances: bool = True):
        self.emulator = emulator
        self.variances = bool(variances)
        self.requests: list[tuple] = []
        self.needs_epistemic = False
        self.needs_aleatoric = self.variances
        for terms in covariance_requests:
            self.request(terms)

    def request(self, terms, what: str = "covariance terms") -> tuple:
        """Add a covariance selection (validated, canonical order) and return it."""
        terms = parse_terms(terms, what, allow_empty=False)
        if terms not in self.requests:
            self.requests.append(terms)
        #: what predictions must hold (set once here, read on every evaluation)
        self.needs_epistemic = any("epistemic" in t for t in self.requests)
        self.needs_aleatoric = self.variances or any("aleatoric" in t for t in self.requests)
        return terms

    def theta(self, values: Mapping) -> np.ndarray:
        """The input vector (float64) of a mapping holding every input name."""
        return np.array([values[name] for name in self.emulator.param_names], dtype=float)

    def evaluate(self, theta, derived=()) -> PointResult:
        """Evaluate one point.

        Parameters
        ----------
        theta : ndarray, shape (n_inputs,)
            In ``emulator.param_names`` order (see :meth:`theta`).
        derived : sequence of str
            Derived parameters to compute (names of ``emulator.derived_names``).

        Returns
        -------
        PointResult
            Rejected (never raising) when the point is outside the training support or an output
            is not finite; other errors (bad shapes or types) raise as in ``IAEmulator.predict``.
        """
        emulator = self.emulator
        theta = np.asarray(theta, dtype=np.float64)
        try:
            pred = emulator.predict(theta, epistemic=self.needs_epistemic,
                                    aleatoric=self.needs_aleatoric)
        except OutOfRangeError as exc:
            return PointResult(theta, rejection=str(exc), error=exc)
        # predict() refuses non-finite outputs itself; this guards what reaches the products
        vector, var, epi = pred.vector(), pred.variance_vector(), pred.epistemic_vector()
        if not np.isfinite(vector).all():
            return self._non_finite(theta)
        covariances = {}
        for terms in self.requests:
            # finite: products of finite standard deviations and validated correlations
            covariances[terms] = point_covariance(var, epi, terms, emulator.residual_correlation,
                                                  emulator.epistemic_correlation)
        values = {}
        if derived:
            values = emulator.derived_validated(theta[None, :], single=True)
            values = {name: values[name] for name in derived}
        return PointResult(theta, pred, covariances, values)

    def _non_finite(self, theta) -> PointResult:
        where = dict(zip(self.emulator.param_names, theta.tolist()))
        return PointResult(theta, rejection=f"the emulator returned non-finite values at {where}")


class SelectedGaussian:
    """The Gaussian log-likelihood of selected data given the emulator at a point.

    ``ln L = -1/2 [chi^2 + ln det C + n ln(2 pi)]`` with ``C = C_data + C_emu(theta)`` restricted
    to the selected outputs (:mod:`iaemu_likelihood.likelihood_math`).

    Parameters
    ----------
    data : ndarray, shape (n,)
        Selected data values.
    data_cov : ndarray, shape (n, n)
        Their covariance.
    emulator_indices : ndarray of int, shape (n,)
        Position of each selected value in the emulator's output vector.
    """

    def __init__(self, data, data_cov, emulator_indices):
        self.data = np.asarray(data, dtype=float)
        self.data_cov = np.asarray(data_cov, dtype=float)
        self.indices = np.asarray(emulator_indices, dtype=int)
        self.n = self.data.size
        self._block = np.ix_(self.indices, self.indices)
        # every output in order (the usual fit): no copy by fancy indexing on each call
        self._everything = None
        if np.array_equal(self.indices, np.arange(self.indices.size)):
            self._everything = self.indices.size

    def covariance(self, emulator_cov=None) -> np.ndarray:
        """Total covariance of the selected values: the data covariance plus the selected block of
        an emulator covariance (n_out, n_out) (None: the data covariance alone)."""
        if emulator_cov is None:
            return self.data_cov
        if emulator_cov.shape[-1] == self._everything:
            return self.data_cov + emulator_cov
        return self.data_cov + emulator_cov[self._block]

    def terms(self, vector, emulator_cov=None) -> GaussianTerms:
        """``GaussianTerms`` for one emulator output vector (n_out,) and its emulator covariance
        (n_out, n_out) (None: data covariance only)."""
        model = vector if vector.shape[-1] == self._everything else vector[self.indices]
        return self.terms_of(model, self.covariance(emulator_cov))

    def terms_of(self, model, cov) -> GaussianTerms:
        """``GaussianTerms`` of selected model values (n,) and a total covariance (n, n)."""
        chi2, logdet = cholesky_terms(self.data - model, cov)
        if chi2 == math.inf:  # cholesky_terms: (inf, inf) or both finite
            return GaussianTerms(math.inf, math.inf, 0)
        return GaussianTerms(chi2, logdet, self.n)

    def loglike(self, vectors, emulator_covs=None, include_constant: bool = True):
        """Log-likelihood of emulator outputs (..., n_out) with covariances (..., n_out, n_out),
        batched over the leading axes (a float for a single vector); -inf where not computable."""
        vectors = np.asarray(vectors, dtype=float)
        model = vectors[..., self.indices]
        cov = self.data_cov
        if emulator_covs is not None:
            emu = np.asarray(emulator_covs, dtype=float)
            cov = cov + emu[..., self.indices[:, None], self.indices[None, :]]
        out = gaussian_loglike_batched(self.data, model, cov, include_constant)
        return float(out) if out.ndim == 0 else out
