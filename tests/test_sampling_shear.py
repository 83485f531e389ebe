"""The ensemble's sheared coordinates (:mod:`iaemu_likelihood.sampling.shear`): a bijection with unit
Jacobian that follows the curve of constant central density."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from iaemu_likelihood.errors import ConfigError
from iaemu_likelihood.sampling.shear import CentralShear, central_density
from test_sampling import shipped  # noqa: F401  (the shipped-weights posterior fixture)


def _fake_posterior(names, mass_function, low, high):
    """What CentralShear.build reads of a posterior: names, emulator, full, support."""
    emulator = SimpleNamespace(derived_names=("n_gal", "f_sat"),
                               host_mass_function=lambda full: mass_function)
    d = len(names)
    support = SimpleNamespace(low=np.asarray(low, float), high=np.asarray(high, float),
                              floor=np.full(d, -np.inf))
    return SimpleNamespace(names=tuple(names), emulator=emulator, full=lambda t: t, support=support)


def test_curve_of_a_power_law_mass_function():
    """For dn/dlog10 M ~ M^-beta the constant-n_cen curve is logMmin = c + beta ln10 sigma^2 / 4."""
    beta = 1.3
    logm = np.arange(8.0, 18.0, 0.002)
    mass_function = {"mean_log10_mass": logm, "counts": 1e6 * 10.0 ** (-beta * (logm - 12.0))}
    post = _fake_posterior(["logMmin", "sigma_logM"], mass_function, [11.0, 0.05], [13.0, 0.8])
    shear = CentralShear.build(post, np.array([12.0, 0.3]))
    expected = beta * math.log(10.0) * (shear.sigma_grid ** 2 - 0.3 ** 2) / 4.0
    np.testing.assert_allclose(shear.shift, expected, atol=2e-4)
    assert shear.reference["sigma_logM"] == 0.3 and shear.reference["logMmin"] == 12.0


def test_shear_is_a_bijection_with_unit_jacobian(shipped):  # noqa: F811
    post, _ = shipped
    shear = CentralShear.build(post, post.support.to_theta(np.zeros(post.dim)))
    assert shear is not None and np.abs(shear.shift).max() > 0.05
    rng = np.random.default_rng(5)
    theta = post.support.to_theta(rng.normal(size=(50, post.dim)))
    np.testing.assert_allclose(shear.to_theta(shear.to_sampling(theta)), theta, rtol=0, atol=1e-12)
    h = 1e-6
    for point in theta[:5]:
        u = shear.to_sampling(point)
        jac = np.column_stack([(shear.to_theta(u + h * e) - shear.to_theta(u - h * e)) / (2 * h)
                               for e in np.eye(post.dim)])
        assert np.linalg.det(jac) == pytest.approx(1.0, abs=1e-6)


def test_sheared_line_keeps_the_central_density(shipped):  # noqa: F811
    """Points with the reference's u (any sigma_logM) have the reference's central density."""
    post, _ = shipped
    reference = post.support.to_theta(np.zeros(post.dim))
    shear = CentralShear.build(post, reference)
    mass_function = post.emulator.host_mass_function(post.full(reference))
    u = np.tile(reference, (len(shear.sigma_grid), 1))
    u[:, shear.sigma] = shear.sigma_grid
    theta = shear.to_theta(u)
    density = central_density(theta[:, shear.pivot], theta[:, shear.sigma], mass_function)
    np.testing.assert_allclose(density, shear.reference["n_cen"], rtol=1e-9)


def test_no_shear_without_both_central_parameters():
    mass_function = {"mean_log10_mass": np.array([12.0]), "counts": np.array([1.0])}
    post = _fake_posterior(["logMmin", "alpha"], mass_function, [11.0, 0.5], [13.0, 1.5])
    assert CentralShear.build(post, np.array([12.0, 1.0])) is None
    post = _fake_posterior(["logMmin", "sigma_logM"], mass_function, [11.0, 0.05], [13.0, 0.8])
    post.emulator.derived_names = ()
    assert CentralShear.build(post, np.array([12.0, 0.3])) is None


def test_host_mass_function_is_the_weights(shipped):  # noqa: F811
    post, _ = shipped
    emulator = post.emulator
    theta = post.full(post.support.to_theta(np.zeros(post.dim)))
    mf = emulator.host_mass_function(theta)
    raw = emulator.halo_mass_function
    keep = np.asarray(raw["counts"]) > 0
    np.testing.assert_array_equal(mf["counts"], np.asarray(raw["counts"])[keep])
    np.testing.assert_array_equal(mf["mean_log10_mass"], np.asarray(raw["mean_log10_mass"])[keep])
    with pytest.raises(ConfigError, match="no host mass function"):
        _without_derived(emulator).host_mass_function(theta)


def _without_derived(emulator):
    """A shallow copy of an emulator whose weights offer no derived parameters."""
    import copy

    clone = copy.copy(emulator)
    clone.derived_names = ()
    return clone


def test_unconstrained_shear_for_nuts(shipped):  # noqa: F811
    """NUTS's coordinates: z_logMmin = w_logMmin + h(w_sigma); a bijection with unit Jacobian whose
    h follows the constant-central-density curve (in z) and vanishes at the reference point."""
    from iaemu_likelihood.sampling.shear import UnconstrainedShear

    post, _ = shipped
    z_ref = np.zeros(post.dim)
    central = CentralShear.build(post, post.support.to_theta(z_ref))
    shear = UnconstrainedShear.build(post, central, z_ref)
    assert shear is not None and abs(shear.h(z_ref[shear.sigma])) < 1e-3
    rng = np.random.default_rng(9)
    w = rng.normal(size=(40, post.dim))
    np.testing.assert_allclose(shear.to_w(shear.to_z(w)), w, atol=1e-12)
    jac = shear.jacobian_w_of_z(w[0])
    assert np.linalg.det(jac) == pytest.approx(1.0)
    # along w_logMmin = const the central density stays within 5% of the reference (a quadratic
    # fit of the curve), at least 2x closer than along z_logMmin = const
    zs = np.tile(z_ref, (5, 1))
    zs[:, shear.sigma] = np.linspace(-1.5, 1.5, 5)
    mass_function = post.emulator.host_mass_function(post.full(post.support.to_theta(z_ref)))
    deviation = {}
    for name, points in (("sheared", shear.to_z(zs)), ("plain", zs)):
        theta = post.support.to_theta(points)
        density = central_density(theta[:, shear.pivot], theta[:, shear.sigma], mass_function)
        deviation[name] = np.abs(density / central.reference["n_cen"] - 1.0).max()
    assert deviation["sheared"] < 0.05 and deviation["sheared"] < 0.5 * deviation["plain"]
    assert UnconstrainedShear.build(post, None, z_ref) is None
