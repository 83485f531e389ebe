"""Occupancy samplers of the painter (``iaemu_likelihood.field.sampling``): every voxel keeps its
probability, peak groups hold floor or ceil of their summed probability, seeds reproduce."""
import numpy as np
import pytest

from iaemu_likelihood.field.sampling import (OCCUPANCY, P_GROUP_MIN, peak_groups, sample_counts,
                                             sample_occupancy)


def _peaked_field(n=12, seed=0):
    """A smooth-ish probability field with isolated peaks spread over neighbouring voxels."""
    rng = np.random.default_rng(seed)
    p = np.full((n, n, n), 1e-4)
    for centre in rng.integers(0, n, (20, 3)):
        for offset, value in (((0, 0, 0), 0.5), ((1, 0, 0), 0.3), ((0, -1, 0), 0.2)):
            idx = tuple((centre + offset) % n)
            p[idx] = max(p[idx], value)
    return p.astype(np.float32)


def test_peak_groups_join_neighbours_to_their_maximum():
    p = np.zeros((6, 6, 6), np.float32)
    p[2, 2, 2], p[3, 2, 2], p[2, 1, 2] = 0.6, 0.3, 0.2  # one peak and two neighbours
    p[5, 5, 5], p[0, 5, 5] = 0.4, 0.35  # across the periodic boundary
    voxels, groups = peak_groups(p, reach=1)
    by_voxel = dict(zip(map(tuple, np.column_stack(np.unravel_index(voxels, p.shape))), groups))
    peak = np.ravel_multi_index((2, 2, 2), p.shape)
    assert by_voxel[(3, 2, 2)] == by_voxel[(2, 1, 2)] == by_voxel[(2, 2, 2)] == peak
    assert by_voxel[(0, 5, 5)] == by_voxel[(5, 5, 5)] == np.ravel_multi_index((5, 5, 5), p.shape)
    assert voxels.size == 5  # the zero voxels are not grouped
    # reach 0: every voxel is its own group
    voxels0, groups0 = peak_groups(p, reach=0)
    np.testing.assert_array_equal(voxels0, groups0)


@pytest.mark.parametrize("occupancy", OCCUPANCY)
def test_every_voxel_keeps_its_probability(occupancy):
    p = _peaked_field()
    rng = np.random.default_rng(1)
    draws = np.array([sample_occupancy(p, rng, occupancy) for _ in range(3000)])
    frequency = draws.mean(0)
    sigma = np.sqrt(p * (1 - p) / len(draws))
    high = p > 0.05
    assert np.all(np.abs(frequency[high] - p[high]) < 5 * sigma[high])
    assert frequency.sum() == pytest.approx(p.sum(), rel=0.02)


def test_peak_groups_draw_floor_or_ceil_of_their_sum():
    p = _peaked_field()
    voxels, groups = peak_groups(p)
    rng = np.random.default_rng(2)
    for _ in range(50):
        occupied = sample_occupancy(p, rng, "peak_groups").ravel()[voxels]
        counts = np.bincount(np.unique(groups, return_inverse=True)[1], weights=occupied)
        sums = np.bincount(np.unique(groups, return_inverse=True)[1], weights=p.ravel()[voxels])
        assert np.all((counts >= np.floor(sums - 1e-9)) & (counts <= np.ceil(sums + 1e-9)))


def test_grouping_lowers_the_variance_of_peak_counts():
    p = _peaked_field()
    voxels, groups = peak_groups(p)
    inverse = np.unique(groups, return_inverse=True)[1]
    rng = np.random.default_rng(3)
    variances = {}
    for occupancy in OCCUPANCY:
        counts = np.array([np.bincount(inverse, weights=sample_occupancy(p, rng, occupancy).ravel()[voxels])
                           for _ in range(400)])
        variances[occupancy] = counts.var(0).sum()
    assert variances["peak_groups"] < 0.5 * variances["independent"]


def test_seeds_reproduce_and_counts_follow_occupancy():
    p = _peaked_field()
    mu = np.full_like(p, 0.5)
    r = np.full_like(p, 2.0)
    a = sample_counts(p, mu, r, np.random.default_rng(4))
    np.testing.assert_array_equal(a, sample_counts(p, mu, r, np.random.default_rng(4)))
    assert a.dtype == np.int32 and a.min() >= 0
    np.testing.assert_array_equal(a >= 1, sample_occupancy(p, np.random.default_rng(4)))


def test_bad_occupancy_and_shapes_are_named():
    p = _peaked_field()
    with pytest.raises(ValueError, match="occupancy='halo'"):
        sample_occupancy(p, np.random.default_rng(0), "halo")
    with pytest.raises(ValueError, match="cubic"):
        peak_groups(p[:, :, :5])
    with pytest.raises(ValueError, match="reach=-1"):
        peak_groups(p, reach=-1)
    assert P_GROUP_MIN < 0.01
