"""CosmoSIS module running the iaemu emulator of intrinsic-alignment correlation functions.

Reads the two alignment strengths and the five Zheng07 HOD parameters from the data block,
evaluates the emulator and writes ``xi(r)``, ``omega(r)``, ``eta(r)``, their variances, the
emulator covariance of the 60-element vector ``[xi, omega, eta]`` and the derived ``n_gal`` and
``f_sat`` (see ``module.yaml`` beside this file for every option, input and output).

All numerics live in the installed ``iaemu_likelihood`` package; this file only maps CosmoSIS
options and block entries onto the shared point path :class:`iaemu_likelihood.point.PointEvaluator`.
Inputs are read from the section of their group: ``ia_section`` (alignment), ``hod_section``
(HOD), and ``<group>_parameters`` for any other group weights may add. Cosmology- and
redshift-dependent weights (inputs ``Omega_m``, ``sigma_8``, ``z``): ``omega_m`` and ``sigma_8``
of ``cosmology_section`` (default ``cosmological_parameters``, as CAMB writes them) and the
``redshift`` option.
"""
import logging
from dataclasses import dataclass

import numpy as np
from cosmosis.datablock import BlockError, option_section

from iaemu_likelihood.conventions import STATISTICS
from iaemu_likelihood.cosmology_inputs import COSMOSIS_KEYS, REDSHIFT, REDSHIFT_OPTION, check_redshift
from iaemu_likelihood.cosmosis_setup import (COVARIANCE_TERMS_DEFAULT, EMULATOR_OPTIONS,
                                             EMULATOR_SECTIONS, bool_option, check_option_keys,
                                             parse_terms, suffixed, values_file_ranges)
from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.errors import ConfigError
from iaemu_likelihood.point import PointEvaluator
from iaemu_likelihood.prior_support import check_ranges

__all__ = ["setup", "execute", "cleanup"]

log = logging.getLogger(__name__)

#: Section option of each input group (other groups: section ``<group>_parameters``).
GROUP_SECTIONS = {"alignment": "ia_section", "hod": "hod_section"}
#: Values of the derived_section option.
DERIVED_TARGETS = ("output", "hod", "both")


@dataclass(frozen=True)
class _Config:
    """What ``setup`` hands to ``execute``: the loaded emulator and the resolved options."""

    emulator: IAEmulator
    evaluator: PointEvaluator
    terms: tuple
    input_sections: dict  # parameter name -> (block section, key), for inputs read from the block
    fixed: dict  # parameter name -> value, for inputs set by options (the redshift)
    output_section: str
    derived_sections: tuple
    compute_derived: bool


def setup(options):
    """Read the options, load the emulator weights once and return the module configuration.

    Checked here, once, before any sampling: unknown option keys (with a "did you mean"),
    malformed options, the weights, and the ranges of the pipeline's values file against the
    emulator's training box and support band (a fixed value or range with no point inside is an
    error; a range only partly inside is logged).

    Raises
    ------
    iaemu_likelihood.errors.ConfigError
        An unknown or malformed option, or values-file ranges outside the training support.
    iaemu_likelihood.errors.IAEmuError
        If the weights cannot be found or fail their checksum.
    """
    check_option_keys(options, EMULATOR_OPTIONS, "iaemu")
    weights = options.get_string(option_section, "weights", default="").strip() or None
    device = options.get_string(option_section, "device", default="cpu")
    suffix = options.get_string(option_section, "suffix", default="").strip()
    terms = parse_terms(options.get_string(option_section, "covariance_terms",
                                           default=COVARIANCE_TERMS_DEFAULT),
                        "covariance_terms", "iaemu", allow_empty=False)
    sections = {}
    for key, default in EMULATOR_SECTIONS.items():
        name = options.get_string(option_section, key, default=default).strip()
        if not name:
            raise ConfigError(f"iaemu: option {key} must name a data-block section, got an empty string")
        sections[key] = suffixed(name, suffix)
    compute_derived = bool_option(options, "compute_derived", True, "iaemu")
    target = options.get_string(option_section, "derived_section", default="both").strip()
    if target not in DERIVED_TARGETS:
        raise ConfigError(f"iaemu: derived_section = {target!r} is not one of {DERIVED_TARGETS}")
    derived_sections = {"output": (sections["output_section"],),
                        "hod": (sections["hod_section"],),
                        "both": (sections["output_section"], sections["hod_section"])}[target]

    emulator = IAEmulator.load(version=weights, device=device)
    # read as written (an int, a float or a string), so check_redshift names what is wrong with it
    redshift = options[option_section, REDSHIFT_OPTION] if options.has_value(option_section, REDSHIFT_OPTION) else None
    fixed = {}
    if (z := check_redshift(emulator, redshift, f"iaemu: option {REDSHIFT_OPTION}")) is not None:
        fixed[REDSHIFT.name] = z
    cosmology = options.get_string(option_section, "cosmology_section",
                                   default=COSMOSIS_KEYS["Omega_m"][0]).strip()
    input_sections = {}
    for item in emulator.layout.inputs:
        if item.name in fixed:
            continue
        if item.name in COSMOSIS_KEYS:
            input_sections[item.name] = (cosmology, COSMOSIS_KEYS[item.name][1])
        else:
            input_sections[item.name] = (sections[GROUP_SECTIONS[item.group]] if item.group in GROUP_SECTIONS
                                         else suffixed(f"{item.group}_parameters", suffix), item.name)
    _check_values_file(options, emulator, {name: section for name, (section, key) in input_sections.items()
                                           if key == name})
    log.info("iaemu: weights %s, covariance terms %s, reading %s and %s, writing %s",
             weights or "(shipped default)", ", ".join(terms) or "none", sections["ia_section"],
             sections["hod_section"], sections["output_section"])
    evaluator = PointEvaluator(emulator, [(term,) for term in terms])
    return _Config(emulator=emulator, evaluator=evaluator, terms=terms, input_sections=input_sections,
                   fixed=fixed, output_section=sections["output_section"], derived_sections=derived_sections,
                   compute_derived=compute_derived)


def _check_values_file(options, emulator, input_sections):
    """Values-file ranges against the training box and band: raise once here, not per sample."""
    path, ranges, starts = values_file_ranges(options, input_sections)
    if not ranges:
        return
    missing = [f"{input_sections[n]}/{n}" for n in input_sections if n not in ranges]
    if missing:
        log.warning("iaemu: values file %s sets no %s: another module must, or every sample is "
                    "rejected", path, ", ".join(missing))
    report = check_ranges(emulator, ranges)
    if report.errors:
        raise ConfigError(report.error_message(
            f"iaemu: values file {path}: parameters outside the emulator's training support "
            f"(weights {emulator.folder}; `iaemu info` prints the box and the band)"))
    if report.partial:
        log.info("iaemu: values file %s: %s", path, report.partial_message())
    # the starting point (test and maxlike samplers start there, emcee around it)
    report = check_ranges(emulator, {**ranges, **{n: (v, v) for n, v in starts.items()}})
    if report.errors:
        raise ConfigError(report.error_message(
            f"iaemu: values file {path}: starting values outside the emulator's training support"))


def execute(block, config):
    """Emulate the correlation functions at the block's parameters.

    Returns
    -------
    int
        0 on success; 1 when a parameter is missing, not finite or outside the emulator's
        training range (the sampler then rejects the point; the reason is logged).
    """
    emulator = config.emulator
    theta = np.empty(len(emulator.param_names))
    for i, name in enumerate(emulator.param_names):
        if name in config.fixed:
            theta[i] = config.fixed[name]
            continue
        section, key = config.input_sections[name]
        try:
            theta[i] = block.get_double(section, key)
        except BlockError:
            log.error("iaemu: parameter %s is missing from section %s of the data block or is not "
                      "a real number (set it in the values file, written as e.g. 1.0 rather than "
                      "1, or change the section options)", key, section)
            return 1
    derived = emulator.derived_names if config.compute_derived else ()
    result = config.evaluator.evaluate(theta, derived)
    if not result.ok:
        log.warning("iaemu: point rejected: %s", result.rejection)
        return 1

    out = config.output_section
    layout = emulator.layout
    if layout.statistic_names != STATISTICS:
        # the order of the output vector and covariances when it is not xi, omega, eta (the
        # likelihood maps onto it); the default layout's section stays as it always was
        block[out, "statistics"] = " ".join(layout.statistic_names)
    block[out, "r_h"] = np.asarray(emulator.r, dtype=float)
    block[out, "r_edges_h"] = np.asarray(emulator.r_edges, dtype=float)
    for stat in layout.statistics:  # statistics on other bins: <axis>_<statistic> (h^-1 Mpc)
        if stat.edges != tuple(emulator.r_edges):
            block[out, f"{stat.axis}_{stat.name}"] = np.array(stat.centres)
    # xi, omega, eta, *_var, *_epi_var (if computed), covariance_<term> and their sum covariance
    for name, value in result.prediction.as_dict().items():
        block[out, name] = np.ascontiguousarray(value, dtype=float)
    total = np.zeros((emulator.n_out, emulator.n_out))
    for (term,), cov in result.covariances.items():
        block[out, f"covariance_{term}"] = cov
        total += cov
    block[out, "covariance"] = total
    for section in config.derived_sections:
        for name, value in result.derived.items():
            block[section, name] = float(value)
    return 0


def cleanup(config):
    """Nothing to release: the emulator holds only in-memory arrays."""
    return 0
