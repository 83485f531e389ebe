"""Splits by design point."""
import numpy as np
import pytest

from iaemu_likelihood.training.splits import Split, check_split, split_points


def test_split_is_a_seeded_partition():
    s = split_points(100, val_fraction=0.1, test_fraction=0.2, seed=3)
    check_split(s, 100)
    assert (s.train.size, s.val.size, s.test.size) == (70, 10, 20)
    again = split_points(100, 0.1, 0.2, seed=3)
    for a, b in zip((s.train, s.val, s.test), (again.train, again.val, again.test)):
        np.testing.assert_array_equal(a, b)
    other = split_points(100, 0.1, 0.2, seed=4)
    assert not np.array_equal(s.val, other.val)


def test_small_fractions_get_a_point_and_errors():
    s = split_points(5, val_fraction=0.01)
    assert s.val.size == 1 and s.test.size == 0
    with pytest.raises(ValueError):
        split_points(2, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError):
        split_points(10, val_fraction=-0.1)


def test_check_split_rejects_overlap():
    with pytest.raises(ValueError, match="overlap"):
        check_split(Split(np.array([0, 1]), np.array([1]), np.array([], dtype=int)), 3)
    with pytest.raises(ValueError, match="cover"):
        check_split(Split(np.array([0]), np.array([1]), np.array([], dtype=int)), 3)
