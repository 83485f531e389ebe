"""Alignment variants (training/alignment_variants.py) and their mocks' measurement files
(training/variant_generation.py), on a tiny synthetic halo catalog."""
import json

import numpy as np
import pytest

from iaemu_likelihood.conventions import PARAM_NAMES, STATISTICS
from iaemu_likelihood.errors import ConfigError, IAEmuError

pytest.importorskip("halotools")

BOX = 40.0
PARTICLE_MASS = 1e10
N_HALOS = 400
RBINS = np.logspace(-0.7, 0.9, 6)
#: a dense sample (low logMmin, many satellites) so every bin of the tiny box has pairs
THETA = dict(zip(PARAM_NAMES, (0.6, 0.99, 11.8, 0.25, 11.5, 12.3, 1.0)))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """400 hosts of 10^12-10^14 Msun/h, uniform in a 40 h^-1 Mpc box, random major axes."""
    from iaemu_likelihood.training.catalogs import OfflineHaloCatalog, save_halo_catalog

    rng = np.random.default_rng(3)
    mass = 10 ** rng.uniform(12.0, 14.0, N_HALOS)
    axis_a = rng.normal(size=(N_HALOS, 3))
    axis_a /= np.linalg.norm(axis_a, axis=1, keepdims=True)
    axis_c = np.cross(axis_a, rng.normal(size=(N_HALOS, 3)))
    halos = {"mass": np.round(mass / PARTICLE_MASS) * PARTICLE_MASS,
             "rvir": 0.26 * (mass / 1e12) ** (1 / 3), "centre": rng.uniform(0, BOX, (N_HALOS, 3)),
             "velocity": rng.normal(0, 300, (N_HALOS, 3)), "axis_a": axis_a,
             "axis_c": axis_c / np.linalg.norm(axis_c, axis=1, keepdims=True),
             "b_to_a": np.full(N_HALOS, 0.8), "c_to_a": np.full(N_HALOS, 0.6),
             "n_particles": np.round(mass / PARTICLE_MASS).astype(int),
             "n_shape": np.round(mass / PARTICLE_MASS).astype(int)}
    path = tmp_path_factory.mktemp("ooc") / "tiny_catalog.npz"
    save_halo_catalog(path, halos, {"box_size": BOX, "particle_mass": PARTICLE_MASS})
    return OfflineHaloCatalog(path, min_particles=20)


@pytest.fixture(scope="module")
def simulators(catalog):
    from iaemu_likelihood.training.alignment_variants import VARIANTS, VariantMockSimulator

    return {v: VariantMockSimulator(catalog, v, rbins=RBINS) for v in VARIANTS}


def _host_axis_alignment(table, gal_type):
    """<(e_gal . A_host)^2> over galaxies of one type."""
    t = table[table["gal_type"] == gal_type]
    e = np.column_stack([t[f"galaxy_axisA_{c}"] for c in "xyz"])
    a = np.column_stack([t[f"halo_axisA_{c}"] for c in "xyz"])
    return float(np.mean(np.sum(e * a, axis=1) ** 2))


def test_realizations_have_the_emulator_shapes_and_are_seeded(simulators):
    n_bins = RBINS.size - 1
    for name, sim in simulators.items():
        a = sim.realization(THETA, 5)
        b = sim.realization(THETA, 5)
        for s in STATISTICS:
            assert a[s].shape == (n_bins,), (name, s)
            np.testing.assert_array_equal(a[s], b[s], err_msg=f"{name} {s} not reproducible")
        assert a["n_gal"] == a["n_cen"] + a["n_sat"] and a["n_sat"] > 100
        c = sim.realization(THETA, 6)
        assert not np.array_equal(a["omega"], c["omega"]), name
    # the same seed places the same galaxies in every variant: only orientations differ
    xi = [sim.realization(THETA, 5)["xi"] for sim in simulators.values()]
    for other in xi[1:]:
        np.testing.assert_array_equal(xi[0], other)


def test_major_axis_satellites_follow_the_host_axis(simulators):
    # mu_sat = 0.99: satellites hug the host major axis in the variant, not in the training model
    major = simulators["major_axis_satellites"].populate(THETA, 9)
    radial = simulators["in_model"].populate(THETA, 9)
    assert _host_axis_alignment(major, "satellites") > 0.8
    assert abs(_host_axis_alignment(radial, "satellites") - 1 / 3) < 0.1


def test_mass_dependent_centrals_strength_column(simulators):
    from iaemu_likelihood.training.alignment_variants import VARIANT_DEFAULTS, MU_CLIP

    sim = simulators["mass_dependent_centrals"]
    table = sim.populate(THETA, 4)
    p = VARIANT_DEFAULTS["mass_dependent_centrals"]
    cen = table["gal_type"] == "centrals"
    expected = np.clip(p["central_alignment_pivot_strength"] + p["central_alignment_mass_slope"]
                       * (np.log10(np.asarray(table["halo_mvir"][cen])) - p["central_alignment_pivot_logM"]),
                       -MU_CLIP, MU_CLIP)
    np.testing.assert_allclose(table["central_alignment_strength"][cen], expected, rtol=1e-6)
    assert np.all(table["central_alignment_strength"][~cen] == 0)
    # the model's mu_cen is unused: another value gives the same mock
    a = sim.realization(THETA, 4)
    b = sim.realization({**THETA, "mu_cen": -0.7}, 4)
    np.testing.assert_array_equal(a["omega"], b["omega"])


def test_effective_strength_of_a_flat_relation_is_the_pivot():
    from iaemu_likelihood.training.alignment_variants import effective_central_strength

    params = {"central_alignment_pivot_strength": 0.4, "central_alignment_mass_slope": 0.0}
    eff = effective_central_strength(params, 12.0, 0.3, np.linspace(11.5, 14.0, 50))
    assert eff["mean_mu"] == pytest.approx(0.4, abs=1e-12)
    assert eff["mu_of_mean_c"] == pytest.approx(0.4, abs=1e-8)


@pytest.mark.parametrize("name, params, words", [
    ("radial_and_major", None, ["alignment variant", "radial_and_major", "in_model"]),
    ("mass_dependent_centrals", {"central_alignment_mass_slope": float("nan")},
     ["central_alignment_mass_slope", "nan", "finite"]),
    ("mass_dependent_centrals", {"central_alignment_pivot_strength": 1.5},
     ["central_alignment_pivot_strength", "1.5"]),
    ("mass_dependent_centrals", {"central_alignment_pivot_logm": 12.0},
     ["central_alignment_pivot_logm", "central_alignment_pivot_logM"]),
    ("major_axis_satellites", {"central_alignment_mass_slope": 1.0}, ["central_alignment_mass_slope"]),
])
def test_bad_variants_are_named_one_line_errors(name, params, words):
    from iaemu_likelihood.training.alignment_variants import check_variant

    with pytest.raises(ConfigError) as info:
        check_variant(name, params)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_bad_strength_parameters_at_population_time():
    from iaemu_likelihood.training.alignment_variants import MassDependentCentralAlignmentStrength

    component = MassDependentCentralAlignmentStrength()
    component.param_dict["central_alignment_mass_slope"] = True
    with pytest.raises(ConfigError, match="central_alignment_mass_slope = True"):
        component.strength([1e12])
    component = MassDependentCentralAlignmentStrength()
    with pytest.raises(ConfigError, match="halo_mvir = -1.0"):
        component.strength([1e12, -1.0])
    with pytest.raises(ConfigError, match="central_alignment_pivot_logM = 30"):
        MassDependentCentralAlignmentStrength(central_alignment_pivot_logM=30)


def _fake_dataset(n_parts=4, per_part=20, seed=0):
    from iaemu_likelihood.conventions import R_EDGES
    from iaemu_likelihood.training.dataset_io import IADataset

    rng = np.random.default_rng(seed)
    shape = (n_parts, per_part, R_EDGES.size - 1)
    stats = {s: rng.normal(loc, scale, shape) for s, loc, scale in
             (("xi", 10.0, 1.0), ("omega", 0.02, 0.005), ("eta", 0.0, 0.002))}
    counts = rng.integers(1000, 2000, shape[:2])
    return IADataset(params=np.tile([list(THETA.values())], (n_parts, 1)), r_edges=R_EDGES.copy(),
                     n_gal=counts, n_cen=counts - 100, n_sat=np.full(shape[:2], 100),
                     seeds=np.arange(n_parts * per_part).reshape(shape[:2]),
                     retries=np.zeros(shape[:2], dtype=int), **stats)


def test_measurement_file_round_trip(tmp_path):
    from iaemu_likelihood.data import load_measurement
    from iaemu_likelihood.training.variant_generation import hartlap_factor, write_measurement

    ds = _fake_dataset()
    path = write_measurement(tmp_path / "m.npz", ds, {"truth": THETA, "alignment_model": {"variant": "x"}})
    m = load_measurement(path)
    vectors = np.concatenate([getattr(ds, s) for s in STATISTICS], axis=-1).reshape(-1, 60)
    np.testing.assert_array_equal(m.vector(), vectors[0])
    expected = np.cov(vectors[1:], rowvar=False) * hartlap_factor(79, 60)
    np.testing.assert_allclose(m.cov, expected, rtol=1e-12)
    assert m.metadata["truth"] == THETA
    assert m.metadata["n_covariance"] == 79 and m.metadata["data_seed"] == 0
    np.testing.assert_allclose(m.metadata["realization_mean"], vectors[1:].mean(axis=0), rtol=1e-12)
    assert json.loads(json.dumps(m.metadata)) == m.metadata


def test_measurement_needs_enough_finite_realizations(tmp_path):
    from iaemu_likelihood.training.variant_generation import hartlap_factor, measurement_from_dataset

    with pytest.raises(ValueError, match="62 realizations cannot estimate a 60x60"):
        hartlap_factor(62, 60)
    ds = _fake_dataset()
    ds.omega[0, 3, 2] = np.nan  # a failed realization is left out of the covariance
    data, cov, summary = measurement_from_dataset(ds)
    assert summary["n_covariance"] == 78 and summary["failed_realizations"] == 1
    assert np.all(np.isfinite(cov))
    ds.xi[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="data realization"):
        measurement_from_dataset(ds)


def test_parts_are_bound_to_the_variant(tmp_path, catalog, simulators, caplog):
    from iaemu_likelihood.training.variant_generation import generate_variant, variant_config

    spec = {"source": "offline", "path": str(catalog.path), "min_particles": 20}

    def config(name):
        return variant_config(simulators[name].describe(), THETA, spec, tmp_path / "mocks.npz", 1,
                              n_parts=2, per_part=2, rbins=RBINS)

    radial = config("in_model")
    assert generate_variant(radial, simulators["in_model"], max_parts=1, progress=False) is None
    with pytest.raises(ValueError, match="is not the variant"):
        generate_variant(radial, simulators["major_axis_satellites"], progress=False)
    caplog.set_level("WARNING")
    major = config("major_axis_satellites")
    path = generate_variant(major, simulators["major_axis_satellites"], progress=False)
    assert "made by another run" in caplog.text  # the in_model part was redone
    from iaemu_likelihood.training.dataset_io import load_dataset

    ds = load_dataset(path)
    assert ds.provenance["generation_binding"]["alignment_model"]["variant"] == "major_axis_satellites"
    assert ds.omega.shape == (2, 2, RBINS.size - 1)
    with pytest.raises(IAEmuError, match="another configuration or variant"):
        generate_variant(config("in_model"), simulators["in_model"], progress=False)


@pytest.mark.parametrize("variant", ["in_model", "major_axis_satellites", "mass_dependent_centrals"])
def test_out_of_model_yamls_fit_their_committed_data(variant):
    """Each yamls/out_of_model file reads its committed data file (the variant named in it, the
    emulator's 60-vector) and gives a finite log-posterior at the generating point."""
    pytest.importorskip("cobaya")
    from pathlib import Path

    from iaemu_likelihood.data import load_measurement
    from iaemu_likelihood.sampling.posterior import LIKELIHOOD, load_posterior, read_input

    repo = Path(__file__).resolve().parents[1]
    info = read_input(repo / "yamls" / "out_of_model" / f"{variant}.yaml")
    like = info["likelihood"][LIKELIHOOD]
    like["data_file"] = str(repo / like["data_file"])
    measurement = load_measurement(like["data_file"])
    assert measurement.metadata["alignment_model"]["variant"] == variant
    assert measurement.metadata["n_covariance"] >= 50
    posterior = load_posterior(info)
    assert posterior.data.size == 60 and posterior.dim == 7
    truth = measurement.metadata["truth"]
    assert np.isfinite(posterior.logpost(np.array([truth[n] for n in posterior.names])))
