"""``iaemu info``: version, shipped weights, the weights' inputs (with their ranges and, for cosmology
and redshift inputs, where the adapters read them) and the HOD training support."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from . import __version__
from .conventions import R_EDGES
from .cosmology_inputs import source_text
from .layout import layout_of
from .weights import available_versions, caveats_of, default_version, resolve_weights_dir, weights_root
from .weights_checks import band_limits

__all__ = ["build_parser", "main", "describe_support"]

#: Pivot values at which the support band is tabulated: the low end, the middle and the high end.
_TABLE_FRACTIONS = (0.0, 0.5, 1.0)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--weights", default=None, help="weights version or folder (default: shipped default)")
    return parser


#: Significant digits of the printed intervals, rounded inward; bounds and band formulas print
#: exactly (shortest repr), since the emulator checks the stored numbers themselves.
_INTERVAL_DIGITS = 4


def _exact(value: float) -> str:
    return repr(float(value))


def _inward(low: float, high: float, digits: int = _INTERVAL_DIGITS) -> str:
    """``[low, high]`` printed with ``digits`` significant digits, rounded inward in exact decimal
    arithmetic: every value of the printed interval is inside the true one (0.767469 prints as
    0.7674, not 0.7675). An interval narrower than that precision prints exactly."""
    def rounded(value: float, rounding) -> float:
        nearest = float(f"{value:.{digits}g}")
        if (nearest >= value) if rounding == ROUND_CEILING else (nearest <= value):
            return nearest  # already on the inner side (as compared in floats, like the emulator)
        exact = Decimal(value)
        quantum = Decimal(1).scaleb(exact.adjusted() - digits + 1)
        return float(exact.quantize(quantum, rounding=rounding))

    lo, hi = rounded(low, ROUND_CEILING), rounded(high, ROUND_FLOOR)
    if lo > hi:
        return f"[{_exact(low)}, {_exact(high)}]"
    return f"[{lo:g}, {hi:g}]"


def _line(intercept: float, slope: float, pivot: str) -> str:
    return f"{_exact(intercept)} {'+' if slope >= 0 else '-'} {_exact(abs(slope))} * {pivot}"


def describe_support(meta: Mapping) -> list[str]:
    """Lines describing the training support of a weights version, for people.

    Parameters
    ----------
    meta : mapping
        A validated ``metadata.json``.

    Returns
    -------
    list of str
        The box of ``bounds`` is always part of the support; with a ``linear_band`` support, one
        formula line per banded parameter and a table of the allowed interval (band clipped to the
        box) at the low end, middle and high end of the pivot's range. Empty without a band.
    """
    support = meta.get("support")
    if not support:
        return []
    pivot, bands, bounds = support["pivot"], support["bands"], meta["bounds"]
    lines = [f"training support: inside the ranges above AND in a band around a linear relation "
             f"with {pivot} ({support.get('description', 'linear band')}); the emulator refuses "
             "points outside it:"]
    for name, band in bands.items():
        low = _line(band["low_intercept"], band["slope"], pivot)
        if band.get("floor") is not None:
            low = f"max({band['floor']:g}, {low})"
        lines.append(f"  {low} <= {name} <= {_line(band['high_intercept'], band['slope'], pivot)}")
    p_low, p_high = bounds[pivot]
    xs = [p_low + f * (p_high - p_low) for f in _TABLE_FRACTIONS]
    lines.append("  allowed at " + " | ".join(f"{pivot} = {x:.4g}" for x in xs) + ":")
    for name, band in bands.items():
        cells = []
        for x in xs:
            low, high = band_limits(band, x)
            low, high = max(float(low), bounds[name][0]), min(float(high), bounds[name][1])
            cells.append(_inward(low, high) if low <= high else "none")
        lines.append(f"    {name:<11s} " + " | ".join(cells))
    return lines


def main(args) -> int:
    """Print the information; broken weights raise their one-line IAEmuError (checksums and
    content are checked as by ``IAEmulator.load``)."""
    from .weights_io import load_weights_folder

    out = sys.stdout
    out.write(f"iaemu-likelihood {__version__}\n")
    out.write(f"weights folder: {weights_root()}\n")
    versions = available_versions()
    default = default_version()
    out.write(f"shipped weights: {', '.join(versions) if versions else 'none'}"
              f" (default: {default or 'none'})\n")
    out.write(f"r bins: {R_EDGES.size - 1} log bins, {R_EDGES[0]:.3g}-{R_EDGES[-1]:.4g} comoving h^-1 Mpc\n")
    if args.weights is None and default is None:
        out.write("no trained weights installed: the emulator cannot run until a weights version is "
                  "shipped or passed with --weights\n")
        return 0
    folder = resolve_weights_dir(args.weights)
    meta = load_weights_folder(folder)[0]
    out.write(f"version {meta.get('version')}: architecture {meta.get('architecture')}, "
              f"ensemble of {meta.get('ensemble_size', 1)} ({folder})\n")
    out.write("inputs and their ranges (training prior; masses in log10(Msun/h), sigma_logM in dex):\n")
    for item in layout_of(meta, str(folder)).inputs:
        low, high = meta["bounds"][item.name]
        source = source_text(item.name)
        out.write(f"  {item.name:<11s} [{_exact(low)}, {_exact(high)}]" + (f"  from {source}" if source else "") + "\n")
    for line in describe_support(meta):
        out.write(line + "\n")
    scale = (meta.get("epistemic") or {}).get("scale")
    if scale:
        out.write("epistemic variance factors (validation calibration): "
                  + ", ".join(f"{k} {float(v):.3g}" for k, v in scale.items()) + "\n")
    for text in caveats_of(meta):
        out.write(f"caveat: {text}\n")
    return 0
