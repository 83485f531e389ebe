"""The emulator's input domain: parsing parameters, the training box and the support band.

:class:`InputDomain` turns what a caller passes (a mapping of names, an array (n_inputs,) or
(n, n_inputs)) into a validated float64 array, or raises one named error: wrong shapes or types
(:class:`~iaemu_likelihood.errors.InputShapeError`) and values outside the weights' bounds box or,
where the weights record one, outside the band of the training prior around a linear relation in a
pivot parameter (:class:`~iaemu_likelihood.errors.OutOfRangeError`). The band is described in
``trained_weights/README.md`` (``metadata["support"]``); :func:`band_arrays` is its one reading.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np

from .conventions import PARAM_NAMES
from .errors import BatchTooLargeError, InputShapeError, OutOfRangeError, WeightsIntegrityError

__all__ = ["InputDomain", "band_arrays", "as_float", "format_bound", "check_batch_memory"]


def _real_number(item) -> bool:
    return isinstance(item, numbers.Real) and not isinstance(item, (bool, np.bool_))


def as_float(value, what: str) -> np.ndarray:
    """``value`` as a float64 array of real numbers.

    Booleans, strings, complex numbers, ``None``, masked entries and other objects raise
    :class:`InputShapeError` instead of being converted (``True`` would become 1.0, ``"0.5"``
    0.5, and ``0.5+1j`` would lose its imaginary part)."""
    def refuse(kind: str):
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise InputShapeError(f"{what} = {shown} {kind}; allowed: real numbers (int or float "
                              "scalars or arrays)")

    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        refuse("has masked entries")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, RuntimeError):  # ragged lists; tensors that need grad
        refuse("is not numeric")
    if arr.dtype.kind == "O":  # e.g. a list mixing numbers and None, or a pandas object column
        if not all(_real_number(item) for item in arr.ravel()):
            refuse("is not numeric")
        arr = arr.astype(np.float64)
    if arr.dtype.kind not in "iuf":
        refuse(f"is not numeric (dtype {arr.dtype})")
    return arr.astype(np.float64, copy=False)


def format_bound(value) -> str:
    """A bound for a message: short (``%g``) when that is exact, else every digit, so a value
    refused by a hair never reads as inside the printed interval."""
    value = float(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def band_arrays(support: Mapping, param_names=PARAM_NAMES):
    """Precomputed arrays of a ``linear_band`` support description.

    Returns
    -------
    pivot : int
        Column of the pivot parameter.
    dep : ndarray of int
        Columns of the banded parameters.
    slope, low_intercept, high_intercept, floor : ndarray
        Per banded parameter; ``floor`` is -inf where none is given.
    """
    if support.get("type") != "linear_band":
        raise ValueError(f"unknown support type {support.get('type')!r}; expected 'linear_band'")
    names = list(param_names)
    bands = support["bands"]
    dep = np.array([names.index(n) for n in bands])

    def get(key, default=None):
        return np.array([default if bands[n].get(key) is None else bands[n][key] for n in bands],
                        dtype=np.float64)

    return (names.index(support["pivot"]), dep, get("slope"), get("low_intercept"),
            get("high_intercept"), get("floor", -np.inf))


class InputDomain:
    """Names, bounds box and support band of an emulator's inputs.

    Parameters
    ----------
    param_names : tuple of str
        Input names in array order (the layout's).
    bounds : mapping
        ``{name: (low, high)}``, the training box.
    support : mapping or None
        ``metadata["support"]`` (a ``linear_band``), or None for the box alone.
    """

    def __init__(self, param_names, bounds, support=None):
        self.param_names = tuple(param_names)
        self.bounds = {n: (float(bounds[n][0]), float(bounds[n][1])) for n in self.param_names}
        self.low = np.array([self.bounds[n][0] for n in self.param_names])
        self.high = np.array([self.bounds[n][1] for n in self.param_names])
        self.support = support
        self.band = band_arrays(support, self.param_names) if support else None
        self.shape1 = (len(self.param_names),)
        # the same box and band as Python floats, for :meth:`contains_point`
        self._box = tuple(zip(self.low.tolist(), self.high.tolist()))
        self._band_rows = ()
        if self.band is not None:
            pivot, dep, slope, lo_int, hi_int, floor = self.band
            self._band_rows = tuple(zip(dep.tolist(), slope.tolist(), lo_int.tolist(),
                                        hi_int.tolist(), floor.tolist()))

    # ------------------------------------------------------------------ parsing
    def parse(self, theta):
        """(theta as an (n, n_inputs) float64 array, whether it was a single point): shapes,
        names and types checked (:class:`InputShapeError`), values not."""
        names = self.param_names
        if isinstance(theta, Mapping):
            unknown = sorted(set(theta) - set(names))
            missing = [n for n in names if n not in theta]
            if unknown or missing:
                raise InputShapeError(f"theta must name exactly {list(names)}; unknown: "
                                      f"{unknown}, missing: {missing}")
            cols = [as_float(theta[n], f"theta[{n!r}]") for n in names]
            ndims = {c.ndim for c in cols}
            if ndims == {0}:
                return np.array(cols, dtype=np.float64)[None, :], True
            if max(ndims) == 1:
                try:
                    return np.stack(np.broadcast_arrays(*cols), axis=-1), False
                except ValueError:
                    lengths = {n: c.shape for n, c in zip(names, cols)}
                    raise InputShapeError(f"theta values have inconsistent shapes {lengths}; "
                                          "allowed: scalars, or 1-d arrays of one length") from None
            shapes = {n: c.shape for n, c in zip(names, cols)}
            raise InputShapeError(f"theta values must be scalars or 1-d arrays, got shapes {shapes}")
        arr = as_float(theta, "theta")
        if arr.shape == self.shape1:
            return arr[None, :], True
        if arr.ndim == 2 and arr.shape[1] == len(names):
            return arr, False
        n = len(names)
        raise InputShapeError(f"theta has shape {arr.shape}; expected ({n},) or (n, {n}) with "
                              f"parameters in the order {list(names)}")

    # ------------------------------------------------------------------ values
    def check(self, arr, single) -> None:
        """Raise :class:`OutOfRangeError` for the first point outside the box or the band."""
        ok = (arr >= self.low) & (arr <= self.high)  # False for NaN too
        if not ok.all():
            self._raise_out_of_range(arr, ok, single)
        if self.band is not None:
            self.check_band(arr, single)

    def contains_point(self, values) -> bool:
        """Whether ONE point, a list of floats in input order, lies inside the box and the band
        (NaN is outside): what :meth:`check` accepts, in Python floats, since a sampler's single
        point costs the number of array operations, not the arithmetic."""
        for value, (low, high) in zip(values, self._box):
            if not low <= value <= high:
                return False
        if self._band_rows:
            x = values[self.band[0]]
            for dep, slope, lo_int, hi_int, floor in self._band_rows:
                sx = slope * x
                if not max(lo_int + sx, floor) <= values[dep] <= hi_int + sx:
                    return False
        return True

    def check_band(self, arr, single) -> None:
        """The training prior is narrower than the box: dependent HOD parameters lie in a band
        around a line in the pivot parameter (``metadata["support"]``)."""
        pivot, dep, slope, lo_int, hi_int, floor = self.band
        x = arr[:, pivot:pivot + 1]
        sx = slope * x
        low = np.maximum(lo_int + sx, floor)
        high = hi_int + sx
        vals = arr[:, dep]
        if ((vals >= low) & (vals <= high)).all():
            return
        ok = (vals >= low) & (vals <= high)
        i, k = np.argwhere(~ok)[0]
        name = self.param_names[dep[k]]
        where = "" if single else f" at point {i}"
        raise OutOfRangeError(
            f"parameter {name!r} = {float(vals[i, k])!r}{where} is outside the emulator's training "
            f"support at {self.param_names[pivot]} = {format_bound(x[i, 0])}: allowed "
            f"[{format_bound(low[i, k])}, {format_bound(high[i, k])}] "
            f"({self.support.get('description', 'band around a linear relation')})")

    def _raise_out_of_range(self, arr, ok, single):
        i, j = np.argwhere(~ok)[0]
        name, value = self.param_names[j], arr[i, j]
        low, high = self.bounds[name]
        where = "" if single else f" at point {i} ({int((~ok.all(axis=1)).sum())} of {len(arr)} " \
                                  "points are invalid)"
        what = ("is not finite; allowed range" if not np.isfinite(value)
                else "is outside the emulator's training range")
        raise OutOfRangeError(f"parameter {name!r} = {float(value)!r}{where} {what} "
                              f"[{format_bound(low)}, {format_bound(high)}]")

    def in_support(self, theta):
        """Whether each point lies inside the box and the band; never raises for values (NaN is
        outside). A bool, or a bool array for a batch."""
        arr, single = self.parse(theta)
        ok = np.all((arr >= self.low) & (arr <= self.high), axis=1)
        if self.band is not None:
            pivot, dep, slope, lo_int, hi_int, floor = self.band
            x = arr[:, pivot:pivot + 1]
            vals = arr[:, dep]
            ok &= np.all((vals >= np.maximum(lo_int + slope * x, floor)) & (vals <= hi_int + slope * x),
                         axis=1)
        return bool(ok[0]) if single else ok

    def support_point(self, folder=None) -> np.ndarray:
        """A point inside the support, (n_inputs,): the box centre, with each banded parameter
        moved to the middle of its band (at the pivot value nearest the centre that leaves every
        band inside the box)."""
        point = 0.5 * (self.low + self.high)
        if self.band is None:
            return point
        pivot, dep, slope, lo_int, hi_int, floor = self.band
        x = np.linspace(self.low[pivot], self.high[pivot], 201)[:, None]
        low = np.maximum(np.maximum(lo_int + slope * x, floor), self.low[dep])
        high = np.minimum(hi_int + slope * x, self.high[dep])
        ok = np.flatnonzero(np.all(low <= high, axis=1))
        if ok.size == 0:  # load refuses such weights (weights_checks.check_support)
            raise WeightsIntegrityError(f"{folder}: the support band leaves no point inside "
                                        "the bounds box")
        i = ok[np.argmin(np.abs(x[ok, 0] - point[pivot]))]
        point[pivot] = x[i, 0]
        point[dep] = 0.5 * (low[i] + high[i])
        return point


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 1024 ** 3:,.1f} GiB" if n_bytes >= 1024 ** 3 else f"{n_bytes / 1024 ** 2:,.1f} MiB"


def check_batch_memory(n_points: int, bytes_per_point: int, what: str, limit: int) -> None:
    """Refuse a batch whose results would need more than ``limit`` bytes
    (:attr:`IAEmulator.max_batch_bytes <iaemu_likelihood.emulator.IAEmulator.max_batch_bytes>`)."""
    need = int(n_points) * int(bytes_per_point)
    if need > limit:
        most = max(limit // bytes_per_point, 1)
        raise BatchTooLargeError(
            f"{what} of {n_points:,} points would need {_gib(need)} of memory "
            f"({bytes_per_point:,} bytes per point); the limit is {_gib(limit)} "
            f"(IAEmulator.max_batch_bytes): pass at most {most:,} points per call, or raise "
            "the limit")
