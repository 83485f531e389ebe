"""Set-up checks shared by the CosmoSIS modules of ``cosmosis_module/``.

CosmoSIS hands every module's ``setup`` the whole parameter file as a DataBlock: the module's own
section (also copied to ``option_section``), ``[pipeline]`` (with ``modules``, ``values`` and the
``current_module`` being set up) and every other section. The modules use that once, before any
sampling, to refuse what can only fail later: unknown option keys (typos), values-file ranges
outside the emulator's training support, and a likelihood asking for emulator covariance terms the
emulator module does not compute. Each check raises :class:`~iaemu_likelihood.errors.ConfigError`
with one line.

Limits: values given on the command line with ``-v`` and priors files are not seen by ``setup``
(CosmoSIS does not pass them); a pipeline built in Python with a values object instead of a
``[pipeline] values`` file is not range-checked here (the module still rejects each point outside
the support when it is evaluated).
"""
from __future__ import annotations

import logging
import os

from ._io import expand_user_path
from .config_checks import check_keys
from .errors import ConfigError

__all__ = ["PIPELINE_SECTION", "EMULATOR_FILE", "EMULATOR_SECTIONS", "EMULATOR_OPTIONS",
           "COVARIANCE_TERMS_DEFAULT", "option_keys", "check_option_keys", "current_module",
           "pipeline_modules", "parse_terms", "suffixed", "emulator_output", "values_file_ranges",
           "bool_option"]

log = logging.getLogger(__name__)

PIPELINE_SECTION = "pipeline"
#: where CosmoSIS records the keys of the parameter file's [DEFAULT] section (present everywhere)
_DEFAULT_KEYS_SECTION = "_cosmosis_default_section"
#: file name of the emulator module (how the likelihood recognises it in the pipeline)
EMULATOR_FILE = "iaemu_interface.py"
#: section options of the emulator module and their defaults (before the suffix is appended)
EMULATOR_SECTIONS = {"ia_section": "intrinsic_alignment_parameters",
                     "hod_section": "hod_parameters",
                     "output_section": "ia_correlations"}
#: every option of the emulator module (module.yaml documents them)
EMULATOR_OPTIONS = ("file", "weights", "device", "suffix", "covariance_terms", "compute_derived",
                    "derived_section", "redshift", "cosmology_section", *EMULATOR_SECTIONS)
COVARIANCE_TERMS_DEFAULT = "aleatoric epistemic"


def _option_section():
    from cosmosis.datablock import option_section

    return option_section


def option_keys(options, section=None) -> list[str]:
    """Keys set in a module's section (default: the one being set up), less the [DEFAULT] ones."""
    section = _option_section() if section is None else section
    default = set()
    if options.has_section(_DEFAULT_KEYS_SECTION):
        default = {name for _, name in options.keys(_DEFAULT_KEYS_SECTION)}
    if not options.has_section(section):
        return []
    return [name for _, name in options.keys(section) if name not in default]


def current_module(options) -> str:
    """Name of the module being set up (its section in the parameter file), or ``""``."""
    if options.has_value(PIPELINE_SECTION, "current_module"):
        return str(options[PIPELINE_SECTION, "current_module"])
    return ""


def check_option_keys(options, allowed, module: str) -> None:
    """Refuse keys of the module's section that it does not read ("did you mean" included).

    Parameters
    ----------
    options : cosmosis.datablock.DataBlock
        What ``setup`` received.
    allowed : iterable of str
        Every option the module reads.
    module : str
        The module's kind (``iaemu``, ``iaemu_like``) for the message.
    """
    keys = option_keys(options)
    name = current_module(options) or module
    check_keys(dict.fromkeys(keys), allowed, f"{module}: section [{name}] of the parameter file")


def bool_option(options, key: str, default: bool, module: str, section=None) -> bool:
    """A boolean option (T/F, true/false...); ConfigError naming the option and value otherwise."""
    from cosmosis.datablock import BlockError

    section = _option_section() if section is None else section
    try:
        return bool(options.get_bool(section, key, default=default))
    except BlockError:
        value = options[section, key] if options.has_value(section, key) else None
        raise ConfigError(f"{module}: option {key} = {value!r} is not a boolean; write T or F") from None


def pipeline_modules(options) -> list[tuple[str, str]]:
    """``(name, file)`` of every module in ``[pipeline] modules``, in order."""
    if not options.has_value(PIPELINE_SECTION, "modules"):
        return []
    names = str(options[PIPELINE_SECTION, "modules"]).split()
    return [(name, options.get_string(name, "file", default="") if options.has_section(name) else "")
            for name in names]


def parse_terms(text: str, option: str, module: str, allow_empty: bool) -> tuple[str, ...]:
    """A space/comma separated list of emulator covariance terms, in canonical order.

    ``none`` (and, with ``allow_empty``, an empty string) selects no term.

    Raises
    ------
    ConfigError
        Unknown words, or an empty value where it is not allowed.
    """
    from .layout import COVARIANCE_TERMS, parse_terms as parse

    message = (f"{module}: {option} = {text!r} is not valid; give one or both of "
               f"{' '.join(COVARIANCE_TERMS)}, or 'none'")
    try:
        terms = parse(str(text), option)
    except ConfigError:
        raise ConfigError(message) from None
    if not terms and not allow_empty and "none" not in str(text):
        raise ConfigError(message)
    return terms


def suffixed(name: str, suffix: str) -> str:
    """``name_suffix`` (or ``name`` without a suffix): section names of one galaxy sample."""
    return f"{name}_{suffix}" if suffix else name


def emulator_output(options, section: str) -> tuple[str, tuple[str, ...]]:
    """Output section and covariance terms of the emulator module configured in ``section``.

    Reads the options the way the emulator module does (:data:`EMULATOR_SECTIONS` defaults,
    ``suffix``, ``covariance_terms``), so the likelihood can check its own needs against them.
    """
    suffix = options.get_string(section, "suffix", default="").strip()
    output = options.get_string(section, "output_section",
                                default=EMULATOR_SECTIONS["output_section"]).strip()
    terms = parse_terms(options.get_string(section, "covariance_terms",
                                           default=COVARIANCE_TERMS_DEFAULT),
                        "covariance_terms", f"iaemu [{section}]", allow_empty=False)
    return suffixed(output, suffix), terms


def values_file_ranges(options, sections) -> tuple[str | None, dict, dict]:
    """Ranges of the emulator's inputs in the pipeline's values file.

    Parameters
    ----------
    options : cosmosis.datablock.DataBlock
        What ``setup`` received (``[pipeline] values`` names the file).
    sections : mapping {parameter name: data-block section}
        Where each input is read from.

    Returns
    -------
    path, ranges, starts
        The values file (None if the parameter file names none), ``{name: (low, high)}`` of the
        inputs it sets (``low == high`` for a fixed value) and ``{name: start}``, their starting
        values. Parameters the file does not set (computed by another module) are left out.
    """
    if not options.has_value(PIPELINE_SECTION, "values"):
        return None, {}, {}
    path = expand_user_path(str(options[PIPELINE_SECTION, "values"]).strip())
    if not os.path.isfile(path):
        log.info("values file %s not found from %s: its ranges are not checked here", path,
                 os.getcwd())
        return path, {}, {}
    from cosmosis.runtime.parameter import Parameter

    try:
        parameters = Parameter.load_parameters(path)
    except Exception as exc:  # CosmoSIS reports a malformed values file itself; say which here
        raise ConfigError(f"values file {path}: cannot be read ({str(exc).splitlines()[0]})") from None
    found = {(p.section.lower(), p.name.lower()): p for p in parameters}
    ranges, starts = {}, {}
    for name, section in sections.items():
        p = found.get((section.lower(), name.lower()))
        if p is not None:
            ranges[name] = (float(p.limits[0]), float(p.limits[1]))
            starts[name] = float(p.start)
    return path, ranges, starts
