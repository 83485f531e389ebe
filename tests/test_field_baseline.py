"""Local-bias baseline: smoothing and recovery of a known lambda(density)."""
import numpy as np
import pytest

from iaemu_likelihood.training.field_baseline import fit_local_bias, smooth

N, BOX = 24, 24.0


def test_smoothing_conserves_mass_and_spreads_a_spike():
    rho = np.zeros((N,) * 3)
    rho[3, 4, 5] = N ** 3
    s = smooth(rho, BOX, 2.0)
    assert s.sum() == pytest.approx(rho.sum(), rel=1e-12)
    assert s[3, 4, 5] < rho[3, 4, 5] / 10 and s[3, 4, 5] == s.max()
    # Gaussian profile: the variance along x is radius^2 (voxel = 1 h^-1 Mpc)
    x = (np.arange(N) - 3 + N // 2) % N - N // 2
    prof = s.sum(axis=(1, 2)) / s.sum()
    assert np.sum(prof * x ** 2) == pytest.approx(4.0, rel=1e-3)
    np.testing.assert_array_equal(smooth(rho, BOX, 0.0), rho)


def test_recovers_a_known_bias_function_and_the_galaxy_number():
    rng = np.random.default_rng(0)
    rhos = [rng.lognormal(0.0, 0.8, (N,) * 3) for _ in range(2)]
    truth = lambda rho: 0.02 * rho ** 1.5  # noqa: E731
    counts = [[rng.poisson(truth(r)) for _ in range(3)] for r in rhos]
    model = fit_local_bias(rhos, counts, BOX / N, smoothings=(0.0, 2.0))
    assert model.radius == 0.0  # the truth is local: no smoothing fits best
    test = rng.lognormal(0.0, 0.8, (N,) * 3)
    lam = model.mean(test)
    assert lam.sum() == pytest.approx(truth(test).sum(), rel=0.05)
    dense = test > np.quantile(test, 0.99)
    assert np.mean(lam[dense]) == pytest.approx(np.mean(truth(test)[dense]), rel=0.2)
    assert model.sample(test, np.random.default_rng(1)).sum() == pytest.approx(lam.sum(), rel=0.1)
