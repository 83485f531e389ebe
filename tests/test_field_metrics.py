"""Average precision and precision at fixed recall against hand-computed and brute-force values."""
import numpy as np
import pytest

from iaemu_likelihood.training.field_metrics import (average_precision, precision_at_recall,
                                                     precision_recall_curve, threshold_at_recall)


def test_hand_example():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, 0, 1, 0, 1], dtype=bool)
    precision, recall = precision_recall_curve(scores, labels)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert precision_at_recall(scores, labels, 0.5) == pytest.approx(2 / 3)
    assert precision_at_recall(scores, labels, 1.0) == pytest.approx(3 / 5)
    assert threshold_at_recall(scores, labels, 0.5) == 0.7  # the voxels scored >= 0.7 hold 2 of the 3
    assert threshold_at_recall(scores, labels, 1.0) == 0.5
    _, _, thresholds = precision_recall_curve(scores, labels, return_thresholds=True)
    np.testing.assert_array_equal(thresholds, scores)


def test_ties_form_one_threshold_and_match_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 400).astype(float)
    labels = rng.random(400) < 0.1 + 0.1 * scores
    precision, recall = precision_recall_curve(scores, labels)
    assert precision.size == np.unique(scores).size
    brute_ap, prev = 0.0, 0.0
    for t in np.sort(np.unique(scores))[::-1]:
        sel = scores >= t
        p, r = labels[sel].mean(), labels[sel].sum() / labels.sum()
        brute_ap += (r - prev) * p
        prev = r
    assert average_precision(scores, labels) == pytest.approx(brute_ap, rel=1e-12)


def test_perfect_and_random_rankers():
    rng = np.random.default_rng(1)
    labels = rng.random(20000) < 0.01
    assert average_precision(labels.astype(float), labels) == pytest.approx(1.0)
    assert average_precision(rng.random(labels.size), labels) == pytest.approx(labels.mean(), abs=0.01)


def test_bad_inputs():
    with pytest.raises(ValueError, match="no positive"):
        average_precision([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="NaN"):
        average_precision([np.nan, 0.2], [True, False])
    with pytest.raises(ValueError, match="recall"):
        precision_at_recall([0.1, 0.2], [True, False], 0.0)
    with pytest.raises(ValueError, match="recall=1.5"):
        threshold_at_recall([0.1, 0.2], [True, False], 1.5)
