"""``iaemu verify``: check a weights folder's checksums and its reference predictions.

The training exporter stores a few points and the emulator's predictions at them in
``reference_predictions.npz`` (:func:`write_reference_predictions`); ``iaemu verify`` recomputes
them with the installed code and compares, so a change of numerics (library versions, a refactor
of the forward pass) is caught as well as a corrupted file.

Both the reference and the check run with one thread (BLAS and torch, :func:`single_thread`), and
the tolerance follows the arithmetic of the forward pass (:data:`REFERENCE_TOLERANCES`): float32
results (the torch "paper" networks) differ with the order of their sums, which depends on the
number of threads and the CPU's vector width of the machine that wrote the reference.
"""
from __future__ import annotations

import argparse
import logging
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .conventions import N_BINS, PARAM_NAMES, STATISTICS
from .errors import IAEmuError
from .weights import resolve_weights_dir
from ._io import atomic_write_bytes, npz_bytes
from .weights_io import REFERENCE_FILE, check_declared_size, verify_checksums, write_checksums

__all__ = ["build_parser", "main", "write_reference_predictions", "check_reference_predictions",
           "default_reference_points", "single_thread", "reference_tolerance", "read_reference_file",
           "REFERENCE_RTOL",
           "REFERENCE_ATOL_FRACTION", "REFERENCE_TOLERANCES"]

log = logging.getLogger(__name__)

#: Arrays a reference file may hold besides ``points`` and ``param_names``.
_PREDICTION_KEYS = tuple(s + suffix for suffix in ("", "_var", "_epi_var") for s in STATISTICS)

#: Relative tolerance of a recomputed float64 prediction against the stored reference.
REFERENCE_RTOL = 1e-6
#: Absolute tolerance, as a fraction of the largest |value| of that array (for values crossing 0).
REFERENCE_ATOL_FRACTION = 1e-9
#: (rtol, atol as a fraction of the largest |value| of that array) by the arithmetic of the forward
#: pass (``IAEmulator.point_precision``). float32 ("paper" networks in torch) is exact only to
#: ~5e-7 of each output's standardisation scale: the order of its sums changes with the thread
#: count, the CPU's vector width and the torch build, and small values (omega, eta near 0) then
#: differ by up to ~1e-4 relative. Measured for iaemu-paper-v1 against its stored reference on
#: this project's machine: largest difference 3.9e-6 of an array's largest |value|, 9.2e-5
#: relative (eta near 0), the same on 1, 2, 4 and 8 threads (``benchmarks/bench_verify_threads.py``).
REFERENCE_TOLERANCES = {"float64": (REFERENCE_RTOL, REFERENCE_ATOL_FRACTION),
                        "float32": (1e-4, 1e-5)}


def reference_tolerance(emulator, rtol: float | None = None) -> tuple[float, float]:
    """(rtol, atol fraction) for ``emulator``'s arithmetic; ``rtol`` overrides the relative one."""
    default_rtol, atol_fraction = REFERENCE_TOLERANCES[emulator.point_precision]
    return (default_rtol if rtol is None else float(rtol)), atol_fraction


@contextmanager
def single_thread(emulator=None):
    """Run the body with one BLAS/OpenMP thread and, for torch-based weights, one torch thread
    (restored afterwards), so the sums of a forward pass are done in one fixed order."""
    from threadpoolctl import threadpool_limits

    torch = None
    if emulator is not None and emulator.point_precision == "float32":
        import torch
    old = torch.get_num_threads() if torch is not None else None
    try:
        with threadpool_limits(limits=1):
            if torch is not None:
                torch.set_num_threads(1)
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(old)


def default_reference_points(bounds: dict, n: int = 4, seed: int = 0, names=None) -> np.ndarray:
    """The box centre plus ``n - 1`` seeded uniform points inside ``bounds``: array (n, n_inputs),
    columns in the order of ``names`` (default: the order of ``bounds``, as ``IAEmulator.bounds``
    lists the inputs)."""
    names = tuple(bounds) if names is None else tuple(names)
    low = np.array([bounds[name][0] for name in names], dtype=float)
    high = np.array([bounds[name][1] for name in names], dtype=float)
    rng = np.random.default_rng(seed)
    # stay 5% away from the edges so a tiny change of bounds does not invalidate the file
    inner = 0.05 + 0.9 * rng.random((max(n - 1, 0), len(names)))
    return np.vstack([0.5 * (low + high), low + (high - low) * inner])[:n]


def write_reference_predictions(folder, emulator, points) -> Path:
    """Store ``points`` and the emulator's predictions there, then refresh ``SHA256SUMS``.

    Parameters
    ----------
    folder : path-like
        The weights folder ``emulator`` was loaded from.
    emulator : IAEmulator
    points : array_like, shape (n, n_inputs)
        Inputs in ``emulator.param_names`` order, inside the emulator's bounds.

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
    with single_thread(emulator):
        pred = emulator.predict(points, epistemic=emulator.ensemble_size > 1)
    arrays = {"points": points, "param_names": np.array(emulator.param_names)}
    arrays.update({k: np.asarray(v, dtype=np.float64) for k, v in pred.as_dict().items()})
    path = folder / REFERENCE_FILE
    atomic_write_bytes(path, npz_bytes(arrays, compressed=False))
    write_checksums(folder)
    return path


def read_reference_file(reference_file, param_names=None) -> dict[str, np.ndarray]:
    """The arrays of a ``reference_predictions.npz``, read without pickle and checked.

    Parameters
    ----------
    reference_file : path-like
    param_names : sequence of str, optional
        The inputs the file must list (an emulator's ``param_names``); default: the seven
        :data:`PARAM_NAMES`, or the names it stores when they start with those seven (weights with
        cosmology and redshift inputs after them).

    Returns
    -------
    dict
        ``points`` (n, n_inputs) float64 with n >= 1, and every stored prediction (``xi``,
        ``xi_var``, ...), each (n, 20) and finite.

    Raises
    ------
    IAEmuError
        One line naming the file: unreadable (not a zip, pickled objects, bad CRC), other
        parameter names, or arrays of the wrong type, shape or with non-finite values.
    """
    where = str(reference_file)
    check_declared_size(reference_file)
    try:
        with np.load(reference_file, allow_pickle=False) as ref:
            arrays = {k: ref[k] for k in ref.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise IAEmuError(f"{where}: cannot be read as a .npz without pickle ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())})") from None
    names = tuple(str(s) for s in np.atleast_1d(arrays.pop("param_names", np.array([]))))
    expected = tuple(param_names) if param_names is not None else (
        names if names[:len(PARAM_NAMES)] == PARAM_NAMES else PARAM_NAMES)
    if names != expected:
        raise IAEmuError(f"{where}: param_names {names} differ from {expected}")
    points = arrays.get("points")
    if points is None or points.dtype.kind not in "iuf" or points.ndim != 2 \
            or points.shape[1] != len(names) or len(points) == 0:
        shown = "missing" if points is None else f"{points.dtype} {points.shape}"
        raise IAEmuError(f"{where}: points = {shown}; allowed: a float array (n, {len(names)}) with n >= 1")
    for key, value in arrays.items():
        if key == "points":
            continue
        if value.dtype.kind != "f" or value.shape != (len(points), N_BINS):
            raise IAEmuError(f"{where}: {key} = {value.dtype} {value.shape}; allowed: float "
                             f"({len(points)}, {N_BINS}), one row per reference point")
    for key, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise IAEmuError(f"{where}: {key} holds non-finite values; allowed: finite numbers")
    arrays["points"] = points.astype(np.float64)
    return arrays


def check_reference_predictions(emulator, reference_file, rtol: float | None = None):
    """Compare the emulator with a reference file, computing with one thread.

    Parameters
    ----------
    emulator : IAEmulator
    reference_file : path-like
    rtol : float, optional
        Relative tolerance; default from :data:`REFERENCE_TOLERANCES` for the emulator's
        arithmetic (1e-6 for float64, 1e-4 for float32; atol 1e-9 and 1e-5 of the largest
        |value| of each array).

    Returns
    -------
    list of (name, passed, max_relative_error)
        One entry per stored array (xi, omega, eta, their variances, ...).
    """
    rtol, atol_fraction = reference_tolerance(emulator, rtol)
    results = []
    ref = read_reference_file(reference_file, emulator.param_names)
    keys = [k for k in ref if k != "points"]
    unknown = sorted(set(keys) - set(_PREDICTION_KEYS))
    if unknown:
        raise IAEmuError(f"{reference_file}: arrays {unknown} are not predictions; allowed: "
                         f"{list(_PREDICTION_KEYS)}")
    with single_thread(emulator):
        pred = emulator.predict(ref["points"], epistemic=any("epi" in k for k in keys)).as_dict()
    for key in keys:
        expected, got = ref[key], pred[key]
        atol = atol_fraction * float(np.max(np.abs(expected), initial=0.0))
        err = np.abs(got - expected)
        rel = float(np.max(err / np.maximum(np.abs(expected), atol or np.finfo(float).tiny),
                           initial=0.0))
        results.append((key, bool(np.all(err <= atol + rtol * np.abs(expected))), rel))
    return results


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None,
                        help="weights version or folder (default: the shipped default)")
    parser.add_argument("--rtol", type=float, default=None,
                        help="relative tolerance of the reference predictions (default: "
                             + ", ".join(f"{k} {v[0]:g}" for k, v in REFERENCE_TOLERANCES.items())
                             + " by the arithmetic of the weights)")
    return parser


def main(args) -> int:
    """Run the checks; print one PASS/FAIL line each; return 0 if all pass, else 1."""
    out = sys.stdout
    ok = True

    def report(passed, what):
        out.write(f"{'PASS' if passed else 'FAIL'}  {what}\n")
        return passed

    if args.rtol is not None and not (np.isfinite(args.rtol) and args.rtol > 0):
        raise ValueError(f"--rtol = {args.rtol!r}; allowed: a finite number > 0")
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
    rtol, atol_fraction = reference_tolerance(emulator, args.rtol)
    try:
        results = check_reference_predictions(emulator, reference, rtol)
    except (IAEmuError, ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
        # a damaged or foreign reference file (or points the weights refuse) is a failed check
        report(False, f"reference predictions: {folder / REFERENCE_FILE}: {type(exc).__name__}: {exc}")
        return 1
    for key, passed, rel in results:
        ok &= report(passed, f"reference {key}: max relative difference {rel:.2e} "
                             f"(tolerance {rtol:g} relative + {atol_fraction:g} x max |{key}|, "
                             f"{emulator.point_precision})")
    out.write("all checks passed\n" if ok else "some checks FAILED\n")
    return 0 if ok else 1
