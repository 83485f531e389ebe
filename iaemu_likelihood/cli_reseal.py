"""``iaemu reseal FOLDER``: re-seal a weights folder you edited on purpose.

Every check ``IAEmulator.load`` makes of the content (metadata schema and physical ranges, support
band, tensors, correlations, mass function) runs first, without the old ``SHA256SUMS``; only a
folder that passes gets a new ``SHA256SUMS`` (written atomically). ``--update-reference``
recomputes ``reference_predictions.npz`` at its stored points with the edited weights, so that
``iaemu verify`` checks the new numbers. Shipped versions inside the installed package are refused
(copy the folder elsewhere and edit the copy).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from .errors import IAEmuError, WeightsNotFoundError
from .weights import weights_root

__all__ = ["build_parser", "main"]

log = logging.getLogger(__name__)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the weights folder to re-validate and re-seal")
    parser.add_argument("--update-reference", action="store_true",
                        help="recompute reference_predictions.npz at its points with these weights")
    return parser


def _reference_points(folder: Path, emulator) -> np.ndarray:
    from .verify import default_reference_points, read_reference_file
    from .weights_io import REFERENCE_FILE

    path = folder / REFERENCE_FILE
    if path.is_file():
        return read_reference_file(path)["points"]
    candidates = default_reference_points(emulator.bounds, 200)
    return candidates[np.atleast_1d(emulator.in_support(candidates))][:4]


def main(args) -> int:
    """Re-validate and re-seal ``args.folder``; print one line; return 0 (errors raise)."""
    from .weights_io import reseal_folder

    folder = Path(args.folder).expanduser()
    if not folder.is_dir():
        raise WeightsNotFoundError(f"weights folder {folder} does not exist")
    root = weights_root().resolve()
    if folder.resolve() == root or root in folder.resolve().parents:
        raise IAEmuError(f"{folder} is a shipped weights version inside the installed package "
                         f"({root}); copy it elsewhere, edit and reseal the copy")
    from .verify import read_reference_file
    from .weights_io import REFERENCE_FILE

    if (folder / REFERENCE_FILE).is_file():  # a broken reference would only fail `iaemu verify` later
        read_reference_file(folder / REFERENCE_FILE)
    path = reseal_folder(folder)
    what = "content valid"
    if args.update_reference:
        from .emulator import IAEmulator
        from .verify import write_reference_predictions

        emulator = IAEmulator.load(folder)
        points = _reference_points(folder, emulator)
        write_reference_predictions(folder, emulator, points)
        what += f", reference predictions recomputed at {len(points)} points"
    n_files = sum(1 for line in path.read_text().splitlines() if line.strip())
    sys.stdout.write(f"resealed {folder}: {what}; SHA256SUMS lists {n_files} files\n")
    return 0
