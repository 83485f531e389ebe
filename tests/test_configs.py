"""Every config key is checked where it is read: one-line ConfigError naming file, key, value.

Generation configs, training configs (file and ``--set``), the catalog section, ``iaemu
build-catalog`` options, devices, and the data files training reads (datasets, halo catalogs).
"""
from pathlib import Path

import numpy as np
import pytest
import yaml

from iaemu_likelihood.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "training" / "configs"
GENERATION_CONFIGS = ("bolplanck", "test", "test_deep", "train", "train_b", "generate_v2",
                      "generate_v2_test")
TRAINING_CONFIGS = ("factorised", "factorised_v2", "mlp_default", "paper")

GOOD_GENERATION = {"name": "g", "seed": 1, "n_points": 5, "n_realizations": 3, "max_retries": 2,
                   "output": "g.npz", "rbins": [1.0, 2.0, 4.0],
                   "catalog": {"source": "offline", "path": "cat.npz", "min_particles": 20},
                   "design": {"logMmin_range": [11.6, 13.2], "mu_range": [-1.0, 1.0], "n_rmse": 4.0,
                              "floors": {"sigma_logM": 0.05, "alpha": 0.1}}}

#: change -> text the one-line message must hold (besides the file name)
BAD_GENERATION = {
    "typo n_realisations": ({"n_realisations": 3}, "unknown key 'n_realisations'; did you mean 'n_realizations'"),
    "typo max_retry": ({"max_retry": 3}, "did you mean 'max_retries'"),
    "negative max_retries": ({"max_retries": -1}, "max_retries = -1: must be an integer >= 0"),
    "zero realizations": ({"n_realizations": 0}, "n_realizations = 0: must be an integer >= 2"),
    "fractional realizations": ({"n_realizations": 2.5}, "n_realizations = 2.5"),
    "string realizations": ({"n_realizations": "ten"}, "n_realizations = 'ten'"),
    "bool seed": ({"seed": True}, "seed = True"),
    "negative seed": ({"seed": -3}, "seed = -3"),
    "zero points": ({"n_points": 0}, "n_points = 0"),
    "rbins decreasing": ({"rbins": [4.0, 2.0, 1.0]}, "strictly increasing"),
    "rbins nan": ({"rbins": [1.0, float("nan"), 4.0]}, "finite"),
    "rbins negative": ({"rbins": [-1.0, 2.0, 4.0]}, "> 0"),
    "rbins one edge": ({"rbins": [1.0]}, "at least 2 edges"),
    "rbins strings": ({"rbins": ["a", "b"]}, "array of numbers"),
    "points and n_points": ({"points": [[0.0] * 7]}, "exactly one of 'n_points'"),
    "missing output": ({"output": None}, "required key 'output' is missing"),
    "output a number": ({"output": 5}, "output = 5: must be a non-empty string"),
    "design typo": ({"design": {"n_rsme": 4.0}}, "did you mean 'n_rmse'"),
    "design mu range": ({"design": {"mu_range": [-2.0, 1.0]}}, "mu_range"),
    "design n_rmse zero": ({"design": {"n_rmse": 0}}, "n_rmse = 0"),
    "design floors typo": ({"design": {"floors": {"alpah": 0.1}}}, "did you mean 'alpha'"),
    "design logMmin reversed": ({"design": {"logMmin_range": [13.0, 12.0]}}, "low < high"),
    "catalog source typo": ({"catalog": {"source": "offlne", "path": "c.npz"}}, "did you mean 'offline'"),
    "catalog key typo": ({"catalog": {"path": "c.npz", "min_particle": 20}}, "did you mean 'min_particles'"),
    "catalog no path": ({"catalog": {"source": "offline"}}, "'path' is missing"),
    "catalog min particles": ({"catalog": {"path": "c.npz", "min_particles": 0}}, "min_particles = 0"),
    "catalog not a mapping": ({"catalog": "c.npz"}, "must be a mapping"),
}


def _assert_one_named_line(load, path, message):
    """``load(path)`` raises a one-line ConfigError holding ``message`` and the file name."""
    with pytest.raises(ConfigError) as info:
        load(path)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text, text


def _generation_file(tmp_path, changes):
    raw = {**GOOD_GENERATION, **changes}
    if "points" in changes and "n_points" not in changes:
        raw["n_points"] = 5
    raw = {k: v for k, v in raw.items() if v is not None}
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_good_generation_config_loads(tmp_path):
    from iaemu_likelihood.training.generate import load_config

    config = load_config(_generation_file(tmp_path, {}))
    assert config.n_points == 5 and config.max_retries == 2


@pytest.mark.parametrize("case", sorted(BAD_GENERATION))
def test_bad_generation_config_is_one_named_line(tmp_path, case):
    from iaemu_likelihood.training.generate import load_config

    changes, message = BAD_GENERATION[case]
    _assert_one_named_line(load_config, _generation_file(tmp_path, changes), message)


@pytest.mark.parametrize("name", GENERATION_CONFIGS)
def test_shipped_generation_configs_load(name):
    from iaemu_likelihood.training.generate import load_config

    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.n_points > 0 and config.n_realizations >= 10


def test_generation_config_not_yaml(tmp_path):
    from iaemu_likelihood.training.generate import load_config

    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


# -- training configs -----------------------------------------------------------------------
BAD_TRAINING = {
    "typo learning_rat": ({"learning_rat": 0.01}, "unknown key 'learning_rat'; did you mean 'learning_rate'"),
    "zero ensemble": ({"ensemble_size": 0}, "ensemble_size = 0: must be an integer >= 1"),
    "fractional epochs": ({"max_epochs": 10.5}, "max_epochs = 10.5"),
    "negative patience": ({"patience": -1}, "patience = -1"),
    "val fraction one": ({"val_fraction": 1.5}, "val_fraction = 1.5"),
    "val fraction zero": ({"val_fraction": 0.0}, "val_fraction = 0.0"),
    "nan learning rate": ({"learning_rate": float("nan")}, "learning_rate = nan"),
    "string learning rate": ({"learning_rate": "fast"}, "learning_rate = 'fast'"),
    "lr gamma zero": ({"lr_gamma": 0.0}, "lr_gamma = 0.0"),
    "negative grad clip": ({"grad_clip": -1.0}, "grad_clip = -1.0"),
    "architecture typo": ({"architecture": "mpl"}, "did you mean 'mlp'"),
    "architecture_config typo": ({"architecture_config": {"widht": 16}}, "did you mean 'width'"),
    "activation unknown": ({"architecture_config": {"activation": "relu"}}, "activation = 'relu'"),
    "width zero": ({"architecture_config": {"width": 0}}, "width = 0"),
    "betas missing": ({"betas": {"xi": 0.5}}, "required key 'omega' is missing"),
    "betas typo": ({"betas": {"xi": 0.5, "omega": 0.5, "eta": 0.5, "etta": 0.5}}, "did you mean 'eta'"),
    "beta above one": ({"betas": {"xi": 1.5, "omega": 0.5, "eta": 0.5}}, "betas: xi = 1.5"),
    "threads zero": ({"threads": 0}, "threads = 0"),
    "data empty": ({"data": []}, "data = []"),
    "device number": ({"device": 3}, "device = 3"),
}


def _training_file(tmp_path, changes):
    raw = {"data": "train.npz", "output": "weights", "max_epochs": 20, **changes}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("case", sorted(BAD_TRAINING))
def test_bad_training_config_is_one_named_line(tmp_path, case):
    from iaemu_likelihood.training.train import load_config

    changes, message = BAD_TRAINING[case]
    _assert_one_named_line(load_config, _training_file(tmp_path, changes), message)


def test_training_overrides_are_checked_and_named(tmp_path):
    from iaemu_likelihood.config_checks import parse_set_overrides as _parse_set
    from iaemu_likelihood.training.train import load_config

    path = _training_file(tmp_path, {})
    with pytest.raises(ConfigError, match=r"--set: unknown key 'max_epoch'; did you mean 'max_epochs'"):
        load_config(path, _parse_set(["max_epoch=3"]))
    with pytest.raises(ConfigError, match=r"overridden on the command line: max_epochs\): max_epochs = -3"):
        load_config(path, _parse_set(["max_epochs=-3"]))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        _parse_set(["max_epochs"])
    assert load_config(path, _parse_set(["max_epochs=3"])).max_epochs == 3


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_shipped_training_configs_load(name):
    from iaemu_likelihood.training.train import load_config

    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.max_epochs >= 1 and Path(config.output).is_absolute()


@pytest.mark.parametrize("device, message", [("bogus", "not a torch device"),
                                             ("cuda:7", "CUDA"), ("nonsense:0", "device")])
def test_device_is_checked_before_any_training_step(tmp_path, device, message):
    import torch

    from iaemu_likelihood.training.train import load_config, train

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    config = load_config(_training_file(tmp_path, {"device": device}))  # data file absent: never read
    with pytest.raises(ConfigError, match=message) as info:
        train(config, progress=False)
    assert str(tmp_path / "train.yaml") in str(info.value)
    assert not Path(config.checkpoint_path).exists()


# -- iaemu build-catalog options ------------------------------------------------------------
@pytest.mark.parametrize("option, value, message", [
    ("box_size", -250.0, "--box-size = -250.0"), ("box_size", float("inf"), "--box-size = inf"),
    ("n_particles_1d", 100, "power of two"), ("seed", -1, "--seed = -1"),
    ("threads", 0, "--threads = 0"), ("z_start", 0.0, "--z-start = 0.0"),
    ("min_particles_trusted", 5, "--min-particles-trusted = 5"),
    ("courant_factor", 0.0, "--courant-factor = 0.0"), ("max_aexp_step", float("nan"), "--max-aexp-step = nan"),
])
def test_build_catalog_options_are_checked(option, value, message):
    from iaemu_likelihood.training.catalog_cli import build_parser, check_args

    args = build_parser("iaemu build-catalog").parse_args(["--output", "c.npz", "--workdir", "w"])
    setattr(args, option, value)
    with pytest.raises(ConfigError, match=message):
        check_args(args)


def test_time_stepping_reaches_pysco_and_default_records_are_unchanged():
    """A cheaper run (larger Courant factor and scale-factor steps) is a setting of the simulation;
    runs at the default stepping keep the provenance records they had before it was one."""
    from pathlib import Path

    from iaemu_likelihood.training.nbody import DEFAULT_STEPPING, SimulationConfig, _pysco_parameters

    default = SimulationConfig(box_size=125.0, n_particles_1d=256, seed=1002)
    assert not set(DEFAULT_STEPPING) & set(default.to_dict())
    params = _pysco_parameters(default, Path("w"), Path("pk.txt"))
    assert (params["Courant_factor"], params["max_aexp_stepping"]) == (0.8, 5.0)
    cheap = SimulationConfig(box_size=125.0, n_particles_1d=256, seed=1002, courant_factor=3.2,
                             max_aexp_step_percent=20.0)
    assert cheap.to_dict()["courant_factor"] == 3.2 and cheap.to_dict()["max_aexp_step_percent"] == 20.0
    params = _pysco_parameters(cheap, Path("w"), Path("pk.txt"))
    assert (params["Courant_factor"], params["max_aexp_stepping"]) == (3.2, 20.0)
    assert params["seed"] == 1002  # the same initial conditions
    with pytest.raises(ConfigError, match="courant_factor = -1"):
        SimulationConfig(courant_factor=-1.0)


# -- data files read by training ------------------------------------------------------------
def _dataset(tmp_path, **changes):
    from iaemu_likelihood.training.dataset_io import save_dataset
    from iaemu_likelihood.training.synthetic import make_synthetic_dataset

    path = save_dataset(tmp_path / "d.npz", make_synthetic_dataset(6, 3, seed=1))
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(path, **arrays)
    return path, arrays


@pytest.mark.parametrize("change, message", [
    ("params_nan", "'params' has non-finite values"),
    ("params_text", "'params' has dtype"),
    ("xi_inf", "'xi' has non-finite values in point 0, realization 1"),
    ("r_edges_decreasing", "strictly increasing"),
    ("provenance_bad", "provenance is not a JSON object"),
])
def test_dataset_with_bad_values_is_named(tmp_path, change, message):
    from iaemu_likelihood.training.dataset_io import DatasetFileError, load_dataset

    path, arrays = _dataset(tmp_path)
    if change == "params_nan":
        arrays["params"][2, 3] = np.nan
    elif change == "params_text":
        arrays["params"] = arrays["params"].astype(str)
    elif change == "xi_inf":
        arrays["xi"][0, 1, 4] = np.inf
    elif change == "r_edges_decreasing":
        arrays["r_edges"] = arrays["r_edges"][::-1].copy()
    else:
        arrays["provenance"] = np.array("{not json")
    np.savez(path, **arrays)
    with pytest.raises(DatasetFileError, match=message) as info:
        load_dataset(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_dataset_damaged_inside_is_named(tmp_path):
    from iaemu_likelihood.training.dataset_io import DatasetFileError, load_dataset

    path, _ = _dataset(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetFileError, match="cannot be read") as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_halo_catalog_with_bad_values_is_named(tmp_path):
    from iaemu_likelihood.training.catalogs import HaloCatalogError, OfflineHaloCatalog

    from test_generate_hardening import tiny_catalog

    path = tiny_catalog(tmp_path / "c.npz")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["rvir"][3] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(HaloCatalogError, match="'rvir' has 1 non-finite"):
        OfflineHaloCatalog(tmp_path / "nan.npz")
    arrays["rvir"][3] = 1.0  # finite, but not what the hash records
    np.savez(tmp_path / "edited.npz", **arrays)
    with pytest.raises(HaloCatalogError, match="do not match the recorded content_sha256"):
        OfflineHaloCatalog(tmp_path / "edited.npz")
    (tmp_path / "text.npz").write_text("not a catalog")
    with pytest.raises(HaloCatalogError, match="text.npz cannot be read"):
        OfflineHaloCatalog(tmp_path / "text.npz")


def test_yaml_alias_nests_are_refused_quickly_not_expanded(tmp_path):
    """A few hundred bytes of YAML aliases expand to 9**9 items: every check names the key in
    well under a second instead of hanging in repr() or numpy."""
    import time

    import yaml

    from iaemu_likelihood.config_checks import check_float, check_float_array, check_int, check_str

    lines, prev = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"], "l0"
    for level in range(1, 9):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = f"l{level}"
    nest = yaml.safe_load("\n".join(lines))[prev]
    for check in (lambda: check_int(nest, "max_epochs", 1), lambda: check_float(nest, "lr"),
                  lambda: check_str(nest, "device", choices=["cpu"]),
                  lambda: check_float_array(nest, "rbins", ndim=1)):
        start = time.perf_counter()
        with pytest.raises(ConfigError) as info:
            check()
        assert time.perf_counter() - start < 5.0
        assert len(str(info.value)) < 300 and "\n" not in str(info.value)
