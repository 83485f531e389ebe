"""Halo catalogs carry their snapshot's redshift and cosmology into halotools (issue 15, v2 mocks)."""
import numpy as np
import pytest

from iaemu_likelihood.training.catalogs import HaloCatalogError, OfflineHaloCatalog
from test_generate_hardening import tiny_catalog

#: the fiducial suite cosmology, as `iaemu build-suite` records it in a catalog's provenance
COSMOLOGY = {"h": 0.678, "omega_m": 0.307, "omega_b": 0.048, "sigma8": 0.823, "n_s": 0.96,
             "t_cmb": 2.7255, "n_eff": 3.046}
THETA = [0.9, 0.6, 12.0, 0.25, 11.8, 13.0, 1.0]
RBINS = [1.0, 2.0, 4.0, 8.0]
SEED = 5


def test_redshift_and_cosmology_reach_halotools(tmp_path):
    path = tiny_catalog(tmp_path / "z1.npz", redshift=1.0, simulation={"cosmology": COSMOLOGY})
    catalog = OfflineHaloCatalog(path)
    assert catalog.redshift == 1.0 and catalog.cosmology() == COSMOLOGY
    halocat = catalog.to_halotools()
    assert halocat.redshift == 1.0
    assert halocat.cosmology.Om0 == pytest.approx(0.307) and halocat.cosmology.h == pytest.approx(0.678)


def test_catalog_without_redshift_is_z0_without_cosmology(tmp_path):
    catalog = OfflineHaloCatalog(tiny_catalog(tmp_path / "old.npz"))
    assert catalog.redshift == 0.0 and catalog.cosmology() is None
    assert catalog.to_halotools().redshift == 0.0 and catalog.to_halotools().cosmology is None


@pytest.mark.parametrize("bad", [-0.5, float("nan"), "one", True])
def test_bad_redshift_is_refused_naming_the_file(tmp_path, bad):
    path = tiny_catalog(tmp_path / "bad.npz", redshift=bad)
    with pytest.raises(HaloCatalogError, match=r"bad\.npz: provenance redshift"):
        OfflineHaloCatalog(path)


def test_mocks_populate_at_the_snapshot_redshift(tmp_path):
    """halotools refuses a model whose redshift differs from the catalog's: the simulator builds
    its model at the catalog's z. At z = 0 the recorded cosmology leaves the statistics unchanged
    (positions scale with each halo's rvir; only the unused velocities see the cosmology)."""
    from iaemu_likelihood.training.forward_model import MockSimulator

    plain = MockSimulator(OfflineHaloCatalog(tiny_catalog(tmp_path / "a.npz", n_halos=1500)), RBINS)
    with_cosmo = MockSimulator(OfflineHaloCatalog(tiny_catalog(
        tmp_path / "b.npz", n_halos=1500, simulation={"cosmology": COSMOLOGY})), RBINS)
    at_z1 = MockSimulator(OfflineHaloCatalog(tiny_catalog(
        tmp_path / "c.npz", n_halos=1500, redshift=1.0, simulation={"cosmology": COSMOLOGY})), RBINS)
    a, b, c = (sim.realization(THETA, SEED) for sim in (plain, with_cosmo, at_z1))
    assert at_z1.model.redshift == 1.0 and plain.model.redshift == 0.0
    for name in ("xi", "omega", "eta"):
        np.testing.assert_array_equal(a[name], b[name])
        assert np.all(np.isfinite(c[name]))
    assert a["n_gal"] == c["n_gal"] > 0  # same occupations: the HOD does not depend on z
