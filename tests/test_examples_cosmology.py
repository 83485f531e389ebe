"""The cosmology examples (issue 15) run as shipped: ``yamls/ia_hod_cosmology.yaml`` under cobaya-run
and ``iaemu sample``, ``cosmosis_module/examples/ia_hod_cosmology.ini`` with the test sampler.

They run on the tiny synthetic v2-layout weights of tests/test_cosmology_inputs.py and a measurement
drawn from them, so CI does not depend on the numbers of the shipped weights; a separate test checks
that the example's priors and starting values lie inside the shipped v2 weights' training box and
that the untouched ini runs with them.
"""
import configparser
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import test_extending as ext
from test_cosmology_inputs import COSMO, _theta, emulator, v2_weights  # noqa: F401
from test_cosmosis import _read_values, _run_cosmosis

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
YAML = REPO / "yamls" / "ia_hod_cosmology.yaml"
INI = ext.MODULE_DIR / "examples" / "ia_hod_cosmology.ini"
VALUES = ext.MODULE_DIR / "examples" / "ia_hod_cosmology_values.ini"
THEORY, LIKE = "iaemu_likelihood.IAEmuTheory", "iaemu_likelihood.IAEmuLikelihood"
SHIPPED = "iaemu-factorised-v2"
#: CosmoSIS section and name of every input of the v2 weights
COSMOSIS_NAMES = {"mu_cen": ("intrinsic_alignment_parameters", "mu_cen"),
                  "mu_sat": ("intrinsic_alignment_parameters", "mu_sat"),
                  **{n: ("hod_parameters", n) for n in ("logMmin", "sigma_logM", "logM0", "logM1", "alpha")},
                  "Omega_m": ("cosmological_parameters", "omega_m"),
                  "sigma_8": ("cosmological_parameters", "sigma_8")}


@pytest.fixture(scope="module")
def measurement(v2_weights, emulator, tmp_path_factory):  # noqa: F811
    data_file, _ = ext._measurement(tmp_path_factory.mktemp("cosmo_data"), emulator, _theta(emulator))
    return data_file


def test_cosmology_yaml_names_the_v2_weights_and_a_redshift():
    info = yaml.safe_load(YAML.read_text())
    theory = info["theory"][THEORY]
    assert theory["weights"] == SHIPPED and theory["redshift"] == COSMO["z"]
    assert {"omegam", "sigma8"} <= set(info["params"])


def test_cosmology_yaml_runs_with_cobaya_and_iaemu_sample(v2_weights, emulator, measurement, tmp_path):  # noqa: F811
    info = yaml.safe_load(YAML.read_text())
    info["theory"][THEORY]["weights"] = str(v2_weights)
    info["likelihood"][LIKE]["data_file"] = str(measurement)
    info["sampler"]["mcmc"]["max_samples"] = 150
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(info))
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    exe = Path(sys.executable).with_name("cobaya-run")
    proc = subprocess.run([str(exe), "run.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    chain_file = tmp_path / "chains" / "ia_hod_cosmology.1.txt"
    header = chain_file.read_text().splitlines()[0].split()[1:]
    chain = np.loadtxt(chain_file)
    assert {"omegam", "sigma8", "logMmin", "mu_cen", "n_gal"} <= set(header)
    assert chain.shape[0] > 10 and np.isfinite(chain).all()
    lo, hi = emulator.bounds["Omega_m"]
    omegam = chain[:, header.index("omegam")]
    assert (omegam >= lo).all() and (omegam <= hi).all()

    exe = Path(sys.executable).with_name("iaemu")
    proc = subprocess.run([str(exe), "sample", "run.yaml", "--sampler", "ensemble", "--min-ess", "50",
                           "--max-samples", "3000", "-o", "chains/fast", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    fast = tmp_path / "chains" / "fast.1.txt"
    assert {"omegam", "sigma8"} <= set(fast.read_text().splitlines()[0].split()[1:])


def test_cosmology_ini_runs(v2_weights, emulator, measurement, tmp_path):  # noqa: F811
    """The shipped ini with its own values file cut to the synthetic weights' box."""
    theta = dict(zip(emulator.param_names, _theta(emulator)))
    sections = {}
    for name, (section, key) in COSMOSIS_NAMES.items():
        lo, hi = emulator.bounds[name]
        sections.setdefault(section, []).append(f"{key} = {lo!r} {float(theta[name])!r} {hi!r}\n")
    values = tmp_path / "values.ini"
    values.write_text("".join(f"[{s}]\n" + "".join(lines) for s, lines in sections.items()))
    params = {"iaemu.weights": str(v2_weights), "iaemu_like.data_file": str(measurement),
              "pipeline.values": str(values), "test.save_dir": str(tmp_path / "out")}
    proc = _run_ini(tmp_path, params)
    like = _likelihood_values(tmp_path / "out")
    assert np.isfinite(like["iaemu_like"]), proc.stdout[-2000:]
    assert (tmp_path / "out" / "hod_parameters" / "values.txt").is_file()


def test_cosmology_examples_lie_inside_the_shipped_v2_weights():
    """Priors of the yaml and ranges of the values file: inside the shipped weights' training box
    (Cobaya and CosmoSIS refuse anything beyond it at start-up)."""
    from iaemu_likelihood.weights import read_metadata

    bounds = read_metadata(SHIPPED)["bounds"]
    info = yaml.safe_load(YAML.read_text())
    for cobaya, name in (("omegam", "Omega_m"), ("sigma8", "sigma_8")):
        prior = info["params"][cobaya]["prior"]
        assert bounds[name][0] <= prior["min"] < prior["max"] <= bounds[name][1], name
    assert bounds["z"][0] <= info["theory"][THEORY]["redshift"] <= bounds["z"][1]
    parser = configparser.ConfigParser()
    parser.optionxform = str
    parser.read(VALUES)
    for name, (section, key) in COSMOSIS_NAMES.items():
        low, start, high = (float(v) for v in parser[section][key].split())
        assert bounds[name][0] <= low < start < high <= bounds[name][1], name


def test_shipped_cosmology_ini_runs_as_is(tmp_path):
    """Untouched: the shipped v2 weights, the bundled cosmology measurement, the values file."""
    _run_ini(tmp_path, {"test.save_dir": str(tmp_path / "out")})
    like = _likelihood_values(tmp_path / "out")
    assert np.isfinite(like["iaemu_like"])


def _run_ini(cwd, params):
    return _run_cosmosis(cwd, params, ini=INI)


def _likelihood_values(out):
    return _read_values(out / "likelihoods" / "values.txt")
