"""Post-hoc epistemic calibration: known answers on constructed data, and its use by the emulator."""
import json

import numpy as np
import pytest

from iaemu_likelihood.training.calibration import coverage_of_means, fit_epistemic_scale

STATS = ("xi", "omega", "eta")


def _constructed(true_sd, reported_sd, noise_sd, n_points=4000, n_real=10, seed=0, exact_mean=False):
    """Predictions off the truth by N(0, true_sd^2), with epistemic variance reported_sd^2, and
    realizations of scatter noise_sd * sqrt(n_real) about the truth (their mean has sd noise_sd)."""
    rng = np.random.default_rng(seed)
    pred, samples = {}, {}
    for s in STATS:
        truth = rng.normal(size=(n_points, 20))
        real = truth[:, None, :] + rng.normal(scale=noise_sd * np.sqrt(n_real), size=(n_points, n_real, 20))
        if exact_mean:  # realizations scattered, but their mean is the truth
            real -= real.mean(axis=1, keepdims=True) - truth[:, None, :]
        pred[s] = truth + rng.normal(scale=true_sd, size=truth.shape)
        pred[f"{s}_epi_var"] = np.full(truth.shape, reported_sd ** 2)
        samples[s] = real
    return pred, samples


def test_coverage_of_means_counts_inside_the_interval():
    pred = np.array([0.0, 0.0, 0.0, 0.0])
    truth = np.array([0.5, 0.99, 1.01, 3.0])
    # z_68 = 0.9945: widths of 1 / 0.9945 give |err| <= 1 inside
    width_var = np.full(4, (1 / 0.994458) ** 2)
    assert coverage_of_means(pred, width_var, truth, np.zeros(4)) == pytest.approx(0.5)


@pytest.mark.parametrize("factor", [0.5, 2.0, 3.0])
def test_scale_recovers_the_true_error_variance(factor):
    """No noise in the truth: the fitted scale is (true_sd / reported_sd)^2."""
    pred, samples = _constructed(true_sd=0.1 * factor, reported_sd=0.1, noise_sd=0.0)
    for s, res in fit_epistemic_scale(pred, samples).items():
        assert res["scale"] == pytest.approx(factor ** 2, rel=0.08), s
        assert res["coverage_after"] == pytest.approx(0.68, abs=0.01)


def test_scale_accounts_for_the_noise_of_the_truth():
    """The truth mean is noisy with sd 0.1, the emulator error has sd 0.1 reported as 0.05: the
    needed epistemic variance is 0.01, i.e. scale 4 on 0.0025."""
    pred, samples = _constructed(true_sd=0.1, reported_sd=0.05, noise_sd=0.1, seed=1)
    for res in fit_epistemic_scale(pred, samples).values():
        assert res["scale"] == pytest.approx(4.0, rel=0.15)
        assert res["coverage_before"] < 0.68 - 0.05


def test_overcovering_noise_gives_the_smallest_scale_and_bad_input_is_refused():
    pred, samples = _constructed(true_sd=0.0, reported_sd=0.1, noise_sd=0.2, seed=2, exact_mean=True)
    assert all(r["scale"] == pytest.approx(1e-2) for r in fit_epistemic_scale(pred, samples).values())
    pred["xi_epi_var"][0, 0] = np.nan
    with pytest.raises(ValueError, match="xi: predictions or epistemic variances"):
        fit_epistemic_scale(pred, samples)


def test_emulator_applies_the_scale(synthetic_weights, tmp_path):
    import shutil

    from iaemu_likelihood.emulator import IAEmulator
    from iaemu_likelihood.weights_io import write_checksums

    folder = tmp_path / "scaled"
    shutil.copytree(synthetic_weights, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta.setdefault("epistemic", {})["scale"] = {"xi": 4.0, "omega": 1.0, "eta": 0.25}
    (folder / "metadata.json").write_text(json.dumps(meta))
    write_checksums(folder)
    base, scaled = IAEmulator.load(synthetic_weights), IAEmulator.load(folder)
    theta = base.reference_point
    a, b = base.predict(theta, epistemic=True), scaled.predict(theta, epistemic=True)
    np.testing.assert_allclose(b.xi_epi_var, 4.0 * a.xi_epi_var, rtol=1e-12)
    np.testing.assert_allclose(b.omega_epi_var, a.omega_epi_var, rtol=1e-12)
    np.testing.assert_allclose(b.eta_epi_var, 0.25 * a.eta_epi_var, rtol=1e-12)
    np.testing.assert_array_equal(b.vector(), a.vector())
    cov_a = base.covariance(theta, ["epistemic"])
    cov_b = scaled.covariance(theta, ["epistemic"])
    np.testing.assert_allclose(np.diag(cov_b)[:20], 4.0 * np.diag(cov_a)[:20], rtol=1e-12)


def test_error_correlation_is_recovered_and_used_by_the_covariance(synthetic_weights, tmp_path):
    """Errors built with a known correlation across bins come back (up to the shrinkage), and
    the emulator's epistemic covariance becomes E C E."""
    import shutil

    from iaemu_likelihood.emulator import IAEmulator
    from iaemu_likelihood.training.calibration import fit_epistemic_correlation
    from iaemu_likelihood.weights_io import write_checksums

    rng = np.random.default_rng(3)
    idx = np.arange(60)
    true_corr = np.exp(-np.abs(idx[:, None] - idx[None, :]) / 4.0)
    n = 6000
    err = rng.multivariate_normal(np.zeros(60), true_corr, size=n) * 0.1
    pred, samples = {}, {}
    for k, s in enumerate(STATS):
        truth = rng.normal(size=(n, 20))
        samples[s] = np.repeat(truth[:, None, :], 2, axis=1)  # noiseless truth, 2 realizations
        pred[s] = truth + err[:, 20 * k:20 * (k + 1)]
        pred[f"{s}_epi_var"] = np.full((n, 20), 0.01)
    corr = fit_epistemic_correlation(pred, samples, {s: 1.0 for s in STATS}, shrinkage=0.0)
    np.testing.assert_allclose(corr, true_corr, atol=0.05)
    shrunk = fit_epistemic_correlation(pred, samples, {s: 1.0 for s in STATS})
    assert np.linalg.eigvalsh(shrunk).min() > 0.04

    folder = tmp_path / "corr"
    shutil.copytree(synthetic_weights, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta.setdefault("epistemic", {})["correlation"] = true_corr.tolist()
    (folder / "metadata.json").write_text(json.dumps(meta))
    write_checksums(folder)
    emu = IAEmulator.load(folder)
    theta = emu.reference_point
    epi = emu.predict(theta, epistemic=True).epistemic_vector()
    cov = emu.covariance(theta, ["epistemic"])
    np.testing.assert_allclose(cov, np.sqrt(np.outer(epi, epi)) * true_corr, rtol=1e-12)
    diag_only = IAEmulator.load(synthetic_weights).covariance(theta, ["epistemic"])
    np.testing.assert_allclose(diag_only, np.diag(epi), rtol=1e-12, atol=0)
