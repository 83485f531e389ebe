"""Host mass function across the suite: tabulated n(>M) per (box, z), interpolated (issue 15)."""
import numpy as np
import pytest

from iaemu_likelihood.hod import number_density, validate_mass_function
from iaemu_likelihood.training.mass_function import (MassFunctionInterpolator, MassFunctionTable,
                                                      MassFunctionTableError, load_table, save_table)

VOLUME = 125.0 ** 3
GRID = np.arange(11.36, 15.6, 0.02)
Z = np.array([0.0, 0.5, 1.0])
#: a 5 x 5 design over the suite's range
OMEGA_M, SIGMA8 = (a.ravel() for a in np.meshgrid(np.linspace(0.25, 0.36, 5), np.linspace(0.72, 0.92, 5)))
#: interpolation error allowed on a smooth synthetic table inside the 5 x 5 design, in log10 n, where a
#: box holds at least one halo (measured: 3e-4 at 10^12, 5e-3 where a box holds ~20 halos)
LOG_TOL = 1e-2
THETA = {"logMmin": 12.0, "sigma_logM": 0.3, "logM0": 12.0, "logM1": 13.3, "alpha": 1.0}


def synthetic_log_n(omega_m, sigma8, z, log_m=GRID):
    """A smooth Schechter-like log10 n(>M): amplitude and cut-off mass grow with Omega_m and
    sigma_8 and fall with z."""
    m_star = 13.6 + 2.5 * np.log10(sigma8 / 0.8) + 1.0 * np.log10(omega_m / 0.3) - 0.6 * z
    return (-2.4 + np.log10(omega_m / 0.3) - 0.9 * (log_m - 11.36)
            - 0.43 * 10.0 ** (log_m - m_star))


def synthetic_table():
    values = np.array([[synthetic_log_n(om, s8, z) for z in Z] for om, s8 in zip(OMEGA_M, SIGMA8)])
    return MassFunctionTable(log10_mass=GRID, omega_m=OMEGA_M, sigma8=SIGMA8, z=Z, log10_n_above=values,
                             volume=VOLUME, provenance={"suite": "synthetic"})


def test_exact_at_the_boxes_and_close_between_them():
    interp = MassFunctionInterpolator(synthetic_table())
    np.testing.assert_allclose(interp.log10_n_above(OMEGA_M[7], SIGMA8[7], 0.5),
                               synthetic_log_n(OMEGA_M[7], SIGMA8[7], 0.5), atol=1e-8)
    rng = np.random.default_rng(3)
    for om, s8 in zip(rng.uniform(0.26, 0.35, 5), rng.uniform(0.74, 0.90, 5)):
        for z in (0.0, 1.0):
            truth = synthetic_log_n(om, s8, z)
            populated = truth > np.log10(1.0 / VOLUME)  # where a box holds at least one halo
            np.testing.assert_allclose(interp.log10_n_above(om, s8, z)[populated], truth[populated], atol=LOG_TOL)


def test_linear_in_z_between_snapshots():
    interp = MassFunctionInterpolator(synthetic_table())
    lo, hi = interp.log10_n_above(0.3, 0.8, 0.5), interp.log10_n_above(0.3, 0.8, 1.0)
    np.testing.assert_allclose(interp.log10_n_above(0.3, 0.8, 0.8), 0.4 * lo + 0.6 * hi, rtol=1e-12)


def test_binned_mass_function_sums_to_the_cumulative_density():
    interp = MassFunctionInterpolator(synthetic_table())
    mf = validate_mass_function(interp.mass_function(0.31, 0.83, 0.2))
    assert np.all(mf["counts"] >= 0)
    n_total = 10.0 ** interp.log10_n_above(0.31, 0.83, 0.2)[0] - 0.5 / VOLUME
    assert mf["counts"].sum() / VOLUME == pytest.approx(n_total, rel=1e-3)
    n_gal = number_density(THETA, mf)
    assert 1e-4 < n_gal < n_total * 3  # centrals at most n(>M); satellites add a fraction
    # more structure (larger sigma_8) -> more hosts above 10^12 -> more galaxies
    assert number_density(THETA, interp.mass_function(0.31, 0.9, 0.2)) > n_gal


def test_refuses_redshift_outside_and_too_few_boxes():
    table = synthetic_table()
    interp = MassFunctionInterpolator(table)
    with pytest.raises(MassFunctionTableError, match=r"z = 1.5; the table covers z in \[0, 1\]"):
        interp.log10_n_above(0.3, 0.8, 1.5)
    with pytest.raises(MassFunctionTableError, match="Omega_m = nan"):
        interp.log10_n_above(float("nan"), 0.8, 0.5)
    few = MassFunctionTable(table, omega_m=OMEGA_M[:2], sigma8=SIGMA8[:2], log10_n_above=table["log10_n_above"][:2])
    with pytest.raises(MassFunctionTableError, match="at least 3"):
        MassFunctionInterpolator(few)


def test_table_round_trip_and_damaged_file(tmp_path):
    path = save_table(tmp_path / "mf.npz", synthetic_table())
    table = load_table(path)
    np.testing.assert_array_equal(table["log10_n_above"], synthetic_table()["log10_n_above"])
    assert table["provenance"] == {"suite": "synthetic"} and table["volume"] == VOLUME
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(MassFunctionTableError, match="cannot be read"):
        load_table(path)


def test_table_from_a_tiny_suite(tmp_path):
    """tabulate_suite on catalogs iaemu build-suite would leave (see test_generate_suite)."""
    from iaemu_likelihood.training.mass_function import tabulate_suite
    from test_generate_suite import MIN_MASS, _build, _config, _suite

    suite = _suite(tmp_path)
    for name in ("a", "b", "c"):
        _build(suite, name)
    config = _config(tmp_path, suite, boxes="all")
    table = tabulate_suite(config.suite)
    assert table["provenance"]["boxes"] == ["a", "b", "c"] and table["z"].tolist() == [0.0, 1.0]
    assert table["log10_mass"][0] == pytest.approx(np.log10(MIN_MASS))
    catalog = config.point_catalog(0)
    expected = np.sum(catalog.host_log10_mass() > table["log10_mass"][0]) / catalog.box_size ** 3
    assert 10.0 ** table["log10_n_above"][0, 0, 0] == pytest.approx(expected)
    interp = MassFunctionInterpolator(table)
    mf = interp.mass_function(0.28, 0.8, 0.0)  # box a, z = 0: the interpolation is exact there
    hosts = catalog.host_log10_mass()
    inside = np.sum((hosts > table["log10_mass"][0]) & (hosts <= table["log10_mass"][-1]))
    assert mf["counts"].sum() == pytest.approx(inside - 0.5, abs=1e-6)
