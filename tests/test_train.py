"""End-to-end training on a tiny synthetic dataset: export, load, predict, checkpoint/resume."""
import json

import numpy as np
import pytest

from iaemu_likelihood.training.dataset_io import file_sha256, save_dataset
from iaemu_likelihood.training.export import residual_correlation
from iaemu_likelihood.training.normalisation import OutputNormaliser
from iaemu_likelihood.training.synthetic import (SYNTHETIC_BOUNDS, make_synthetic_dataset,
                                                 synthetic_correlation)
from iaemu_likelihood.training.train import TrainConfig, _prepare, load_config, train

CORRELATION_ATOL = 0.08  # ~5 sigma of a correlation estimated from 4,000 residuals


def _tiny_config(tmp_path, **kw):
    data = tmp_path / "train.npz"
    if not data.exists():
        save_dataset(data, make_synthetic_dataset(120, 4, seed=3))
    base = dict(data=str(data), output=str(tmp_path / "weights"), ensemble_size=2, max_epochs=4,
                warmup_epochs=2, patience=10, batch_size=32, reference_points=2,
                architecture_config={"width": 16, "n_hidden": 1})
    base.update(kw)
    return TrainConfig(**base)


def _members(folder):
    with np.load(folder / "weights.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_train_export_load_predict(tmp_path):
    from iaemu_likelihood.emulator import IAEmulator

    cfg = _tiny_config(tmp_path)
    result = train(cfg, restart=True, progress=False)
    emu = IAEmulator.load(result.folder)
    meta = json.loads((result.folder / "metadata.json").read_text())
    assert meta["architecture"] == "mlp" and meta["ensemble_size"] == 2
    assert meta["training_set"]["sha256"] == file_sha256(cfg.data)
    assert meta["training_set"]["n_points"] == 120 and meta["training_set"]["n_realizations"] == 4
    assert meta["halo_catalog"]["sha256"] == "0" * 64
    assert meta["bounds"] == {k: list(v) for k, v in SYNTHETIC_BOUNDS.items()}
    assert meta["epistemic"]["method"] == "deep_ensemble"
    assert (result.folder / "reference_predictions.npz").is_file()
    theta = np.array([np.mean(SYNTHETIC_BOUNDS[n]) for n in emu.param_names])
    pred = emu.predict(theta, epistemic=True)
    for stat in ("xi", "omega", "eta"):
        assert pred[stat].shape == (20,) and np.all(np.isfinite(pred[stat]))
        assert np.all(pred[f"{stat}_var"] > 0) and np.all(pred[f"{stat}_epi_var"] >= 0)
    assert np.all(pred.xi > 0)


def test_split_by_point_and_normaliser_on_training_points_only(tmp_path):
    cfg = _tiny_config(tmp_path, val_fraction=0.25)
    dataset, train_idx, val_idx, train_ds, val_ds, *_ , normaliser = _prepare(cfg)
    assert np.intersect1d(train_idx, val_idx).size == 0
    assert train_idx.size + val_idx.size == dataset.n_points
    # every realization of a point travels with it
    np.testing.assert_array_equal(val_ds.xi, dataset.xi[val_idx])
    train_rows = {tuple(p) for p in train_ds.params}
    assert not any(tuple(p) in train_rows for p in val_ds.params)
    expected = OutputNormaliser.fit(dataset.subset(train_idx))
    np.testing.assert_allclose(normaliser.mean["omega"], expected.mean["omega"])
    assert not np.allclose(normaliser.mean["omega"], OutputNormaliser.fit(dataset).mean["omega"])


def test_checkpoint_resume_is_identical(tmp_path):
    straight = train(_tiny_config(tmp_path, output=str(tmp_path / "a")), restart=True, progress=False)
    cfg_b = _tiny_config(tmp_path, output=str(tmp_path / "b"))
    first = train(cfg_b, restart=True, stop_after_epochs=3, progress=False)
    assert first.folder is None and cfg_b.checkpoint_path.is_file()
    second = train(cfg_b, stop_after_epochs=3, progress=False)  # crosses the member boundary
    assert second.folder is None
    resumed = train(cfg_b, progress=False)
    a, b = _members(straight.folder), _members(resumed.folder)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert [m["best_epoch"] for m in straight.members] == [m["best_epoch"] for m in resumed.members]


def test_resume_refuses_a_changed_config(tmp_path):
    cfg = _tiny_config(tmp_path)
    train(cfg, restart=True, stop_after_epochs=1, progress=False)
    changed = _tiny_config(tmp_path, learning_rate=0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        train(changed, progress=False)


def test_load_config_resolves_paths_against_the_file(tmp_path):
    sub = tmp_path / "configs"
    sub.mkdir()
    (sub / "c.yaml").write_text("data: ../d.npz\noutput: out\nmax_epochs: 3\n")
    cfg = load_config(sub / "c.yaml", {"ensemble_size": 1})
    assert cfg.data == str((tmp_path / "d.npz").resolve())
    assert cfg.output == str((sub / "out").resolve()) and cfg.ensemble_size == 1
    (sub / "bad.yaml").write_text("data: x\noutput: y\nlearning_rat: 1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        load_config(sub / "bad.yaml")


def test_residual_correlation_recovers_the_noise_correlation():
    ds = make_synthetic_dataset(400, 10, seed=5)
    corr = residual_correlation(ds)
    assert corr.shape == (60, 60)
    np.testing.assert_allclose(np.diag(corr), 1.0)
    np.testing.assert_allclose(corr, synthetic_correlation(), atol=CORRELATION_ATOL)


def test_paper_architecture_trains_with_mc_dropout(tmp_path):
    from iaemu_likelihood.emulator import IAEmulator

    small = {"hidden_dim": 8, "latent_dim": 8, "decoder_channels": 2,
             "conv_channels": [4, 4, 4, 4, 4, 4]}
    cfg = _tiny_config(tmp_path, architecture="paper", ensemble_size=1, max_epochs=2,
                       architecture_config=small)
    result = train(cfg, restart=True, progress=False)
    emu = IAEmulator.load(result.folder)
    assert emu.metadata["epistemic"]["method"] == "mc_dropout"
    theta = np.array([np.mean(SYNTHETIC_BOUNDS[n]) for n in emu.param_names])
    pred = emu.predict(theta, epistemic=True, n_samples=4)
    assert np.all(np.isfinite(pred.xi)) and np.all(pred.xi_epi_var > 0)


def test_design_rule_support_is_exported_and_reference_points_respect_it(tmp_path):
    import dataclasses

    from iaemu_likelihood.emulator import IAEmulator
    from iaemu_likelihood.training.design import DesignRule

    rule = DesignRule()
    base = make_synthetic_dataset(120, 4, seed=3)
    params = rule.from_unit_cube(np.random.default_rng(0).random((120, 7)))
    prov = {k: v for k, v in base.provenance.items() if k != "bounds"}
    prov["design_rule"] = rule.to_dict()
    ds = dataclasses.replace(base, params=params, provenance=prov)
    save_dataset(tmp_path / "train.npz", ds)
    result = train(_tiny_config(tmp_path, ensemble_size=1, max_epochs=1), restart=True, progress=False)
    emu = IAEmulator.load(result.folder)
    assert emu.metadata["support"] == json.loads(json.dumps(rule.support_metadata()))
    assert emu.metadata["bounds"] == {k: list(v) for k, v in rule.bounding_box().items()}
    with np.load(result.folder / "reference_predictions.npz", allow_pickle=False) as ref:
        assert np.all(emu.in_support(ref["points"]))


def test_training_on_several_files_concatenates_them(tmp_path):
    from iaemu_likelihood.training.dataset_io import files_sha256, load_dataset, load_datasets

    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    save_dataset(a, make_synthetic_dataset(70, 4, seed=3))
    save_dataset(b, make_synthetic_dataset(50, 4, seed=4))
    both = load_datasets([a, b])
    assert both.n_points == 120
    np.testing.assert_array_equal(both.omega[70:], load_dataset(b).omega)
    assert [c["n_points"] for c in both.provenance["components"]] == [70, 50]
    result = train(_tiny_config(tmp_path, data=[str(a), str(b)], ensemble_size=1, max_epochs=2),
                   restart=True, progress=False)
    meta = json.loads((result.folder / "metadata.json").read_text())
    ts = meta["training_set"]
    assert ts["n_points"] == 120 and ts["path"] == "a.npz+b.npz"
    assert ts["sha256"] == files_sha256([a, b]) != file_sha256(a)
    assert [f["sha256"] for f in ts["files"]] == [file_sha256(a), file_sha256(b)]
    # the config file form: a YAML list, relative to the config
    (tmp_path / "c.yaml").write_text("data: [a.npz, b.npz]\noutput: out\n")
    assert load_config(tmp_path / "c.yaml").data == [str(a.resolve()), str(b.resolve())]


def test_concatenation_refuses_mismatched_datasets(tmp_path):
    import dataclasses

    from iaemu_likelihood.training.dataset_io import concatenate_datasets

    base = make_synthetic_dataset(20, 4, seed=3)
    fewer = make_synthetic_dataset(20, 3, seed=4)
    with pytest.raises(ValueError, match=r"other: 3 realizations per point, first has 4"):
        concatenate_datasets([base, fewer], labels=["first", "other"])
    moved = dataclasses.replace(base, provenance={**base.provenance, "halo_mass_function": {"counts": [1]}})
    with pytest.raises(ValueError, match=r"other: provenance entry 'halo_mass_function' differs"):
        concatenate_datasets([base, moved], labels=["first", "other"])


def test_export_calibrates_the_epistemic_variance_on_the_validation_split(tmp_path):
    from iaemu_likelihood.emulator import IAEmulator

    result = train(_tiny_config(tmp_path, val_fraction=0.25), restart=True, progress=False)
    epi = json.loads((result.folder / "metadata.json").read_text())["epistemic"]
    assert set(epi["scale"]) == {"xi", "omega", "eta"}
    assert all(1e-2 <= v <= 1e4 for v in epi["scale"].values())
    assert epi["calibration"]["n_points"] == 30
    assert abs(epi["calibration"]["omega"]["coverage_after"] - 0.68) < 0.05
    emu = IAEmulator.load(result.folder)
    np.testing.assert_allclose(emu.epistemic_scale[20:40], epi["scale"]["omega"])
