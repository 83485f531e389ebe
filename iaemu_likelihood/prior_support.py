"""Parameter ranges (sampler priors, CosmoSIS values files) against an emulator's training support.

The emulator refuses points outside its training prior: the box ``IAEmulator.bounds`` and, where
the weights record it (``IAEmulator.support``, type ``linear_band``), a band around a linear
relation of each dependent HOD parameter ``p`` with the pivot ``logMmin``::

    max(low_intercept + slope * logMmin, floor) <= p <= high_intercept + slope * logMmin

A sampler configured so that no point of its prior lies in that region can only fail, after many
rejected draws and with a generic message. :func:`check_ranges` tells, once and before sampling,
which parameter's range (or fixed value) lies outside the box or the band, naming the band, and
which ranges only partly overlap it (allowed: points outside are rejected).

Ranges are ``(low, high)`` pairs in the parameter's units (log10(Msun/h) for masses); ``low ==
high`` is a fixed value, and an infinite end an unbounded prior (e.g. Gaussian), which is never an
error by itself.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .conventions import PARAM_NAMES

__all__ = ["RangeReport", "check_ranges", "band_text", "SUPPORT_FRACTION_POINTS"]

#: uniform draws used to estimate the fraction of a bounded prior box inside the support
SUPPORT_FRACTION_POINTS = 20_000


@dataclass
class RangeReport:
    """Outcome of :func:`check_ranges`.

    Attributes
    ----------
    errors : list of str
        Ranges or fixed values with no point inside the training support (one clause each).
    partial : list of str
        Bounded ranges that reach outside the support band (allowed; points there are rejected).
    inside_fraction : float or None
        Fraction of the uniform prior box inside the support (None if a range is unbounded).
    """

    errors: list = field(default_factory=list)
    partial: list = field(default_factory=list)
    inside_fraction: float | None = None

    def error_message(self, what: str) -> str:
        """One line: ``what`` followed by every error clause."""
        return f"{what}: " + "; ".join(self.errors)

    def partial_message(self) -> str:
        """One line describing the partial overlaps (empty if none)."""
        if not self.partial:
            return ""
        share = ("" if self.inside_fraction is None else
                 f"; {100 * self.inside_fraction:.3g}% of the prior volume is inside it")
        return ("ranges reach outside the emulator's training support band (points there get zero "
                f"likelihood): {'; '.join(self.partial)}{share}")


def _bands(support):
    """``(pivot, {name: (slope, low_intercept, high_intercept, floor)}, description)`` or None."""
    if not support:
        return None
    bands = {name: (float(b["slope"]), float(b["low_intercept"]), float(b["high_intercept"]),
                    -math.inf if b.get("floor") is None else float(b["floor"]))
             for name, b in support["bands"].items()}
    return support["pivot"], bands, support.get("description", "band around a linear relation")


def _band_at(band, x):
    slope, lo, hi, floor = band
    return max(lo + slope * x, floor), hi + slope * x


def band_text(support, name: str, pivot_range) -> str:
    """The allowed range of ``name`` at both ends of ``pivot_range``, as text for messages."""
    pivot, bands, description = _bands(support)
    x0, x1 = pivot_range
    a0, b0 = _band_at(bands[name], x0)
    if x0 == x1:
        return f"allowed {name} in [{a0:.5g}, {b0:.5g}] at {pivot} = {x0:.5g} ({description})"
    a1, b1 = _band_at(bands[name], x1)
    return (f"allowed {name} in [{a0:.5g}, {b0:.5g}] at {pivot} = {x0:.5g} to [{a1:.5g}, {b1:.5g}] "
            f"at {pivot} = {x1:.5g} ({description})")


def _pivot_interval(band, a, b):
    """Pivot values x at which ``[a, b]`` overlaps the band (an interval, possibly empty)."""
    slope, lo, hi, floor = band
    if floor > b:
        return math.inf, -math.inf
    low, high = -math.inf, math.inf
    # lo + s x <= b,  hi + s x >= a,  floor <= hi + s x (the band itself is not empty)
    for bound, upper in ((b - lo, True), (a - hi, False), (floor - hi, False)):
        if slope == 0:
            if (upper and bound < 0) or (not upper and bound > 0):
                return math.inf, -math.inf
            continue
        x = bound / slope
        if (slope > 0) == upper:
            high = min(high, x)
        else:
            low = max(low, x)
    return low, high


def _describe(name, a, b):
    return f"{name} is fixed to {a:g}" if a == b else f"the range of {name} is [{a:g}, {b:g}]"


def check_ranges(emulator, ranges: Mapping[str, tuple]) -> RangeReport:
    """Compare parameter ranges with an emulator's training box and support band.

    Parameters
    ----------
    emulator : IAEmulator
        Its ``bounds`` (box) and ``support`` (band, may be None) are read.
    ranges : mapping {name: (low, high)}
        Ranges of the parameters a sampler may visit (a subset of ``PARAM_NAMES`` is fine:
        parameters not listed are treated as free within the box). ``low == high``: fixed value;
        infinite ends: unbounded prior.

    Returns
    -------
    RangeReport
        ``errors``: a fixed value outside the box or band, a bounded range beyond the box (as
        the Cobaya theory has always required), or a range with no overlap with the band;
        ``partial``: bounded ranges only partly inside the band.
    """
    report = RangeReport()
    clipped = {}
    for name in PARAM_NAMES:
        lo_box, hi_box = emulator.bounds[name]
        a, b = (float(v) for v in ranges.get(name, (-math.inf, math.inf)))
        if math.isnan(a) or math.isnan(b) or a > b:
            report.errors.append(f"the range of {name} is [{a:g}, {b:g}], not a valid interval")
            continue
        bounded = math.isfinite(a) and math.isfinite(b)
        if a == b and not lo_box <= a <= hi_box:
            report.errors.append(f"{_describe(name, a, b)}, outside the training range "
                                 f"[{lo_box:g}, {hi_box:g}]")
            continue
        if bounded and (a < lo_box or b > hi_box):
            report.errors.append(f"{_describe(name, a, b)}, beyond the training range "
                                 f"[{lo_box:g}, {hi_box:g}]")
            continue
        if b < lo_box or a > hi_box:  # one-sided infinite range entirely off the box
            report.errors.append(f"{_describe(name, a, b)}, disjoint from the training range "
                                 f"[{lo_box:g}, {hi_box:g}]")
            continue
        clipped[name] = (max(a, lo_box), min(b, hi_box))
    band = _bands(emulator.support)
    if report.errors or band is None:
        return report
    pivot, bands, description = band
    x0, x1 = clipped[pivot]
    joint = (x0, x1)
    for name, spec in bands.items():
        a, b = clipped[name]
        lo, hi = _pivot_interval(spec, a, b)
        lo, hi = max(lo, x0), min(hi, x1)
        if lo > hi:
            report.errors.append(f"{_describe(name, a, b)}, outside the training support: "
                                 f"{band_text(emulator.support, name, (x0, x1))}")
            continue
        joint = (max(joint[0], lo), min(joint[1], hi))
        inside = all(_band_at(spec, x)[0] <= a and b <= _band_at(spec, x)[1] for x in (x0, x1))
        if not inside:
            report.partial.append(f"{_describe(name, a, b)}; "
                                  f"{band_text(emulator.support, name, (x0, x1))}")
    if not report.errors and joint[0] > joint[1]:
        report.errors.append(
            f"no value of {pivot} in [{x0:g}, {x1:g}] puts "
            f"{', '.join(f'{n} in [{clipped[n][0]:g}, {clipped[n][1]:g}]' for n in bands)} "
            f"inside the training support together ({description})")
    if report.partial and all(math.isfinite(v) for ab in ranges.values() for v in ab) \
            and set(ranges) >= set(PARAM_NAMES):
        rng = np.random.default_rng(0)
        # every input of the weights: the other inputs (cosmology, z) uniform in their box
        names = emulator.param_names
        low = np.array([clipped.get(n, emulator.bounds[n])[0] for n in names], dtype=float)
        high = np.array([clipped.get(n, emulator.bounds[n])[1] for n in names], dtype=float)
        draws = low + (high - low) * rng.uniform(size=(SUPPORT_FRACTION_POINTS, len(names)))
        report.inside_fraction = float(np.mean(emulator.in_support(draws)))
    return report
