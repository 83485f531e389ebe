"""The log-posterior of a Cobaya input file, without Cobaya's sampler.

:func:`load_posterior` reads the same yaml that ``cobaya-run`` reads and lets Cobaya build its
model from the ``theory``, ``likelihood`` and ``params`` blocks (so the data file, statistics,
scale cuts, emulator covariance terms, priors moved to the weights' training range and fixed
values are exactly Cobaya's), then takes the pieces out of that model. The log-posterior is
then evaluated here with the same functions Cobaya's components call --
:meth:`IAEmulator.predict`, :meth:`IAEmulator.covariance`, :meth:`IAEmulator.in_support` and
:func:`iaemu_likelihood.likelihood_math.gaussian_terms` -- plus the uniform prior's constant:
equal to ``model.logposterior`` (tested), ``-inf`` wherever Cobaya rejects a point (outside the
prior box, outside the emulator's training support, covariance not positive definite).

Anything the fast path cannot reproduce stops with :class:`UnsupportedInputError` naming it:
other theories or likelihoods, non-uniform or external priors, parameters defined as functions
of others, derived parameters other than ``n_gal`` and ``f_sat``.
"""
from __future__ import annotations

import copy
import logging
import math
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .._io import expand_user_path
from ..errors import IAEmuError
from ..likelihood_math import gaussian_loglike_batched, gaussian_terms
from .support import Support

__all__ = ["Posterior", "load_posterior", "read_input", "UnsupportedInputError", "InputFileError",
           "THEORY", "LIKELIHOOD", "DERIVED", "SUPPORTED_KEYS", "plain_data"]

log = logging.getLogger(__name__)

THEORY = "iaemu_likelihood.IAEmuTheory"
LIKELIHOOD = "iaemu_likelihood.IAEmuLikelihood"
#: Derived parameters the fast path computes (``IAEmulator.derived``).
DERIVED = ("n_gal", "f_sat")
#: Top-level blocks of a Cobaya input the fast path understands (``sampler`` is replaced).
SUPPORTED_KEYS = ("theory", "likelihood", "params", "sampler", "output", "debug", "force", "resume",
                  "stop_at_error", "timing", "packages_path", "version")


class UnsupportedInputError(IAEmuError, ValueError):
    """The yaml uses something ``iaemu sample`` cannot reproduce exactly; use ``cobaya-run``."""


class InputFileError(IAEmuError, ValueError):
    """The yaml is missing or unreadable, or Cobaya refused its model."""


def read_input(path) -> dict:
    """Read a Cobaya yaml as Cobaya does (``cobaya.yaml.yaml_load_file``).

    Raises
    ------
    InputFileError
        Missing or malformed file (one line naming it).
    """
    from cobaya.yaml import yaml_load_file

    path = Path(expand_user_path(path))
    if not path.is_file():
        raise InputFileError(f"input yaml {str(path)!r} does not exist")
    try:
        info = yaml_load_file(str(path))
    except Exception as exc:  # cobaya wraps yaml's errors in its own classes
        raise InputFileError(f"input yaml {path}: cannot be read ({' '.join(str(exc).split())})") \
            from None
    if not isinstance(info, dict):
        raise InputFileError(f"input yaml {path}: expected a mapping of blocks, got "
                             f"{type(info).__name__}")
    return info


def _unsupported(what: str):
    raise UnsupportedInputError(f"{what}; iaemu sample cannot reproduce it exactly, run the yaml "
                                "with cobaya-run instead")


def _check_blocks(info: dict):
    if info.get("prior"):
        _unsupported(f"external prior(s) {sorted(info['prior'])} ('prior:' block)")
    unknown = sorted(set(info) - set(SUPPORTED_KEYS))
    if unknown:
        _unsupported(f"top-level block(s) {unknown} (allowed: {list(SUPPORTED_KEYS)})")
    for block, name in (("theory", THEORY), ("likelihood", LIKELIHOOD)):
        components = list(info.get(block) or {})
        if components != [name]:
            _unsupported(f"{block}: {components}; only exactly [{name}] is supported")


class Posterior:
    """Log-posterior of a Cobaya model of ``IAEmuTheory`` + ``IAEmuLikelihood``.

    Build it with :func:`load_posterior`. Sampled points are arrays (d,) or (n, d) in the order
    of :attr:`names` (Cobaya's order of the sampled parameters).

    Attributes
    ----------
    names : tuple of str
        Sampled parameters (Cobaya's names: ``omegam``, ``sigma8`` for the cosmology inputs of
        cosmology-dependent weights).
    input_names : tuple of str
        The emulator input each sampled parameter sets (``Omega_m`` for ``omegam``...).
    fixed : dict
        Fixed emulator inputs ``{name: value}`` (constant parameters, and the redshift of the
        theory's ``redshift`` option for weights with a z input).
    labels : dict
        LaTeX label of every sampled and derived parameter.
    derived : tuple of str
        Derived parameters written to the chain (those of :data:`DERIVED` in the model).
    low, high : ndarray, shape (d,)
        Uniform prior bounds.
    log_prior_value : float
        ``-sum(ln(high - low))``, Cobaya's log-prior inside the box.
    emulator : IAEmulator
        The theory's emulator.
    data, data_cov : ndarray
        Selected measurement values and their covariance.
    emulator_indices : ndarray of int
        Positions of :attr:`data` in the emulator's 60-vector.
    terms : tuple of str
        Emulator covariance terms added to ``data_cov``.
    support : Support
        Box, fixed values and training-support band of the sampled parameters.
    info : dict
        The input blocks (``theory``, ``likelihood``, ``params``, ``output``...).
    updated_params : dict
        Cobaya's ``params`` block after its defaults and the weights' ranges (plain data).
    likelihood_name, likelihood_type : str
        Name of the likelihood component and its ``type`` (for the chain's ``chi2__`` columns).
    """

    def __init__(self, model, info: dict):
        self.info = info
        lik = model.likelihood[LIKELIHOOD]
        theory = model.theory[THEORY]
        self.emulator = theory.emulator
        # emulator input -> Cobaya parameter, and inputs fixed by theory options (the redshift)
        from_model, option_inputs = theory.model_inputs()
        to_input = {cobaya: name for name, cobaya in from_model.items()}
        to_input.update({n: n for n in self.emulator.param_names if n not in from_model})
        self._check_model(model, to_input)
        p = model.parameterization
        self.names = tuple(p.sampled_params())
        self.input_names = tuple(to_input[n] for n in self.names)
        self.fixed = {to_input[k]: float(v) for k, v in p.constant_params().items()
                      if k in to_input}
        self.fixed.update(option_inputs)
        self.derived = tuple(d for d in DERIVED if d in p.derived_params())
        labels = p.labels()
        self.labels = {n: labels.get(n, n) for n in self.names + self.derived}
        bounds = np.asarray(model.prior.bounds(), dtype=float)
        self.low, self.high = bounds[:, 0].copy(), bounds[:, 1].copy()
        self.log_prior_value = -float(np.sum(np.log(self.high - self.low)))
        self.data = lik.measurement.vector()[lik.data_indices]
        self.data_cov = lik.measurement.cov[np.ix_(lik.data_indices, lik.data_indices)]
        self.emulator_indices = np.asarray(lik.emulator_indices)
        self.terms = tuple(lik.emulator_terms)
        self._emu_block = np.ix_(self.emulator_indices, self.emulator_indices)
        self.likelihood_name = LIKELIHOOD
        self.likelihood_type = getattr(lik, "type", None)
        self.support = Support.build(self.input_names, self.low, self.high, self.fixed,
                                     self.emulator.support, self.emulator.param_names,
                                     self.emulator.bounds)
        self.updated_params = plain_data(model.info().get("params", {}))

    @staticmethod
    def _check_model(model, to_input):
        p = model.parameterization
        sampled = list(p.sampled_params())
        outside = [n for n in sampled if n not in to_input]
        if outside:
            _unsupported(f"sampled parameter(s) {outside} are not emulator inputs")
        for name, pdf in zip(model.prior.params, model.prior.pdf):
            dist = getattr(getattr(pdf, "dist", None), "name", None)
            if dist != "uniform":
                _unsupported(f"parameter {name!r} has a {dist!r} prior; only uniform "
                             "(prior: {min, max}) priors are supported")
        bounds = np.asarray(model.prior.bounds(), dtype=float)
        if not np.all(np.isfinite(bounds)):
            _unsupported("an unbounded prior")
        given = set(sampled) | set(p.constant_params())
        dynamic = [n for n in p.input_params() if n not in given]
        if dynamic:
            _unsupported(f"parameter(s) {dynamic} defined as functions of others")
        extra = [n for n in p.derived_params() if n not in DERIVED and not n.startswith("chi2__")]
        if extra:
            _unsupported(f"derived parameter(s) {extra} (only {list(DERIVED)} are computed)")

    # ------------------------------------------------------------------ evaluation
    @property
    def dim(self) -> int:
        """Number of sampled parameters."""
        return len(self.names)

    def full(self, theta) -> np.ndarray:
        """Emulator inputs (..., n_inputs), in the weights' input order, of sampled points (..., d)."""
        return self.support.full(theta)

    def in_prior(self, theta) -> np.ndarray:
        """Whether sampled points (..., d) lie inside the uniform prior box."""
        theta = np.asarray(theta, dtype=float)
        return np.all((theta >= self.low) & (theta <= self.high), axis=-1)

    def loglike(self, theta) -> float:
        """Log-likelihood at one sampled point (d,), as ``IAEmuLikelihood.logp``; -inf outside
        the prior box or the emulator's training support."""
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.dim,):
            raise ValueError(f"theta has shape {theta.shape}; expected ({self.dim},) in the order "
                             f"{list(self.names)}")
        full = self.full(theta)
        if not (self.in_prior(theta) and self.emulator.in_support(full)):
            return -math.inf
        pred = self.emulator.predict(full, epistemic="epistemic" in self.terms)
        model = pred.vector()[self.emulator_indices]
        cov = self.data_cov
        if self.terms:
            cov = cov + self.emulator.covariance(full, self.terms, prediction=pred)[self._emu_block]
        return gaussian_terms(self.data, model, cov).loglike()

    def logpost(self, theta) -> float:
        """Log-posterior at one sampled point (d,): Cobaya's ``model.logposterior(...).logpost``."""
        loglike = self.loglike(theta)
        return self.log_prior_value + loglike if loglike > -math.inf else -math.inf

    def loglike_batch(self, theta) -> np.ndarray:
        """Log-likelihoods of sampled points (n, d) (-inf outside the prior box or the support).

        The emulator evaluates the batch at once (float64, in blocks of at most
        ``emulator.NUMPY_BLOCK`` points); the Gaussians of the block are
        :func:`~iaemu_likelihood.likelihood_math.gaussian_loglike_batched` (equal to
        :func:`~iaemu_likelihood.likelihood_math.gaussian_terms` point by point).
        """
        from ..emulator import NUMPY_BLOCK

        theta = np.asarray(theta, dtype=float)
        if theta.ndim != 2 or theta.shape[1] != self.dim:
            raise ValueError(f"theta has shape {theta.shape}; expected (n, {self.dim})")
        out = np.full(len(theta), -math.inf)
        full = self.full(theta)
        ok = np.flatnonzero(self.in_prior(theta) & np.atleast_1d(self.emulator.in_support(full)))
        epistemic = "epistemic" in self.terms
        for start in range(0, ok.size, NUMPY_BLOCK):
            rows = ok[start:start + NUMPY_BLOCK]
            pts = full[rows]
            pred = self.emulator.predict(pts, epistemic=epistemic)
            models = pred.vector()[:, self.emulator_indices]
            covs = np.broadcast_to(self.data_cov, (len(rows),) + self.data_cov.shape)
            if self.terms:
                emu = self.emulator.covariance(pts, self.terms, prediction=pred)
                covs = covs + emu[:, self.emulator_indices[:, None], self.emulator_indices]
            out[rows] = gaussian_loglike_batched(self.data, models, covs)
        return out

    def logpost_batch(self, theta) -> np.ndarray:
        """Log-posteriors of sampled points (n, d); see :meth:`loglike_batch`."""
        return self.loglike_batch(theta) + self.log_prior_value

    def derived_values(self, theta) -> dict:
        """``{name: (n,) array}`` of :attr:`derived` at sampled points (n, d)."""
        if not self.derived:
            return {}
        values = self.emulator.derived(self.full(np.atleast_2d(theta)))
        return {k: np.atleast_1d(values[k]) for k in self.derived}


def load_posterior(source) -> Posterior:
    """The log-posterior of a Cobaya input.

    Parameters
    ----------
    source : path-like or dict
        Cobaya yaml file, or its parsed info.

    Returns
    -------
    Posterior

    Raises
    ------
    InputFileError
        Missing or malformed yaml, or Cobaya's own refusal (e.g. a fixed value outside the
        training range), as one line.
    UnsupportedInputError
        A feature the fast path cannot reproduce.
    """
    from cobaya.log import LoggedError
    from cobaya.model import get_model

    # a deep copy: the posterior keeps its own blocks, whatever the caller does with its dict
    info = copy.deepcopy(dict(source)) if isinstance(source, dict) else read_input(source)
    _check_blocks(info)
    model_info = {k: info[k] for k in ("theory", "likelihood", "params") if k in info}
    try:
        with _caller_logging():
            model = get_model(model_info)
    except LoggedError as exc:
        raise InputFileError(f"Cobaya refused the model: {' '.join(str(exc).split())}") from None
    return Posterior(model, info)


class _StdoutSink(logging.Handler):
    """A root handler that Cobaya's ``logger_setup`` takes for its stdout handler (it adds its own
    only when no root handler writes to ``sys.stdout``); it drops every record."""

    def __init__(self):
        super().__init__()
        self.stream = sys.stdout

    def emit(self, record):
        pass


@contextmanager
def _caller_logging():
    """Keep the caller's logging as it was across Cobaya's ``get_model``.

    ``cobaya.log.logger_setup`` adds a stdout handler to the root logger (with the caller's own
    handler every message was printed twice), lowers the root level to INFO, changes existing
    stdout handlers' levels and replaces ``sys.excepthook``: a sink handler stands in for Cobaya's,
    and everything else is restored afterwards.
    """
    root = logging.getLogger()
    levels = {h: h.level for h in root.handlers}
    level, hook = root.level, sys.excepthook
    sink = _StdoutSink()
    root.addHandler(sink)
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in levels]:
            root.removeHandler(handler)
        for handler, old in levels.items():
            handler.setLevel(old)
        root.setLevel(level)
        sys.excepthook = hook


def plain_data(value):
    """A copy of Cobaya info with only plain YAML data (numbers, strings, lists, dicts)."""
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
