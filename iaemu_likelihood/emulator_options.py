"""Limits and option checks of :class:`~iaemu_likelihood.emulator.IAEmulator`.

The numbers that bound what one emulator call may do (Monte Carlo dropout passes, block and chunk
sizes, the memory of a batch's results) and the checks of the options that choose how it runs
(arithmetic of large batches, threads, torch device). Re-exported by :mod:`.emulator`.
"""
from __future__ import annotations

import re

import numpy as np

from .config_checks import check_int
from .errors import ConfigError

__all__ = ["DEFAULT_MC_SAMPLES", "MAX_MC_SAMPLES", "NUMPY_BLOCK", "MAX_BATCH_BYTES", "CHUNK_POINTS",
           "BATCH_PRECISIONS", "check_flag", "check_n_samples", "check_run_options",
           "predict_bytes_per_point"]

#: Monte Carlo dropout passes used for the epistemic variance of a single torch network.
DEFAULT_MC_SAMPLES = 32
#: Most Monte Carlo dropout passes one call may ask for (each is a full forward pass).
MAX_MC_SAMPLES = 10_000
#: Points per block of a batched numpy prediction (intermediate arrays stay in the CPU cache).
NUMPY_BLOCK = 256
#: Default memory limit of what one call may allocate for its results (bytes): 2 GiB.
MAX_BATCH_BYTES = 2 * 1024 ** 3
#: Points per chunk of the batched covariance and derived-parameter sums (bounds temporaries).
CHUNK_POINTS = 1024
#: Arithmetic of large numpy batches (see :class:`~iaemu_likelihood.emulator.IAEmulator`).
BATCH_PRECISIONS = ("float32", "float64")
#: Device strings accepted before torch is imported (checked against the machine on first use).
_DEVICE_PATTERN = re.compile(r"(cpu|cuda|mps)(:\d+)?")


def check_flag(value, name: str) -> bool:
    """``value`` as a bool; :class:`ConfigError` naming ``name`` unless it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} = {value!r}; allowed: True or False")
    return bool(value)


def check_n_samples(n_samples):
    """MC-dropout passes: None (the default) or an integer in [2, MAX_MC_SAMPLES]."""
    return None if n_samples is None else check_int(n_samples, "n_samples", 2, MAX_MC_SAMPLES)


def check_run_options(batch_precision, threads, device) -> None:
    """Refuse an unknown batch precision, a thread count below 1 or a malformed device string
    (:class:`ConfigError` naming the option, its value and what is allowed)."""
    if batch_precision not in BATCH_PRECISIONS:
        raise ConfigError(f"batch_precision = {batch_precision!r}; allowed: {list(BATCH_PRECISIONS)}")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ConfigError(f"threads = {threads!r}; allowed: an integer >= 1")
    if not (isinstance(device, str) and _DEVICE_PATTERN.fullmatch(device)):
        raise ConfigError(f"device = {device!r}; allowed: 'cpu', 'cuda', 'cuda:N', 'mps'")


def predict_bytes_per_point(n_out: int, epistemic: bool, n_samples, torch_members) -> int:
    """Bytes per point of a prediction's results and, in torch (``torch_members`` passes per
    point; 0 for a numpy network), of the members' outputs.

    Parameters
    ----------
    n_out : int
        Length of the output vector.
    epistemic : bool
        Whether epistemic variances are returned.
    n_samples : int or None
        MC-dropout passes asked for (a single torch network with ``epistemic``).
    torch_members : int
        Ensemble members run in torch (0 when a numpy mirror runs).
    """
    size = n_out * 8 * (3 if epistemic else 2)
    if torch_members:
        passes = torch_members
        if epistemic and torch_members == 1:
            passes += DEFAULT_MC_SAMPLES if n_samples is None else max(int(n_samples), 0)
        size += passes * n_out * 8 * 4  # (mean, var) per pass, chunks and their concatenation
    return size
