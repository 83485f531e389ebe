"""benchmarks/bench_field_shortfall.py: voxels labelled by the most massive halo centred in them, and the
classification at recall 0.90 split over those labels, against hand-built meshes."""
import sys

import numpy as np
import pytest
from repo_files import REPO, load_module


@pytest.fixture(scope="module")
def shortfall():
    pytest.importorskip("torch")
    sys.path.insert(0, str(REPO / "benchmarks"))  # the script imports its sibling bench_field, as when run
    try:
        yield load_module("benchmarks/bench_field_shortfall.py")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_host_mesh_keeps_the_most_massive_halo_and_bins_it(shortfall, tmp_path):
    # two halos in voxel (0, 0, 0) of a 4^3 mesh on a 4 h^-1 Mpc box, one in (3, 2, 1)
    np.savez(tmp_path / "halos.npz", mass=np.array([10 ** 12.2, 10 ** 14.3, 10 ** 11.5]),
             centre=np.array([[0.2, 0.3, 0.9], [0.5, 0.5, 0.5], [3.5, 2.5, 1.5]]))
    host, log_mass, voxel = shortfall.host_mass_mesh(tmp_path / "halos.npz", 4.0, 4)
    assert host[0, 0, 0] == pytest.approx(14.3) and host[3, 2, 1] == pytest.approx(11.5)
    assert np.isneginf(host).sum() == 62
    np.testing.assert_array_equal(voxel, [0, 0, (3 * 4 + 2) * 4 + 1])
    bins = shortfall.voxel_bins(host)
    names = shortfall.bin_names()
    assert names[bins[0, 0, 0]] == "14-16" and names[bins[3, 2, 1]] == "11-12" and names[bins[1, 1, 1]] == "no halo"
    mask = shortfall.neighbourhood_mask(np.array([0]), 4)
    assert mask.sum() == 27 and mask[3, 3, 3] and mask[1, 0, 3] and not mask[2, 0, 0]


def test_classification_by_bin_splits_the_recall_090_selection(shortfall):
    rng = np.random.default_rng(0)
    n = 16
    bins = rng.integers(0, len(shortfall.MASS_EDGES), (n, n, n))
    truth = (rng.random((n, n, n)) < 0.05 + 0.1 * bins).astype(np.int32)
    score = truth + rng.random((n, n, n))  # ranks every occupied voxel first: recall 0.9 needs no empty one
    out = shortfall.classification_by_bin(score, [truth], bins)
    occupied = truth >= 1
    np.testing.assert_allclose(out["share_of_positives"],
                               np.bincount(bins[occupied], minlength=len(shortfall.MASS_EDGES)) / occupied.sum())
    np.testing.assert_allclose(np.nansum(out["recall"] * out["share_of_positives"]), 0.9, atol=1 / occupied.sum())
    np.testing.assert_array_equal(np.nan_to_num(out["precision"], nan=1.0), 1.0)
    assert np.sum(out["selected"]) == pytest.approx(np.nansum(out["recall"] * out["share_of_positives"]))
