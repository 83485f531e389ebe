"""Input scaling and output standardisation of the emulator.

Inputs (the seven HOD + alignment parameters, then any cosmology and redshift inputs of the
layout) are mapped linearly from the training box ``[low, high]`` to ``[-1, 1]``. Outputs are
standardised per statistic and per bin: ``xi`` through its logarithm, ``omega`` and ``eta`` as
they are, then ``(y - mean) / std`` with mean and std fitted on the training split only.

The network predicts, in standardised space, the realization mean (for xi: the log of the
realization mean) and the variance of one realization. For a log transform that variance is
the relative variance ``var(xi_k) / mean(xi)**2`` divided by ``std**2``, which is what the delta
method of ``docs/CONTRACTS.md`` (``value**2 * var * std**2``) inverts exactly.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from ..conventions import N_BINS, PARAM_NAMES, STATISTICS

__all__ = ["DEFAULT_TRANSFORMS", "InputScaler", "OutputNormaliser", "valid_points"]

#: Output transform of each statistic.
DEFAULT_TRANSFORMS = {"xi": "log", "omega": "identity", "eta": "identity"}
_ALLOWED = ("log", "identity")


@dataclasses.dataclass(frozen=True)
class InputScaler:
    """Linear map of the emulator inputs from ``[low, high]`` to ``[-1, 1]``.

    Parameters
    ----------
    low, high : array_like, shape (n_inputs,)
        Box edges in input order (same units as the inputs).
    names : tuple of str
        Input names, in order (default the seven :data:`PARAM_NAMES`; a layout with cosmology
        inputs lists them after the seven).
    """

    low: np.ndarray
    high: np.ndarray
    names: tuple = PARAM_NAMES

    def __post_init__(self):
        names = tuple(self.names)
        low = np.asarray(self.low, dtype=float).reshape(-1)
        high = np.asarray(self.high, dtype=float).reshape(-1)
        if low.shape != (len(names),) or high.shape != low.shape:
            raise ValueError(f"low/high must have shape ({len(names)},), got {low.shape}, {high.shape}")
        if not np.all(high > low):
            bad = [n for n, lo, hi in zip(names, low, high) if not hi > lo]
            raise ValueError(f"high must exceed low for every input; not so for {bad}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "names", names)

    @classmethod
    def from_bounds(cls, bounds: Mapping[str, tuple[float, float]], names=PARAM_NAMES) -> InputScaler:
        """Build from a ``{name: (low, high)}`` mapping holding every input of ``names``."""
        missing = [n for n in names if n not in bounds]
        if missing:
            raise ValueError(f"bounds lack inputs {missing}")
        return cls(np.array([bounds[n][0] for n in names]), np.array([bounds[n][1] for n in names]),
                   tuple(names))

    def transform(self, theta) -> np.ndarray:
        """Inputs (..., n_inputs) -> scaled inputs in [-1, 1] inside the box."""
        return 2.0 * (np.asarray(theta, dtype=float) - self.low) / (self.high - self.low) - 1.0

    def inverse(self, x) -> np.ndarray:
        """Scaled inputs (..., n_inputs) -> inputs."""
        return self.low + 0.5 * (np.asarray(x, dtype=float) + 1.0) * (self.high - self.low)

    def to_dict(self) -> dict:
        """The ``normalisation["input"]`` entry of metadata.json."""
        return {"low": self.low.tolist(), "high": self.high.tolist()}


def valid_points(dataset, transforms: Mapping[str, str] = DEFAULT_TRANSFORMS) -> np.ndarray:
    """Boolean mask (n_points,) of points whose log-transformed statistics have a positive mean in
    every bin (others cannot be standardised) and whose values are all finite."""
    ok = np.ones(dataset.n_points, dtype=bool)
    for stat in STATISTICS:
        values = dataset.stat(stat)
        ok &= np.all(np.isfinite(values), axis=(1, 2))
        if transforms[stat] == "log":
            ok &= np.all(values.mean(axis=1) > 0, axis=1)
    return ok


def _transformed(dataset, stat: str, transform: str) -> tuple[np.ndarray, np.ndarray]:
    """Realization mean and one-realization variance of a statistic in transformed space."""
    mean = dataset.mean(stat)
    var = dataset.std(stat, ddof=1) ** 2
    if transform == "log":
        if np.any(mean <= 0):
            raise ValueError(f"{stat}: realization mean <= 0 at {int(np.sum(mean <= 0))} point-bins; "
                             "cannot take its log (drop them with valid_points first)")
        return np.log(mean), var / mean ** 2
    return mean, var


@dataclasses.dataclass(frozen=True)
class OutputNormaliser:
    """Per-statistic, per-bin standardisation of the transformed outputs.

    Attributes
    ----------
    transforms : dict
        Statistic -> ``"log"`` or ``"identity"``.
    mean, std : dict
        Statistic -> array (20,) of the transformed training means' mean and std over points.
    """

    transforms: dict
    mean: dict
    std: dict

    def __post_init__(self):
        for stat in STATISTICS:
            if self.transforms.get(stat) not in _ALLOWED:
                raise ValueError(f"transform of {stat} must be one of {_ALLOWED}, got {self.transforms.get(stat)!r}")
            for name in ("mean", "std"):
                arr = np.asarray(getattr(self, name)[stat], dtype=float)
                if arr.shape != (N_BINS,) or not np.all(np.isfinite(arr)):
                    raise ValueError(f"{name}[{stat}] must be {N_BINS} finite numbers")
            if np.any(np.asarray(self.std[stat]) <= 0):
                raise ValueError(f"std[{stat}] must be positive")

    @classmethod
    def fit(cls, dataset, transforms: Mapping[str, str] = DEFAULT_TRANSFORMS,
            uncentred=()) -> OutputNormaliser:
        """Fit on a (training-split) dataset: mean and std over points of each transformed bin.

        Statistics named in ``uncentred`` get mean 0 and the root mean square as scale (the
        "factorised" network needs omega and eta proportional to the alignment factors).
        """
        mean, std = {}, {}
        for stat in STATISTICS:
            y, _ = _transformed(dataset, stat, transforms[stat])
            if stat in uncentred:
                mean[stat] = np.zeros(y.shape[1])
                s = np.sqrt(np.mean(y * y, axis=0))
            else:
                mean[stat] = y.mean(axis=0)
                s = y.std(axis=0)
            # a bin constant over the design (never in practice) keeps unit scale
            std[stat] = np.where(s > 0, s, 1.0)
        return cls(dict(transforms), mean, std)

    @classmethod
    def from_dict(cls, d: Mapping) -> OutputNormaliser:
        """Inverse of :meth:`to_dict` (the ``normalisation["output"]`` entry of metadata.json)."""
        return cls({s: d[s]["transform"] for s in STATISTICS},
                   {s: np.asarray(d[s]["mean"], dtype=float) for s in STATISTICS},
                   {s: np.asarray(d[s]["std"], dtype=float) for s in STATISTICS})

    def to_dict(self) -> dict:
        """``{stat: {"transform", "mean": [20], "std": [20]}}`` as in docs/CONTRACTS.md."""
        return {s: {"transform": self.transforms[s], "mean": np.asarray(self.mean[s]).tolist(),
                    "std": np.asarray(self.std[s]).tolist()} for s in STATISTICS}

    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.concatenate([self.mean[s] for s in STATISTICS]),
                np.concatenate([self.std[s] for s in STATISTICS]))

    def targets(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        """Standardised training targets of every point.

        Returns
        -------
        target_mean, target_var : ndarray, shape (n_points, 60)
            Transformed realization mean, standardised; and the unbiased one-realization
            variance in the same standardised space (delta method for ``log``).
        """
        mu, sd = self._vectors()
        parts = [_transformed(dataset, s, self.transforms[s]) for s in STATISTICS]
        y = np.concatenate([p[0] for p in parts], axis=1)
        v = np.concatenate([p[1] for p in parts], axis=1)
        return (y - mu) / sd, v / sd ** 2

    def physical(self, mean, var) -> tuple[dict, dict]:
        """Standardised network outputs (..., 60) -> physical values and variances per statistic.

        Follows docs/CONTRACTS.md: ``y = mean*std + mu``; ``value = exp(y)`` and variance
        ``value**2 * var * std**2`` for ``log``, ``value = y`` and ``var * std**2`` otherwise.
        """
        mean = np.asarray(mean, dtype=float)
        var = np.asarray(var, dtype=float)
        values, variances = {}, {}
        for i, stat in enumerate(STATISTICS):
            sl = slice(i * N_BINS, (i + 1) * N_BINS)
            y = mean[..., sl] * self.std[stat] + self.mean[stat]
            v = var[..., sl] * self.std[stat] ** 2
            if self.transforms[stat] == "log":
                y = np.exp(y)
                v = y ** 2 * v
            values[stat], variances[stat] = y, v
        return values, variances

