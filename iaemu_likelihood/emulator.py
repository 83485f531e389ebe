"""The emulator: 7 HOD + alignment parameters -> xi(r), omega(r), eta(r) with uncertainties.

:class:`IAEmulator` loads a verified weights folder (see ``trained_weights/README.md``) and
predicts, for each point, the mean over mock realizations of the three correlation functions in
20 log bins of comoving separation, the variance of one mock realization around that mean
(aleatoric) and, on request, the spread of the ensemble (epistemic). ``"mlp"`` and
``"factorised"`` weights run in numpy (no torch import, ~tens of microseconds per point);
``"paper"`` weights run in torch.
"""
from __future__ import annotations

import logging
import math
import numbers
import re
from collections.abc import Mapping
from functools import cached_property

import numpy as np

from .conventions import N_BINS, PARAM_NAMES, R_EDGES, STATISTICS, r_centres
from .config_checks import check_int, check_torch_device, suggest
from .errors import (BatchTooLargeError, ConfigError, InputShapeError, OutOfRangeError,
                     WeightsIntegrityError)
from .hod import occupation_summary, validate_mass_function
from .weights import resolve_weights_dir
from .weights_checks import check_correlation
from .weights_io import load_weights_folder

__all__ = ["IAEmulator", "EmulatorPrediction", "COVARIANCE_TERMS", "DEFAULT_MC_SAMPLES", "MAX_MC_SAMPLES",
           "BATCH_PRECISIONS", "NUMPY_BLOCK", "MAX_BATCH_BYTES", "CHUNK_POINTS"]

log = logging.getLogger(__name__)

N_OUT = len(STATISTICS) * N_BINS
#: Terms :meth:`IAEmulator.covariance` can add up.
COVARIANCE_TERMS = ("aleatoric", "epistemic")
#: Monte Carlo dropout passes used for the epistemic variance of a single "paper" network.
DEFAULT_MC_SAMPLES = 32
#: Most Monte Carlo dropout passes one call may ask for (each is a full forward pass).
MAX_MC_SAMPLES = 10_000
#: Seed of the Monte Carlo dropout masks (fixed, so predictions are reproducible).
MC_DROPOUT_SEED = 0
#: Points per torch forward pass of the "paper" architecture (bounds memory).
TORCH_CHUNK = 4096
#: Points per block of a batched numpy prediction (intermediate arrays stay in the CPU cache).
NUMPY_BLOCK = 256
#: Architectures evaluated in numpy (no torch) -> class of :mod:`iaemu_likelihood.numpy_forward`.
NUMPY_ARCHITECTURES = {"mlp": "MLPEnsemble", "factorised": "FactorisedEnsemble"}
#: Default memory limit of what one call may allocate for its results (bytes): 2 GiB.
MAX_BATCH_BYTES = 2 * 1024 ** 3
#: Points per chunk of the batched covariance and derived-parameter sums (bounds temporaries).
CHUNK_POINTS = 1024
#: Arithmetic of large "mlp" batches (see :class:`IAEmulator`).
BATCH_PRECISIONS = ("float32", "float64")
_SLICES = {stat: slice(i * N_BINS, (i + 1) * N_BINS) for i, stat in enumerate(STATISTICS)}
_SHAPE_1 = (len(PARAM_NAMES),)
#: Device strings accepted before torch is imported (checked against the machine on first use).
_DEVICE_PATTERN = re.compile(r"(cpu|cuda|mps)(:\d+)?")


class EmulatorPrediction:
    """Emulator output for one point (arrays of shape (20,)) or n points ((n, 20)), float64.

    Attributes
    ----------
    xi, omega, eta : ndarray
        Mean over mock realizations (ensemble mean of the members' means); xi and eta
        dimensionless, omega dimensionless; bins of ``IAEmulator.r`` (comoving h^-1 Mpc).
    xi_var, omega_var, eta_var : ndarray
        Aleatoric variance: the scatter of ONE mock realization around the mean (mean over members
        of the predicted variances, in physical units).
    xi_epi_var, omega_epi_var, eta_epi_var : ndarray or None
        Epistemic variance of the mean (spread across ensemble members or MC-dropout passes);
        None unless requested with ``epistemic=True``.

    Mapping access works too: ``pred["xi"]``, ``pred["xi_var"]``, ``pred["xi_epi_var"]``.
    """

    __slots__ = ("_mean", "_var", "_epi")

    def __init__(self, mean, var, epi=None):
        self._mean, self._var, self._epi = mean, var, epi

    def vector(self) -> np.ndarray:
        """Means as ``[xi, omega, eta]``: shape (60,) or (n, 60)."""
        return self._mean

    def variance_vector(self) -> np.ndarray:
        """Aleatoric variances in the order of :meth:`vector`."""
        return self._var

    def epistemic_vector(self):
        """Epistemic variances in the order of :meth:`vector` (None if not computed)."""
        return self._epi

    def __getitem__(self, name: str):
        stat, _, kind = name.partition("_")
        if stat not in _SLICES or kind not in ("", "var", "epi_var"):
            raise KeyError(f"{name!r}: expected one of {list(self.keys())}")
        source = {"": self._mean, "var": self._var, "epi_var": self._epi}[kind]
        return None if source is None else source[..., _SLICES[stat]]

    def keys(self):
        names = [*STATISTICS, *(f"{s}_var" for s in STATISTICS)]
        if self._epi is not None:
            names += [f"{s}_epi_var" for s in STATISTICS]
        return names

    def as_dict(self) -> dict:
        """All present arrays by name."""
        return {k: self[k] for k in self.keys()}

    def __repr__(self):
        shape = self._mean.shape[:-1]
        return f"EmulatorPrediction(points={shape[0] if shape else 'single'}, keys={self.keys()})"

    xi = property(lambda self: self._mean[..., :N_BINS])
    omega = property(lambda self: self._mean[..., N_BINS:2 * N_BINS])
    eta = property(lambda self: self._mean[..., 2 * N_BINS:])
    xi_var = property(lambda self: self._var[..., :N_BINS])
    omega_var = property(lambda self: self._var[..., N_BINS:2 * N_BINS])
    eta_var = property(lambda self: self._var[..., 2 * N_BINS:])
    xi_epi_var = property(lambda self: self["xi_epi_var"])
    omega_epi_var = property(lambda self: self["omega_epi_var"])
    eta_epi_var = property(lambda self: self["eta_epi_var"])


def _real_number(item) -> bool:
    return isinstance(item, numbers.Real) and not isinstance(item, (bool, np.bool_))


def _as_float(value, what: str) -> np.ndarray:
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


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} = {value!r}; allowed: True or False")
    return bool(value)


def _check_terms(terms) -> tuple:
    """``terms`` of :meth:`IAEmulator.covariance` as a non-empty tuple of known names."""
    given = terms
    if isinstance(terms, str):
        terms = (terms,)
    try:
        terms = tuple(terms)
    except TypeError:
        terms = ()
    if not terms:
        raise ConfigError(f"terms = {given!r}; allowed: a non-empty subset of {COVARIANCE_TERMS}")
    for term in terms:
        if term not in COVARIANCE_TERMS:
            raise ConfigError(f"terms: {term!r} is not a covariance term"
                              f"{suggest(term, COVARIANCE_TERMS)}; allowed: a non-empty subset "
                              f"of {COVARIANCE_TERMS}")
    return terms


def _check_n_samples(n_samples):
    """MC-dropout passes: None (the default) or an integer in [2, MAX_MC_SAMPLES]."""
    return None if n_samples is None else check_int(n_samples, "n_samples", 2, MAX_MC_SAMPLES)


def _num(value) -> str:
    """A bound for a message: short (``%g``) when that is exact, else every digit, so a value
    refused by a hair never reads as inside the printed interval."""
    value = float(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 1024 ** 3:,.1f} GiB" if n_bytes >= 1024 ** 3 else f"{n_bytes / 1024 ** 2:,.1f} MiB"


def _first_bad(value: np.ndarray, name: str):
    bad = ~np.isfinite(value) | ((value < 0) if name.endswith("var") else False)
    return float(np.ravel(value)[np.argmax(np.ravel(bad))])


def _torch():
    import torch  # heavy: imported only for "paper" weights and torch_forward

    return torch


def _band_arrays(support: dict):
    """Precomputed arrays of a ``linear_band`` support description (see trained_weights/README.md)."""
    if support.get("type") != "linear_band":
        raise ValueError(f"unknown support type {support.get('type')!r}; expected 'linear_band'")
    bands = support["bands"]
    dep = np.array([PARAM_NAMES.index(n) for n in bands])
    get = lambda key, default=None: np.array(  # noqa: E731
        [default if bands[n].get(key) is None else bands[n][key] for n in bands], dtype=np.float64)
    return (PARAM_NAMES.index(support["pivot"]), dep, get("slope"), get("low_intercept"),
            get("high_intercept"), get("floor", -np.inf))


class IAEmulator:
    """Emulator of galaxy intrinsic-alignment correlation functions.

    Build it with :meth:`load`. Parameters are ``PARAM_NAMES`` = (mu_cen, mu_sat, logMmin,
    sigma_logM, logM0, logM1, alpha); masses in log10(Msun/h); alignment strengths mu in [-1, 1].

    Parameters
    ----------
    metadata : dict
        Parsed ``metadata.json``.
    members : list of dict
        Ensemble members' state dicts (numpy arrays).
    residual_correlation : ndarray, shape (60, 60)
    halo_mass_function : dict
    device : str
        Torch device for "paper" inference and :meth:`torch_forward`; "mlp" inference is numpy.
    folder : path, optional
        Where the weights came from (for messages).
    batch_precision : {"float32", "float64"}
        Arithmetic of "mlp" batches of more than :data:`NUMPY_BLOCK` points. float32 (default)
        doubles the throughput; its results differ from float64 by ~1e-6 relative, four orders
        of magnitude below the emulator's accuracy. Single points and small batches -- what a
        sampler asks for -- are always float64. Outputs are float64 either way.
    threads : int
        Threads sharing the blocks of a large "mlp" batch (numpy releases the GIL; default 1, so
        that MPI ranks or a pool of workers are not oversubscribed).

    Attributes
    ----------
    max_batch_bytes : int
        Memory (bytes) one call may need for its results (default :data:`MAX_BATCH_BYTES`,
        2 GiB); a larger batch raises :class:`~iaemu_likelihood.errors.BatchTooLargeError`
        naming the size it would need, before anything is allocated. Set it on the instance
        to change it.
    """

    max_batch_bytes = MAX_BATCH_BYTES

    def __init__(self, metadata, members, residual_correlation, halo_mass_function,
                 device="cpu", folder=None, batch_precision="float32", threads=1):
        if batch_precision not in BATCH_PRECISIONS:
            raise ConfigError(f"batch_precision = {batch_precision!r}; allowed: {list(BATCH_PRECISIONS)}")
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ConfigError(f"threads = {threads!r}; allowed: an integer >= 1")
        if not (isinstance(device, str) and _DEVICE_PATTERN.fullmatch(device)):
            raise ConfigError(f"device = {device!r}; allowed: 'cpu', 'cuda', 'cuda:N', 'mps'")
        self.batch_precision = batch_precision
        self.threads = int(threads)
        self.metadata = metadata
        self.folder = folder
        self.device = device
        self._device_checked = False
        self.architecture = metadata["architecture"]
        if self.architecture not in NUMPY_ARCHITECTURES:
            self._check_device()  # torch runs every prediction: check before the first one
        self.architecture_config = dict(metadata.get("architecture_config", {}))
        self.ensemble_size = len(members)
        corr = np.asarray(residual_correlation, dtype=np.float64)
        self.residual_correlation = 0.5 * (corr + corr.T)  # remove round-off asymmetry
        self.halo_mass_function = halo_mass_function
        # validated once; the derived-parameter sums skip the empty bins
        mf = validate_mass_function(halo_mass_function)
        nonempty = mf["counts"] > 0
        self._mass_function = dict(mf, counts=mf["counts"][nonempty],
                                   mean_log10_mass=mf["mean_log10_mass"][nonempty])
        self._members = members
        self.param_names = PARAM_NAMES
        self.bounds = {name: (float(metadata["bounds"][name][0]), float(metadata["bounds"][name][1]))
                       for name in PARAM_NAMES}
        self._low = np.array([self.bounds[n][0] for n in PARAM_NAMES])
        self._high = np.array([self.bounds[n][1] for n in PARAM_NAMES])
        self.support = metadata.get("support")
        self._band = _band_arrays(self.support) if self.support else None
        self.r_edges = np.array(R_EDGES)
        self.r = r_centres(self.r_edges)
        norm = metadata["normalisation"]
        self._in_low = np.asarray(norm["input"]["low"], dtype=np.float64)
        self._in_high = np.asarray(norm["input"]["high"], dtype=np.float64)
        out = norm["output"]
        self._out_mean = np.concatenate([np.asarray(out[s]["mean"], float) for s in STATISTICS])
        self._out_std = np.concatenate([np.asarray(out[s]["std"], float) for s in STATISTICS])
        self._out_var = self._out_std ** 2
        self._log_slices = [_SLICES[s] for s in STATISTICS if out[s]["transform"] == "log"]
        scale = (metadata.get("epistemic") or {}).get("scale") or {}
        corr_e = (metadata.get("epistemic") or {}).get("correlation")
        #: correlation (60, 60) of the emulator's errors (None: independent bins)
        self.epistemic_correlation = None
        if corr_e is not None:
            corr_e = check_correlation(corr_e, f"{folder or 'metadata'}", "epistemic.correlation")
            self.epistemic_correlation = 0.5 * (corr_e + corr_e.T)
        #: factor on the raw epistemic variance per output (post-hoc calibration, 1 if none)
        self.epistemic_scale = np.concatenate(
            [np.full(N_BINS, float(scale.get(s, 1.0))) for s in STATISTICS])
        self._torch_cache = {}
        self._numpy_net = None
        if self.architecture in NUMPY_ARCHITECTURES:
            from . import numpy_forward

            cls = getattr(numpy_forward, NUMPY_ARCHITECTURES[self.architecture])
            cfg = {"activation": "silu", "var_floor": 1e-6, **self.architecture_config}
            self._numpy_net = cls(members, cfg["activation"], cfg["var_floor"], self._in_low,
                                  self._in_high, self._out_mean, self._out_std)

    def _check_device(self) -> None:
        """Check :attr:`device` against this machine (imports torch) once, before torch first runs."""
        if not self._device_checked:
            check_torch_device(self.device, "device")
            self._device_checked = True

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, version=None, device="cpu", batch_precision="float32", threads=1) -> IAEmulator:
        """Load a weights version, verifying its SHA-256 checksums first.

        Parameters
        ----------
        version : str or path-like, optional
            A shipped version name, or a path to a weights folder; None selects the shipped default
            (``trained_weights/DEFAULT``).
        device : str
            Torch device for the "paper" architecture and :meth:`torch_forward` (default "cpu").
        batch_precision : {"float32", "float64"}
            Arithmetic of large "mlp" batches (see the class docstring).
        threads : int
            Threads for large "mlp" batches (default 1).

        Raises
        ------
        WeightsNotFoundError, WeightsIntegrityError
        """
        folder = resolve_weights_dir(version)
        metadata, members, corr, mass_function = load_weights_folder(folder)
        log.info("loaded %s weights %s (%d members) from %s", metadata["architecture"],
                 metadata.get("version"), len(members), folder)
        emulator = cls(metadata, members, corr, mass_function, device=device, folder=folder,
                       batch_precision=batch_precision, threads=threads)
        emulator._check_finite_outputs()
        return emulator

    def support_point(self) -> np.ndarray:
        """A point inside the training support, (7,): the box centre, with each banded parameter
        moved to the middle of its band (at the pivot value nearest the centre that leaves every
        band inside the box)."""
        point = 0.5 * (self._low + self._high)
        if self._band is None:
            return point
        pivot, dep, slope, lo_int, hi_int, floor = self._band
        x = np.linspace(self._low[pivot], self._high[pivot], 201)[:, None]
        low = np.maximum(np.maximum(lo_int + slope * x, floor), self._low[dep])
        high = np.minimum(hi_int + slope * x, self._high[dep])
        ok = np.flatnonzero(np.all(low <= high, axis=1))
        if ok.size == 0:  # load refuses such weights (weights_checks.check_support)
            raise WeightsIntegrityError(f"{self.folder}: the support band leaves no point inside "
                                        "the bounds box")
        i = ok[np.argmin(np.abs(x[ok, 0] - point[pivot]))]
        point[pivot] = x[i, 0]
        point[dep] = 0.5 * (low[i] + high[i])
        return point

    def _check_finite_outputs(self) -> None:
        """Predict at :meth:`support_point`; weights whose outputs are not finite (or whose
        variances are negative) are refused, so they never reach a sampler as NaN."""
        point = self.support_point()
        with np.errstate(over="ignore", invalid="ignore"):  # reported below, as one error
            pred = self._predict(point, self.ensemble_size > 1, None)[0]
        for name, value in pred.as_dict().items():
            bad = not np.all(np.isfinite(value)) or (name.endswith("var") and np.any(value < 0))
            if bad:
                where = dict(zip(PARAM_NAMES, np.round(point, 4).tolist()))
                raise WeightsIntegrityError(
                    f"{self.folder}: the weights predict {name} = {_first_bad(value, name)} at the "
                    f"support point {where}; allowed: finite values (variances >= 0): the tensors "
                    "or the normalisation are broken")

    def _check_batch_memory(self, n_points: int, bytes_per_point: int, what: str) -> None:
        """Refuse a batch whose results would need more than :attr:`max_batch_bytes`."""
        need = int(n_points) * int(bytes_per_point)
        if need > self.max_batch_bytes:
            most = max(self.max_batch_bytes // bytes_per_point, 1)
            raise BatchTooLargeError(
                f"{what} of {n_points:,} points would need {_gib(need)} of memory "
                f"({bytes_per_point:,} bytes per point); the limit is {_gib(self.max_batch_bytes)} "
                f"(IAEmulator.max_batch_bytes): pass at most {most:,} points per call, or raise "
                "the limit")

    def _predict_bytes_per_point(self, epistemic: bool, n_samples) -> int:
        """Bytes per point of a prediction's results (and, in torch, of the members' outputs)."""
        size = N_OUT * 8 * (3 if epistemic else 2)
        if self._numpy_net is None:
            passes = self.ensemble_size
            if epistemic and self.ensemble_size == 1:
                passes += DEFAULT_MC_SAMPLES if n_samples is None else max(int(n_samples), 0)
            size += passes * N_OUT * 8 * 4  # (mean, var) per pass, chunks and their concatenation
        return size

    @property
    def point_precision(self) -> str:
        """Arithmetic of single points and small batches: "float64" (numpy architectures) or
        "float32" ("paper" networks, run in torch)."""
        return "float64" if self._numpy_net is not None else "float32"

    @property
    def version(self):
        """Version string of the loaded weights."""
        return self.metadata.get("version")

    def __repr__(self):
        return (f"IAEmulator(version={self.version!r}, architecture={self.architecture!r}, "
                f"ensemble_size={self.ensemble_size})")

    # ------------------------------------------------------------------ validation
    def validate(self, theta) -> np.ndarray:
        """Check parameters and return them as a float64 array, (7,) or (n, 7).

        Parameters
        ----------
        theta : mapping or array_like
            A mapping with exactly the 7 names (scalars, or 1-d arrays of one length for a batch),
            an array (7,) or an array (n, 7) in ``param_names`` order.

        Raises
        ------
        InputShapeError
            Wrong shape or type, missing or unknown names (a ``ValueError``).
        OutOfRangeError
            A value is NaN, inf or outside ``bounds``; the message names the parameter, the value
            and the allowed range.
        """
        arr, single = self._as_array(theta)
        return arr[0] if single else arr

    def _as_array(self, theta, bytes_per_point: int = 0, what: str = ""):
        """(validated (n, 7) float64 array, whether the input was a single point).

        With ``bytes_per_point``, a batch whose results would exceed :attr:`max_batch_bytes` is
        refused (as ``what``) once its shape is known, before the values are checked."""
        arr, single = self._parse(theta)
        if bytes_per_point:
            self._check_batch_memory(len(arr), bytes_per_point, what)
        ok = (arr >= self._low) & (arr <= self._high)  # False for NaN too
        if not ok.all():
            self._raise_out_of_range(arr, ok, single)
        if self._band is not None:
            self._check_band(arr, single)
        return arr, single

    @staticmethod
    def _parse(theta):
        """(theta as an (n, 7) float64 array, whether it was a single point): shapes, names and
        types checked (:class:`InputShapeError`), values not."""
        if isinstance(theta, Mapping):
            unknown = sorted(set(theta) - set(PARAM_NAMES))
            missing = [n for n in PARAM_NAMES if n not in theta]
            if unknown or missing:
                raise InputShapeError(f"theta must name exactly {list(PARAM_NAMES)}; unknown: "
                                      f"{unknown}, missing: {missing}")
            cols = [_as_float(theta[n], f"theta[{n!r}]") for n in PARAM_NAMES]
            ndims = {c.ndim for c in cols}
            if ndims == {0}:
                arr, single = np.array(cols, dtype=np.float64)[None, :], True
            elif max(ndims) == 1:
                try:
                    arr = np.stack(np.broadcast_arrays(*cols), axis=-1)
                except ValueError:
                    lengths = {n: c.shape for n, c in zip(PARAM_NAMES, cols)}
                    raise InputShapeError(f"theta values have inconsistent shapes {lengths}; "
                                          "allowed: scalars, or 1-d arrays of one length") from None
                single = False
            else:
                shapes = {n: c.shape for n, c in zip(PARAM_NAMES, cols)}
                raise InputShapeError(f"theta values must be scalars or 1-d arrays, got shapes "
                                      f"{shapes}")
        else:
            arr = _as_float(theta, "theta")
            if arr.shape == _SHAPE_1:
                arr, single = arr[None, :], True
            elif arr.ndim == 2 and arr.shape[1] == len(PARAM_NAMES):
                single = False
            else:
                raise InputShapeError(f"theta has shape {arr.shape}; expected (7,) or (n, 7) with "
                                      f"parameters in the order {list(PARAM_NAMES)}")
        return arr, single

    def _check_band(self, arr, single):
        """The training prior is narrower than the box: dependent HOD parameters lie in a band
        around a line in the pivot parameter (``metadata["support"]``)."""
        pivot, dep, slope, lo_int, hi_int, floor = self._band
        x = arr[:, pivot:pivot + 1]
        low = np.maximum(lo_int + slope * x, floor)
        high = hi_int + slope * x
        vals = arr[:, dep]
        ok = (vals >= low) & (vals <= high)
        if ok.all():
            return
        i, k = np.argwhere(~ok)[0]
        name = PARAM_NAMES[dep[k]]
        where = "" if single else f" at point {i}"
        raise OutOfRangeError(
            f"parameter {name!r} = {float(vals[i, k])!r}{where} is outside the emulator's training "
            f"support at {PARAM_NAMES[pivot]} = {_num(x[i, 0])}: allowed [{_num(low[i, k])}, "
            f"{_num(high[i, k])}] ({self.support.get('description', 'band around a linear relation')})")

    def in_support(self, theta) -> np.ndarray:
        """Whether each point lies inside the training prior (box and band); never raises for values.

        Returns a bool, or a bool array for a batch. Wrong shapes, names or types raise
        :class:`InputShapeError` as in :meth:`validate`; NaN is simply outside.
        """
        arr, single = self._parse(theta)
        ok = np.all((arr >= self._low) & (arr <= self._high), axis=1)
        if self._band is not None:
            pivot, dep, slope, lo_int, hi_int, floor = self._band
            x = arr[:, pivot:pivot + 1]
            vals = arr[:, dep]
            ok &= np.all((vals >= np.maximum(lo_int + slope * x, floor)) & (vals <= hi_int + slope * x),
                         axis=1)
        return bool(ok[0]) if single else ok

    def _raise_out_of_range(self, arr, ok, single):
        i, j = np.argwhere(~ok)[0]
        name, value = PARAM_NAMES[j], arr[i, j]
        low, high = self.bounds[name]
        where = "" if single else f" at point {i} ({int((~ok.all(axis=1)).sum())} of {len(arr)} " \
                                  "points are invalid)"
        what = ("is not finite; allowed range" if not np.isfinite(value)
                else "is outside the emulator's training range")
        raise OutOfRangeError(f"parameter {name!r} = {float(value)!r}{where} {what} "
                              f"[{_num(low)}, {_num(high)}]")

    # ------------------------------------------------------------------ prediction
    def predict(self, theta, epistemic: bool = False, n_samples: int | None = None):
        """Predict the three correlation functions and their variances.

        Parameters
        ----------
        theta : mapping or array_like
            One point (mapping of scalars or array (7,)) or n points (mapping of 1-d arrays or
            array (n, 7)); see :meth:`validate`.
        epistemic : bool
            Also return the epistemic variances (``xi_epi_var``, ...).
        n_samples : int, optional
            Monte Carlo dropout passes for a single-network "paper" model (default
            :data:`DEFAULT_MC_SAMPLES`); ignored for ensembles.

        Returns
        -------
        EmulatorPrediction
            Arrays (20,) for one point, (n, 20) for n points, in the bins of :attr:`r`.

        Notes
        -----
        Each member predicts, per bin, a mean ``y`` and a variance in standardised output space
        (log xi for xi). The physical mean is ``exp(y)`` for log-transformed statistics and its
        variance follows by the delta method, ``exp(y)**2 * var_y``. The prediction is the ensemble
        average of the physical means; the aleatoric variance is the average of the members'
        physical variances; the epistemic variance is the population variance of the physical
        means across members (for one "paper" network: across MC-dropout passes, dropout masks
        seeded with :data:`MC_DROPOUT_SEED`), times the per-statistic calibration factor
        :attr:`epistemic_scale` fitted on the validation split at training time
        (``metadata["epistemic"]["scale"]``; 1 when the weights carry none).

        Raises
        ------
        InputShapeError, OutOfRangeError, BatchTooLargeError, ConfigError
            Bad inputs or options (see :meth:`validate`).
        WeightsIntegrityError
            The weights predict a non-finite value at one of the points (load checks only one
            point): never returned as NaN or inf.
        """
        pred, arr = self._predict(theta, epistemic, n_samples)
        self._require_finite(pred, arr)
        return pred

    def _require_finite(self, pred, arr) -> None:
        """Refuse a prediction holding NaN or inf (weights broken for these inputs)."""
        blocks = (("", pred.vector()), ("_var", pred.variance_vector()),
                  ("_epi_var", pred.epistemic_vector()))
        # fast path, one errstate for all blocks (this runs on every sampler call): a finite total
        # means every entry is finite; an overflowing total of finite entries falls through to
        # the exact per-entry check below, which then finds nothing
        with np.errstate(over="ignore", invalid="ignore"):
            total = sum(float(block.sum()) for _, block in blocks if block is not None)
        if math.isfinite(total):
            return
        for kind, block in blocks:
            if block is None:
                continue
            bad = ~np.isfinite(block.reshape(-1, N_OUT))
            if not bad.any():
                continue
            i, j = (int(v) for v in np.argwhere(bad)[0])
            stat = STATISTICS[j // N_BINS]
            point = dict(zip(PARAM_NAMES, np.round(arr[i], 6).tolist()))
            raise WeightsIntegrityError(
                f"{self.folder}: the weights predict {stat}{kind}[{j % N_BINS}] = "
                f"{block.reshape(-1, N_OUT)[i, j]} at {point}; allowed: finite values (the tensors or "
                "the normalisation are broken for this input)")

    def _predict(self, theta, epistemic, n_samples):
        """:meth:`predict` without the finiteness check: (prediction, the (n, 7) points)."""
        if epistemic is not True and epistemic is not False:
            epistemic = _check_flag(epistemic, "epistemic")
        if n_samples is not None:
            n_samples = _check_n_samples(n_samples)
        low, high = self._low, self._high
        # lean path for the common sampler call: one float64 (7,) array inside the bounds of a
        # numpy network (torch passes go through the batch-memory check, MC dropout included)
        if (type(theta) is np.ndarray and theta.shape == _SHAPE_1 and theta.dtype == np.float64
                and self._numpy_net is not None and ((theta >= low) & (theta <= high)).all()):
            arr, single = theta[None, :], True
            if self._band is not None:
                self._check_band(arr, True)
        else:
            arr, single = self._as_array(theta, self._predict_bytes_per_point(epistemic, n_samples),
                                         "predict")
        if self._numpy_net is None:
            y, var_y = self._torch_members_forward(arr, mc_dropout=False)
            mean, alea, epi = self._reduce(arr, y, var_y, epistemic, n_samples)
        elif len(arr) <= NUMPY_BLOCK:
            mean, alea, epi = self._numpy_block(arr, epistemic)
        else:
            # block by block, so every intermediate array stays in the CPU cache; one BLAS thread:
            # these matrices are small, and BLAS threads only contend with the caller's own
            # parallelism (measured 15x slower with 2 threads on a busy 2-core machine)
            return self._predict_blocks(arr, epistemic), arr
        if single:
            return EmulatorPrediction(mean[0], alea[0], None if epi is None else epi[0]), arr
        return EmulatorPrediction(mean, alea, epi), arr

    @cached_property
    def _numpy_net32(self):
        return self._numpy_net.astype(np.float32)

    def _predict_blocks(self, arr, epistemic):
        from threadpoolctl import threadpool_limits

        n = len(arr)
        mean, alea = np.empty((n, N_OUT)), np.empty((n, N_OUT))
        epi = np.empty((n, N_OUT)) if epistemic else None
        net = self._numpy_net32 if self.batch_precision == "float32" else self._numpy_net
        starts = range(0, n, NUMPY_BLOCK)

        def run(chunk):
            for start in chunk:
                stop = start + NUMPY_BLOCK
                m, a, e = self._numpy_block(arr[start:stop], epistemic, net)
                mean[start:stop], alea[start:stop] = m, a
                if epistemic:
                    epi[start:stop] = e

        n_threads = min(self.threads, len(starts))
        with threadpool_limits(limits=1, user_api="blas"):
            if n_threads == 1:
                run(starts)
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(n_threads) as pool:
                    # interleaved blocks: every thread gets the same share of the work
                    for future in [pool.submit(run, starts[i::n_threads]) for i in range(n_threads)]:
                        future.result()
        return EmulatorPrediction(mean, alea, epi)

    def _numpy_block(self, arr, epistemic, net=None):
        y, var_std = (net or self._numpy_net)(arr)
        var_std *= self._out_var
        return self._reduce(arr, y, var_std, epistemic, None)

    def _reduce(self, arr, y, var_y, epistemic, n_samples):
        """Members' transformed (M, n, 60) outputs -> physical mean, aleatoric, epistemic (n, 60)."""
        values, var = self._to_physical(y, var_y)
        m = values.shape[0]
        if m == 1:
            mean, alea = values[0], var[0]
        else:
            mean = values.sum(axis=0)
            mean *= 1.0 / m
            alea = var.sum(axis=0)
            alea *= 1.0 / m
        epi = self._epistemic(arr, values, n_samples) if epistemic else None
        return mean, alea, epi

    def _to_physical(self, y, var_y):
        """Transformed-space means/variances (M, n, 60) -> physical ones (in place)."""
        for sl in self._log_slices:
            block = y[..., sl]
            np.exp(block, out=block)
            var_y[..., sl] *= block * block  # delta method
        return y, var_y

    def _epistemic(self, arr, values, n_samples):
        if values.shape[0] > 1:
            return values.var(axis=0) * self.epistemic_scale
        if self.architecture != "paper":
            log.warning("a single-member %r model has no epistemic estimate; returning zeros",
                        self.architecture)
            return np.zeros(values.shape[1:])
        n = DEFAULT_MC_SAMPLES if n_samples is None else _check_n_samples(n_samples)
        torch = _torch()
        samples = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(MC_DROPOUT_SEED)
            for _ in range(n):
                y, var_y = self._torch_members_forward(arr, mc_dropout=True)
                samples.append(self._to_physical(y, var_y)[0][0])
        return np.var(np.stack(samples), axis=0) * self.epistemic_scale

    # ------------------------------------------------------------------ torch
    def _torch_members(self, dtype_name="float32"):
        """Torch modules of every member in eval mode, cached per dtype."""
        if dtype_name not in self._torch_cache:
            self._check_device()
            torch = _torch()
            from .networks import build_network

            nets = []
            for sd in self._members:
                net = build_network(self.architecture, self.architecture_config)
                net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})
                net = net.to(device=self.device, dtype=getattr(torch, dtype_name)).eval()
                for p in net.parameters():
                    p.requires_grad_(False)
                nets.append(net)
            self._torch_cache[dtype_name] = nets
        return self._torch_cache[dtype_name]

    def _torch_members_forward(self, arr, mc_dropout):
        """(y, var_y) of every member, each (M, n, 60) float64, through torch (no gradients)."""
        torch = _torch()
        nets = self._torch_members("float32")
        x = (arr - self._in_low) * (2.0 / (self._in_high - self._in_low)) - 1.0
        ys, vs = [], []
        with torch.inference_mode():
            for net in nets:
                if hasattr(net, "set_mc_dropout"):
                    net.set_mc_dropout(mc_dropout)
                parts_m, parts_v = [], []
                for start in range(0, len(x), TORCH_CHUNK):
                    xt = torch.as_tensor(x[start:start + TORCH_CHUNK], dtype=torch.float32,
                                         device=self.device)
                    m, v = net(xt)
                    parts_m.append(m.double().cpu().numpy())
                    parts_v.append(v.double().cpu().numpy())
                ys.append(np.concatenate(parts_m) if parts_m else np.zeros((0, N_OUT)))
                vs.append(np.concatenate(parts_v) if parts_v else np.zeros((0, N_OUT)))
                if hasattr(net, "set_mc_dropout"):
                    net.set_mc_dropout(False)
        y = np.stack(ys) * self._out_std + self._out_mean
        return y, np.stack(vs) * self._out_var

    def torch_forward(self, theta):
        """Differentiable forward pass in torch (float64), for gradient-based samplers and MAP.

        Parameters
        ----------
        theta : torch.Tensor, shape (n, 7) or (7,)
            Physical parameters in ``param_names`` order; gradients flow back to it. Values are
            checked against :attr:`bounds` (``OutOfRangeError``).

        Returns
        -------
        dict of torch.Tensor
            ``xi, omega, eta`` (physical ensemble means) and ``xi_var, omega_var, eta_var``
            (aleatoric variances), each (n, 20) (or (20,) for a (7,) input); with more than one
            member also ``xi_epi_var, ...`` (variance across members, times
            :attr:`epistemic_scale`). Dropout is off.
        """
        torch = _torch()
        if not torch.is_tensor(theta):
            raise InputShapeError(f"theta must be a torch.Tensor (n, 7) or (7,), got "
                                  f"{type(theta).__name__}")
        if theta.dtype.is_complex or not theta.dtype.is_floating_point:
            raise InputShapeError(f"theta has dtype {theta.dtype}; allowed: a floating tensor")
        self._check_device()
        single = theta.ndim == 1
        x = theta[None, :] if single else theta
        self._as_array(x.detach().cpu().numpy())  # validation only
        x = x.to(device=self.device, dtype=torch.float64)
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float64, device=self.device)  # noqa: E731
        x = (x - as_t(self._in_low)) * as_t(2.0 / (self._in_high - self._in_low)) - 1.0
        mu, std = as_t(self._out_mean), as_t(self._out_std)
        log_stats = {s for s in STATISTICS
                     if self.metadata["normalisation"]["output"][s]["transform"] == "log"}
        per_member = {k: [] for k in ("mean", "var")}
        for net in self._torch_members("float64"):
            m, v = net(x)
            y, var_y = m * std + mu, v * std ** 2
            means, variances = [], []
            for stat in STATISTICS:
                sl = _SLICES[stat]
                if stat in log_stats:
                    value = torch.exp(y[:, sl])
                    means.append(value)
                    variances.append(value ** 2 * var_y[:, sl])
                else:
                    means.append(y[:, sl])
                    variances.append(var_y[:, sl])
            per_member["mean"].append(torch.cat(means, dim=1))
            per_member["var"].append(torch.cat(variances, dim=1))
        means = torch.stack(per_member["mean"])
        out60 = {"": means.mean(dim=0), "_var": torch.stack(per_member["var"]).mean(dim=0)}
        if len(per_member["mean"]) > 1:
            out60["_epi_var"] = means.var(dim=0, unbiased=False) * as_t(self.epistemic_scale)
        result = {}
        for suffix, value in out60.items():
            for stat in STATISTICS:
                block = value[:, _SLICES[stat]]
                result[stat + suffix] = block[0] if single else block
        return result

    # ------------------------------------------------------------------ covariance, derived
    def covariance(self, theta, terms=COVARIANCE_TERMS, n_samples: int | None = None,
                   prediction: EmulatorPrediction | None = None):
        """Emulator covariance of the 60-vector ``[xi, omega, eta]`` at a point.

        Parameters
        ----------
        theta : mapping or array_like
            One point (-> (60, 60)) or n points (-> (n, 60, 60)).
        terms : sequence of {"aleatoric", "epistemic"}
            Which terms to add:

            ``"aleatoric"``: ``D R D``, the covariance of ONE mock realization (the training mocks'
            volume and galaxy sample) around the mean. ``D`` is the predicted aleatoric standard
            deviation of each of the 60 values, ``R`` the shipped pooled correlation matrix of the
            standardised per-realization residuals (the bin-to-bin and cross-statistic correlations
            of the mock scatter, which per-bin variances alone ignore). Use it as the model's
            sample variance, rescaled by the user to their survey volume.

            ``"epistemic"``: ``E C E``, the emulator's own uncertainty on the mean. ``E`` is the
            (calibrated) epistemic standard deviation of each value (spread across ensemble members
            or MC-dropout passes); ``C`` the correlation of the emulator's errors across bins and
            statistics, estimated at training time from the validation split
            (``metadata["epistemic"]["correlation"]``): emulator errors are smooth in r, so
            treating them as independent per bin would let a coherent error shift the parameters
            with too little penalty. Weights without it get ``diag(E**2)`` (a 4-member sample
            covariance would be rank-deficient).
        n_samples : int, optional
            MC-dropout passes for a single "paper" network.
        prediction : EmulatorPrediction, optional
            The result of ``predict(theta, epistemic=...)`` at the same point, to avoid a second
            forward pass (it must hold epistemic variances when "epistemic" is requested).

        Returns
        -------
        ndarray
            Symmetric positive (semi-)definite matrix, (60, 60) or (n, 60, 60), physical units.
        """
        terms = _check_terms(terms)
        n_samples = _check_n_samples(n_samples)
        epistemic = "epistemic" in terms
        matrix_bytes = N_OUT * N_OUT * 8
        if prediction is None:
            arr, single = self._as_array(
                theta, matrix_bytes + self._predict_bytes_per_point(epistemic, n_samples), "covariance")
            pred = self.predict(arr[0] if single else arr, epistemic=epistemic, n_samples=n_samples)
        else:
            pred = prediction
            if not isinstance(pred, EmulatorPrediction):
                raise InputShapeError(f"prediction is a {type(pred).__name__}; allowed: the "
                                      "EmulatorPrediction that predict(theta) returned")
            if theta is not None:
                arr, single = self._parse(theta)
                have = pred.variance_vector().shape[:-1]
                want = () if single else (len(arr),)
                if have != want:
                    points = lambda shape: f"a batch of {shape[0]}" if shape else "a single point"  # noqa: E731
                    raise InputShapeError(f"prediction is for {points(have)} but theta is "
                                          f"{points(want)}; pass the prediction of this theta")
            if epistemic and pred.epistemic_vector() is None:
                raise InputShapeError("prediction holds no epistemic variances; call predict(theta, "
                                      "epistemic=True) for an epistemic covariance")
        var = pred.variance_vector()
        if var.ndim == 2:
            self._check_batch_memory(len(var), matrix_bytes, "covariance")
        epi = pred.epistemic_vector() if epistemic else None
        single = var.ndim == 1
        var2 = var[None, :] if single else var
        epi2 = None if epi is None else (epi[None, :] if single else epi)
        cov = np.zeros((len(var2), N_OUT, N_OUT))
        # chunks of points, so the temporaries stay small next to the result itself
        for start in range(0, len(var2), CHUNK_POINTS):
            part = slice(start, start + CHUNK_POINTS)
            self._add_covariance(cov[part], var2[part], None if epi2 is None else epi2[part], terms)
        return cov[0] if single else cov

    def _add_covariance(self, out, var, epi, terms):
        """Add the requested terms for points ``var``/``epi`` (m, 60) into ``out`` (m, 60, 60)."""
        if "aleatoric" in terms:
            sd = np.sqrt(var)
            out += (sd[:, :, None] * sd[:, None, :]) * self.residual_correlation  # exactly symmetric
        if "epistemic" in terms:
            if self.epistemic_correlation is None:
                idx = np.arange(N_OUT)
                out[:, idx, idx] += epi
            else:
                se = np.sqrt(epi)
                out += (se[:, :, None] * se[:, None, :]) * self.epistemic_correlation

    def derived(self, theta) -> dict:
        """Galaxy number density and satellite fraction of an HOD point.

        Computed from the Zheng07 mean occupations (:mod:`iaemu_likelihood.hod`) summed over the
        binned host-halo mass function of the training catalog shipped with the weights.

        Parameters
        ----------
        theta : mapping or array_like
            One point or n points (validated like :meth:`predict`).

        Returns
        -------
        dict
            ``"n_gal"``: mean number density in (h^-1 Mpc)^-3; ``"f_sat"``: satellite fraction.
            Floats for one point, arrays (n,) for n points.
        """
        arr, single = self._as_array(theta)
        n_gal, f_sat = np.empty(len(arr)), np.empty(len(arr))
        # in chunks: the sums make (points, mass bins) temporaries
        for start in range(0, len(arr), CHUNK_POINTS):
            part = slice(start, start + CHUNK_POINTS)
            n_gal[part], f_sat[part] = occupation_summary(arr[part], self._mass_function,
                                                          validated=True)
        if single:
            return {"n_gal": float(n_gal[0]), "f_sat": float(f_sat[0])}
        return {"n_gal": n_gal, "f_sat": f_sat}

    @cached_property
    def reference_point(self) -> np.ndarray:
        """Centre of the training box, (7,): a safe default point for tests and examples."""
        return 0.5 * (self._low + self._high)
