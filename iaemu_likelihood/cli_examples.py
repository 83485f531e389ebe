"""``iaemu examples DIR``: copy the example Cobaya input files into a folder.

The yamls of the repository's ``yamls/`` folder ship inside the package
(``iaemu_likelihood.yamls``), so a plain ``pip install`` user gets them too::

    iaemu examples my_run && cd my_run && cobaya-run ia_hod.yaml

They need no other file (the proposal covariance is written inside ``ia_hod.yaml``; the weights
and the example measurement are found inside the installed package), so they run from any folder.
The CosmoSIS examples are not copied: they are run in place, from ``iaemu cosmosis-dir``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources
from pathlib import Path

from ._io import atomic_write_bytes
from .errors import IAEmuError

__all__ = ["example_files", "copy_examples", "build_parser", "main", "EXAMPLE_SUFFIXES"]

log = logging.getLogger(__name__)

#: file types of the package's example folder that are copied
EXAMPLE_SUFFIXES = (".yaml", ".covmat")


class ExamplesError(IAEmuError):
    """The examples cannot be found or copied."""


def example_files() -> dict[str, bytes]:
    """``{file name: content}`` of the example Cobaya inputs shipped with the package."""
    try:
        folder = resources.files("iaemu_likelihood.yamls")
    except ModuleNotFoundError:
        raise ExamplesError("the example yamls are not installed with this copy of iaemu "
                            "(package data iaemu_likelihood.yamls is missing)") from None
    files = {item.name: item.read_bytes() for item in folder.iterdir()
             if item.is_file() and item.name.endswith(EXAMPLE_SUFFIXES)}
    if not files:
        raise ExamplesError(f"no example yamls in {folder} (package data missing)")
    return dict(sorted(files.items()))


def copy_examples(destination, overwrite: bool = False) -> list[Path]:
    """Write the example files into ``destination`` (created if needed).

    Parameters
    ----------
    destination : path-like
        Target folder.
    overwrite : bool
        Replace files that exist already (otherwise that is an error, and nothing is written).

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    ExamplesError
        ``destination`` is not a folder, or a file exists and ``overwrite`` is False.
    """
    if not str(destination).strip():
        raise ExamplesError("destination '': give a folder (e.g. iaemu-examples, or . for this one)")
    destination = Path(destination).expanduser()
    if destination.exists() and not destination.is_dir():
        raise ExamplesError(f"destination {destination} exists and is not a folder")
    files = example_files()
    blocked = [name for name in files if (destination / name).exists()
               and not (destination / name).is_file()]
    if blocked:
        raise ExamplesError(f"{destination / blocked[0]} exists and is not a file; move it away")
    existing = [name for name in files if (destination / name).exists()]
    if existing and not overwrite:
        raise ExamplesError(f"{destination} already holds {', '.join(existing)}; pass --force to "
                            "overwrite them")
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        atomic_write_bytes(destination / name, content)
        written.append(destination / name)
    return written


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("destination", help="folder to copy the example yamls into (created if needed)")
    parser.add_argument("--force", action="store_true", help="overwrite files that exist already")
    return parser


def main(args) -> int:
    try:
        written = copy_examples(args.destination, overwrite=args.force)
    except (ExamplesError, OSError) as exc:
        sys.stderr.write(f"iaemu examples: {exc}\n")
        return 1
    for path in written:
        sys.stdout.write(f"{path}\n")
    sys.stdout.write(f"run them from that folder, e.g.: cd {args.destination} && cobaya-run "
                     "ia_hod.yaml; CosmoSIS examples: $(iaemu cosmosis-dir)/examples\n")
    return 0
