"""n_gal and f_sat from the catalog's binned mass function agree with the populated mocks.

The held-out test set stores the galaxy counts of every mock (200 points x 10 realizations on the
shipped halo catalog); their mean must match the exact occupation sums within Poisson noise.
"""
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_SET = REPO / "training" / "data" / "test.npz"
CATALOG = REPO / "training" / "data" / "halo_catalog_pm512_L250.npz"
#: allowed deviation in units of the Poisson error of the 10-realization mean
N_SIGMA = 5.0


@pytest.fixture(scope="module")
def mocks_and_mass_function():
    from iaemu_likelihood.training.catalogs import OfflineHaloCatalog
    from iaemu_likelihood.training.dataset_io import load_dataset

    ds = load_dataset(TEST_SET)
    mf = OfflineHaloCatalog(CATALOG, min_particles=ds.provenance["halo_catalog"]["min_particles"]).mass_function()
    assert ds.provenance["halo_catalog"]["sha256"] == OfflineHaloCatalog(CATALOG).provenance["content_sha256"]
    return ds, mf


def test_number_density_matches_mock_counts(mocks_and_mass_function):
    from iaemu_likelihood.hod import number_density

    ds, mf = mocks_and_mass_function
    predicted = number_density(ds.params, mf) * mf["volume"]  # expected galaxies per mock
    measured = ds.n_gal.mean(axis=1)
    sigma = np.sqrt(predicted / ds.n_realizations)  # centrals are Bernoulli: Poisson bounds their scatter
    pull = (measured - predicted) / sigma
    assert np.all(np.abs(pull) < N_SIGMA), pull[np.abs(pull) >= N_SIGMA]
    assert abs(np.mean(pull)) < 0.5  # no bias across the 200 points


def test_satellite_fraction_matches_mock_counts(mocks_and_mass_function):
    from iaemu_likelihood.hod import number_density, satellite_fraction

    ds, mf = mocks_and_mass_function
    f_pred = satellite_fraction(ds.params, mf)
    n_pred = number_density(ds.params, mf) * mf["volume"]
    f_meas = ds.n_sat.sum(axis=1) / ds.n_gal.sum(axis=1)
    sigma = np.sqrt(f_pred * (1 - f_pred) / (n_pred * ds.n_realizations))
    pull = (f_meas - f_pred) / np.maximum(sigma, 1e-12)
    assert np.all(np.abs(pull) < N_SIGMA), pull[np.abs(pull) >= N_SIGMA]
