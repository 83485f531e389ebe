"""Emulator inputs that come from the cosmology and the sample's redshift (emulator v2, issue 15).

Weights whose layout (:mod:`iaemu_likelihood.layout`) lists these inputs beside the seven HOD +
alignment parameters are cosmology- and redshift-dependent. The adapters do not sample them as
HOD parameters: ``Omega_m`` and ``sigma_8`` come from the cosmological model (Cobaya: the
parameters ``omegam`` and ``sigma8``, sampled or computed by CAMB/CLASS; CosmoSIS:
``cosmological_parameters/omega_m`` and ``sigma_8``) and ``z`` from a ``redshift`` option; each
adapter maps those names itself. Weights without them (v1) behave exactly as before.
"""
from __future__ import annotations

import math

from .errors import ConfigError
from .layout import DEFAULT_LAYOUT, Input, Layout

__all__ = ["OMEGA_M", "SIGMA_8", "REDSHIFT", "COSMOLOGY_INPUTS", "V2_LAYOUT", "COBAYA_PARAMETERS",
           "COSMOSIS_KEYS", "REDSHIFT_OPTION", "DATASET_KEYS", "model_input_names", "source_text",
           "check_redshift"]

#: Matter density today (flat LCDM).
OMEGA_M = Input("Omega_m", "", r"\Omega_{\rm m}", (0.0, 1.0, True), "cosmology")
#: Linear rms density fluctuation in 8 h^-1 Mpc spheres at z = 0.
SIGMA_8 = Input("sigma_8", "", r"\sigma_8", (0.0, 2.0, True), "cosmology")
#: Redshift of the galaxy sample (of the N-body snapshot the mocks were populated in).
REDSHIFT = Input("z", "", "z", (0.0, 10.0, False), "redshift")
#: Every input the adapters take from the model or an option rather than as a sampled HOD parameter.
COSMOLOGY_INPUTS = (OMEGA_M, SIGMA_8, REDSHIFT)
#: The layout of emulator v2: the seven v1 inputs, then Omega_m, sigma_8, z; same statistics.
V2_LAYOUT = Layout(inputs=(*DEFAULT_LAYOUT.inputs, *COSMOLOGY_INPUTS), statistics=DEFAULT_LAYOUT.statistics)

#: Cobaya parameters that give the cosmology inputs: Cobaya's own names, as CAMB and CLASS provide
#: them (or sampled directly under these names).
COBAYA_PARAMETERS = {"Omega_m": "omegam", "sigma_8": "sigma8"}
#: CosmoSIS data-block (default section, key) of the cosmology inputs, as CAMB writes them.
COSMOSIS_KEYS = {"Omega_m": ("cosmological_parameters", "omega_m"), "sigma_8": ("cosmological_parameters", "sigma_8")}
#: The adapter option (Cobaya theory and CosmoSIS module) that sets the redshift input.
REDSHIFT_OPTION = "redshift"
#: Key of each cosmology input in a training set's per-point provenance (``point_inputs``, written
#: by ``iaemu generate`` over an N-body suite): the value of the box and snapshot of each point.
DATASET_KEYS = {"Omega_m": "omega_m", "sigma_8": "sigma8", "z": "z"}


def source_text(name: str) -> str | None:
    """Where the adapters take input ``name`` from, for people (None: a sampled parameter)."""
    if name in COBAYA_PARAMETERS:
        section, key = COSMOSIS_KEYS[name]
        return f"Cobaya: parameter {COBAYA_PARAMETERS[name]} (sampled or from CAMB/CLASS); CosmoSIS: {section}/{key}"
    if name == REDSHIFT.name:
        return f"the {REDSHIFT_OPTION} option of the Cobaya theory and of the CosmoSIS module"
    return None


def model_input_names(layout: Layout) -> tuple:
    """The inputs of ``layout`` that are cosmology or redshift (:data:`COSMOLOGY_INPUTS`), in order."""
    known = {i.name for i in COSMOLOGY_INPUTS}
    return tuple(name for name in layout.param_names if name in known)


def check_redshift(emulator, value, option: str = "redshift") -> float | None:
    """The ``redshift`` option of an adapter, checked against the weights.

    Parameters
    ----------
    emulator : IAEmulator
    value : float or None
        The option as given (None: not set).
    option : str
        Name of the option, for the message.

    Returns
    -------
    float or None
        The redshift when the weights take ``z`` as an input, None when they do not.

    Raises
    ------
    ConfigError
        One line naming the option, its value and what is allowed: weights with a ``z`` input
        and no (or a non-numeric, non-finite or out-of-range) redshift, or weights without one
        (trained at a single redshift) and a redshift given.
    """
    name = REDSHIFT.name
    if name not in emulator.param_names:
        if value is not None:
            raise ConfigError(f"{option} = {value!r}: the weights {emulator.version} have no redshift input "
                              "(trained at one redshift); remove the option or use redshift-dependent weights")
        return None
    low, high = emulator.bounds[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ConfigError(f"{option} = {value!r}: the weights {emulator.version} take the redshift as an "
                          f"input; allowed: a number in their training range [{low:g}, {high:g}]")
    return float(value)
