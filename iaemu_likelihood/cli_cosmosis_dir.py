"""``iaemu cosmosis-dir``: print the folder of the installed CosmoSIS modules.

Use it in pipelines as ``export IAEMU_COSMOSIS_DIR=$(iaemu cosmosis-dir)``; the example ini files
find the modules and their values/priors files through that variable.
"""
from __future__ import annotations

import argparse
import sys
from importlib import resources


def cosmosis_dir() -> str:
    """Path of the installed ``cosmosis_module`` folder."""
    return str(resources.files("iaemu_likelihood.cosmosis_module"))


def build_parser(prog: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def main(args) -> int:
    sys.stdout.write(cosmosis_dir() + "\n")
    return 0
