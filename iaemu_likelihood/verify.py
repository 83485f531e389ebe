"""``iaemu verify``: check a weights folder's checksums and its reference predictions.

The training exporter stores a few points and the emulator's predictions at them in
``reference_predictions.npz`` (:func:`write_reference_predictions`); ``iaemu verify`` recomputes
them with the installed code and compares, so a change of numerics (library versions, a refactor
of the forward pass) is caught as well as a corrupted file.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from .conventions import PARAM_NAMES
from .errors import IAEmuError
from .weights import resolve_weights_dir
from ._io import atomic_write_bytes, npz_bytes
from .weights_io import REFERENCE_FILE, verify_checksums, write_checksums

__all__ = ["build_parser", "main", "write_reference_predictions", "check_reference_predictions",
           "default_reference_points", "REFERENCE_RTOL", "REFERENCE_ATOL_FRACTION"]

log = logging.getLogger(__name__)

#: Relative tolerance of a recomputed prediction against the stored reference.
REFERENCE_RTOL = 1e-6
#: Absolute tolerance, as a fraction of the largest |value| of that array (for values crossing 0).
REFERENCE_ATOL_FRACTION = 1e-9


def default_reference_points(bounds: dict, n: int = 4, seed: int = 0) -> np.ndarray:
    """The box centre plus ``n - 1`` seeded uniform points inside ``bounds``: array (n, 7)."""
    low = np.array([bounds[name][0] for name in PARAM_NAMES], dtype=float)
    high = np.array([bounds[name][1] for name in PARAM_NAMES], dtype=float)
    rng = np.random.default_rng(seed)
    # stay 5% away from the edges so a tiny change of bounds does not invalidate the file
    inner = 0.05 + 0.9 * rng.random((max(n - 1, 0), len(PARAM_NAMES)))
    return np.vstack([0.5 * (low + high), low + (high - low) * inner])[:n]


def write_reference_predictions(folder, emulator, points) -> Path:
    """Store ``points`` and the emulator's predictions there, then refresh ``SHA256SUMS``.

    Parameters
    ----------
    folder : path-like
        The weights folder ``emulator`` was loaded from.
    emulator : IAEmulator
    points : array_like, shape (n, 7)
        Parameters in ``PARAM_NAMES`` order, inside the emulator's bounds.

    Returns
    -------
    pathlib.Path
        Path of ``reference_predictions.npz``.

    Notes
    -----
    Epistemic variances are stored only for ensembles (MC dropout is seeded, but its masks depend
    on the torch version).
    """
    folder = Path(folder)
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    pred = emulator.predict(points, epistemic=emulator.ensemble_size > 1)
    arrays = {"points": points, "param_names": np.array(PARAM_NAMES)}
    arrays.update({k: np.asarray(v, dtype=np.float64) for k, v in pred.as_dict().items()})
    path = folder / REFERENCE_FILE
    atomic_write_bytes(path, npz_bytes(arrays, compressed=False))
    write_checksums(folder)
    return path


def check_reference_predictions(emulator, reference_file, rtol: float = REFERENCE_RTOL):
    """Compare the emulator with a reference file.

    Returns
    -------
    list of (name, passed, max_relative_error)
        One entry per stored array (xi, omega, eta, their variances, ...).
    """
    results = []
    with np.load(reference_file, allow_pickle=False) as ref:
        names = tuple(str(s) for s in ref["param_names"])
        if names != PARAM_NAMES:
            raise IAEmuError(f"{reference_file}: param_names {names} differ from {PARAM_NAMES}")
        keys = [k for k in ref.files if k not in ("points", "param_names")]
        pred = emulator.predict(ref["points"], epistemic=any("epi" in k for k in keys)).as_dict()
        for key in keys:
            expected, got = ref[key], pred[key]
            atol = REFERENCE_ATOL_FRACTION * float(np.max(np.abs(expected), initial=0.0))
            err = np.abs(got - expected)
            rel = float(np.max(err / np.maximum(np.abs(expected), atol or np.finfo(float).tiny),
                               initial=0.0))
            results.append((key, bool(np.all(err <= atol + rtol * np.abs(expected))), rel))
    return results


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None,
                        help="weights version or folder (default: the shipped default)")
    parser.add_argument("--rtol", type=float, default=REFERENCE_RTOL,
                        help=f"relative tolerance of the reference predictions ({REFERENCE_RTOL:g})")
    return parser


def main(args) -> int:
    """Run the checks; print one PASS/FAIL line each; return 0 if all pass, else 1."""
    out = sys.stdout
    ok = True

    def report(passed, what):
        out.write(f"{'PASS' if passed else 'FAIL'}  {what}\n")
        return passed

    try:
        folder = resolve_weights_dir(args.weights)
    except IAEmuError as exc:
        report(False, f"locate weights: {exc}")
        return 1
    out.write(f"weights folder: {folder}\n")
    try:
        sums = verify_checksums(folder)
        report(True, f"SHA256SUMS: {len(sums)} files match")
    except IAEmuError as exc:
        report(False, f"SHA256SUMS: {exc}")
        return 1
    from .emulator import IAEmulator

    try:
        emulator = IAEmulator.load(folder)
        report(True, f"load: {emulator!r}")
    except (IAEmuError, ValueError) as exc:
        report(False, f"load: {exc}")
        return 1
    reference = folder / REFERENCE_FILE
    if not reference.is_file():
        report(False, f"reference predictions: {REFERENCE_FILE} is missing")
        return 1
    for key, passed, rel in check_reference_predictions(emulator, reference, args.rtol):
        ok &= report(passed, f"reference {key}: max relative difference {rel:.2e} "
                             f"(tolerance {args.rtol:g})")
    out.write("all checks passed\n" if ok else "some checks FAILED\n")
    return 0 if ok else 1
