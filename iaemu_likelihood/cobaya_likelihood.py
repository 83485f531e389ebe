"""Cobaya likelihood of measured IA correlation functions given the iaemu emulator.

The maths is :class:`iaemu_likelihood.point.SelectedGaussian` (shared with CosmoSIS and the
samplers); the data format is that of :mod:`iaemu_likelihood.data`. This module only wires them
to Cobaya.
"""
from __future__ import annotations


import numpy as np
from cobaya.likelihood import Likelihood
from cobaya.log import LoggedError

from .data import DataFileError, load_measurement, resolve_data_file
from .errors import ConfigError
from .layout import parse_terms
from .likelihood_math import FitMonitor
from .point import SelectedGaussian

__all__ = ["IAEmuLikelihood", "resolve_data_file"]


class IAEmuLikelihood(Likelihood):
    r"""Gaussian likelihood of measured xi, omega and/or eta with emulator uncertainty.

    ``ln L = -1/2 [chi^2 + ln det C + n ln(2 pi)]`` with ``C = C_data + C_emu(theta)``
    restricted to the selected statistics and scales (see :mod:`iaemu_likelihood.likelihood_math`;
    ``chi2__<name>`` in Cobaya's output is therefore ``-2 ln L``, log-determinant and constant
    included). Non-finite values give ``-inf``, never NaN.

    Requires from a theory (normally :class:`~iaemu_likelihood.cobaya_theory.IAEmuTheory`) the
    products ``iaemu_r``, ``iaemu_vector`` and, if ``emulator_covariance`` is not empty,
    ``iaemu_covariance`` with those terms.

    Options (defaults in ``IAEmuLikelihood.yaml``)
    ----------------------------------------------
    data_file : str or None
        Measurement ``.npz`` (format in :mod:`iaemu_likelihood.data`); None: the bundled example.
        Relative paths are relative to the current directory (see :func:`resolve_data_file`).
    statistics : list of str or None
        Subset of the statistics in the file to fit (None: all of them).
    r_min, r_max : float, dict or None
        Inclusive scale cuts in comoving h^-1 Mpc, one value or ``{statistic: value}``.
    emulator_covariance : list of str
        Emulator terms added to the data covariance: ``epistemic`` (the emulator's uncertainty of
        the mean; default) and/or ``aleatoric`` (one mock realization's covariance: add it only
        if the data covariance does not already contain that sample variance, otherwise it is
        counted twice).
    """

    data_file: str | None
    statistics: list | str | None
    r_min: float | dict | None
    r_max: float | dict | None
    emulator_covariance: list | str | None

    def initialize(self):
        """Read the data file and check the options (``LoggedError`` naming file and problem)."""
        try:
            self.emulator_terms = parse_terms(self.emulator_covariance, "emulator_covariance")
        except ConfigError as exc:
            raise LoggedError(self.log, str(exc)) from None
        try:
            self.data_path = resolve_data_file(self.data_file)
            self.measurement = load_measurement(self.data_path)
        except DataFileError as exc:
            raise LoggedError(self.log, "%s", exc) from None
        self._select(None)
        self.monitor = FitMonitor()
        self.log.info("data %s: %s, %d values after cuts; emulator covariance terms %s",
                      self.data_path, list(self.selected_statistics), self.gaussian.n,
                      list(self.emulator_terms) or "none")

    def _select(self, r_bins, layout=None):
        try:
            self.data_indices, self.emulator_indices = self.measurement.selection(
                self.statistics, self.r_min, self.r_max, r_bins, layout)
        except ValueError as exc:
            raise LoggedError(self.log, "data file %s with statistics=%r, r_min=%r, r_max=%r: %s",
                              self.data_path, self.statistics, self.r_min, self.r_max, exc) from None
        stats = self.measurement.statistics
        self.selected_statistics = tuple(s for i, s in enumerate(stats)
                                         if np.any(self.data_indices // self.measurement.n_r == i))
        self.gaussian = SelectedGaussian(self.measurement.vector()[self.data_indices],
                                         self.measurement.cov[np.ix_(self.data_indices, self.data_indices)],
                                         self.emulator_indices)

    def get_requirements(self):
        req = {"iaemu_r": None, "iaemu_vector": None, "iaemu_layout": None}
        if self.emulator_terms:
            req["iaemu_covariance"] = {"terms": list(self.emulator_terms)}
        return req

    def initialize_with_provider(self, provider):
        super().initialize_with_provider(provider)
        # the emulator's own layout and bins decide the mapping (constant, known before any
        # calculation)
        self._select(np.asarray(provider.get_iaemu_r(), dtype=float), provider.get_iaemu_layout())

    def terms(self):
        """``GaussianTerms`` (chi2, logdet, n) at the provider's current point."""
        emulator_cov = (self.provider.get_iaemu_covariance(self.emulator_terms)
                        if self.emulator_terms else None)
        return self.gaussian.terms(self.provider.get_iaemu_vector(), emulator_cov)

    def logp(self, **params_values):
        result = self.terms()
        loglike = result.loglike()
        self.monitor.record(result, loglike)
        if loglike == -np.inf:
            self.log.debug("log-likelihood is -inf (non-finite model or covariance not positive "
                           "definite)")
        return loglike

    def close(self, *args):
        """Log what the run saw, and warn if no point evaluated fits the data (failed minimisation)."""
        monitor = getattr(self, "monitor", None)
        if monitor is None or not monitor.n_evaluations:
            return
        self.log.info("%s", monitor.summary())
        for problem in monitor.problems():
            self.log.warning("%s", problem)
