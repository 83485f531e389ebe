"""Voxel-classification metrics of a painted galaxy field: precision-recall curve, average precision.

A voxel is "positive" when the truth holds at least one galaxy there; a score ranks voxels (higher
means more likely to hold one). Tied scores form one threshold, as in scikit-learn's
``precision_recall_curve`` (whose ``average_precision_score`` these numbers reproduce).
"""
from __future__ import annotations

import numpy as np

__all__ = ["precision_recall_curve", "average_precision", "precision_at_recall", "threshold_at_recall"]


def precision_recall_curve(scores, labels, return_thresholds: bool = False) -> tuple[np.ndarray, ...]:
    """Precision and recall at every distinct score threshold, highest threshold first.

    Parameters
    ----------
    scores : array_like
        Any shape; finite.
    labels : array_like of bool
        Same shape as ``scores``; at least one True.
    return_thresholds : bool
        Also return the thresholds: the voxels with ``score >= threshold`` are the ones selected.

    Returns
    -------
    precision, recall[, thresholds] : ndarray
        One entry per distinct score, ordered by decreasing threshold (recall non-decreasing).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores ({scores.size}) and labels ({labels.size}) differ in size")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    n_pos = int(labels.sum())
    if n_pos == 0:
        raise ValueError("labels hold no positive voxel: precision and recall are undefined")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each tie group
    tp, fp = tp[last], fp[last]
    if return_thresholds:
        return tp / (tp + fp), tp / n_pos, s[last]
    return tp / (tp + fp), tp / n_pos


def average_precision(scores, labels) -> float:
    """Average precision, ``sum_i (R_i - R_{i-1}) P_i`` over the thresholds (no interpolation)."""
    precision, recall = precision_recall_curve(scores, labels)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_at_recall(scores, labels, recall: float) -> float:
    """Precision at the highest threshold whose recall reaches ``recall`` (0 < recall <= 1)."""
    return _at_recall(scores, labels, recall)[0]


def threshold_at_recall(scores, labels, recall: float) -> float:
    """The highest score threshold whose recall reaches ``recall`` (0 < recall <= 1): the voxels with
    ``score >= threshold`` are the ones :func:`precision_at_recall` judges."""
    return _at_recall(scores, labels, recall)[1]


def _at_recall(scores, labels, recall: float) -> tuple[float, float]:
    """(precision, threshold) at the highest threshold whose recall reaches ``recall``."""
    if not 0 < recall <= 1:
        raise ValueError(f"recall={recall!r} must lie in (0, 1]")
    precision, rec, thresholds = precision_recall_curve(scores, labels, return_thresholds=True)
    i = int(np.argmax(rec >= recall - 1e-12))
    return float(precision[i]), float(thresholds[i])
