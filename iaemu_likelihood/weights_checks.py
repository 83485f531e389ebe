"""Content checks of a weights folder: what a checksum cannot catch.

A folder whose ``SHA256SUMS`` was rewritten after an edit (or a buggy exporter) can hold
non-finite tensors, bounds outside the physical range of a parameter, an empty training support
or a correlation matrix that is not one. Each check here raises
:class:`~iaemu_likelihood.errors.WeightsIntegrityError` with one line naming the file (``where``),
the field, its value and what is allowed; :mod:`iaemu_likelihood.weights_io` runs them when a
folder is written and when it is loaded, so such weights never predict NaN or silently clip.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import WeightsIntegrityError
from .layout import DEFAULT_LAYOUT

__all__ = ["PHYSICAL_RANGES", "INPUT_SCALINGS", "STANDARD_SCALING_MAX", "band_limits", "check_bounds",
           "check_support", "check_epistemic", "check_correlation", "check_members",
           "check_architecture_config", "check_mass_function_values", "expected_shapes",
           "finite_numbers", "fail"]

#: Physical range of each input of the default layout: (low, high, low is exclusive). Masses in
#: log10(Msun/h); sigma_logM in dex; mu are the halotools alignment strengths (the layout owns them).
PHYSICAL_RANGES = {i.name: i.physical_range for i in DEFAULT_LAYOUT.inputs}
#: ``normalisation.input.scaling``: "box" (default; [low, high] is the training box, mapped to
#: [-1, 1]) or "standard" (low/high = mean -/+ std of the training inputs, as in the reference code).
INPUT_SCALINGS = ("box", "standard")
#: With "standard" scaling, the bounds may lie at most this many standard deviations from the mean.
STANDARD_SCALING_MAX = 6.0
#: Relative slack (of the normalisation width) of the bounds against a "box" normalisation.
BOX_RTOL = 1e-6
#: Tolerances of a correlation matrix: symmetry and diagonal (absolute), smallest eigenvalue.
CORRELATION_ATOL = 1e-6
EIGENVALUE_ATOL = 1e-8
#: Pivot values sampled to check that a support band leaves points inside the bounds box.
SUPPORT_GRID = 201
_N_OUT = DEFAULT_LAYOUT.n_out
_COUNTER_SUFFIX = "num_batches_tracked"


def fail(where: str, field: str, value, allowed: str):
    """Raise the one-line :class:`WeightsIntegrityError` every check uses."""
    raise WeightsIntegrityError(f"{where}: {field} = {_show(value)}; allowed: {allowed}")


def _show(value, limit: int = 80) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _float(where, field, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        fail(where, field, value, "a finite number")
    out = float(value)
    if not np.isfinite(out):
        fail(where, field, value, "a finite number")
    return out


def finite_numbers(where: str, field: str, value, length: int) -> np.ndarray:
    """``value`` as a float64 array of ``length`` finite numbers, else the one-line error."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        fail(where, field, value, f"{length} finite numbers")
    if arr.shape != (length,) or not np.all(np.isfinite(arr)):
        fail(where, field, value, f"{length} finite numbers")
    return arr


def check_bounds(meta: Mapping, where: str, layout=DEFAULT_LAYOUT) -> None:
    """``bounds`` finite, low < high, inside :data:`PHYSICAL_RANGES` and consistent with
    ``normalisation.input`` (inside the box it maps to [-1, 1], or within
    :data:`STANDARD_SCALING_MAX` standard deviations for "standard" scaling)."""
    bounds = meta.get("bounds")
    if not isinstance(bounds, Mapping):
        fail(where, "bounds", bounds, "a mapping {parameter: [low, high]}")
    norm = meta.get("normalisation")
    if not isinstance(norm, Mapping) or not isinstance(norm.get("input"), Mapping):
        fail(where, "normalisation.input", None if not isinstance(norm, Mapping) else norm.get("input"),
             "a mapping with 'low' and 'high' (7 numbers each)")
    n = layout.n_inputs
    in_low = finite_numbers(where, "normalisation.input.low", norm["input"].get("low"), n)
    in_high = finite_numbers(where, "normalisation.input.high", norm["input"].get("high"), n)
    scaling = norm["input"].get("scaling", "box")
    if scaling not in INPUT_SCALINGS:
        fail(where, "normalisation.input.scaling", scaling, f"one of {list(INPUT_SCALINGS)}")
    for j, item in enumerate(layout.inputs):
        name = item.name
        field = f"bounds[{name!r}]"
        if name not in bounds:
            fail(where, field, None, f"[low, high] with low < high inside {item.range_text()}")
        pair = bounds[name]
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            fail(where, field, pair, "[low, high]: two finite numbers")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in pair):
            fail(where, field, pair, "[low, high]: two finite numbers")
        low, high = float(pair[0]), float(pair[1])
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            fail(where, field, pair, "finite [low, high] with low < high")
        p_low, p_high, open_low = item.physical_range
        if low < p_low or (open_low and low <= p_low) or high > p_high:
            fail(where, field, pair, f"inside the physical range {item.range_text()} of {name}")
        if not in_high[j] > in_low[j]:
            fail(where, f"normalisation.input (high - low) of {name}",
                 [float(in_low[j]), float(in_high[j])], "high > low")
        scaled = 2.0 * (np.array([low, high]) - in_low[j]) / (in_high[j] - in_low[j]) - 1.0
        if scaling == "box" and np.any(np.abs(scaled) > 1.0 + 2.0 * BOX_RTOL):
            fail(where, field, pair, f"inside the normalisation box normalisation.input "
                 f"[{in_low[j]:g}, {in_high[j]:g}] of {name} (the network was never trained outside it)")
        # "standard": low/high are mean -/+ std, so one standard deviation is one scaled unit
        if scaling == "standard" and np.any(np.abs(scaled) > STANDARD_SCALING_MAX):
            fail(where, field, pair, f"within {STANDARD_SCALING_MAX:g} standard deviations of the "
                 f"mean of {name} in normalisation.input ([{in_low[j]:g}, {in_high[j]:g}] = mean -/+ std)")


def band_limits(band: Mapping, x):
    """Allowed ``(low, high)`` of a banded parameter at pivot value(s) ``x``: one ``bands`` entry
    of a ``linear_band`` support, ``max(low_intercept + slope x, floor)`` to ``high_intercept + slope x``."""
    low = band["low_intercept"] + band["slope"] * x
    if band.get("floor") is not None:
        low = np.maximum(low, band["floor"])
    return low, band["high_intercept"] + band["slope"] * x


def check_support(meta: Mapping, where: str, layout=DEFAULT_LAYOUT) -> None:
    """The optional ``support`` band: known type, finite slopes and intercepts, low < high, and
    a non-empty set of points inside the bounds box (else the emulator would refuse everything)."""
    support = meta.get("support")
    if support is None:
        return
    if not isinstance(support, Mapping) or support.get("type") != "linear_band":
        fail(where, "support.type", support.get("type") if isinstance(support, Mapping) else support,
             "'linear_band' (or no support entry)")
    names = layout.param_names
    pivot = support.get("pivot")
    if pivot not in names:
        fail(where, "support.pivot", pivot, f"one of {list(names)}")
    bands = support.get("bands")
    if not isinstance(bands, Mapping) or not bands:
        fail(where, "support.bands", bands, "a non-empty mapping {parameter: band}")
    x = np.linspace(*meta["bounds"][pivot], SUPPORT_GRID)
    inside = np.ones_like(x, dtype=bool)
    for name, band in bands.items():
        if name not in names or name == pivot:
            fail(where, "support.bands key", name, f"a parameter of {list(names)} other than "
                 f"the pivot {pivot!r}")
        if not isinstance(band, Mapping):
            fail(where, f"support.bands.{name}", band, "a mapping with slope, low_intercept, "
                 "high_intercept, floor")
        for key in ("slope", "low_intercept", "high_intercept"):
            _float(where, f"support.bands.{name}.{key}", band.get(key))
        if band.get("floor") is not None:
            _float(where, f"support.bands.{name}.floor", band.get("floor"))
        if not band["low_intercept"] < band["high_intercept"]:
            fail(where, f"support.bands.{name} (low_intercept, high_intercept)",
                 [band["low_intercept"], band["high_intercept"]], "low_intercept < high_intercept")
        low, high = band_limits(band, x)
        box_low, box_high = meta["bounds"][name]
        inside &= (np.maximum(low, box_low) <= np.minimum(high, box_high)) & (low <= high)
    if not inside.any():
        fail(where, "support.bands", {k: dict(v) for k, v in bands.items()},
             f"a band that leaves points inside the bounds box for some {pivot} in "
             f"{list(meta['bounds'][pivot])} (this one leaves none: every point would be refused)")


def check_correlation(corr, where: str, field: str, n_out: int = _N_OUT) -> np.ndarray:
    """An (n_out, n_out) correlation matrix (60 for the default layout): finite, symmetric, unit
    diagonal, positive semi-definite.

    Returns it as a float64 array.
    """
    given = corr
    try:
        kind = np.asarray(corr).dtype.kind
        corr = np.asarray(corr, dtype=np.float64) if kind in "iuf" else None
    except (TypeError, ValueError):
        corr = None
    if corr is None:  # booleans, complex numbers, strings are not converted
        shown = f"dtype {given.dtype}" if isinstance(given, np.ndarray) else given
        fail(where, field, shown, f"a ({n_out}, {n_out}) array of real numbers")
    if corr.shape != (n_out, n_out):
        fail(where, f"{field} shape", corr.shape, f"({n_out}, {n_out})")
    bad = ~np.isfinite(corr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        fail(where, f"{field}[{i}, {j}]", float(corr[i, j]), "finite values (a correlation matrix)")
    asym = np.abs(corr - corr.T)
    if asym.max() > CORRELATION_ATOL:
        i, j = np.unravel_index(np.argmax(asym), asym.shape)
        fail(where, f"{field}[{i}, {j}] - {field}[{j}, {i}]", float(corr[i, j] - corr[j, i]),
             f"|difference| <= {CORRELATION_ATOL:g} (a symmetric matrix)")
    diag = np.abs(np.diag(corr) - 1.0)
    if diag.max() > CORRELATION_ATOL:
        i = int(np.argmax(diag))
        fail(where, f"{field}[{i}, {i}]", float(corr[i, i]), f"1 (unit diagonal, within {CORRELATION_ATOL:g})")
    smallest = float(np.linalg.eigvalsh(0.5 * (corr + corr.T))[0])
    if smallest < -EIGENVALUE_ATOL:
        fail(where, f"{field} smallest eigenvalue", smallest,
             f">= {-EIGENVALUE_ATOL:g} (a positive semi-definite matrix)")
    return corr


def check_epistemic(meta: Mapping, where: str, layout=DEFAULT_LAYOUT) -> None:
    """``epistemic.scale`` factors finite and > 0 for known statistics; ``epistemic.correlation``
    a valid correlation matrix (see :func:`check_correlation`)."""
    epi = meta.get("epistemic")
    if epi is None:
        return
    if not isinstance(epi, Mapping):
        fail(where, "epistemic", epi, "a mapping (method, scale, correlation, ...)")
    scale = epi.get("scale")
    stats = layout.statistic_names
    if scale is not None:
        if not isinstance(scale, Mapping):
            fail(where, "epistemic.scale", scale, f"a mapping {{statistic: factor}} over {list(stats)}")
        for stat, factor in scale.items():
            if stat not in stats:
                fail(where, "epistemic.scale key", stat, f"one of {list(stats)}")
            value = _float(where, f"epistemic.scale.{stat}", factor)
            if not value > 0:
                fail(where, f"epistemic.scale.{stat}", factor, "a finite factor > 0")
    if epi.get("correlation") is not None:
        check_correlation(epi["correlation"], where, "epistemic.correlation", layout.n_out)


#: Longest caveat sentence a weights folder may carry (characters).
MAX_CAVEAT_CHARS = 600


def is_caveat(text) -> bool:
    """One caveat as weights may carry it (and a training config may give it): a string that is not
    blank, at most ``MAX_CAVEAT_CHARS`` long."""
    return isinstance(text, str) and bool(text.strip()) and len(text) <= MAX_CAVEAT_CHARS


def check_caveats(meta: Mapping, where: str) -> None:
    """The optional ``caveats``: a list of :func:`is_caveat` sentences (known limits of the
    weights, logged at load and printed by ``iaemu info``)."""
    caveats = meta.get("caveats")
    if caveats is None:
        return
    if not isinstance(caveats, list):
        fail(where, "caveats", caveats, "a list of sentences")
    for k, text in enumerate(caveats):
        if not is_caveat(text):
            fail(where, f"caveats[{k}]", text, f"a non-empty string of at most {MAX_CAVEAT_CHARS} characters")


def check_architecture_config(meta: Mapping, where: str, layout=DEFAULT_LAYOUT) -> None:
    """Options the numpy forward passes read (activation, variance floor), then the checks of the
    architecture's registry entry (e.g. "factorised": uncentred outputs, mu range)."""
    from .architectures import get_architecture
    from .numpy_forward import ACTIVATIONS

    arch, cfg = meta["architecture"], meta.get("architecture_config", {})
    entry = get_architecture(arch)
    if "activation" in cfg and entry.runs_in_numpy and cfg["activation"] not in ACTIVATIONS:
        fail(where, "architecture_config.activation", cfg["activation"], f"one of {sorted(ACTIVATIONS)}")
    if "var_floor" in cfg:
        floor = _float(where, "architecture_config.var_floor", cfg["var_floor"])
        if floor < 0 or (entry.runs_in_numpy and floor == 0):
            fail(where, "architecture_config.var_floor", cfg["var_floor"],
                 "> 0 (a strictly positive variance)" if entry.runs_in_numpy else ">= 0")
    entry.check(meta, layout, where)


def check_factorised_metadata(meta: Mapping, layout, where: str) -> None:
    """Registry check of "factorised" weights: the default layout, omega and eta standardised
    without centring, and the mu range equal to the input normalisation of the alignment strengths."""
    if layout.statistic_names != DEFAULT_LAYOUT.statistic_names or \
            layout.param_names[:2] != DEFAULT_LAYOUT.param_names[:2]:
        fail(where, "layout", list(layout.statistic_names),
             f"{list(DEFAULT_LAYOUT.statistic_names)} with inputs mu_cen, mu_sat first for a "
             "'factorised' network")
    cfg = meta.get("architecture_config", {})
    for stat in layout.statistic_names[1:]:  # omega and eta are standardised without centring
        mean = finite_numbers(where, f"normalisation.output.{stat}.mean",
                              meta["normalisation"]["output"][stat].get("mean"),
                              layout.statistic(stat).n_bins)
        if np.any(mean != 0):
            fail(where, f"normalisation.output.{stat}.mean", mean,
                 f"all 0 for a 'factorised' network ({stat} is standardised without centring)")
    norm_in = meta["normalisation"]["input"]
    for key, norm_key in (("mu_low", "low"), ("mu_high", "high")):
        if key not in cfg:
            continue
        got = finite_numbers(where, f"architecture_config.{key}", cfg[key], 2)
        expected = np.asarray(norm_in[norm_key][:2], dtype=float)
        if not np.allclose(got, expected, rtol=0, atol=1e-9):
            fail(where, f"architecture_config.{key}", cfg[key],
                 f"normalisation.input.{norm_key} of (mu_cen, mu_sat) = {expected.tolist()}")


def expected_shapes(meta: Mapping, member: Mapping, where: str = "metadata",
                    layout=DEFAULT_LAYOUT) -> dict:
    """State-dict key -> shape the architecture of ``meta`` needs (from its registry entry)."""
    from .architectures import get_architecture

    cfg = dict(meta.get("architecture_config", {}))
    try:
        return get_architecture(meta["architecture"]).expected_shapes(cfg, member, layout)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise WeightsIntegrityError(f"{where}: architecture_config = {_show(cfg)} cannot build a "
                                    f"{meta['architecture']!r} network: {exc}") from None


def check_members(members, meta: Mapping, where: str, layout=DEFAULT_LAYOUT) -> None:
    """Every member's arrays: the keys and shapes of the architecture, float32 (integer batch-norm
    counters), finite, and batch-norm running variances >= 0."""
    shapes = expected_shapes(meta, members[0], where, layout)
    for i, member in enumerate(members):
        missing = sorted(set(shapes) - set(member))
        extra = sorted(set(member) - set(shapes))
        if missing or extra:
            fail(where, f"member{i} keys", {"missing": missing[:3], "unexpected": extra[:3]},
                 f"exactly the state-dict keys of a {meta['architecture']!r} network with "
                 f"architecture_config {_show(meta.get('architecture_config', {}), 60)}")
        for key, shape in shapes.items():
            arr = member[key]
            field = f"member{i}/{key}"
            if arr.shape != shape:
                fail(where, f"{field} shape", arr.shape, f"{shape} (from the architecture and its config)")
            if key.endswith(_COUNTER_SUFFIX):
                if arr.dtype.kind not in "iu":
                    fail(where, f"{field} dtype", str(arr.dtype), "an integer counter (int64)")
                continue
            if arr.dtype != np.float32:
                fail(where, f"{field} dtype", str(arr.dtype), "float32")
            bad = ~np.isfinite(arr)
            if bad.any():
                index = tuple(int(v) for v in np.argwhere(bad)[0])
                fail(where, f"{field}{list(index)}", float(arr[index]),
                     f"finite values ({int(bad.sum())} of {arr.size} are not)")
            if key.endswith("running_var") and np.any(arr < 0):
                index = int(np.argmax(arr < 0))
                fail(where, f"{field}[{index}]", float(arr.ravel()[index]), ">= 0 (a variance)")


def check_mass_function_values(mass_function: Mapping, where: str) -> None:
    """Finite bin edges, mean masses and volume (the counts and the sign of the volume are
    checked by :func:`iaemu_likelihood.hod.validate_mass_function`)."""
    for key in ("log10_mass_edges", "mean_log10_mass"):
        arr = np.asarray(mass_function[key], dtype=float)
        bad = ~np.isfinite(arr)
        if bad.any():
            index = int(np.argmax(bad.ravel()))
            fail(where, f"{key}[{index}]", float(arr.ravel()[index]), "finite log10(Msun/h) values")
    volume = np.asarray(mass_function["volume"], dtype=float)
    if not np.isfinite(volume).all():
        fail(where, "volume", volume, "a finite volume > 0 in (h^-1 Mpc)^3")
    counts = np.asarray(mass_function["counts"], dtype=float)
    if not np.any(counts > 0):  # n_gal would be 0 and f_sat 0/0 at every point
        fail(where, "counts", f"all {counts.size} bins empty", "at least one halo in some mass bin")
