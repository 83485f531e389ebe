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

import numpy as np
from cosmosis.datablock import BlockError, SectionOptions, names
from cosmosis.gaussian_likelihood import GaussianLikelihood

from iaemu_likelihood.conventions import STATISTICS, r_centres
from iaemu_likelihood.data import example_data_path, load_measurement
from iaemu_likelihood.emulator import COVARIANCE_TERMS
from iaemu_likelihood.likelihood_math import LN_2PI, gaussian_terms, normalise_statistics

__all__ = ["IAEmuCosmosisLikelihood", "setup", "execute", "cleanup"]

log = logging.getLogger(__name__)

#: relative tolerance when checking the block's separations against the emulator bin centres
R_CHECK_RTOL = 1e-6


def _float_option(options, key):
    """A float option, or None when unset; raises ValueError naming the option otherwise."""
    if not options.has_value(key):
        return None
    value = options[key]  # typed by CosmoSIS: int, float or str
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"iaemu_like: option {key} = {value!r} is not a number "
                         "(separations in comoving h^-1 Mpc)") from None


def _parse_terms(text):
    """Emulator covariance terms from a space/comma separated option ('none' or empty: none)."""
    words = [w for w in text.replace(",", " ").split() if w != "none"]
    unknown = sorted(set(words) - set(COVARIANCE_TERMS))
    if unknown:
        raise ValueError(f"iaemu_like: emulator_covariance = {text!r}; choose from "
                         f"{' '.join(COVARIANCE_TERMS)} or none")
    return tuple(t for t in COVARIANCE_TERMS if t in words)


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
            raise ValueError("iaemu_like: option input_section must name a data-block section")
        self.x_section = self.y_section = f"{section}_{suffix}" if suffix else section
        self.emulator_terms = _parse_terms(options.get_string("emulator_covariance",
                                                              default="epistemic"))
        self.include_constant = options.get_bool("include_constant", default=True)
        self._terms = None
        self.n_emulator = len(STATISTICS) * r_centres().size
        self._r_checked = False
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
        path = self.options.get_string("data_file", default="").strip()
        self.measurement = load_measurement(path or example_data_path(), r_bins=r_centres())
        text = self.options.get_string("statistics", default="").replace(",", " ").split()
        r_min, r_max = _scale_cut(self.options, "r_min"), _scale_cut(self.options, "r_max")
        try:
            self.data_idx, self.emu_idx = self.measurement.selection(
                statistics=text or None, r_min=r_min, r_max=r_max)
        except ValueError as exc:
            raise ValueError(f"iaemu_like ({self.measurement.source}): {exc}") from None
        self.statistics = normalise_statistics(text or None, available=self.measurement.statistics)
        self.data_cov = np.array(self.measurement.cov[np.ix_(self.data_idx, self.data_idx)])
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
        theory = np.concatenate([block[section, s] for s in STATISTICS])
        self._theory = theory[self.emu_idx]
        return self._theory

    def extract_covariance(self, block):
        """``C_data + C_emu(theta)`` restricted to the selected bins."""
        cov = self.data_cov
        if self.emulator_terms:
            emu = np.zeros((self.n_emulator, self.n_emulator))
            for term in self.emulator_terms:
                key = f"covariance_{term}"
                if not block.has_value(self.x_section, key):
                    raise ValueError(f"{self.x_section}/{key} is missing: add {term} to "
                                     "covariance_terms of the iaemu module")
                emu += block[self.x_section, key]
            cov = cov + emu[np.ix_(self.emu_idx, self.emu_idx)]
        self._terms = gaussian_terms(self.data_y, self._theory, cov)
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
    """Read the data and options once; raises on a bad data file or invalid options."""
    return IAEmuCosmosisLikelihood(SectionOptions(options))


def execute(block, config):
    """Add the log-likelihood of this sample to the ``likelihoods`` section.

    Returns 1 (sample rejected, reason logged) if the emulator outputs are missing, or the
    covariance is not positive definite, or the log-likelihood is not finite.
    """
    try:
        config.do_likelihood(block)
    except (BlockError, np.linalg.LinAlgError, ValueError) as err:
        log.warning("iaemu_like: sample rejected: %s", err)
        return 1
    like = block[names.likelihoods, config.like_name + "_LIKE"]
    if not math.isfinite(like):
        log.warning("iaemu_like: sample rejected: log-likelihood is %s", like)
        return 1
    return 0


def cleanup(config):
    """Nothing to release."""
    return 0
