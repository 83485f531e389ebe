"""``iaemu plot``: GetDist triangle plot of one or more Cobaya chains, written to a PNG.

Examples
--------
``iaemu plot chains/ia_hod --truth example --output plots/ia_hod_triangle.png``

``iaemu plot chains/run_a chains/run_b --params mu_cen mu_sat --truth mu_cen=0.8 mu_sat=0.5``
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from .config_checks import parse_name_value

__all__ = ["build_parser", "main", "parse_truth", "load_chains", "triangle_plot",
           "DEFAULT_BURN_IN"]

log = logging.getLogger(__name__)

#: Fraction of each chain discarded as burn-in by default.
DEFAULT_BURN_IN = 0.3
#: Largest figure width accepted (inches); matplotlib refuses images beyond 2^16 pixels a side.
MAX_WIDTH_INCHES = 100.0


def build_parser(prog: str = "iaemu plot") -> argparse.ArgumentParser:
    """Command-line options of ``iaemu plot``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="GetDist triangle plot of one or more Cobaya chains (PNG).")
    parser.add_argument("chains", nargs="+", metavar="PREFIX",
                        help="chain prefixes, as Cobaya's 'output' (e.g. chains/ia_hod)")
    parser.add_argument("-o", "--output", default=None,
                        help="PNG file (default: PREFIX_triangle.png of the first chain)")
    parser.add_argument("--burn-in", type=float, default=DEFAULT_BURN_IN, metavar="FRACTION",
                        help="fraction of each chain to discard, in [0, 1) "
                             f"(default {DEFAULT_BURN_IN}); a value >= 1 is a number of rows")
    parser.add_argument("--params", nargs="+", default=None, metavar="NAME",
                        help="parameters to plot (default: the sampled parameters of the first chain)")
    parser.add_argument("--truth", nargs="+", default=None, metavar="SPEC",
                        help="mark true values: 'example' or 'example_cosmology' (a bundled "
                             "example measurement's true point), a measurement .npz whose "
                             "metadata holds 'truth', or NAME=VALUE pairs")
    parser.add_argument("--labels", nargs="+", default=None,
                        help="legend labels, one per chain (default: the prefixes' names)")
    parser.add_argument("--width", type=float, default=8.0, help="figure width in inches")
    return parser


def parse_truth(specs) -> dict[str, float]:
    """Truth values from ``--truth`` arguments.

    Parameters
    ----------
    specs : list of str or None
        ``["example"]``, ``["path/to/measurement.npz"]`` or ``["mu_cen=0.8", ...]`` (the forms
        may be mixed; later ones win).

    Returns
    -------
    dict
        ``{parameter: value}`` (empty for None).

    Raises
    ------
    ValueError
        A malformed item, or a measurement without ``metadata['truth']``.
    """
    truth: dict[str, float] = {}
    for spec in specs or ():
        if "=" in spec:
            name, number = parse_name_value(spec, "--truth")
            truth[name] = number
            continue
        from .data import EXAMPLES, example_data_path, load_measurement

        path = example_data_path(spec) if spec in EXAMPLES else Path(spec)
        if spec not in EXAMPLES and not path.is_file():
            raise ValueError(f"--truth {spec!r}: not one of {sorted(EXAMPLES)}, NAME=VALUE, or an "
                             "existing file")
        meta = load_measurement(path).metadata
        values = meta.get("truth")
        if not isinstance(values, dict) or not values:
            raise ValueError(f"--truth {spec!r}: {path} has no 'truth' entry in its metadata")
        for name, value in values.items():
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok:
                raise ValueError(f"--truth {spec!r}: {path} metadata truth[{name!r}] = {value!r}; "
                                 "allowed: a finite number")
            truth[str(name)] = float(value)
    return truth


def load_chains(prefixes, burn_in: float = DEFAULT_BURN_IN):
    """Load Cobaya chains into GetDist safely (see :mod:`iaemu_likelihood.chains`), dropping the burn-in.

    Parameters
    ----------
    prefixes : list of str
        Cobaya output prefixes (``PREFIX.1.txt``, ``PREFIX.2.txt``... are read together).
    burn_in : float
        Fraction in [0, 1) of each chain file to discard, or a number of rows if >= 1.

    Returns
    -------
    list of getdist.MCSamples
    """
    from .chains import load_cobaya_chain

    # Never GetDist's loadMCSamples: it unpickles a cache and reads the chain's yaml with
    # PyYAML's full Loader, so a chain folder from someone else could run code (chains.py).
    return [load_cobaya_chain(prefix, burn_in) for prefix in prefixes]


def triangle_plot(samples, output, params=None, truth=None, labels=None, width=8.0):
    """Draw a filled GetDist triangle plot and save it.

    Parameters
    ----------
    samples : list of getdist.MCSamples
    output : path-like
        PNG file; parent folders are created.
    params : list of str, optional
        Parameters to plot (default: non-derived parameters of the first chain present in all).
    truth : dict, optional
        ``{parameter: value}`` drawn as marker lines.
    labels : list of str, optional
        Legend labels (only shown for more than one chain).
    width : float
        Figure width, inches.

    Returns
    -------
    pathlib.Path
    """
    import matplotlib

    from .chains import check_spread

    matplotlib.use("Agg")
    from getdist import plots

    if params is None:
        first = samples[0].getParamNames()
        params = [p.name for p in first.names if not p.isDerived
                  and all(s.getParamNames().hasParam(p.name) for s in samples)]
    params = list(params)
    twice = sorted({p for p in params if params.count(p) > 1})
    if twice:
        raise ValueError(f"--params: {twice} given more than once")
    if not params:
        raise ValueError("no parameter to plot: the first chain has no sampled parameter present in "
                         "every chain; name them with --params")
    for s in samples:
        missing = [p for p in params if not s.getParamNames().hasParam(p)]
        if missing:
            raise ValueError(f"parameters {missing} not in chain {s.name_tag or s.root}")
        for p in params:
            check_spread(s[p], f"parameter {p!r} of chain {s.name_tag or s.root!r}")
    markers = {k: v for k, v in (truth or {}).items() if k in params and math.isfinite(v)}
    g = plots.get_subplot_plotter(width_inch=width)
    g.triangle_plot(samples, params, filled=True, markers=markers or None,
                    legend_labels=labels if len(samples) > 1 else None)
    import io

    from ._io import atomic_write_bytes

    output = Path(output)
    fmt = output.suffix.lstrip(".").lower() or "png"
    output.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    g.fig.savefig(buffer, format=fmt, bbox_inches="tight")
    atomic_write_bytes(output, buffer.getvalue())  # killed mid-write: the old file stays whole
    return output


def _check_options(args) -> None:
    """Options checked before any chain is read."""
    if not (math.isfinite(args.width) and 0 < args.width <= MAX_WIDTH_INCHES):
        raise ValueError(f"--width = {args.width}; allowed: inches in (0, {MAX_WIDTH_INCHES:g}]")
    if args.output is not None and Path(args.output).is_dir():
        raise ValueError(f"--output {args.output} is a folder; allowed: the file to write (e.g. "
                         f"{Path(args.output) / 'triangle.png'})")
    if args.labels is not None and len(args.labels) != len(args.chains):
        raise ValueError(f"--labels: {len(args.labels)} labels for {len(args.chains)} chains")


def _check_truth_names(truth: dict, specs, samples) -> None:
    """NAME=VALUE truths must name a parameter of some chain (a typo would silently draw nothing)."""
    from .config_checks import suggest

    known = sorted({p.name for s in samples for p in s.getParamNames().names})
    for spec in specs or ():
        name = spec.partition("=")[0].strip() if "=" in spec else None
        if name is not None and name not in known:
            raise ValueError(f"--truth {spec!r}: no chain has a parameter {name!r}"
                             f"{suggest(name, known)} (parameters: {', '.join(known)})")


def main(args) -> int:
    """Run ``iaemu plot`` with parsed arguments; returns the exit status."""
    _check_options(args)
    truth = parse_truth(args.truth)
    samples = load_chains(args.chains, args.burn_in)
    _check_truth_names(truth, args.truth, samples)
    labels = args.labels or [Path(c).name for c in args.chains]
    output = args.output or f"{args.chains[0]}_triangle.png"
    path = triangle_plot(samples, output, params=args.params, truth=truth, labels=labels,
                         width=args.width)
    for prefix, s in zip(args.chains, samples):
        log.info("%s: %d samples after burn-in", prefix, s.numrows)
    sys.stdout.write(f"{path}\n")
    return 0
