"""Cosmology and redshift as emulator inputs in the Cobaya and CosmoSIS adapters (issue 15, item 5).

Tiny synthetic weights with the v2 layout (the seven inputs, then Omega_m, sigma_8, z) are written
as tests/test_extending.py writes its toy weights. Cobaya takes Omega_m and sigma_8 from the
parameters ``omegam`` and ``sigma8`` (sampled, or computed by CAMB) and z from the ``redshift``
option; CosmoSIS from ``cosmological_parameters/omega_m`` and ``sigma_8`` and its ``redshift``
option. Both agree with the emulator evaluated directly and with each other to 1e-10.
"""
import logging
import math

import numpy as np
import pytest

import test_extending as ext
from iaemu_likelihood.cosmology_inputs import V2_LAYOUT, check_redshift
from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.errors import ConfigError

pytest.importorskip("torch")

RTOL = 1e-10
#: the suite's training ranges
V2_BOUNDS = {"Omega_m": (0.25, 0.36), "sigma_8": (0.72, 0.92), "z": (0.0, 1.0)}
#: a point inside every range: HOD near the middle of the synthetic box, a cosmology and z
COSMO = {"Omega_m": 0.31, "sigma_8": 0.83, "z": 0.5}


@pytest.fixture(scope="module")
def v2_weights(tmp_path_factory):
    """Tiny v2-layout weights with the synthetic host mass-function table of test_mass_function
    (5 x 5 boxes over the suite's range, z = 0, 0.5, 1), as trained v2 weights carry one."""
    import json

    from test_mass_function import synthetic_table
    from iaemu_likelihood.training.mass_function import save_table
    from iaemu_likelihood.weights import MASS_FUNCTION_TABLE_FILE, METADATA_FILE
    from iaemu_likelihood.weights_io import reseal_folder

    with pytest.MonkeyPatch.context() as mp:
        for name, bounds in V2_BOUNDS.items():
            mp.setitem(ext.TOY_BOUNDS, name, bounds)
        folder = ext._write(tmp_path_factory.mktemp("v2") / "weights", V2_LAYOUT, "mlp",
                            {"width": 16, "n_hidden": 2, "activation": "silu", "var_floor": 1e-6})
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["mass_function_table"] = {"file": MASS_FUNCTION_TABLE_FILE, "fixed": {}}
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    save_table(folder / MASS_FUNCTION_TABLE_FILE, synthetic_table())
    reseal_folder(folder)
    return folder


@pytest.fixture(scope="module")
def emulator(v2_weights):
    return IAEmulator.load(v2_weights)


def _theta(emulator, **cosmo):
    hod = ext._point(emulator)[:7]
    values = {**COSMO, **cosmo}
    return np.concatenate([hod, [values["Omega_m"], values["sigma_8"], values["z"]]])


def _cobaya(weights, data_file, emulator, redshift=COSMO["z"], cosmology="sampled"):
    from cobaya.model import get_model

    hod = dict(zip(emulator.param_names[:7], _theta(emulator)[:7]))
    theory = {"iaemu_likelihood.IAEmuTheory": {"weights": str(weights), "redshift": redshift}}
    params = {**{k: float(v) for k, v in hod.items()},
              "omegam": {"prior": {"min": 0.2, "max": 0.4}}, "sigma8": {"prior": {"min": 0.6, "max": 1.0}}}
    if cosmology == "camb":
        theory["camb"] = {"stop_at_error": True}
        params = {**{k: float(v) for k, v in hod.items()}, "H0": 67.8, "ombh2": 0.0223, "ns": 0.96,
                  "omch2": {"prior": {"min": 0.10, "max": 0.14}}, "As": 2.1e-9,
                  "omegam": None, "sigma8": None}
    info = {"theory": theory, "params": params,
            "likelihood": {"iaemu_likelihood.IAEmuLikelihood": {"data_file": str(data_file),
                                                                "emulator_covariance": ["epistemic"]}}}
    return get_model(info)


def _cosmosis(tmp_path, weights, data_file, emulator, theta, redshift=COSMO["z"], fatal=True):
    """One CosmoSIS run: (log-likelihood or None if the point was rejected, block)."""
    from cosmosis.runtime.config import Inifile
    from cosmosis.runtime.pipeline import LikelihoodPipeline

    names = emulator.param_names
    values = {"intrinsic_alignment_parameters": names[:2], "hod_parameters": names[2:7]}
    text = "".join(f"[{section}]\n" + "".join(f"{n} = {float(theta[names.index(n)])!r}\n" for n in group)
                   for section, group in values.items())
    text += f"[cosmological_parameters]\nomega_m = {float(theta[7])!r}\nsigma_8 = {float(theta[8])!r}\n"
    path = tmp_path / "values.ini"
    path.write_text(text)
    override = {
        ("runtime", "sampler"): "test", ("runtime", "verbosity"): "quiet",
        ("pipeline", "modules"): "iaemu iaemu_like", ("pipeline", "values"): str(path),
        ("pipeline", "likelihoods"): "iaemu", ("test", "fatal_errors"): "T" if fatal else "F",
        ("iaemu", "file"): str(ext.MODULE_DIR / "iaemu_interface.py"), ("iaemu", "weights"): str(weights),
        ("iaemu", "covariance_terms"): "aleatoric epistemic",
        ("iaemu_like", "file"): str(ext.MODULE_DIR / "like" / "iaemu_like.py"),
        ("iaemu_like", "data_file"): str(data_file), ("iaemu_like", "emulator_covariance"): "epistemic"}
    if redshift is not None:
        override[("iaemu", "redshift")] = str(redshift)
    pipeline = LikelihoodPipeline(Inifile(None, override=override))
    block = pipeline.run_parameters([])
    return (None if block is None else float(block["likelihoods", "iaemu_like"])), block


def test_v2_layout_loads(emulator):
    assert emulator.layout == V2_LAYOUT
    assert emulator.param_names[7:] == ("Omega_m", "sigma_8", "z")
    assert emulator.bounds["z"] == V2_BOUNDS["z"]


def test_cobaya_and_cosmosis_agree_with_the_emulator(v2_weights, emulator, tmp_path):
    theta = _theta(emulator)
    data_file, idx = ext._measurement(tmp_path, emulator, theta)
    expected = ext._expected_loglike(emulator, data_file, idx, theta)
    model = _cobaya(v2_weights, data_file, emulator)
    loglikes, derived = model.loglikes({"omegam": COSMO["Omega_m"], "sigma8": COSMO["sigma_8"]})
    assert loglikes[0] == pytest.approx(expected, rel=RTOL)
    assert derived[0] == pytest.approx(emulator.derived(theta)["n_gal"], rel=RTOL)
    # the cosmology moves the prediction: another sigma_8 is another likelihood
    other = model.loglikes({"omegam": COSMO["Omega_m"], "sigma8": 0.75})[0][0]
    assert other == pytest.approx(ext._expected_loglike(emulator, data_file, idx, _theta(emulator, sigma_8=0.75)),
                                  rel=RTOL) and abs(other - loglikes[0]) > 1e-6
    like, block = _cosmosis(tmp_path, v2_weights, data_file, emulator, theta)
    assert like == pytest.approx(float(loglikes[0]), rel=RTOL)
    np.testing.assert_allclose(block["ia_correlations", "xi"], emulator.predict(theta).xi, rtol=RTOL)


def test_cobaya_takes_the_cosmology_from_camb(v2_weights, emulator, tmp_path):
    theta = _theta(emulator)
    data_file, idx = ext._measurement(tmp_path, emulator, theta)
    model = _cobaya(v2_weights, data_file, emulator, cosmology="camb")
    loglikes, derived = model.loglikes({"omch2": 0.12})
    camb = dict(zip(model.parameterization.derived_params(), derived))
    assert 0.25 < camb["omegam"] < 0.36 and 0.72 < camb["sigma8"] < 0.92
    at = _theta(emulator, Omega_m=camb["omegam"], sigma_8=camb["sigma8"])
    assert loglikes[0] == pytest.approx(ext._expected_loglike(emulator, data_file, idx, at), rel=RTOL)


def test_cosmology_outside_the_range_is_a_rejected_point(v2_weights, emulator, tmp_path, caplog):
    theta = _theta(emulator)
    data_file, _ = ext._measurement(tmp_path, emulator, theta)
    model = _cobaya(v2_weights, data_file, emulator)
    theory = next(c for c in model.components if type(c).__name__ == "IAEmuTheory")
    # the theory's own logger: an earlier test (a CLI run) may have set a level on a parent logger
    with caplog.at_level(logging.DEBUG, logger=theory.log.name):
        loglikes, _ = model.loglikes({"omegam": 0.38, "sigma8": COSMO["sigma_8"]})
    assert loglikes[0] == -math.inf
    assert "'Omega_m' = 0.38 is outside the emulator's training range [0.25, 0.36]" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        like, _ = _cosmosis(tmp_path, v2_weights, data_file, emulator, _theta(emulator, sigma_8=0.95), fatal=False)
    assert like is None and "'sigma_8' = 0.95 is outside the emulator's training range [0.72, 0.92]" in caplog.text


@pytest.mark.parametrize("redshift, message", [(1.5, r"redshift = 1.5: .*training range \[0, 1\]"),
                                               (None, r"redshift = None: .*take the redshift as an input")])
def test_redshift_outside_the_range_or_missing_stops_at_start(v2_weights, emulator, tmp_path, redshift, message):
    from cobaya.log import LoggedError

    data_file, _ = ext._measurement(tmp_path, emulator, _theta(emulator))
    with pytest.raises(LoggedError, match=message):
        _cobaya(v2_weights, data_file, emulator, redshift=redshift)
    with pytest.raises(ConfigError, match="iaemu: option " + message):
        _cosmosis(tmp_path, v2_weights, data_file, emulator, _theta(emulator), redshift=redshift)


def test_redshift_option_is_refused_for_weights_without_z(synthetic_weights):
    v1 = IAEmulator.load(synthetic_weights)
    assert check_redshift(v1, None) is None
    with pytest.raises(ConfigError, match="redshift = 0.5: the weights .* have no redshift input"):
        check_redshift(v1, 0.5)


def test_iaemu_info_shows_the_inputs_and_ranges(v2_weights, capsys):
    from iaemu_likelihood.cli_info import build_parser, main

    assert main(build_parser("iaemu info").parse_args(["--weights", str(v2_weights)])) == 0
    out = capsys.readouterr().out
    assert "Omega_m     [0.25, 0.36]" in out and "sigma_8     [0.72, 0.92]" in out and "z           [0.0, 1.0]" in out
    assert "Cobaya: parameter omegam" in out and "redshift option" in out
