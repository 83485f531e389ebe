"""Evaluation metrics on constructed inputs with known answers."""
import numpy as np
import pytest

from iaemu_likelihood.training import metrics as M

TOL = 1e-12


def test_mean_abs_fractional_error_and_mask():
    true = np.array([[1.0, 2.0], [4.0, -1.0]])
    pred = np.array([[1.1, 2.0], [3.6, -1.5]])
    np.testing.assert_allclose(M.mean_abs_fractional_error(pred, true), [0.1, 0.25], atol=TOL)
    mask = np.array([[True, False], [False, False]])
    out = M.mean_abs_fractional_error(pred, true, mask)
    assert out[0] == pytest.approx(0.1) and np.isnan(out[1])


def test_significant_mask():
    true = np.array([[1.0, 0.1]])
    sigma = np.array([[1.0, 1.0]])  # sigma of the mean: 1/sqrt(9) = 1/3; 3 sigma = 1.0
    np.testing.assert_array_equal(M.significant_mask(true * 1.01, sigma, 9), [[True, False]])


def test_median_residual_sigma():
    pred = np.array([[1.0], [2.0], [-3.0]])
    true = np.zeros((3, 1))
    sigma = np.ones((3, 1))
    assert M.median_residual_sigma(pred, true, sigma)[0] == pytest.approx(2.0)
    assert M.median_residual_sigma(pred, true, sigma, absolute=False)[0] == pytest.approx(1.0)


def test_spearman_monotone_and_reversed():
    true = np.arange(10.0)[:, None].repeat(2, axis=1)
    pred = np.column_stack([true[:, 0] ** 3, -true[:, 1]])
    np.testing.assert_allclose(M.spearman_per_bin(pred, true), [1.0, -1.0])


def test_nrmse_and_smape():
    true = np.array([[1.0], [3.0]])      # std over points = 1
    pred = np.array([[2.0], [2.0]])      # rmse = 1
    assert M.nrmse(pred, true)[0] == pytest.approx(1.0)
    # smape: 2*1/3 and 2*1/5
    assert M.smape(pred, true)[0] == pytest.approx(0.5 * (2 / 3 + 2 / 5))


def test_calibration_dex():
    pred_sigma = np.array([[10.0], [1.0], [2.0]])
    true_sigma = np.array([[1.0], [1.0], [1.0]])
    assert M.calibration_dex(pred_sigma, true_sigma)[0] == pytest.approx(np.log10(2.0))


def test_coverage_gaussian_samples():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(2000, 10, 3))
    pred, sigma = np.zeros((2000, 3)), np.ones((2000, 3))
    np.testing.assert_allclose(M.coverage(pred, sigma, samples, 0.68), 0.68, atol=0.01)
    np.testing.assert_allclose(M.coverage(pred, sigma, samples, 0.95), 0.95, atol=0.005)
    # 2-D samples and doubled sigma: coverage of 2*z(0.68) = 0.954
    np.testing.assert_allclose(M.coverage(pred, 2 * sigma, samples[:, 0], 0.68), 0.954, atol=0.02)
    assert M.interval_z(0.95) == pytest.approx(1.959964, abs=1e-5)


def test_epistemic_to_aleatoric():
    out = M.epistemic_to_aleatoric(np.array([[4.0], [1.0], [9.0]]), np.ones((3, 1)))
    assert out[0] == pytest.approx(2.0)


def test_noise_floors_match_simulation():
    rng = np.random.default_rng(1)
    n_real, truth, sigma = 10, 5.0, 1.0
    means = rng.normal(truth, sigma, size=(20000, n_real)).mean(axis=1)[:, None]
    perfect = np.full_like(means, truth)
    measured = M.mean_abs_fractional_error(perfect, means)[0]
    floor = M.noise_floor_fractional(np.full_like(means, truth), np.full_like(means, sigma), n_real)[0]
    assert measured == pytest.approx(floor, rel=0.02)
    med = M.median_residual_sigma(perfect, means, np.full_like(means, sigma))[0]
    assert med == pytest.approx(M.noise_floor_median_sigma(n_real), rel=0.03)


def test_expected_log10_std_bias_matches_simulation():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(100000, 10)).std(axis=1, ddof=1)
    assert np.mean(np.log10(s)) == pytest.approx(M.expected_log10_std_bias(10), abs=1e-3)
