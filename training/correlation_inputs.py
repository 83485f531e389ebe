"""Checks of the inputs of :func:`~.correlations.ia_correlations`: box side, bin edges, positions,
orientations and thread count, each refused with a ``ValueError`` naming the input, its value and
what is allowed. All lengths are comoving h^-1 Mpc.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["validate_period", "validate_rbins", "validate_positions", "validate_orientations",
           "validate_num_threads"]


def validate_period(period):
    try:
        arr = np.asarray(period, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"period must be a positive finite number (comoving h^-1 Mpc) or three "
                         f"equal ones; got {period!r}") from None
    if arr.ndim == 1 and arr.size == 3:
        if not np.all(arr == arr[0]):
            raise ValueError(f"period must describe a cubic box: the three values must be equal; "
                             f"got {arr.tolist()}")
        arr = arr[0]
    if arr.ndim != 0:
        raise ValueError(f"period must be a scalar or a length-3 sequence of equal values; got "
                         f"shape {arr.shape}")
    value = float(arr)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"period must be a positive finite box side (comoving h^-1 Mpc); "
                         f"got {value!r}")
    return value


def validate_rbins(rbins, period):
    try:
        edges = np.asarray(rbins, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"rbins must be a 1-D array of bin edges; got {rbins!r}") from None
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(f"rbins must be a 1-D array of at least 2 bin edges; got shape "
                         f"{edges.shape}")
    if not np.all(np.isfinite(edges)):
        raise ValueError(f"rbins must be finite; got {edges.tolist()}")
    if edges[0] <= 0:
        raise ValueError(f"rbins must be strictly positive (comoving h^-1 Mpc); got rbins[0] = "
                         f"{float(edges[0])!r}")
    if np.any(np.diff(edges) <= 0):
        bad = int(np.flatnonzero(np.diff(edges) <= 0)[0])
        raise ValueError(f"rbins must be strictly increasing; got rbins[{bad}] = {float(edges[bad])!r} "
                         f">= rbins[{bad + 1}] = {float(edges[bad + 1])!r}")
    if not edges[-1] < period / 3.0:
        raise ValueError(f"rbins[-1] = {float(edges[-1])!r} must be < period/3 = {period / 3.0!r} "
                         f"(comoving h^-1 Mpc), the limit of halotools' pair counters")
    return edges


def as_float_array(values, name):
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array of shape (n, 3)") from None


def check_finite_rows(arr, name):
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(arr), axis=1))[0])
        raise ValueError(f"{name} must be finite; row {bad} is {arr[bad].tolist()}")


def validate_positions(positions, period):
    pos = as_float_array(positions, "positions")
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (n, 3); got {pos.shape}")
    if pos.shape[0] < 2:
        raise ValueError(f"positions must hold at least 2 points; got n = {pos.shape[0]}")
    check_finite_rows(pos, "positions")
    outside = (pos < 0.0) | (pos > period)
    if np.any(outside):
        bad = int(np.flatnonzero(np.any(outside, axis=1))[0])
        raise ValueError(f"positions must lie inside the box [0, period] = [0, {period!r}] "
                         f"(comoving h^-1 Mpc); row {bad} is {pos[bad].tolist()}")
    return pos


def validate_orientations(orientations, n):
    ori = as_float_array(orientations, "orientations")
    if ori.shape != (n, 3):
        raise ValueError(f"orientations must have shape (n, 3) = ({n}, 3), matching positions; "
                         f"got {ori.shape}")
    check_finite_rows(ori, "orientations")
    norm = np.sqrt(np.sum(ori * ori, axis=1))
    if np.any(norm == 0.0):
        bad = int(np.flatnonzero(norm == 0.0)[0])
        raise ValueError(f"orientations must be non-zero 3-D vectors; row {bad} is "
                         f"{ori[bad].tolist()}")
    return ori / norm[:, None]


def validate_num_threads(num_threads):
    limit = int(numba.config.NUMBA_NUM_THREADS)
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)):
        raise ValueError(f"num_threads must be None or an integer in [1, {limit}]; got "
                         f"{num_threads!r}")
    if not 1 <= int(num_threads) <= limit:
        raise ValueError(f"num_threads must be in [1, {limit}] (NUMBA_NUM_THREADS); got "
                         f"{num_threads!r}")
    return int(num_threads)
