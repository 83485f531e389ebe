"""Orientations of painted galaxies: the Dimroth-Watson draws (against halotools' own), the local
dark-matter axis, centrals and satellites of a painting, the painter and CLI options, bad strengths."""
import json

import numpy as np
import pytest

from iaemu_likelihood.field.orientation import (axes_around, galaxy_orientations, local_major_axes,
                                                sample_watson_cosines, watson_kappa)


def _mean_cos2(mu):
    """E[cos^2] of the Dimroth-Watson law p(t) ~ exp(tan(pi mu / 2) t^2) on [-1, 1], by quadrature."""
    t = np.linspace(0.0, 1.0, 200001)
    w = np.exp(np.tan(0.5 * np.pi * mu) * (t ** 2 - 1.0))
    return np.trapezoid(t ** 2 * w, t) / np.trapezoid(w, t)


@pytest.mark.parametrize("mu", [-0.7, -0.2, 0.0, 0.3, 0.8, 0.97])
def test_watson_cosines_follow_the_law(mu):
    cos = sample_watson_cosines(mu, 200_000, np.random.default_rng(1))
    assert np.all(np.abs(cos) <= 1) and abs(np.mean(cos)) < 0.01  # symmetric in the sign
    expected = _mean_cos2(mu)
    sigma = np.std(cos ** 2) / np.sqrt(cos.size)
    assert abs(np.mean(cos ** 2) - expected) < 5 * sigma + 1e-4


def test_limits_and_bad_strengths():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(np.abs(sample_watson_cosines(1.0, 10, rng)), 1.0)
    np.testing.assert_array_equal(sample_watson_cosines(-1.0, 10, rng), 0.0)
    assert watson_kappa(0.5) == pytest.approx(1.0)
    for bad in (1.2, -1.01, float("nan"), "strong", "0.5", True, np.bool_(False)):
        with pytest.raises(ValueError, match="mu="):
            watson_kappa(bad)
    with pytest.raises(ValueError, match="non-zero"):
        axes_around(np.zeros((2, 3)), 0.5, rng)


def test_axes_around_matches_halotools_central_alignment():
    """Same law of |cos| to the reference axis as halotools' axes_correlated_with_input_vector
    (the function CentralAlignment and RadialSatelliteAlignment draw with), hence the same convention."""
    from scipy.stats import ks_2samp

    halotools_ia = pytest.importorskip("halotools.empirical_models.ia_models.ia_model_components")
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(20_000, 3))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    for mu in (0.6, -0.5):
        ours = axes_around(ref * 2.5, mu, rng)  # any length of the reference vectors
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-12)
        theirs = halotools_ia.axes_correlated_with_input_vector(ref, p=np.full(len(ref), mu), seed=5)
        cos_ours, cos_theirs = np.abs(np.sum(ours * ref, 1)), np.abs(np.sum(theirs * ref, 1))
        assert ks_2samp(cos_ours, cos_theirs).pvalue > 1e-3
    # the azimuth is uniform: the component along any fixed perpendicular direction averages to zero
    along_z = axes_around(np.tile([0.0, 0.0, 1.0], (50_000, 1)), 0.3, rng)
    assert abs(along_z[:, 0].mean()) < 0.01 and abs(along_z[:, 1].mean()) < 0.01


def _blob(n_fine, centre, axis, lengths=(3.0, 1.0, 1.0)):
    """An anisotropic Gaussian of dark matter on a periodic mesh, long along ``axis``."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    helper = np.eye(3)[np.argmin(np.abs(axis))]
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    grid = np.arange(n_fine)
    x = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1) - np.asarray(centre, float)
    x -= n_fine * np.round(x / n_fine)
    q = sum((x @ e) ** 2 / length ** 2 for e, length in zip((axis, e1, e2), lengths))
    return 0.01 + np.exp(-0.5 * q)


def test_local_major_axis_of_an_elongated_blob():
    axis = np.array([1.0, 2.0, -0.5])
    rho = _blob(32, (13, 17, 9), axis)  # input_factor 2: voxel (6, 8, 4) holds fine cell (13, 17, 9)
    found = local_major_axes(rho, np.array([[6, 8, 4]]), input_factor=2, radius=2.5)[0]
    assert abs(found @ axis / np.linalg.norm(axis)) > 0.99
    with pytest.raises(ValueError, match="radius=0"):
        local_major_axes(rho, np.array([[6, 8, 4]]), 2, radius=0)


def test_centrals_follow_the_local_axis_and_satellites_point_away_from_the_host():
    """A painting with one peak voxel of 3 galaxies and a neighbour of 1: at strengths 1 the central
    lies along the blob's axis and each satellite along the line from the host centre to it."""
    n, f, box = 8, 4, 16.0
    axis = np.array([0.0, 1.0, 1.0])
    rho = _blob(n * f, (3 * f + 2, 4 * f + 2, 4 * f + 2), axis, lengths=(4.0, 1.2, 1.2))
    p = np.full((n, n, n), 1e-4)
    p[3, 4, 4], p[3, 4, 5] = 0.9, 0.4  # one group: (3, 4, 4) its maximum
    counts = np.zeros((n, n, n), dtype=np.int32)
    counts[3, 4, 4], counts[3, 4, 5] = 3, 1
    side = box / n
    rng = np.random.default_rng(0)
    ijk = np.array([[3, 4, 4]] * 3 + [[3, 4, 5]])
    positions = (ijk + rng.random((4, 3))) * side
    axes = galaxy_orientations(rho, p, counts, positions, mu_cen=1.0, mu_sat=1.0, box_size=box, rng=rng)
    np.testing.assert_allclose(np.linalg.norm(axes, axis=1), 1.0, rtol=1e-12)
    assert abs(axes[0] @ axis / np.linalg.norm(axis)) > 0.98
    centre = (np.array([14, 18, 18]) + 0.5) * box / (n * f)  # the blob's centre cell (CIC: cell i at (i + 1/2) h)
    for g in (1, 2, 3):
        radial = positions[g] - centre
        assert abs(axes[g] @ radial / np.linalg.norm(radial)) > 0.98
    # random strengths: unit vectors still, and a bad strength is named
    with pytest.raises(ValueError, match="mu_sat=2"):
        galaxy_orientations(rho, p, counts, positions, mu_cen=0.0, mu_sat=2, box_size=box, rng=rng)
    with pytest.raises(ValueError, match="positions has 3 galaxies, counts 4"):
        galaxy_orientations(rho, p, counts, positions[:3], mu_cen=0.0, mu_sat=0.0, box_size=box, rng=rng)


def test_painter_and_cli_write_orientations(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from iaemu_likelihood.cli import main
    from iaemu_likelihood.field import GalaxyPainter
    from iaemu_likelihood.field.testing import write_synthetic_painter

    folder = write_synthetic_painter(tmp_path / "synthetic", n_mesh=16, box_size=16.0)
    painter = GalaxyPainter.load(folder)
    rho = np.random.default_rng(0).lognormal(0.0, 1.0, (16,) * 3).astype(np.float32)
    hod = {"logMmin": 12.0, "sigma_logM": 0.3, "logM0": 12.0, "logM1": 13.3, "alpha": 1.0}
    counts, pos, axes = painter.paint(rho, hod, seed=4, alignment={"mu_cen": 0.7, "mu_sat": -0.2})
    # the same realization as without orientations (they are drawn after the positions)
    plain_counts, plain_pos = painter.paint(rho, hod, seed=4, positions=True)
    np.testing.assert_array_equal(counts, plain_counts)
    np.testing.assert_array_equal(pos, plain_pos)
    assert axes.shape == pos.shape and np.allclose(np.linalg.norm(axes, axis=1), 1.0)
    for bad, match in (({"mu_cen": 1.5, "mu_sat": 0.0}, "mu_cen=1.5"), ({"mu_cen": 0.5}, "exactly mu_cen and mu_sat"),
                       ((0.5, 0.5), "exactly mu_cen and mu_sat")):
        with pytest.raises(ValueError, match=match):
            painter.paint(rho, hod, seed=4, alignment=bad)
    with pytest.raises(ValueError, match="alignment needs mode='sample'"):
        painter.paint(rho, hod, mode="mean", alignment={"mu_cen": 0.5, "mu_sat": 0.5})
    np.savez(tmp_path / "rho.npz", density=rho)
    out = tmp_path / "cat.npz"
    argv = ["paint", "--density", str(tmp_path / "rho.npz"), "--output", str(out), "--weights", str(folder),
            "--seed", "4", "--mu-cen", "0.7", "--mu-sat", "-0.2", "--hod", *[f"{k}={v}" for k, v in hod.items()]]
    assert main(argv) == 0
    with np.load(out, allow_pickle=False) as f:
        np.testing.assert_allclose(f["orientations"], axes.astype(np.float32))
        assert json.loads(str(f["metadata"]))["alignment"] == {"mu_cen": 0.7, "mu_sat": -0.2}
    i = argv.index("--mu-sat")
    assert main(argv[:i] + argv[i + 2:]) == 1  # --mu-cen without --mu-sat: refused before painting


def test_p2_of_a_strength_and_its_inverse():
    from iaemu_likelihood.field.orientation import strength_for_p2, watson_p2

    assert watson_p2(0.0) == pytest.approx(0.0, abs=1e-6)
    assert watson_p2(1.0) == 1.0 and watson_p2(-1.0) == -0.5
    for mu in (-0.6, 0.2, 0.8, 0.97):
        cos = sample_watson_cosines(mu, 200_000, np.random.default_rng(2))
        assert watson_p2(mu) == pytest.approx(np.mean(1.5 * cos ** 2 - 0.5), abs=0.005)
        assert strength_for_p2(watson_p2(mu)) == pytest.approx(mu, abs=1e-9)
    assert strength_for_p2(2.0) == pytest.approx(1.0)


def test_central_p2_scale_weakens_the_centrals_alignment():
    """Centrals on a tube of dark matter along x: their <P2> to x is <P2>(mu_cen) times the scale."""
    from iaemu_likelihood.field.orientation import watson_p2

    n, f, box = 16, 2, 32.0
    grid = np.arange(n * f)
    _, y, z = np.meshgrid(grid, grid, grid, indexing="ij")
    rho = 0.01 + np.exp(-0.5 * ((y - 16.5) ** 2 + (z - 16.5) ** 2) / 1.5 ** 2)
    p = np.full((n, n, n), 1e-4)
    counts = np.zeros((n, n, n), dtype=np.int32)
    p[::2, 8, 8], counts[::2, 8, 8] = 0.9, 1  # isolated peaks along the tube: 8 centrals
    ijk = np.column_stack(np.nonzero(counts))
    rng = np.random.default_rng(5)
    for scale in (1.0, 0.5):
        axes = np.concatenate([galaxy_orientations(rho, p, counts, (ijk + 0.5) * 2.0, mu_cen=0.9, mu_sat=0.0,
                                                   box_size=box, rng=rng, central_p2_scale=scale)
                               for _ in range(400)])
        p2 = np.mean(1.5 * axes[:, 0] ** 2 - 0.5)
        assert p2 == pytest.approx(scale * watson_p2(0.9), abs=0.03)
    with pytest.raises(ValueError, match="central_p2_scale=0"):
        galaxy_orientations(rho, p, counts, (ijk + 0.5) * 2.0, 0.9, 0.0, box, rng, central_p2_scale=0)
