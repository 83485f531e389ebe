"""Power-spectrum estimator of the painter benchmark against spectra known in advance."""
import numpy as np
import pytest

from iaemu_likelihood.training.field_spectra import overdensity, power_spectra

N, BOX = 32, 64.0
CELL = (BOX / N) ** 3


def test_white_noise_has_flat_spectrum_sigma2_times_cell_volume():
    rng = np.random.default_rng(0)
    sigma = 0.3
    ps = [power_spectra(rng.normal(0, sigma, (N,) * 3), BOX).auto_a for _ in range(4)]
    mean = np.mean(ps, axis=0)
    # each shell averages many modes: the mean over all shells is within ~1% of sigma^2 V_cell
    assert np.mean(mean) == pytest.approx(sigma ** 2 * CELL, rel=0.02)
    assert np.all(np.abs(mean / (sigma ** 2 * CELL) - 1) < 0.5)


def test_coloured_gaussian_field_recovers_power_law():
    rng = np.random.default_rng(1)
    kf = 2 * np.pi / BOX
    k1 = np.fft.fftfreq(N, 1.0 / N) * kf
    kz = np.fft.rfftfreq(N, 1.0 / N) * kf
    kk = np.sqrt(k1[:, None, None] ** 2 + k1[None, :, None] ** 2 + kz[None, None, :] ** 2)
    target = lambda k: 50.0 * (k / 0.5) ** -1.5  # noqa: E731
    amp = np.sqrt(target(np.where(kk > 0, kk, kf)) / CELL)
    ratios = []
    for _ in range(6):
        white = np.fft.rfftn(rng.normal(size=(N,) * 3))
        field = np.fft.irfftn(white * amp, s=(N,) * 3, axes=(0, 1, 2))
        spec = power_spectra(field, BOX)
        ratios.append(spec.auto_a / target(spec.k))
    ratio = np.mean(ratios, axis=0)
    # shells above the first few hold hundreds of modes: the estimate is unbiased to a few percent
    assert np.all(np.abs(ratio[4:] - 1) < 0.08)
    assert np.mean(ratio[4:]) == pytest.approx(1.0, abs=0.03)


def test_poisson_points_give_shot_noise_and_r_is_one_for_identical_fields():
    rng = np.random.default_rng(2)
    n_points = 20000
    counts = np.bincount(rng.integers(N ** 3, size=n_points), minlength=N ** 3).reshape((N,) * 3)
    spec = power_spectra(overdensity(counts), BOX, overdensity(counts))
    # mode-weighted mean over the shells (the low-k shells hold few modes)
    assert np.average(spec.auto_a, weights=spec.n_modes) == pytest.approx(BOX ** 3 / n_points, rel=0.03)
    np.testing.assert_allclose(spec.r(), 1.0, atol=1e-12)
    np.testing.assert_allclose(spec.cross, spec.auto_a, rtol=1e-12)
    # first shell [k_f/2, 3k_f/2): 6 modes at k_f and 12 at sqrt(2) k_f, i.e. 9 independent +-k pairs
    assert spec.n_modes[0] == 9


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="cubic"):
        power_spectra(np.zeros((4, 4, 5)), BOX)
    with pytest.raises(ValueError, match="delta_b"):
        power_spectra(np.zeros((4, 4, 4)), BOX, np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="positive mean"):
        overdensity(np.zeros(8))
    with pytest.raises(ValueError, match="two fields"):
        power_spectra(np.zeros((4, 4, 4)), BOX).r()
