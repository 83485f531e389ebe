"""Validation of a weights folder's ``metadata.json`` against the schema and the physics.

The layout of the weights (:mod:`iaemu_likelihood.layout`) decides what is expected: its inputs,
statistics and bins; the checks of each field live in :mod:`iaemu_likelihood.weights_checks`.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .architectures import architecture_names
from .conventions import R_EDGES
from .layout import DEFAULT_LAYOUT, TRANSFORMS, layout_of
from .weights import METADATA_FILE
from .weights_checks import (check_architecture_config, check_bounds, check_caveats, check_epistemic,
                             check_support, fail, finite_numbers)

__all__ = ["validate_metadata", "SCHEMA_VERSION", "R_EDGES_RTOL"]

SCHEMA_VERSION = 1
#: Tolerance of the metadata's r edges against conventions.R_EDGES.
R_EDGES_RTOL = 1e-10


def validate_metadata(meta: Mapping, n_members: int | None = None, where: str = METADATA_FILE) -> None:
    """Check ``metadata.json`` against the schema and the physics.

    Parameters
    ----------
    meta : mapping
        Parsed ``metadata.json``.
    n_members : int, optional
        Number of stored member state dicts, checked against ``ensemble_size``.
    where : str
        The file the metadata came from, for the messages.

    Raises
    ------
    WeightsIntegrityError
        One line naming ``where``, the offending key, its value and what is allowed: schema
        fields, bounds (finite, low < high, inside the physical range of the parameter and the
        input normalisation), output normalisation (finite, std > 0), support band (finite and
        non-empty inside the bounds), epistemic factors (finite, > 0) and correlation
        (symmetric positive semi-definite with a unit diagonal); see
        :mod:`iaemu_likelihood.weights_checks`.
    """
    if not isinstance(meta, Mapping):
        fail(where, "content", type(meta).__name__, "a JSON object")
    if meta.get("schema_version") != SCHEMA_VERSION:
        fail(where, "schema_version", meta.get("schema_version"), f"{SCHEMA_VERSION} (the version this code reads)")
    if meta.get("architecture") not in architecture_names():
        fail(where, "architecture", meta.get("architecture"), f"one of {list(architecture_names())}")
    if not isinstance(meta.get("architecture_config", {}), Mapping):
        fail(where, "architecture_config", meta.get("architecture_config"), "a mapping")
    layout = layout_of(meta, where)  # folders without a "layout" entry: the default layout
    names, stats = layout.param_names, layout.statistic_names
    if not isinstance(meta.get("param_names"), (list, tuple)) or tuple(meta["param_names"]) != names:
        fail(where, "param_names", meta.get("param_names"), f"{list(names)} in that order")
    if not isinstance(meta.get("statistics", stats), (list, tuple)) or \
            tuple(meta.get("statistics", stats)) != stats:
        fail(where, "statistics", meta.get("statistics"), f"{list(stats)}")
    _check_r_edges(meta, layout, where)
    version = meta.get("version")
    if version is not None and not (isinstance(version, str) and version.strip()
                                    and version.isprintable()):
        fail(where, "version", version, "a non-empty printable string (or no version entry)")
    size = meta.get("ensemble_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        fail(where, "ensemble_size", size, "a positive integer")
    if n_members is not None and size != n_members:
        fail(where, "ensemble_size", size, f"{n_members}, the number of member state dicts stored")
    norm = meta.get("normalisation")
    if not isinstance(norm, Mapping) or not isinstance(norm.get("output"), Mapping):
        fail(where, "normalisation", norm, "a mapping with 'input' and 'output' entries")
    check_bounds(meta, where, layout)
    for stat in stats:
        n_bins = layout.statistic(stat).n_bins
        entry = norm["output"].get(stat)
        if not isinstance(entry, Mapping):
            fail(where, f"normalisation.output.{stat}", entry, "a mapping with transform, mean, std")
        if entry.get("transform") not in TRANSFORMS:
            fail(where, f"normalisation.output.{stat}.transform", entry.get("transform"),
                 f"one of {list(TRANSFORMS)}")
        finite_numbers(where, f"normalisation.output.{stat}.mean", entry.get("mean"), n_bins)
        std = finite_numbers(where, f"normalisation.output.{stat}.std", entry.get("std"), n_bins)
        if np.any(std <= 0):
            fail(where, f"normalisation.output.{stat}.std", entry.get("std"),
                 f"{n_bins} finite numbers > 0 (std must be > 0)")
    check_architecture_config(meta, where, layout)
    check_support(meta, where, layout)
    check_epistemic(meta, where, layout)
    check_caveats(meta, where)
    _check_mass_function_table_entry(meta, layout, where)


def _check_mass_function_table_entry(meta: Mapping, layout, where: str) -> None:
    """``mass_function_table`` (weights over an N-body suite): names the table file, and gives a
    fixed value for each of Omega_m, sigma_8, z that is not an input (and none for an input)."""
    from .cosmology_inputs import COSMOLOGY_INPUTS
    from .weights import MASS_FUNCTION_TABLE_FILE

    entry = meta.get("mass_function_table")
    if entry is None:
        return
    if not isinstance(entry, Mapping) or entry.get("file") != MASS_FUNCTION_TABLE_FILE:
        fail(where, "mass_function_table", entry, f"a mapping with file: {MASS_FUNCTION_TABLE_FILE!r}")
    fixed = entry.get("fixed", {})
    if not isinstance(fixed, Mapping):
        fail(where, "mass_function_table.fixed", fixed, "a mapping {input name: value}")
    for item in COSMOLOGY_INPUTS:
        value = fixed.get(item.name)
        if item.name in layout.param_names:
            if item.name in fixed:
                fail(where, f"mass_function_table.fixed.{item.name}", value,
                     f"no entry: {item.name} is an input of these weights")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            fail(where, f"mass_function_table.fixed.{item.name}", value,
                 f"a finite number ({item.name} of every training point: it is not an input)")


def _check_r_edges(meta: Mapping, layout, where: str) -> None:
    """``r_edges``: required (and equal to conventions.R_EDGES) for the default layout; for
    another layout optional, and then the shared edges of its statistics."""
    if layout == DEFAULT_LAYOUT:
        expected, text = R_EDGES, ("np.logspace(-1, 1.2, 21) h^-1 Mpc (conventions.R_EDGES); "
                                   "these differ from conventions.R_EDGES")
    elif "r_edges" not in meta:
        return
    elif layout.shared_axis:
        expected = np.asarray(layout.statistics[0].edges)
        text = "the bin edges of the layout's statistics"
    else:
        fail(where, "r_edges", meta.get("r_edges"), "no r_edges entry: the statistics of this "
             "layout have their own axes (layout.statistics[].edges)")
    try:
        edges = np.asarray(meta.get("r_edges", []), dtype=float)
    except (TypeError, ValueError):
        edges = np.array([])
    if edges.shape != expected.shape or not np.allclose(edges, expected, rtol=R_EDGES_RTOL, atol=0):
        fail(where, "r_edges", meta.get("r_edges"), text)
