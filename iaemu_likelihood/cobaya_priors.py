"""Priors of :class:`~iaemu_likelihood.cobaya_theory.IAEmuTheory`'s inputs against the weights.

Two jobs, both on Cobaya parameter blocks and both before any sampling:

- :func:`priors_for_weights` moves the default priors of the yaml (written for the shipped
  weights) onto the training box of the weights actually selected, so the ``*.updated.yaml``
  Cobaya writes states the priors that were used;
- :func:`check_priors` stops a run whose fixed values, bounded priors or fixed starting points
  (``ref``) cannot reach the training support (the box and, where the weights record it, the
  band around the Zheng07 relations), with one line naming the parameter, its range and the band.

The range arithmetic itself is :func:`iaemu_likelihood.prior_support.check_ranges`; this module
only reads Cobaya's parameter blocks and model.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from cobaya.log import LoggedError

from .conventions import PARAM_NAMES
from .prior_support import check_ranges

__all__ = ["prior_with_bounds", "priors_for_weights", "check_priors"]


def prior_with_bounds(info: Mapping, old: tuple[float, float], new: tuple[float, float]) -> dict:
    """Copy of a Cobaya parameter block moved from one range to another.

    The prior's ``min``/``max`` become ``new``; a Gaussian ``ref`` (``loc``/``scale``) and the
    ``proposal`` width are mapped linearly, so they keep their place relative to the range.

    Parameters
    ----------
    info : mapping
        Cobaya parameter info with ``prior: {min, max}``.
    old, new : (float, float)
        Range the block was written for, and the target range (the parameter's units).
    """
    info = dict(info)
    (a, b), (c, d) = old, new
    scale = (d - c) / (b - a)
    info["prior"] = {"min": float(c), "max": float(d)}
    ref = info.get("ref")
    if isinstance(ref, Mapping) and "loc" in ref:
        ref = dict(ref)
        ref["loc"] = float(c + (ref["loc"] - a) * scale)
        if "scale" in ref:
            ref["scale"] = float(ref["scale"] * scale)
        info["ref"] = ref
    elif isinstance(ref, (int, float)):
        info["ref"] = float(c + (ref - a) * scale)
    if isinstance(info.get("proposal"), (int, float)):
        info["proposal"] = float(info["proposal"] * scale)
    return info


def priors_for_weights(defaults: Mapping, weights) -> Mapping:
    """Cobaya defaults with the uniform priors of the inputs set to the weights' training box.

    Parameters
    ----------
    defaults : mapping
        The component's defaults (``IAEmuTheory.yaml``), with a ``params`` block.
    weights : str, path or None
        The ``weights`` option, ``~`` and variables already expanded.

    Returns
    -------
    mapping
        ``defaults`` itself if the weights' metadata cannot be read (the theory's ``initialize``
        then reports why), else a copy whose ``params`` blocks with ``prior: {min, max}`` span
        the box ``metadata["bounds"]``.
    """
    from .weights import read_metadata

    try:
        bounds = read_metadata(weights)["bounds"]
    except Exception:  # reported with a clear message by IAEmuTheory.initialize
        return defaults
    params = dict(defaults.get("params") or {})
    for name in PARAM_NAMES:
        info = params.get(name)
        if isinstance(info, Mapping) and isinstance(info.get("prior"), Mapping) and name in bounds:
            old = (info["prior"]["min"], info["prior"]["max"])
            params[name] = prior_with_bounds(info, old, tuple(bounds[name]))
    defaults = dict(defaults)
    defaults["params"] = params
    return defaults


def check_priors(model, names, emulator, out_of_range: str, log) -> None:
    """Fixed values, bounded priors and fixed ``ref`` values of the inputs must reach the support.

    A fixed value or bounded prior outside the training box, or with no point inside the support
    band of the weights, stops here with one line naming the parameter, its range and the band
    (rather than after thousands of rejected draws); a prior that only partly overlaps the band is
    allowed (points outside get zero likelihood) and logged once.

    Parameters
    ----------
    model : cobaya.model.Model
        The model being set up (its parameterization, prior and input info).
    names : sequence of str
        The theory's sampled inputs (those it reads as input parameters).
    emulator : IAEmulator
        Its bounds and support band are the reference.
    out_of_range : str
        The theory's policy, named in the message about unbounded priors.
    log : logging.Logger
        The theory's logger.

    Raises
    ------
    cobaya.log.LoggedError
        A fixed value that is not a finite real number; a range or fixed value, or a fixed
        starting point, with no point inside the training support.
    """
    constants = {name: value for name, value in
                 model.parameterization.constant_params().items() if name in names}
    given = model.info().get("params") or {}
    for name in constants:
        # Cobaya turns yaml `mu_cen: true` into 1.0: check the value as written
        value = given.get(name, constants[name])
        value = value.get("value", constants[name]) if isinstance(value, Mapping) else value
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
                or not math.isfinite(float(value)):
            raise LoggedError(log, "parameter %s fixed to %r: a fixed value must be a finite "
                              "real number (not a boolean or a string)", name, value)
    ranges = {name: (float(value), float(value)) for name, value in constants.items()}
    for name, (pmin, pmax) in zip(model.prior.params, model.prior.bounds()):
        if name in names:
            ranges[name] = (float(pmin), float(pmax))
            if math.isinf(pmin) or math.isinf(pmax):
                log.info("%s has an unbounded prior; points outside the training range "
                         "[%g, %g] are handled by out_of_range=%r", name,
                         *emulator.bounds[name], out_of_range)
    report = check_ranges(emulator, ranges)
    if report.errors:
        raise LoggedError(log, "%s. Narrow the priors or remove them to use the training "
                          "range (`iaemu info` prints the box and the band).",
                          report.error_message("parameters outside the emulator's training "
                                               f"support (weights {emulator.folder})"))
    if report.partial:
        log.info("%s", report.partial_message())
    # fixed starting points (numeric `ref`) outside the support: the sampler would retry them
    # until max_tries and stop with a generic message
    refs = {name: info.get("ref") for name, info in
            model.parameterization.sampled_params_info().items() if name in names}
    refs = {name: float(ref) for name, ref in refs.items()
            if isinstance(ref, (int, float)) and not isinstance(ref, bool)}
    if refs:
        report = check_ranges(emulator, {**ranges, **{n: (v, v) for n, v in refs.items()}})
        if report.errors:
            raise LoggedError(log, "%s. Change the `ref` values (or give a distribution).",
                              report.error_message("reference (starting) values outside the "
                                                   "emulator's training support"))
