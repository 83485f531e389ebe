"""Training with cosmology and redshift inputs (emulator v2, issue 15): a tiny synthetic dataset
"over a suite" (points carrying Omega_m, sigma_8, z of their box and snapshot) trains for a few
epochs, exports weights whose layout lists the ten inputs with their training ranges, loads in
IAEmulator, keeps the alignment factorisation, and serves through Cobaya and CosmoSIS.
"""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import test_cosmology_inputs as ci
import test_extending as ext
from test_mass_function import GRID, synthetic_log_n
from iaemu_likelihood.alignment import alignment_p2_table
from iaemu_likelihood.cosmology_inputs import V2_LAYOUT
from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.errors import ConfigError, WeightsIntegrityError
from iaemu_likelihood.hod import number_density, satellite_fraction
from iaemu_likelihood.layout import DEFAULT_LAYOUT
from iaemu_likelihood.mass_function_table import MassFunctionInterpolator, MassFunctionTable
from iaemu_likelihood.training.dataset_io import (DatasetFileError, IADataset, concatenate_datasets,
                                                  input_layout, load_dataset, save_dataset)
from iaemu_likelihood.training.mass_function import MassFunctionTableError, save_table
from iaemu_likelihood.training.synthetic import make_synthetic_dataset
from iaemu_likelihood.training.train import TrainConfig, train
from iaemu_likelihood.weights import MASS_FUNCTION_TABLE_FILE

pytest.importorskip("torch")

#: agreement of the adapters with the emulator, and of the numpy mirror with the torch module
RTOL = 1e-10
#: (name, Omega_m, sigma_8) of the synthetic "boxes": the corners of the suite's range and the fiducial
BOXES = (("lo_lo", 0.25, 0.72), ("hi_lo", 0.36, 0.72), ("lo_hi", 0.25, 0.92), ("hi_hi", 0.36, 0.92),
         ("fid", 0.307, 0.823))
REDSHIFTS = (0.0, 0.5, 1.0)
#: the synthetic suite's name and host mass cut (Msun/h), in the dataset's and the table's provenance
SUITE = {"source": "suite", "suite": "synthetic_suite", "min_mass": 2.33e11}
#: agreement of a single point's n_gal, f_sat (erfc form, empty bins skipped) with the batch sums
DERIVED_RTOL = 1e-10
SMALL_FACTORISED = {"width": 16, "n_hidden": 1, "var_width": 8, "var_hidden": 1}


def suite_dataset(points_per_snapshot=8, n_realizations=4, seed=5, redshifts=REDSHIFTS, boxes=BOXES):
    """A synthetic dataset over (box, z): the synthetic HOD truth with its amplitude scaled by the
    cosmology and z (xi by A, omega by sqrt(A), eta by A; A = (sigma_8 / 0.8)^2 (Omega_m / 0.3)^0.3
    / (1 + z)), and the per-point provenance ``point_inputs`` of a dataset generated over a suite."""
    snaps = [(b, z) for b in boxes for z in redshifts]
    n = points_per_snapshot * len(snaps)
    base = make_synthetic_dataset(n, n_realizations, seed=seed)
    rows = [snaps[i // points_per_snapshot] for i in range(n)]
    omega_m = np.array([b[1] for b, _ in rows])
    sigma8 = np.array([b[2] for b, _ in rows])
    z = np.array([z for _, z in rows])
    amp = ((sigma8 / 0.8) ** 2 * (omega_m / 0.3) ** 0.3 / (1.0 + z))[:, None, None]
    provenance = dict(base.provenance, name="synthetic-suite", halo_catalog=dict(SUITE), halo_mass_function=None)
    provenance["point_inputs"] = {"box": [b[0] for b, _ in rows], "omega_m": omega_m.tolist(),
                                  "sigma8": sigma8.tolist(), "z": z.tolist(),
                                  "catalog_sha256": ["0" * 64] * n, "min_particles": [20] * n}
    return IADataset(params=base.params, xi=base.xi * amp, omega=base.omega * np.sqrt(amp), eta=base.eta * amp,
                     r_edges=base.r_edges, n_gal=base.n_gal, n_cen=base.n_cen, n_sat=base.n_sat,
                     seeds=base.seeds, retries=base.retries, provenance=provenance)


def suite_table(boxes=BOXES, redshifts=REDSHIFTS, **provenance):
    """A synthetic mass-function table of ``boxes`` x ``redshifts`` (smooth in Omega_m, sigma_8, z;
    :func:`test_mass_function.synthetic_log_n`), bound to the synthetic catalogs of :func:`suite_dataset`."""
    values = np.array([[synthetic_log_n(om, s8, z) for z in redshifts] for _, om, s8 in boxes])
    hashes = {f"{name} z={z:g}": "0" * 64 for name, _, _ in boxes for z in redshifts}
    return MassFunctionTable(log10_mass=GRID, omega_m=np.array([b[1] for b in boxes]),
                             sigma8=np.array([b[2] for b in boxes]), z=np.array(redshifts, dtype=float),
                             log10_n_above=values, volume=125.0 ** 3,
                             provenance={"suite": SUITE["suite"], "min_mass": SUITE["min_mass"],
                                         "boxes": [b[0] for b in boxes], "catalog_content_sha256": hashes,
                                         **provenance})


def _config(tmp_path, data, name, **kw):
    table = Path(data).parent / "table.npz"
    if not table.is_file():
        save_table(table, suite_table())
    base = dict(data=str(data), output=str(tmp_path / name), architecture="factorised", ensemble_size=2,
                max_epochs=3, warmup_epochs=1, patience=10, batch_size=32, reference_points=2,
                architecture_config=SMALL_FACTORISED, mass_function_table=str(table))
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def suite_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    save_dataset(folder / "train.npz", suite_dataset())
    save_dataset(folder / "test.npz", suite_dataset(points_per_snapshot=2, seed=6))
    return folder


@pytest.fixture(scope="module")
def v2_trained(suite_data, tmp_path_factory):
    config = _config(tmp_path_factory.mktemp("train"), suite_data / "train.npz", "weights")
    return train(config, restart=True, progress=False).folder


@pytest.fixture(scope="module")
def v2_emulator(v2_trained):
    return IAEmulator.load(v2_trained)


def test_the_dataset_decides_the_inputs():
    ds = suite_dataset(points_per_snapshot=2)
    layout, fixed = input_layout(ds)
    assert layout == V2_LAYOUT and fixed == {}
    inputs = ds.inputs(layout.param_names)
    assert inputs.shape == (ds.n_points, 10)
    np.testing.assert_array_equal(inputs[:, :7], ds.params)
    np.testing.assert_array_equal(inputs[:, 9], ds.provenance["point_inputs"]["z"])
    # one snapshot redshift: z is no input, and is recorded as fixed
    layout, fixed = input_layout(suite_dataset(points_per_snapshot=2, redshifts=(0.5,)))
    assert layout.param_names[7:] == ("Omega_m", "sigma_8") and fixed == {"z": 0.5}
    # a one-catalog dataset: the seven inputs, as v1
    assert input_layout(make_synthetic_dataset(4, 2))[0] == DEFAULT_LAYOUT
    with pytest.raises(DatasetFileError, match=r"input 'sigma_8' is not in it"):
        make_synthetic_dataset(4, 2).inputs(["logMmin", "sigma_8"])


def test_subset_and_concatenation_carry_the_point_inputs(tmp_path):
    ds = suite_dataset(points_per_snapshot=2)
    idx = np.array([3, 0, 17])
    sub = ds.subset(idx)
    np.testing.assert_array_equal(sub.inputs(V2_LAYOUT.param_names), ds.inputs(V2_LAYOUT.param_names)[idx])
    assert sub.provenance["point_inputs"]["box"] == [ds.provenance["point_inputs"]["box"][i] for i in idx]
    both = concatenate_datasets([ds.subset(np.arange(10)), ds.subset(np.arange(10, ds.n_points))])
    np.testing.assert_array_equal(both.inputs(V2_LAYOUT.param_names), ds.inputs(V2_LAYOUT.param_names))
    save_dataset(tmp_path / "a.npz", ds)
    assert load_dataset(tmp_path / "a.npz").provenance["point_inputs"] == ds.provenance["point_inputs"]
    with pytest.raises(ValueError, match="point_inputs"):
        concatenate_datasets([ds, dataclasses.replace(ds, provenance={k: v for k, v in ds.provenance.items()
                                                                      if k != "point_inputs"})])


def test_trained_weights_record_the_layout_and_ranges(v2_trained, v2_emulator):
    meta = json.loads((v2_trained / "metadata.json").read_text())
    assert meta["layout"] == V2_LAYOUT.to_metadata() and meta["param_names"] == list(V2_LAYOUT.param_names)
    assert v2_emulator.layout == V2_LAYOUT
    assert meta["bounds"]["Omega_m"] == [0.25, 0.36] and meta["bounds"]["sigma_8"] == [0.72, 0.92]
    assert meta["bounds"]["z"] == [0.0, 1.0]
    assert meta["normalisation"]["input"]["low"][7:] == [0.25, 0.72, 0.0]
    assert meta["training_set"]["point_inputs"] == {"boxes": sorted(b[0] for b in BOXES),
                                                    "redshifts": list(REDSHIFTS),
                                                    "inputs": ["Omega_m", "sigma_8", "z"], "fixed": {}}
    # the exported reference predictions are at ten-input points, and verify against the weights
    from iaemu_likelihood.verify import check_reference_predictions

    results = check_reference_predictions(v2_emulator, v2_trained / "reference_predictions.npz")
    assert results and all(passed for _, passed, _ in results)


def test_numpy_mirror_equals_the_torch_module_with_cosmology_inputs(v2_emulator):
    theta = ci._theta(v2_emulator)
    mean, var = ext._torch_prediction(v2_emulator, theta)
    pred = v2_emulator.predict(theta)
    np.testing.assert_allclose(pred.vector(), mean, rtol=RTOL)
    np.testing.assert_allclose(pred.variance_vector(), var, rtol=RTOL)


def test_the_alignment_factorisation_holds_at_every_cosmology(v2_emulator):
    """xi free of mu; omega affine and eta quadratic in c(mu_cen) at fixed mu_sat, cosmology and z."""
    for cosmo in ({"Omega_m": 0.26, "sigma_8": 0.9, "z": 0.0}, {"Omega_m": 0.35, "sigma_8": 0.75, "z": 1.0}):
        theta = ci._theta(v2_emulator, **cosmo)
        rows = np.repeat(theta[None, :], 4, axis=0)
        rows[:, 0] = [-0.9, -0.2, 0.4, 0.8]
        pred = v2_emulator.predict(rows)
        np.testing.assert_allclose(pred.xi, np.repeat(pred.xi[:1], 4, axis=0), rtol=1e-13)
        c = alignment_p2_table(rows[:, :2])[:, 0]
        design = np.column_stack([np.ones(4), c])
        coef, *_ = np.linalg.lstsq(design[:3], pred.omega[:3], rcond=None)
        np.testing.assert_allclose(design[3] @ coef, pred.omega[3], rtol=1e-8, atol=1e-12)
        design = np.column_stack([np.ones(4), c, c * c])
        coef, *_ = np.linalg.lstsq(design[:3], pred.eta[:3], rcond=None)
        np.testing.assert_allclose(design[3] @ coef, pred.eta[3], rtol=1e-8, atol=1e-12)
    # and the cosmology inputs do move xi (they feed the basis network)
    a = v2_emulator.predict(ci._theta(v2_emulator, sigma_8=0.75)).xi
    b = v2_emulator.predict(ci._theta(v2_emulator, sigma_8=0.9)).xi
    assert np.max(np.abs(a / b - 1)) > 1e-6


def test_cobaya_and_cosmosis_serve_the_trained_weights(v2_trained, v2_emulator, tmp_path):
    theta = ci._theta(v2_emulator)
    data_file, idx = ext._measurement(tmp_path, v2_emulator, theta)
    expected = ext._expected_loglike(v2_emulator, data_file, idx, theta)
    model = ci._cobaya(v2_trained, data_file, v2_emulator)
    loglikes, derived = model.loglikes({"omegam": ci.COSMO["Omega_m"], "sigma8": ci.COSMO["sigma_8"]})
    assert loglikes[0] == pytest.approx(expected, rel=RTOL)
    assert derived[0] == pytest.approx(v2_emulator.derived(theta)["n_gal"], rel=RTOL)
    like, block = ci._cosmosis(tmp_path, v2_trained, data_file, v2_emulator, theta)
    assert like == pytest.approx(float(loglikes[0]), rel=RTOL)
    np.testing.assert_allclose(block["ia_correlations", "omega"], v2_emulator.predict(theta).omega, rtol=RTOL)


def test_evaluate_reads_the_cosmology_inputs_of_a_test_set(v2_trained, suite_data, tmp_path):
    from iaemu_likelihood.training.evaluate import evaluate_folder

    report = evaluate_folder(v2_trained, suite_data / "test.npz", output=tmp_path / "report", figures=False,
                             latency=False)
    assert report["test_set"]["n_used"] == report["test_set"]["n_points"] == 2 * len(BOXES) * len(REDSHIFTS)
    assert np.isfinite(report["summary"]["xi_median_abs_residual_sigma"])


def test_evaluate_a_one_catalog_test_set_with_fixed_cosmology(v2_trained, tmp_path):
    """A v1-style test set (no point_inputs) is evaluated with cosmology-dependent weights at a fixed
    Omega_m, sigma_8, z (`iaemu evaluate --fixed`); without them the missing input is named."""
    from iaemu_likelihood.errors import ConfigError
    from iaemu_likelihood.training.dataset_io import DatasetFileError
    from iaemu_likelihood.training.evaluate import evaluate_folder, parse_fixed

    path = tmp_path / "one_catalog.npz"
    save_dataset(path, make_synthetic_dataset(6, 4, seed=7))
    _, om, s8 = BOXES[0]
    fixed = parse_fixed([f"Omega_m={om}", f"sigma_8={s8}", "z=0"])
    report = evaluate_folder(v2_trained, path, output=tmp_path / "report", figures=False, latency=False,
                             fixed_inputs=fixed)
    assert report["test_set"]["fixed_inputs"] == {"Omega_m": om, "sigma_8": s8, "z": 0.0}
    assert report["test_set"]["n_used"] == 6
    with pytest.raises(DatasetFileError, match="input 'Omega_m' is not in it.*fixed value"):
        evaluate_folder(v2_trained, path, output=tmp_path / "r2", figures=False, latency=False)
    with pytest.raises(ConfigError, match=r"fixed inputs \['Omega_b'\]: not inputs"):
        evaluate_folder(v2_trained, path, output=tmp_path / "r3", figures=False, latency=False,
                        fixed_inputs={**fixed, "Omega_b": 0.05})
    with pytest.raises(ConfigError, match="--fixed 'z=high'"):
        parse_fixed(["z=high"])


def test_mlp_trains_on_cosmology_inputs_too(suite_data, tmp_path):
    config = _config(tmp_path, suite_data / "train.npz", "mlp", architecture="mlp", max_epochs=2,
                     architecture_config={"width": 16, "n_hidden": 1})
    emu = IAEmulator.load(train(config, restart=True, progress=False).folder)
    assert emu.param_names == V2_LAYOUT.param_names
    mean, _ = ext._torch_prediction(emu, ci._theta(emu))
    np.testing.assert_allclose(emu.predict(ci._theta(emu)).vector(), mean, rtol=RTOL)


# ------------------------------------------------------------------ derived n_gal, f_sat (stage 2)
def test_weights_carry_the_mass_function_table(v2_trained):
    meta = json.loads((v2_trained / "metadata.json").read_text())
    entry = meta["mass_function_table"]
    assert entry["file"] == MASS_FUNCTION_TABLE_FILE and entry["fixed"] == {}
    assert entry["boxes"] == [b[0] for b in BOXES] and entry["redshifts"] == list(REDSHIFTS)
    assert MASS_FUNCTION_TABLE_FILE in (v2_trained / "SHA256SUMS").read_text()
    with np.load(v2_trained / MASS_FUNCTION_TABLE_FILE, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["log10_n_above"], suite_table()["log10_n_above"])


def test_derived_follow_the_cosmology_and_redshift_of_each_point(v2_emulator):
    interp = MassFunctionInterpolator(suite_table())
    hod = dict(zip(v2_emulator.param_names[2:7], ci._theta(v2_emulator)[2:7]))
    points = [ci._theta(v2_emulator, Omega_m=om, sigma_8=s8, z=z)
              for om, s8, z in ((0.31, 0.83, 0.5), (0.31, 0.9, 0.5), (0.27, 0.75, 0.0), (0.35, 0.9, 0.8))]
    singles = [v2_emulator.derived(p) for p in points]
    for p, got in zip(points, singles):
        mf = interp.mass_function(*p[7:])
        assert got["n_gal"] == pytest.approx(number_density(hod, mf), rel=DERIVED_RTOL)
        assert got["f_sat"] == pytest.approx(satellite_fraction(hod, mf), rel=DERIVED_RTOL)
    assert singles[1]["n_gal"] > singles[0]["n_gal"]  # more structure, more hosts, more galaxies
    batch = v2_emulator.derived(np.array(points))
    np.testing.assert_allclose(batch["n_gal"], [d["n_gal"] for d in singles], rtol=DERIVED_RTOL)
    np.testing.assert_allclose(batch["f_sat"], [d["f_sat"] for d in singles], rtol=DERIVED_RTOL)
    assert v2_emulator.derived(points[0]) == singles[0]  # the kept mass function is the right one


def test_cosmology_weights_without_a_table_have_no_derived(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        for name, bounds in ci.V2_BOUNDS.items():
            mp.setitem(ext.TOY_BOUNDS, name, bounds)
        folder = ext._write(tmp_path / "w", V2_LAYOUT, "mlp", {"width": 8, "n_hidden": 1, "activation": "silu",
                                                              "var_floor": 1e-6})
    emu = IAEmulator.load(folder)
    assert emu.derived_names == ()
    with pytest.raises(ConfigError, match=r"cosmology-dependent, and the weights carry no mass-function table"):
        emu.derived(ci._theta(emu))


def test_damaged_or_missing_table_is_refused(v2_trained, tmp_path):
    import shutil

    from iaemu_likelihood.weights_io import reseal_folder

    folder = Path(shutil.copytree(v2_trained, tmp_path / "copy"))
    table = folder / MASS_FUNCTION_TABLE_FILE
    table.write_bytes(table.read_bytes()[:100])
    with pytest.raises(WeightsIntegrityError, match=MASS_FUNCTION_TABLE_FILE):
        IAEmulator.load(folder)  # the checksum
    with pytest.raises(WeightsIntegrityError, match=r"halo_mass_function_table\.npz cannot be read"):
        reseal_folder(folder)  # the content, before any new sums
    table.unlink()
    with pytest.raises(WeightsIntegrityError, match=r"halo_mass_function_table\.npz: missing"):
        reseal_folder(folder)
    # a table that does not reach the weights' highest redshift
    save_table(table, suite_table(redshifts=(0.0, 0.5)))
    with pytest.raises(WeightsIntegrityError, match=r"z = \[0.0, 0.5\]; allowed: tabulated redshifts covering"):
        reseal_folder(folder)


def test_training_checks_the_table_before_any_step(suite_data, tmp_path):
    data = suite_data / "train.npz"
    with pytest.raises(ConfigError, match=r"mass_function_table is not set; the dataset .* N-body suite"):
        train(_config(tmp_path, data, "a", mass_function_table=None), restart=True, progress=False)
    other = save_table(tmp_path / "other.npz", suite_table(boxes=BOXES[:4]))
    with pytest.raises(MassFunctionTableError, match=r"fid z=0 is not in it"):
        train(_config(tmp_path, data, "b", mass_function_table=str(other)), restart=True, progress=False)
    wrong = save_table(tmp_path / "wrong.npz", dict(suite_table(), provenance={**suite_table()["provenance"],
                                                                            "min_mass": 1e11}))
    with pytest.raises(MassFunctionTableError, match=r"min_mass = 100000000000.0, the dataset's is 233000000000.0"):
        train(_config(tmp_path, data, "c", mass_function_table=str(wrong)), restart=True, progress=False)
    v1 = tmp_path / "v1.npz"
    save_dataset(v1, make_synthetic_dataset(8, 2))
    with pytest.raises(ConfigError, match=r"was made from one halo catalog"):
        train(_config(tmp_path, v1, "d"), restart=True, progress=False)


def test_one_redshift_trains_without_z_and_derives_at_that_z(tmp_path):
    data = tmp_path / "z05.npz"
    save_dataset(data, suite_dataset(points_per_snapshot=6, redshifts=(0.5,)))
    emu = IAEmulator.load(train(_config(tmp_path, data, "w", max_epochs=1), restart=True, progress=False).folder)
    assert emu.param_names[7:] == ("Omega_m", "sigma_8")
    assert emu.metadata["mass_function_table"]["fixed"] == {"z": 0.5}
    theta = np.concatenate([ci._theta(emu)[:7], [0.3, 0.8]])
    hod = dict(zip(emu.param_names[2:7], theta[2:7]))
    expected = number_density(hod, MassFunctionInterpolator(suite_table()).mass_function(0.3, 0.8, 0.5))
    assert emu.derived(theta)["n_gal"] == pytest.approx(expected, rel=DERIVED_RTOL)
