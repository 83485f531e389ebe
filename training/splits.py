"""Train / validation / test splits by design point.

A point's realizations share its parameters, so they must all fall in the same split:
splitting realizations would let the network see the answer to a validation point.
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Split", "split_points", "check_split"]


@dataclasses.dataclass(frozen=True)
class Split:
    """Sorted, disjoint point indices of each part (``test`` may be empty)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def to_dict(self) -> dict:
        """Index lists, for metadata and checkpoints."""
        return {"train": self.train.tolist(), "val": self.val.tolist(), "test": self.test.tolist()}


def split_points(n_points: int, val_fraction: float = 0.1, test_fraction: float = 0.0,
                 seed: int = 0) -> Split:
    """Randomly assign whole design points to train, validation and test.

    Parameters
    ----------
    n_points : int
        Number of design points.
    val_fraction, test_fraction : float
        Fractions of points held out; each non-zero fraction gets at least one point.
    seed : int
        Seed of the permutation (numpy ``default_rng``); the same seed gives the same split.

    Returns
    -------
    Split

    Raises
    ------
    ValueError
        If the fractions are outside [0, 1) or leave no training point.
    """
    if n_points < 1:
        raise ValueError(f"n_points must be positive, got {n_points}")
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{name} must lie in [0, 1), got {frac}")
    n_val = max(1, round(val_fraction * n_points)) if val_fraction > 0 else 0
    n_test = max(1, round(test_fraction * n_points)) if test_fraction > 0 else 0
    if n_val + n_test >= n_points:
        raise ValueError(f"val ({n_val}) + test ({n_test}) points leave no training point of {n_points}")
    perm = np.random.default_rng(seed).permutation(n_points)
    return Split(train=np.sort(perm[n_val + n_test:]), val=np.sort(perm[:n_val]),
                 test=np.sort(perm[n_val:n_val + n_test]))


def check_split(split: Split, n_points: int) -> None:
    """Raise ``ValueError`` unless the parts are disjoint and cover ``range(n_points)``."""
    parts = [split.train, split.val, split.test]
    joined = np.concatenate(parts)
    if joined.size != np.unique(joined).size:
        raise ValueError("split parts overlap")
    if joined.size != n_points or (n_points and (joined.min() < 0 or joined.max() >= n_points)):
        raise ValueError(f"split does not cover the {n_points} points exactly")
