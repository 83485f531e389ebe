"""CosmoSIS Gaussian likelihood of measured intrinsic-alignment correlations given the iaemu emulator.

Compares a measurement file (the format of :mod:`iaemu_likelihood.data`, shared with the Cobaya
likelihood) with the ``ia_correlations`` section written by the ``iaemu`` module. The covariance
is the data covariance plus the emulator covariance at the current point, so it changes with the
parameters: the inverse and the log-determinant are recomputed at every sample and the
log-determinant enters the likelihood. Statistics selection and scale cuts are options. See
``module.yaml`` beside this file.

The log-likelihood is the normalised Gaussian log-density of :mod:`iaemu_likelihood.likelihood_math`,
``-(chi^2 + ln det C + n ln 2 pi) / 2``, identical to the Cobaya likelihood's value.
"""
import logging
import math
import os

import numpy as np
from cosmosis.datablock import BlockError, SectionOptions, names
from cosmosis.gaussian_likelihood import GaussianLikelihood

from iaemu_likelihood.conventions import STATISTICS, r_centres
from iaemu_likelihood.cosmosis_setup import (EMULATOR_FILE, bool_option, check_option_keys,
                                             current_module, emulator_output, parse_terms,
                                             pipeline_modules)
from iaemu_likelihood.data import load_measurement, resolve_data_file
from iaemu_likelihood.errors import ConfigError
from iaemu_likelihood.likelihood_math import LN_2PI, FitMonitor, normalise_statistics
from iaemu_likelihood.point import SelectedGaussian

__all__ = ["IAEmuCosmosisLikelihood", "setup", "execute", "cleanup", "LIKELIHOOD_OPTIONS"]

log = logging.getLogger(__name__)

#: relative tolerance when checking the block's separations against the emulator bin centres
R_CHECK_RTOL = 1e-6
#: every option of this module (like/module.yaml documents them)
LIKELIHOOD_OPTIONS = ("file", "data_file", "statistics", "r_min", "r_max",
                      *(f"{key}_{s}" for key in ("r_min", "r_max") for s in STATISTICS),
                      "emulator_covariance", "include_constant", "input_section", "suffix",
                      "like_name", "likelihood_only")


def _float_option(options, key):
    """A float option, or None when unset; raises ConfigError naming the option otherwise."""
    if not options.has_value(key):
        return None
    value = options[key]  # typed by CosmoSIS: int, float or str
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"iaemu_like: option {key} = {value!r} is not a number "
                          "(separations in comoving h^-1 Mpc)") from None


def _scale_cut(options, key):
    """``key`` for every statistic, overridden per statistic by ``key_<statistic>``."""
    common = _float_option(options, key)
    per_stat = {s: _float_option(options, f"{key}_{s}") for s in STATISTICS}
    if all(v is None for v in per_stat.values()):
        return common
    return {s: (v if v is not None else common) for s, v in per_stat.items()}


class IAEmuCosmosisLikelihood(GaussianLikelihood):
    """Gaussian likelihood with data + emulator covariance, rebuilt at every sample.

    Options are read from the module's ini section (see ``module.yaml``). The data vector and the
    data covariance are read once; at each sample the theory is taken from the emulator section,
    ``C = C_data + C_emu(theta)`` is formed, factorised once by Cholesky, and both the inverse and
    ``ln det(2 pi C)`` come from that factor (no factorisation from an earlier sample is reused).
    """

    like_name = "iaemu"
    x_section = "ia_correlations"
    x_name = "r_h"
    y_section = "ia_correlations"
    y_name = "xi"
    constant_covariance = False

    def __init__(self, options):
        section = options.get_string("input_section", default="ia_correlations").strip()
        suffix = options.get_string("suffix", default="").strip()
        if not section:
            raise ConfigError("iaemu_like: option input_section must name a data-block section")
        self.x_section = self.y_section = f"{section}_{suffix}" if suffix else section
        self.emulator_terms = parse_terms(options.get_string("emulator_covariance",
                                                             default="epistemic"),
                                          "emulator_covariance", "iaemu_like", allow_empty=True)
        self.include_constant = bool_option(options.block, "include_constant", True, "iaemu_like")
        self._terms = None
        self.n_emulator = len(STATISTICS) * r_centres().size
        self._r_checked = False
        self._order = None
        self.monitor = FitMonitor()
        super().__init__(options)
        log.info("iaemu_like: %s, statistics %s, %d data points, emulator covariance terms %s",
                 self.measurement.source, " ".join(self.statistics), self.data_y.size,
                 " ".join(self.emulator_terms) or "none")

    def build_data(self):
        """Read the measurement, apply the statistics selection and scale cuts.

        Returns
        -------
        r, data : numpy.ndarray
            Separations (comoving h^-1 Mpc) and values of the selected data points.
        """
        path = resolve_data_file(self.options.get_string("data_file", default=""))
        self.measurement = load_measurement(path, r_bins=r_centres())
        text = self.options.get_string("statistics", default="").replace(",", " ").split()
        r_min, r_max = _scale_cut(self.options, "r_min"), _scale_cut(self.options, "r_max")
        try:
            self.data_idx, self.emu_idx = self.measurement.selection(
                statistics=text or None, r_min=r_min, r_max=r_max)
        except ValueError as exc:
            raise ConfigError(f"iaemu_like ({self.measurement.source}): {exc}") from None
        self.statistics = normalise_statistics(text or None, available=self.measurement.statistics)
        self.data_cov = np.array(self.measurement.cov[np.ix_(self.data_idx, self.data_idx)])
        self.gaussian = SelectedGaussian(self.measurement.vector()[self.data_idx], self.data_cov,
                                         self.emu_idx)
        r = np.tile(self.measurement.r, len(self.measurement.statistics))[self.data_idx]
        return r, self.measurement.vector()[self.data_idx]

    def extract_theory_points(self, block):
        """Emulated ``[xi, omega, eta]`` at the selected bins."""
        section = self.x_section
        if not self._r_checked:
            r = block[section, "r_h"]
            expected = r_centres()
            if r.shape != expected.shape or not np.allclose(r, expected, rtol=R_CHECK_RTOL, atol=0):
                raise ValueError(f"iaemu_like: {section}/r_h does not hold the emulator bin centres "
                                 f"{np.round(expected, 6).tolist()}")
            self._r_checked = True
        if self._order is None:
            self._map_onto(block, section)
        self._vector = np.concatenate([block[section, s] for s in self._order])
        return self._vector[self.emu_idx]

    def _map_onto(self, block, section):
        """Map the selection onto the emulator module's output order (its ``statistics`` entry,
        e.g. with statistics other weights add; xi, omega, eta when the entry is absent)."""
        order = (str(block[section, "statistics"]).split() if block.has_value(section, "statistics")
                 else list(STATISTICS))
        missing = [s for s in self.statistics if s not in order]
        if missing:
            raise ValueError(f"iaemu_like: {section} holds no {' '.join(missing)} (it holds "
                             f"{' '.join(order)})")
        sizes = [np.size(block[section, s]) for s in order]
        offsets = dict(zip(order, np.cumsum([0, *sizes[:-1]])))
        n_r = r_centres().size
        # the selection was built on [xi, omega, eta] x n_r: move each index to its statistic's block
        stat = np.asarray(STATISTICS)[self.emu_idx // n_r]
        self.emu_idx = np.array([offsets[s] for s in stat], dtype=int) + self.emu_idx % n_r
        self.n_emulator = int(sum(sizes))
        self.gaussian = SelectedGaussian(self.gaussian.data, self.data_cov, self.emu_idx)
        self._order = order

    def extract_covariance(self, block):
        """``C_data + C_emu(theta)`` restricted to the selected bins."""
        emu = None
        if self.emulator_terms:
            emu = np.zeros((self.n_emulator, self.n_emulator))
            for term in self.emulator_terms:
                key = f"covariance_{term}"
                if not block.has_value(self.x_section, key):
                    raise ValueError(f"{self.x_section}/{key} is missing: add {term} to "
                                     "covariance_terms of the iaemu module")
                emu += block[self.x_section, key]
        cov = self.gaussian.covariance(emu)
        self._terms = self.gaussian.terms_of(self._vector[self.emu_idx], cov)
        if not math.isfinite(self._terms.chi2):
            raise np.linalg.LinAlgError(
                "iaemu_like: total covariance is not positive definite or the theory is not finite")
        return cov

    def extract_inverse_covariance(self, block):
        """Inverse of the covariance of this sample, from its own Cholesky factor."""
        chol = np.linalg.cholesky(self.cov)
        inv_chol = np.linalg.inv(chol)
        return inv_chol.T @ inv_chol

    def extract_covariance_log_determinant(self, block):
        """``ln det C`` of this sample, plus ``n ln 2 pi`` when include_constant (the default).

        With the constant the reported likelihood is the normalised Gaussian log-density, the same
        number the Cobaya likelihood returns.
        """
        extra = self._terms.n * LN_2PI if self.include_constant else 0.0
        return self._terms.logdet + extra

    def _compute_chi2(self, d):
        # The chi^2 of the shared likelihood maths (Cholesky solve) rather than d^T C^-1 d with an
        # explicit inverse, so CosmoSIS and Cobaya agree to rounding.
        return self._terms.chi2


def setup(options):
    """Read the data and options once; raise on a bad data file, option or pipeline wiring.

    Besides the options themselves (unknown keys are refused with a "did you mean"), the
    pipeline is checked: the iaemu module that writes this likelihood's input section must come
    before it in ``[pipeline] modules`` and compute every term of ``emulator_covariance``.
    """
    check_option_keys(options, LIKELIHOOD_OPTIONS, "iaemu_like")
    bool_option(options, "likelihood_only", False, "iaemu_like")  # read by GaussianLikelihood
    config = IAEmuCosmosisLikelihood(SectionOptions(options))
    _check_wiring(options, config)
    return config


def _check_wiring(options, config):
    """The emulator module writing ``config.x_section`` runs first and computes the terms needed."""
    modules = pipeline_modules(options)
    order = [name for name, _ in modules]
    me = current_module(options)
    writers = []
    for index, (name, path) in enumerate(modules):
        if os.path.basename(path) == EMULATOR_FILE:
            section, terms = emulator_output(options, name)
            if section == config.x_section:
                writers.append((index, name, terms))
    if not writers:
        others = {name: emulator_output(options, name)[0] for name, path in modules
                  if os.path.basename(path) == EMULATOR_FILE}
        if others:
            raise ConfigError(f"iaemu_like: reads section {config.x_section}, but the iaemu "
                              f"module(s) of [pipeline] modules write "
                              f"{', '.join(f'{s} ([{n}])' for n, s in others.items())}; give "
                              "iaemu_like the same suffix (or input_section) as its iaemu module")
        log.warning("iaemu_like: no iaemu module in [pipeline] modules writes section %s: another "
                    "module must write it, or every sample is rejected", config.x_section)
        return
    index, name, terms = writers[0]
    if me in order and order.index(me) < index:
        raise ConfigError(f"iaemu_like: module [{me}] comes before [{name}], which writes its "
                          f"input section {config.x_section}, in [pipeline] modules = "
                          f"{' '.join(order)}; list {name} first")
    missing = [t for t in config.emulator_terms if t not in terms]
    if missing:
        raise ConfigError(f"iaemu_like: emulator_covariance needs {' '.join(missing)}, which module "
                          f"[{name}] does not compute (its covariance_terms = "
                          f"{' '.join(terms) or 'none'}); add {' '.join(missing)} to [{name}] "
                          "covariance_terms or remove it from emulator_covariance")


def execute(block, config):
    """Add the log-likelihood of this sample to the ``likelihoods`` section.

    Returns 1 (sample rejected, reason logged) if the emulator outputs are missing, or the
    covariance is not positive definite, or the log-likelihood is not finite.
    """
    try:
        config.do_likelihood(block)
    except (BlockError, np.linalg.LinAlgError, ValueError) as err:
        log.warning("iaemu_like: sample rejected: %s", err)
        config.monitor.reject()
        return 1
    like = block[names.likelihoods, config.like_name + "_LIKE"]
    if not math.isfinite(like):
        log.warning("iaemu_like: sample rejected: log-likelihood is %s", like)
        config.monitor.reject()
        return 1
    config.monitor.record(config._terms, like)
    return 0


def cleanup(config):
    """Log what the run saw; warn if no evaluated point fits the data (e.g. a failed maxlike)."""
    if config.monitor.n_evaluations:
        log.info("iaemu_like: %s", config.monitor.summary())
        for problem in config.monitor.problems():
            log.warning("iaemu_like: %s", problem)
    return 0
