"""``iaemu info``: version, shipped weights and parameter ranges."""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .conventions import PARAM_NAMES, R_EDGES
from .weights import available_versions, default_version, read_metadata, weights_root


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--weights", default=None, help="weights version or folder (default: shipped default)")
    return parser


def main(args) -> int:
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
    meta = read_metadata(args.weights)
    out.write(f"version {meta.get('version')}: architecture {meta.get('architecture')}, "
              f"ensemble of {meta.get('ensemble_size', 1)}\n")
    out.write("parameter ranges (training prior):\n")
    for name in PARAM_NAMES:
        low, high = meta["bounds"][name]
        out.write(f"  {name:<11s} [{low:g}, {high:g}]\n")
    return 0
