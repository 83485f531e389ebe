"""iaemu_likelihood.training.correlations: the fused pair loop against halotools tpcf, ed_3d, ee_3d."""
import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("numba")
mock_observables = pytest.importorskip("halotools.mock_observables")

from iaemu_likelihood.training.correlations import (  # noqa: E402
    ia_correlations, ia_correlations_from_mock)

#: Relative tolerance against halotools (different float64 summation order only).
RTOL = 1e-8
#: Absolute floor for omega/eta values that are zero up to rounding (e.g. perfectly aligned sets).
ATOL_ROUNDING = 1e-12

LBOX = 60.0
RBINS = np.logspace(-1, np.log10(19.5), 14)  # comoving h^-1 Mpc, rbins[-1] < LBOX / 3


def _halotools(pos, ori, rbins, period):
    from halotools.mock_observables import tpcf
    from halotools.mock_observables.ia_correlations import ed_3d, ee_3d
    return (tpcf(pos, rbins, period=period),
            ed_3d(pos, ori, pos, rbins, period=period),
            ee_3d(pos, ori, pos, ori, rbins, period=period))


def _assert_matches_halotools(pos, ori, rbins=RBINS, period=LBOX):
    ours = ia_correlations(pos, ori, rbins, period)
    ref = _halotools(pos, ori, rbins, period)
    for name, a, b in zip(("xi", "omega", "eta"), ours, ref):
        assert a.shape == (len(rbins) - 1,)
        # nan (empty bins) exactly where halotools has nan
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL_ROUNDING, err_msg=name)
    return ours, ref


def _uniform(seed, n, period=LBOX):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, period, size=(n, 3)), rng.normal(size=(n, 3))


def _clustered(seed, n, n_centres=6, sigma=1.5, period=LBOX, aligned=True):
    """Gaussian blobs; orientations radial from the blob centre plus noise (non-zero omega, eta)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, period, size=(n_centres, 3))
    offset = rng.normal(0, sigma, size=(n, 3))
    pos = (centres[rng.integers(0, n_centres, n)] + offset) % period
    ori = offset / np.linalg.norm(offset, axis=1)[:, None]
    if aligned:
        ori = ori + 0.5 * rng.normal(size=(n, 3))
    else:
        ori = rng.normal(size=(n, 3))
    return pos, ori


def test_uniform_catalog_matches_halotools():
    pos, ori = _uniform(1, 1500)
    _assert_matches_halotools(pos, ori)


def test_clustered_catalog_matches_halotools_with_nonzero_alignment():
    pos, ori = _clustered(2, 1500)
    (xi, omega, eta), _ = _assert_matches_halotools(pos, ori)
    # radial alignment inside blobs (sigma = 1.5 h^-1 Mpc): strong signal at a few h^-1 Mpc
    assert xi[7] > 10 and omega[8] > 0.05 and eta[0] > 0.05


def test_random_orientations_in_clustered_catalog_match_halotools():
    pos, ori = _clustered(3, 1200, aligned=False)
    _assert_matches_halotools(pos, ori)


def test_parallel_orientations_give_eta_two_thirds():
    pos, _ = _clustered(4, 800)
    ori = np.tile([0.0, 0.0, 3.0], (len(pos), 1))  # not unit length: normalised inside
    (xi, omega, eta), _ = _assert_matches_halotools(pos, ori)
    np.testing.assert_allclose(eta, 2.0 / 3.0, rtol=1e-12)


def test_points_on_box_faces_and_edges_match_halotools():
    rng = np.random.default_rng(5)
    pos = rng.uniform(0, LBOX, size=(600, 3))
    pos[:100, 0] = 0.0
    pos[100:200, 1] = LBOX
    pos[200:250] = rng.choice([0.0, LBOX], size=(50, 3))  # box corners
    # pairs straddling the periodic boundary at known small separations
    pos[250:300] = pos[:50] + [LBOX - 0.37, 0.0, 0.0]  # x = LBOX - 0.37: 0.37 from x = 0
    pos[300:350, 0] = LBOX
    ori = rng.normal(size=(600, 3))
    _assert_matches_halotools(pos, ori)


def test_few_galaxies_give_halotools_empty_bin_values():
    pos = np.array([[1.0, 1.0, 1.0], [1.5, 1.2, 0.9], [30.0, 30.0, 30.0], [59.9, 1.0, 1.0]])
    ori = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    (xi, omega, eta), _ = _assert_matches_halotools(pos, ori)
    empty = ~np.isfinite(omega)
    assert empty.sum() >= len(xi) - 3
    # empty bins: DD = 0 gives xi = -1 and omega = eta = 0/0 = nan, as in halotools
    assert np.all(xi[empty] == -1.0) and np.all(np.isnan(eta[empty]))


def test_orientation_sign_flips_change_nothing():
    pos, ori = _clustered(6, 1000)
    flip = np.where(np.random.default_rng(7).random(len(pos)) < 0.5, -1.0, 1.0)
    a = ia_correlations(pos, ori, RBINS, LBOX)
    b = ia_correlations(pos, ori * flip[:, None], RBINS, LBOX)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_results_do_not_depend_on_threads_or_point_order():
    pos, ori = _clustered(8, 1000)
    one = ia_correlations(pos, ori, RBINS, LBOX, num_threads=1)
    two = ia_correlations(pos, ori, RBINS, [LBOX] * 3, num_threads=2)
    for x, y in zip(one, two):
        np.testing.assert_array_equal(x, y)  # fixed work chunks: bit-identical
    perm = np.random.default_rng(9).permutation(len(pos))
    shuffled = ia_correlations(pos[perm], ori[perm], RBINS, LBOX)
    for x, y in zip(one, shuffled):
        np.testing.assert_allclose(x, y, rtol=1e-12)


def test_periodic_translation_invariance():
    pos, ori = _clustered(10, 800)
    moved = (pos + [17.3, -5.1, 41.0]) % LBOX
    for x, y in zip(ia_correlations(pos, ori, RBINS, LBOX), ia_correlations(moved, ori, RBINS, LBOX)):
        np.testing.assert_allclose(x, y, rtol=1e-9)


def test_from_mock_reads_a_halotools_galaxy_table():
    from astropy.table import Table
    pos, ori = _clustered(11, 700)
    table = Table({"x": pos[:, 0].astype(np.float32), "y": pos[:, 1].astype(np.float32),
                   "z": pos[:, 2].astype(np.float32), "galaxy_axisA_x": ori[:, 0],
                   "galaxy_axisA_y": ori[:, 1], "galaxy_axisA_z": ori[:, 2],
                   "gal_type": ["centrals"] * len(pos)})
    out = ia_correlations_from_mock(table, RBINS, LBOX)
    assert set(out) == {"xi", "omega", "eta"}
    expected = ia_correlations(np.column_stack([table[c] for c in "xyz"]), ori, RBINS, LBOX)
    for name, value in zip(("xi", "omega", "eta"), expected):
        np.testing.assert_array_equal(out[name], value)
    del table["galaxy_axisA_y"]
    with pytest.raises(ValueError, match="galaxy_axisA_y"):
        ia_correlations_from_mock(table, RBINS, LBOX)


@pytest.mark.parametrize("kwargs, match", [
    (dict(positions=np.zeros((5, 2))), "positions must have shape"),
    (dict(positions=np.zeros((1, 3)), orientations=np.ones((1, 3))), "at least 2"),
    (dict(positions=np.full((5, 3), np.nan)), "positions must be finite"),
    (dict(positions=np.full((5, 3), LBOX + 1e-6)), r"inside the box \[0, period\]"),
    (dict(positions=np.full((5, 3), -1e-9)), r"inside the box"),
    (dict(orientations=np.ones((4, 3))), r"orientations must have shape \(n, 3\) = \(5, 3\)"),
    (dict(orientations=np.vstack([np.ones((4, 3)), np.zeros((1, 3))])), "row 4.*non-zero|non-zero.*row 4"),
    (dict(orientations=np.full((5, 3), np.inf)), "orientations must be finite"),
    (dict(rbins=[1.0, 0.5, 2.0]), "strictly increasing"),
    (dict(rbins=[0.0, 1.0, 2.0]), "strictly positive"),
    (dict(rbins=[1.0]), "at least 2"),
    (dict(rbins=[1.0, 20.0]), r"rbins\[-1\] = 20.0 must be < period/3"),
    (dict(period=-5.0), "period must be a positive"),
    (dict(period=[60.0, 60.0, 50.0]), "cubic box"),
    (dict(period=[60.0, 60.0]), "period must be a scalar"),
    (dict(num_threads=0), "num_threads must be in"),
    (dict(num_threads=1.5), "num_threads must be None or an integer"),
])
def test_invalid_inputs_raise_clear_value_errors(kwargs, match):
    args = dict(positions=np.full((5, 3), 1.0) + np.arange(5)[:, None],
                orientations=np.ones((5, 3)), rbins=[0.5, 1.0, 2.0], period=LBOX)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ia_correlations(args["positions"], args["orientations"], args["rbins"], args["period"],
                        num_threads=args.get("num_threads"))
