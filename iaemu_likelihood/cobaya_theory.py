"""Cobaya theory component wrapping the iaemu emulator.

Use it in a Cobaya input as::

    theory:
      iaemu_likelihood.IAEmuTheory:
        weights: null            # shipped default, a shipped version name, or a weights folder
        redshift: null           # the sample's redshift, for weights that take z as an input

The numerics live in :class:`iaemu_likelihood.emulator.IAEmulator` and the shared point path
:class:`iaemu_likelihood.point.PointEvaluator`; this module only maps Cobaya parameters and
products onto them.
"""
from __future__ import annotations

import os

import numpy as np
from cobaya.log import LoggedError
from cobaya.theory import Theory
from cobaya.typing import empty_dict

from ._io import expand_user_path
from .cobaya_priors import check_priors, prior_with_bounds, priors_for_weights
from .conventions import STATISTICS
from .cosmology_inputs import COBAYA_PARAMETERS, REDSHIFT, check_redshift, model_input_names
from .errors import ConfigError, IAEmuError
from .layout import COVARIANCE_TERMS, parse_terms

__all__ = ["IAEmuTheory", "COVARIANCE_TERMS", "OUT_OF_RANGE_POLICIES", "PRODUCTS",
           "DERIVED_PARAMS", "prior_with_bounds"]

OUT_OF_RANGE_POLICIES = ("reject", "raise")
#: Products other components can request (``requires``/``get_requirements``), for the default
#: layout; weights with other statistics provide ``iaemu_<statistic>`` for each of theirs.
PRODUCTS = ("iaemu_r", *(f"iaemu_{s}" for s in STATISTICS), "iaemu_vector", "iaemu_covariance",
            "iaemu_layout")
#: Derived parameters this theory can compute (from the emulator's HOD inputs).
DERIVED_PARAMS = ("n_gal", "f_sat")


class IAEmuTheory(Theory):
    r"""Emulated intrinsic-alignment correlation functions for Cobaya.

    Input parameters (all seven must be given: sampled, fixed or functions of others):
    ``mu_cen``, ``mu_sat`` (central and satellite alignment strengths), ``logMmin``,
    ``sigma_logM``, ``logM0``, ``logM1`` (log10 Msun/h) and ``alpha`` (Zheng07 HOD). Their default
    priors are uniform over the training range of the selected weights: they are read from the
    weights' ``metadata.json`` when the input is processed (the values in ``IAEmuTheory.yaml`` are
    those of the shipped weights, used only if no metadata can be read). A prior you set yourself
    must stay inside the training range (checked at start-up, ``LoggedError`` otherwise); an
    unbounded prior (e.g. Gaussian) is allowed and points outside the range follow
    ``out_of_range``.

    Products, for ``requires``/``get_requirements`` of other components (get them with
    ``self.provider.get_<name>()``):

    ============================ ============ ===========================================================
    name                         shape        meaning
    ============================ ============ ===========================================================
    ``iaemu_r``                  (20,)        bin centres, comoving h^-1 Mpc (constant)
    ``iaemu_xi``                 (20,)        position-position correlation xi(r), mean over mocks
    ``iaemu_omega``              (20,)        position-orientation correlation omega(r)
    ``iaemu_eta``                (20,)        orientation-orientation correlation eta(r)
    ``iaemu_vector``             (60,)        ``[xi, omega, eta]`` concatenated
    ``iaemu_layout``             --           the emulator's Layout: inputs, statistics, bins (constant)
    ``iaemu_covariance``         (60, 60)     emulator covariance of ``iaemu_vector``; request it as
                                              ``{"iaemu_covariance": {"terms": [...]}}`` and read it with
                                              ``get_iaemu_covariance(terms)`` (default terms: the
                                              ``covariance_terms`` option)
    ============================ ============ ===========================================================

    Covariance terms: ``aleatoric`` is the covariance of one mock realization (the training box's
    volume and sample) around the mean, ``D R D`` with the shipped residual correlation ``R``;
    ``epistemic`` is the emulator's own uncertainty of the mean (``E C E``: calibrated ensemble
    spread and the correlation of the emulator's errors, see ``IAEmulator.covariance``).

    Derived parameters: ``n_gal`` (galaxy number density, (h^-1 Mpc)^-3) and ``f_sat`` (satellite
    fraction), exact sums of the Zheng07 occupations over the training catalog's mass function.

    Cosmology and redshift (weights whose layout lists ``Omega_m``, ``sigma_8``, ``z``; see
    :mod:`iaemu_likelihood.cosmology_inputs`): ``Omega_m`` and ``sigma_8`` are requirements
    ``omegam`` and ``sigma8``, so they are either sampled parameters of those names or computed by
    a Boltzmann code of the same model (CAMB, CLASS); ``z`` is the ``redshift`` option (required
    for such weights, refused for others). A cosmology outside the weights' training range is a
    rejected point (logged with the parameter and the range); a redshift outside it stops at
    start-up.

    Options (defaults in ``IAEmuTheory.yaml``): ``weights`` (None: shipped default; a shipped
    version name; or a folder, relative paths resolved against the current directory),
    ``device``, ``torch_threads``, ``covariance_terms``, ``out_of_range`` (``reject``: the point
    gets zero likelihood and a debug message; ``raise``: stop with an error). "Out of range" is
    what the emulator refuses: outside its box bounds or, where the weights record it, outside the
    band of the training prior around the Zheng07 relations with logMmin (the network never saw
    those points).
    """

    weights: str | None
    redshift: float | None
    device: str
    torch_threads: int | None
    covariance_terms: list | str | None
    out_of_range: str

    # ------------------------------------------------------------------ defaults
    @classmethod
    def get_modified_defaults(cls, defaults, input_options=empty_dict):
        """Set the default priors to the training range of the selected weights.

        The ``weights`` option is already known here (Cobaya passes the user's options), so the
        priors written to ``*.updated.yaml`` are those of the weights actually used. If the
        metadata cannot be read the yaml values stay; :meth:`initialize` then reports why.
        """
        weights = (input_options or {}).get("weights", defaults.get("weights"))
        return priors_for_weights(defaults, _expand_path(weights))

    # ------------------------------------------------------------------ set-up
    def initialize(self):
        """Validate the options and load the weights."""
        if self.out_of_range not in OUT_OF_RANGE_POLICIES:
            raise LoggedError(self.log, "out_of_range = %r; choose one of %s", self.out_of_range,
                              list(OUT_OF_RANGE_POLICIES))
        try:
            self._default_terms = parse_terms(self.covariance_terms, "covariance_terms")
        except ConfigError as exc:
            raise LoggedError(self.log, str(exc)) from None
        if self.torch_threads is not None:
            if not isinstance(self.torch_threads, int) or isinstance(self.torch_threads, bool) \
                    or self.torch_threads < 1:
                raise LoggedError(self.log, "torch_threads = %r must be a positive integer or null",
                                  self.torch_threads)
            from .torch_backend import set_torch_threads

            set_torch_threads(self.torch_threads)  # imports nothing while torch is not needed
        from .emulator import IAEmulator
        from .point import PointEvaluator

        weights = _expand_path(self.weights)
        try:
            self.emulator = IAEmulator.load(weights, device=self.device)
        except ConfigError as exc:  # an option of ours (device, weights type): say which
            raise LoggedError(self.log, "IAEmuTheory option: %s", exc) from None
        except IAEmuError as exc:
            raise LoggedError(self.log, "emulator weights missing or unusable (weights: %r): %s. Set "
                              "'weights:' in the IAEmuTheory block to a weights folder or version.",
                              self.weights, exc) from None
        try:
            redshift = check_redshift(self.emulator, self.redshift)
        except ConfigError as exc:
            raise LoggedError(self.log, "IAEmuTheory option %s", exc) from None
        #: inputs taken from the model (name -> Cobaya parameter) and fixed by options (name -> value)
        self._from_model = {name: COBAYA_PARAMETERS[name] for name in model_input_names(self.emulator.layout)
                            if name in COBAYA_PARAMETERS}
        self._fixed = {} if redshift is None else {REDSHIFT.name: redshift}
        self._sampled = tuple(n for n in self.emulator.param_names
                              if n not in self._from_model and n not in self._fixed)
        self.evaluator = PointEvaluator(self.emulator, variances=False)  # products: means, covariances
        self._r = np.array(self.emulator.r)
        self._r.setflags(write=False)
        self._slices = tuple((f"iaemu_{s}", sl) for s, sl in self.emulator.layout.slices.items())
        self._derived_wanted = ()
        self.n_calculated = self.n_rejected = 0
        if self.emulator.metadata.get("synthetic"):
            self.log.warning("weights %s are SYNTHETIC test weights (a toy model): results are "
                             "meaningless for science", self.emulator.folder)
        self.log.info("emulator %s from %s", self.emulator, self.emulator.folder)

    def model_inputs(self) -> tuple[dict, dict]:
        """``(from_model, fixed)``: the emulator inputs taken from Cobaya parameters (input name ->
        parameter, e.g. ``{"Omega_m": "omegam"}``) and those fixed by options (``{"z": 0.5}``);
        both empty for weights without cosmology or redshift inputs."""
        return dict(self._from_model), dict(self._fixed)

    def initialize_with_params(self):
        names = self._sampled
        missing = [p for p in names if p not in self.input_params]
        # sampled omegam/sigma8 reach us as input parameters too, being our requirements
        extra = [p for p in self.input_params if p not in names and p not in self._from_model.values()]
        if missing or extra:
            raise LoggedError(self.log, "input parameters must be exactly %s; missing %s, unexpected %s",
                              list(names), missing, extra)
        self._derived_wanted = tuple(p for p in self.emulator.derived_names
                                     if p in self.output_params)

    def initialize_with_provider(self, provider):
        super().initialize_with_provider(provider)
        self._check_priors(provider)

    def _check_priors(self, provider):
        """Fixed values and bounded priors of the inputs must reach the training support
        (:func:`~iaemu_likelihood.cobaya_priors.check_priors`)."""
        model = getattr(provider, "model", None)
        if model is not None:
            check_priors(model, self._sampled, self.emulator, self.out_of_range, self.log)

    # ------------------------------------------------------------------ products
    def get_can_provide(self):
        return ["iaemu_r", *(name for name, _ in self._slices), "iaemu_vector", "iaemu_covariance",
                "iaemu_layout"]

    def get_can_support_params(self):
        # every sampled input of the weights' layout, also those the yaml defaults do not list
        return list(self._sampled)

    def get_requirements(self):
        # the cosmology inputs of cosmology-dependent weights: sampled, or from a Boltzmann code
        return {name: None for name in self._from_model.values()}

    def get_can_provide_params(self):
        return list(self.emulator.derived_names)

    def must_provide(self, **requirements):
        super().must_provide(**requirements)
        for name, options in requirements.items():
            if name != "iaemu_covariance":
                continue
            terms = (options or {}).get("terms", self._default_terms)
            try:
                self.evaluator.request(terms, "iaemu_covariance terms")
            except ConfigError as exc:
                raise LoggedError(self.log, "iaemu_covariance requested with no or unknown terms: %s",
                                  exc) from None
        return None

    def calculate(self, state, want_derived=True, **params_values_dict):
        self.n_calculated += 1
        derived = self._derived_wanted if want_derived and state.get("derived") is not None else ()
        if self._from_model or self._fixed:
            params_values_dict = {**params_values_dict, **self._fixed,
                                  **{name: self.provider.get_param(p) for name, p in self._from_model.items()}}
        result = self.evaluator.evaluate(self.evaluator.theta(params_values_dict), derived)
        if not result.ok:
            if result.error is not None and self.out_of_range == "raise":
                raise LoggedError(self.log, str(result.error)) from None
            self.log.debug("point rejected: %s", result.rejection)
            self.n_rejected += 1
            return False
        vector = result.prediction.vector()
        vector.setflags(write=False)
        state["iaemu_vector"] = vector
        for name, sl in self._slices:
            state[name] = vector[sl]
        state["iaemu_covariance"] = result.covariances
        if derived:
            state["derived"].update(result.derived)
        return True

    def get_result(self, result_name, **kwargs):
        if result_name == "iaemu_covariance":
            return self.get_iaemu_covariance(**kwargs)
        if result_name == "iaemu_r":
            return self._r
        if result_name == "iaemu_layout":
            return self.emulator.layout
        return super().get_result(result_name, **kwargs)

    def get_iaemu_r(self) -> np.ndarray:
        """Bin centres, comoving h^-1 Mpc, shape (20,) (available before any calculation)."""
        return self._r

    def get_iaemu_layout(self):
        """The emulator's :class:`~iaemu_likelihood.layout.Layout` (inputs, statistics and their
        bins, the order of ``iaemu_vector``; constant)."""
        return self.emulator.layout

    def get_iaemu_xi(self) -> np.ndarray:
        """xi(r) at the current point, shape (20,)."""
        return self.current_state["iaemu_xi"]

    def get_iaemu_omega(self) -> np.ndarray:
        """omega(r) at the current point, shape (20,)."""
        return self.current_state["iaemu_omega"]

    def get_iaemu_eta(self) -> np.ndarray:
        """eta(r) at the current point, shape (20,)."""
        return self.current_state["iaemu_eta"]

    def __getattr__(self, name):
        # get_iaemu_<statistic> of statistics other weights may add beyond xi, omega, eta
        key = name[4:]
        if name.startswith("get_iaemu_") and any(k == key for k, _ in self.__dict__.get("_slices", ())):
            return lambda: self.current_state[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def get_iaemu_vector(self) -> np.ndarray:
        """``[xi, omega, eta]`` at the current point, shape (60,)."""
        return self.current_state["iaemu_vector"]

    def get_iaemu_covariance(self, terms=None) -> np.ndarray:
        """Emulator covariance of :meth:`get_iaemu_vector`, shape (60, 60).

        Parameters
        ----------
        terms : sequence of {"aleatoric", "epistemic"}, optional
            Must match what was requested (default: the ``covariance_terms`` option).
        """
        if terms is None:
            key = self._default_terms
        elif isinstance(terms, tuple) and terms in self.evaluator.requests:  # the usual call
            key = terms
        else:
            key = parse_terms(terms)
        try:
            return self.current_state["iaemu_covariance"][key]
        except KeyError:
            raise LoggedError(self.log, "iaemu_covariance with terms %s was not requested (requested: "
                              "%s); add it to the requirements", list(key),
                              [list(t) for t in self.evaluator.requests]) from None

    def close(self, *args):
        """Log how many points were refused (outside the training support or non-finite)."""
        n = getattr(self, "n_calculated", 0)
        if not n:
            return
        if self.n_rejected == n:
            self.log.warning("every one of the %d points asked for was rejected (outside the "
                             "training support or non-finite output): no result of this run is a "
                             "fit", n)
        else:
            self.log.info("%d of %d points asked for were rejected (outside the training support "
                          "or non-finite output)", self.n_rejected, n)

    def get_version(self):
        from . import __version__

        return f"iaemu {__version__}, weights {getattr(self.emulator, 'version', None)}"


def _expand_path(weights):
    """Expand ``~`` and environment variables in a weights folder option (names pass through)."""
    if isinstance(weights, (str, os.PathLike)):
        return expand_user_path(weights)
    return weights
