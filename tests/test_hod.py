"""Zheng07 occupations, number density and satellite fraction."""
import numpy as np
import pytest

from iaemu_likelihood.conventions import PARAM_NAMES
from iaemu_likelihood.hod import (bin_mass_function, mean_ncen, mean_nsat, number_density,
                                  satellite_fraction, validate_mass_function)

#: binned (0.002 dex) vs halo-by-halo sums
BINNED_RTOL = 2e-3
#: against halotools' own implementation
HALOTOOLS_RTOL = 1e-10
VOLUME = 100.0 ** 3
THETA = np.array([0.3, -0.2, 12.3, 0.3, 12.0, 13.4, 1.05])


@pytest.fixture(scope="module")
def halo_masses():
    """Seeded power-law host masses between 10^11 and 10^15 Msun/h (log10)."""
    rng = np.random.default_rng(42)
    u = rng.random(200_000)
    # dn/dM ~ M^-1.9: inverse-transform sampling
    a, m_lo, m_hi = -0.9, 1e11, 1e15
    return np.log10((m_lo ** a + u * (m_hi ** a - m_lo ** a)) ** (1 / a))


def test_central_occupation_values():
    assert mean_ncen(12.3, 12.3, 0.3) == pytest.approx(0.5)
    assert mean_ncen(16.0, 12.3, 0.3) == pytest.approx(1.0)
    assert mean_ncen(10.0, 12.3, 0.3) == pytest.approx(0.0, abs=1e-12)
    from math import erf

    assert mean_ncen(12.6, 12.3, 0.3) == pytest.approx(0.5 * (1 + erf(1.0)))


def test_satellite_occupation_values():
    assert mean_nsat(11.9, 12.0, 13.4, 1.05) == 0.0
    assert mean_nsat(12.0, 12.0, 13.4, 1.05) == 0.0
    m = 10 ** 14.0
    assert mean_nsat(14.0, 12.0, 13.4, 1.05) == pytest.approx(((m - 1e12) / 10 ** 13.4) ** 1.05)
    assert mean_nsat(np.array([11.0, 14.0]), 12.0, 13.4, 1.05).shape == (2,)


def test_binned_sums_match_halo_by_halo_sums(halo_masses):
    edges = np.arange(10.9, 15.1, 0.002)
    mf = bin_mass_function(halo_masses, VOLUME, edges)
    n_cen = mean_ncen(halo_masses, *THETA[[2, 3]]).sum()
    n_sat = mean_nsat(halo_masses, *THETA[[4, 5, 6]]).sum()
    assert number_density(THETA, mf) == pytest.approx((n_cen + n_sat) / VOLUME, rel=BINNED_RTOL)
    assert satellite_fraction(THETA, mf) == pytest.approx(n_sat / (n_cen + n_sat), rel=BINNED_RTOL)


def test_batch_and_mapping_inputs(halo_masses):
    mf = bin_mass_function(halo_masses, VOLUME, np.arange(10.9, 15.1, 0.05))
    batch = np.vstack([THETA, THETA + [0, 0, 0.5, 0, 0, 0, 0]])
    n = number_density(batch, mf)
    assert n.shape == (2,) and n[1] < n[0]  # a higher logMmin means fewer galaxies
    assert n[0] == pytest.approx(number_density(THETA, mf), rel=1e-12)
    mapping = dict(zip(PARAM_NAMES, THETA))
    assert isinstance(number_density(mapping, mf), float)
    assert satellite_fraction(mapping, mf) == pytest.approx(satellite_fraction(THETA, mf), rel=1e-12)
    cols = {k: batch[:, i] for i, k in enumerate(PARAM_NAMES)}
    np.testing.assert_allclose(satellite_fraction(cols, mf), satellite_fraction(batch, mf), rtol=1e-12)


def test_no_galaxies_gives_zero_satellite_fraction():
    mf = bin_mass_function(np.array([10.0, 10.1]), VOLUME, np.array([9.9, 10.05, 10.2]))
    theta = np.array([0, 0, 13.5, 0.05, 14.0, 14.8, 1.0])
    assert number_density(theta, mf) == pytest.approx(0.0, abs=1e-300)
    assert satellite_fraction(theta, mf) == 0.0


def test_bin_mass_function_counts_and_means(halo_masses):
    edges = np.arange(11.0, 15.0001, 0.1)
    mf = bin_mass_function(halo_masses, VOLUME, edges)
    inside = (halo_masses >= edges[0]) & (halo_masses < edges[-1])
    assert mf["counts"].sum() == inside.sum()
    assert np.all((mf["mean_log10_mass"] >= edges[:-1]) & (mf["mean_log10_mass"] <= edges[1:]))
    assert mf["volume"] == VOLUME


def test_validate_mass_function_errors():
    good = bin_mass_function(np.array([12.0]), VOLUME, np.array([11.0, 13.0]))
    with pytest.raises(ValueError, match="lacks \\['volume'\\]"):
        validate_mass_function({k: v for k, v in good.items() if k != "volume"})
    with pytest.raises(ValueError, match="'counts' has shape"):
        validate_mass_function({**good, "counts": np.array([1, 2])})
    with pytest.raises(ValueError, match="volume"):
        validate_mass_function({**good, "volume": 0.0})
    with pytest.raises(ValueError, match="theta has shape"):
        number_density(np.zeros(5), good)


def test_occupations_match_halotools():
    pytest.importorskip("halotools")
    from halotools.empirical_models import Zheng07Cens, Zheng07Sats

    logm = np.linspace(10.5, 15.5, 101)
    cens, sats = Zheng07Cens(), Zheng07Sats()
    cens.param_dict.update(logMmin=THETA[2], sigma_logM=THETA[3])
    sats.param_dict.update(logM0=THETA[4], logM1=THETA[5], alpha=THETA[6])
    np.testing.assert_allclose(mean_ncen(logm, THETA[2], THETA[3]),
                               cens.mean_occupation(prim_haloprop=10 ** logm), rtol=HALOTOOLS_RTOL)
    np.testing.assert_allclose(mean_nsat(logm, *THETA[4:]),
                               sats.mean_occupation(prim_haloprop=10 ** logm), rtol=HALOTOOLS_RTOL)
