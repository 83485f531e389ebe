"""Post-hoc count calibration of a painter: per-point corrections, the fit, and its use at paint time."""
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")


def test_point_corrections_match_the_requested_numbers():
    from iaemu_likelihood.training.field_calibration import point_corrections

    rng = np.random.default_rng(0)
    p, mu = rng.uniform(0, 0.2, 5000), rng.uniform(0, 2, 5000)
    b, log_s = point_corrections(p, mu, n_occupied=300.0, n_gal=700.0)
    logit = np.log(p / (1 - p)) + b
    pb = 1 / (1 + np.exp(-logit))
    assert pb.sum() == pytest.approx(300.0, rel=1e-6)
    assert np.sum(pb * (1 + np.exp(log_s) * mu)) == pytest.approx(700.0, rel=1e-6)
    # with the shapes and a pair count: the log ratio of the truth's pairs to the painter's
    r = rng.uniform(0.5, 5, 5000)
    b2, log_s2, log_q = point_corrections(p, mu, 300.0, 700.0, r=r, n_pairs=3000.0)
    assert (b2, log_s2) == (b, log_s)
    m = np.exp(log_s) * mu
    assert np.exp(log_q) * np.sum(pb * (2 * m + m ** 2 + m ** 2 / r)) == pytest.approx(3000.0, rel=1e-6)


def test_dispersion_for_pairs_meets_reachable_pair_counts():
    from iaemu_likelihood.field.network import DISPERSION_SCALE_RANGE, dispersion_for_pairs, expected_pairs

    rng = np.random.default_rng(1)
    p, mu, r = rng.uniform(0, 0.2, 1000), rng.uniform(0, 2, 1000), rng.uniform(0.5, 5, 1000)
    base = expected_pairs(p, mu, r)
    for factor in (0.9, 1.0, 1.7):
        t = dispersion_for_pairs(p, mu, r, factor * base)
        assert expected_pairs(p, mu, r / t) == pytest.approx(factor * base, rel=1e-9)
    # fewer pairs than a Poisson count gives: the smallest dispersion, never a negative one
    assert dispersion_for_pairs(p, mu, r, 1.0) == DISPERSION_SCALE_RANGE[0]


def test_fit_and_apply_calibration(tmp_path):
    from test_field_train import _write_box

    from iaemu_likelihood.field import GalaxyPainter
    from iaemu_likelihood.field.testing import SYNTHETIC_BOUNDS, write_synthetic_painter
    from iaemu_likelihood.training.field_calibration import fit_calibration, write_calibration
    from iaemu_likelihood.training.field_data import HOD_NAMES, load_density, load_galaxies

    box = tmp_path / "box_0"
    _write_box(box, 0, clustered=True)  # more same-voxel pairs than a Poisson count
    folder = write_synthetic_painter(tmp_path / "painter", n_mesh=16, box_size=16.0)
    meta = json.loads((folder / "painter.json").read_text())
    assert list(SYNTHETIC_BOUNDS) == list(HOD_NAMES) and meta.get("calibration") is None
    assert "log_pair_scale" not in fit_calibration(GalaxyPainter.load(folder), [box], mass_function=False)
    calibration = fit_calibration(GalaxyPainter.load(folder), [box], mass_function=False, pairs=True)
    assert calibration["n_points"] == 3 and len(calibration["logit_offset"]) == 6
    write_calibration(folder, calibration)
    painter = GalaxyPainter.load(folder)  # checksums were refreshed
    rho, _ = load_density(box, 16)
    gals = load_galaxies(box, "train")
    # 3 points and 6 coefficients: the linear fit is exact, so each point's galaxy number is matched
    reached = []
    for i in range(3):
        hod = dict(zip(HOD_NAMES, gals.hod[i].tolist()))
        expected = np.mean([len(gals.positions(i, r)) for r in range(2)])
        assert painter.paint(rho, hod, mode="mean").sum() == pytest.approx(expected, rel=1e-3)
        # and so is its number of same-voxel galaxy pairs, sum p E[N (N - 1) | N >= 1]
        pred = painter.predict(rho, hod)
        m = pred["mu"].astype(np.float64)
        pairs = np.sum(pred["p"] * (2 * m + m ** 2 + m ** 2 / pred["r"]))
        want = np.mean([np.sum(c * (c - 1.0)) for c in (gals.counts(i, r, 16) for r in range(2))])
        if want > np.sum(pred["p"] * (2 * m + m ** 2)) * 1.01:  # reachable with a negative binomial
            reached.append(i)
            assert pairs == pytest.approx(want, rel=1e-3)
    assert reached, "no point had a pair count a negative binomial can reach: the check above did not run"
