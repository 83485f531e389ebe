"""The CosmoSIS modules (cosmosis_module/) run for real: example pipeline, samplers, agreement with Cobaya.

The example pipeline defaults to the shipped weights and the bundled example measurement; here
it is pointed at a synthetic weights folder and a synthetic measurement through ini overrides,
exactly as a user overrides options with ``cosmosis ... -p section.option=value``.
"""
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from repo_files import load_module

from iaemu_likelihood.conventions import PARAM_NAMES, STATISTICS
from iaemu_likelihood.data import save_measurement
from iaemu_likelihood.cli_cosmosis_dir import cosmosis_dir
from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.errors import ConfigError
from iaemu_likelihood.likelihood_math import gaussian_loglike
from iaemu_likelihood.testing import write_synthetic_weights

#: the installed modules (package data), as users get them from `iaemu cosmosis-dir`
MODULE_DIR = Path(cosmosis_dir())
EXAMPLE_INI = MODULE_DIR / "examples" / "ia_hod.ini"
ENV_VAR = "IAEMU_COSMOSIS_DIR"
#: CosmoSIS and Cobaya must give the same log-likelihood to this relative tolerance
AGREEMENT_RTOL = 1e-10
#: the test sampler's files are written with ~16 significant digits
TEXT_RTOL = 1e-12
N_RANDOM_POINTS = 10
SEED = 20261125
#: where the start of the example values file lies in PARAM_NAMES order
VALUES_SECTIONS = {"mu_cen": "intrinsic_alignment_parameters", "mu_sat": "intrinsic_alignment_parameters",
                   **{n: "hod_parameters" for n in PARAM_NAMES[2:]}}


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_synthetic_weights(tmp_path_factory.mktemp("weights") / "synthetic", seed=0)


@pytest.fixture(scope="module")
def emulator(weights):
    return IAEmulator.load(weights)


def _example_values():
    """(low, start, high) of each parameter of the example values file, PARAM_NAMES order."""
    import configparser

    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    parser.read(MODULE_DIR / "examples" / "ia_hod_values.ini")
    return np.array([[float(x) for x in parser[VALUES_SECTIONS[n]][n].split()] for n in PARAM_NAMES])


@pytest.fixture(scope="module")
def truth():
    return _example_values()[:, 1]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, emulator, truth):
    """Synthetic measurement: emulator mean at the truth plus noise from 1/4 of one mock's covariance."""
    cov = 0.25 * emulator.covariance(truth, terms=("aleatoric",))
    cov += np.diag(1e-6 * np.diag(cov))  # keep it comfortably positive definite
    rng = np.random.default_rng(SEED)
    d = rng.multivariate_normal(emulator.predict(truth).vector(), cov)
    n = emulator.r.size
    values = {s: d[i * n:(i + 1) * n] for i, s in enumerate(STATISTICS)}
    return save_measurement(tmp_path_factory.mktemp("data") / "measurement.npz", emulator.r, values, cov,
                            {"truth": dict(zip(PARAM_NAMES, truth.tolist()))})


def write_values_file(path, ranges, start):
    """A CosmoSIS values file: ``low start high`` per parameter (``value`` when low == high)."""
    lines = []
    for section in dict.fromkeys(VALUES_SECTIONS.values()):
        lines.append(f"[{section}]")
        for name in (n for n in PARAM_NAMES if VALUES_SECTIONS[n] == section):
            low, high = (float(v) for v in ranges[name])
            text = repr(low) if low == high else f"{low!r} {float(start[name])!r} {high!r}"
            lines.append(f"{name} = {text}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def values_file(tmp_path_factory, emulator, truth):
    """The example's values file cut to the (narrower) box of the synthetic weights."""
    example = _example_values()
    ranges = {n: (max(lo, emulator.bounds[n][0]), min(hi, emulator.bounds[n][1]))
              for n, (lo, _, hi) in zip(PARAM_NAMES, example)}
    return write_values_file(tmp_path_factory.mktemp("values") / "values.ini", ranges,
                             dict(zip(PARAM_NAMES, truth)))


@pytest.fixture(scope="module", autouse=True)
def module_env():
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(MODULE_DIR)
    yield
    if old is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = old


def _overrides(weights, data_file, values_file, **extra):
    """``section.option=value`` overrides pointing the example at the test weights, data and values."""
    params = {"iaemu.weights": str(weights), "iaemu_like.data_file": str(data_file),
              "pipeline.values": str(values_file), "runtime.verbosity": "quiet"}
    params.update(extra)
    return params


def _run_cosmosis(cwd, params, timeout=300, ini=EXAMPLE_INI):
    """Run the ``cosmosis`` command on an example ini (default ``ia_hod.ini``) from ``cwd`` (not the
    repository), with ``section.option=value`` overrides ``params``."""
    exe = Path(sys.executable).with_name("cosmosis")
    cmd = [str(exe), str(ini), "-p", *(f"{k}={v}" for k, v in params.items())]
    env = {**os.environ, ENV_VAR: str(MODULE_DIR), "MPLBACKEND": "Agg"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"cosmosis failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _pipeline(weights, data_file, values_file, **extra):
    from cosmosis.runtime.config import Inifile
    from cosmosis.runtime.pipeline import LikelihoodPipeline

    override = {tuple(k.split(".", 1)): str(v) for k, v in _overrides(weights, data_file, values_file,
                                                                                **extra).items()}
    return LikelihoodPipeline(Inifile(str(EXAMPLE_INI), override=override))


def _load_interface():
    """The interface file as a module (CosmoSIS loads it by path the same way)."""
    return load_module(MODULE_DIR / "iaemu_interface.py")


def _read_values(path):
    """``name = value`` lines of a CosmoSIS test-sampler output file (comments skipped)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = float(value)
    return out


# ---------------------------------------------------------------------------------------- samplers
def test_test_sampler_writes_section(tmp_path, weights, data_file, values_file, emulator, truth):
    save_dir = tmp_path / "out"
    _run_cosmosis(tmp_path, _overrides(weights, data_file, values_file, **{"test.save_dir": save_dir}))
    section = save_dir / "ia_correlations"
    pred = emulator.predict(truth, epistemic=True)
    np.testing.assert_allclose(np.loadtxt(section / "r_h.txt"), emulator.r, rtol=TEXT_RTOL)
    for name in (*STATISTICS, *(f"{s}_var" for s in STATISTICS), *(f"{s}_epi_var" for s in STATISTICS)):
        np.testing.assert_allclose(np.loadtxt(section / f"{name}.txt"), pred[name], rtol=TEXT_RTOL,
                                   err_msg=name)
    full = emulator.covariance(truth, terms=("aleatoric", "epistemic"))
    np.testing.assert_allclose(np.loadtxt(section / "covariance.txt"), full, rtol=TEXT_RTOL, atol=0)
    np.testing.assert_allclose(np.loadtxt(section / "covariance_epistemic.txt"),
                               emulator.covariance(truth, terms=("epistemic",)), rtol=TEXT_RTOL, atol=0)
    derived = emulator.derived(truth)
    for where in (section, save_dir / "hod_parameters"):
        got = _read_values(where / "values.txt")
        assert got["n_gal"] == pytest.approx(derived["n_gal"], rel=TEXT_RTOL)
        assert got["f_sat"] == pytest.approx(derived["f_sat"], rel=TEXT_RTOL)

    # the likelihood equals the shared maths evaluated independently (default: epistemic term only)
    from iaemu_likelihood.data import load_measurement

    m = load_measurement(data_file)
    expected = gaussian_loglike(m.vector(), pred.vector(), m.cov + emulator.covariance(truth, ("epistemic",)))
    got = _read_values(save_dir / "likelihoods" / "values.txt")["iaemu_like"]
    assert got == pytest.approx(expected, rel=TEXT_RTOL)


def test_emcee_chain_loads_in_getdist(tmp_path, weights, data_file, values_file):
    chain = tmp_path / "chain.txt"
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    _run_cosmosis(elsewhere, _overrides(weights, data_file, values_file, **{
        "runtime.sampler": "emcee", "emcee.walkers": 16, "emcee.samples": 12, "emcee.nsteps": 4,
        "output.filename": chain}))
    header = [line for line in chain.read_text().splitlines() if line.startswith("#")]
    assert "#module_0=iaemu 0.1" in header and "#module_1=iaemu_like 0.1" in header  # module.yaml found

    from cosmosis.getdist import cosmosis_to_getdist

    samples = cosmosis_to_getdist(str(chain), "iaemu", burn=0.3)
    names = samples.getParamNames().list()
    assert "intrinsic_alignment_parameters--mu_cen" in names
    assert "hod_parameters--logmmin" in names
    assert any(n.lower() == "hod_parameters--n_gal" for n in names)
    assert samples.numrows > 0
    assert np.isfinite(samples.getMeans()).all()


def test_maxlike_writes_bestfit(tmp_path, weights, data_file, values_file):
    _run_cosmosis(tmp_path, _overrides(weights, data_file, values_file, **{"runtime.sampler": "maxlike",
                                                               "maxlike.maxiter": 200}))
    assert (tmp_path / "ia_hod_bestfit_values.ini").is_file()


# ---------------------------------------------------------------------------------------- agreement
AGREEMENT_CASES = {
    "defaults": ({}, {}),
    "cuts-and-both-terms": (
        {"iaemu_like.statistics": "omega eta", "iaemu_like.r_min": 1.0, "iaemu_like.r_max_eta": 8.0,
         "iaemu_like.emulator_covariance": "aleatoric epistemic"},
        {"statistics": ["omega", "eta"], "r_min": 1.0, "r_max": {"eta": 8.0},
         "emulator_covariance": ["aleatoric", "epistemic"]}),
}


@pytest.mark.parametrize("case", sorted(AGREEMENT_CASES))
def test_cosmosis_and_cobaya_loglikes_agree(case, weights, data_file, values_file, emulator):
    from cobaya.model import get_model

    cosmosis_options, cobaya_options = AGREEMENT_CASES[case]
    pipeline = _pipeline(weights, data_file, values_file, **cosmosis_options)
    model = get_model({
        "theory": {"iaemu_likelihood.IAEmuTheory": {"weights": str(weights)}},
        "likelihood": {"iaemu_likelihood.IAEmuLikelihood": {"data_file": str(data_file), **cobaya_options}},
    })
    varied = [p.name.lower() for p in pipeline.varied_params]
    assert varied == [n.lower() for n in PARAM_NAMES]
    # inside both the example's ranges and the (synthetic) training range
    limits = [(emulator.bounds[n], p.limits) for n, p in zip(PARAM_NAMES, pipeline.varied_params)]
    low = np.array([max(train[0], example[0]) for train, example in limits])
    high = np.array([min(train[1], example[1]) for train, example in limits])
    rng = np.random.default_rng(SEED)
    for _ in range(N_RANDOM_POINTS):
        theta = low + (high - low) * rng.uniform(size=low.size)
        like_cosmosis = pipeline.run_results(theta).like
        loglikes, _ = model.loglikes(dict(zip(PARAM_NAMES, theta)))
        like_cobaya = float(loglikes[0])
        assert math.isfinite(like_cosmosis) and math.isfinite(like_cobaya), theta
        assert like_cosmosis == pytest.approx(like_cobaya, rel=AGREEMENT_RTOL, abs=0), theta


# ---------------------------------------------------------------------------------------- failures
def test_point_outside_the_band_is_rejected_without_stopping(banded, data_file, values_file, truth,
                                                             band_rule, caplog):
    """Values ranges that partly overlap the band are fine (logged once); a point outside it is
    rejected by the module and the pipeline carries on."""
    with caplog.at_level(logging.INFO):
        pipeline = _pipeline(banded, data_file, values_file, **{"pipeline.priors": ""})
    assert caplog.text.count("reach outside the emulator's training support band") == 1
    bad = truth.copy()
    _, high = band_rule.band("logM0", truth[PARAM_NAMES.index("logMmin")])
    bad[PARAM_NAMES.index("logM0")] = float(high) + 0.3  # inside the values range, above the band
    assert pipeline.run_results(bad).post == -np.inf
    assert "logM0" in caplog.text and "training support" in caplog.text
    assert np.isfinite(pipeline.run_results(truth).post)


def test_values_range_beyond_the_box_fails_in_setup(tmp_path, weights, data_file, values_file, truth,
                                                    emulator):
    ranges = dict(emulator.bounds, logM0=(9.0, emulator.bounds["logM0"][1]))
    wide = write_values_file(tmp_path / "wide.ini", ranges, dict(zip(PARAM_NAMES, truth)))
    with pytest.raises(ConfigError) as info:
        _pipeline(weights, data_file, values_file, **{"pipeline.values": wide})
    message = str(info.value)
    assert str(wide) in message and "\n" not in message
    assert f"the range of logM0 is [9, {emulator.bounds['logM0'][1]:g}], beyond the training range" \
        in message


def test_values_range_outside_the_band_fails_in_setup(tmp_path, banded, data_file, values_file, truth,
                                                      emulator, band_rule):
    start = dict(zip(PARAM_NAMES, truth))
    _, high = band_rule.band("logM0", start["logMmin"])
    ranges = dict(emulator.bounds, logMmin=(start["logMmin"],) * 2,
                  logM0=(float(high) + 0.1, emulator.bounds["logM0"][1]))
    start["logM0"] = float(high) + 0.2
    path = write_values_file(tmp_path / "off_band.ini", ranges, start)
    with pytest.raises(ConfigError, match=r"the range of logM0 is .* outside the training support: "
                                          r"allowed logM0 in \[.*\] at logMmin = 12.02 \(Zheng07"):
        _pipeline(banded, data_file, values_file, **{"pipeline.values": path})


def test_start_outside_the_band_fails_in_setup(tmp_path, banded, data_file, values_file, truth,
                                               emulator, band_rule):
    start = dict(zip(PARAM_NAMES, truth))
    _, high = band_rule.band("logM0", start["logMmin"])
    start["logM0"] = float(high) + 0.3  # the range (the box) overlaps the band, the start does not
    path = write_values_file(tmp_path / "bad_start.ini", emulator.bounds, start)
    with pytest.raises(ConfigError, match=r"starting values outside the emulator's training support: "
                                          r"logM0 is fixed to .* allowed logM0 in"):
        _pipeline(banded, data_file, values_file, **{"pipeline.values": path})


def test_values_file_without_a_parameter_is_logged(tmp_path, weights, data_file, values_file, caplog):
    text = "\n".join(line for line in values_file.read_text().splitlines()
                     if not line.startswith("alpha"))
    path = tmp_path / "no_alpha.ini"
    path.write_text(text + "\n")
    with caplog.at_level(logging.WARNING):
        _pipeline(weights, data_file, values_file, **{"pipeline.values": path})
    assert "sets no hod_parameters/alpha: another module must" in caplog.text


def test_missing_emulator_term_fails_in_setup(weights, data_file, values_file):
    with pytest.raises(ConfigError, match=r"emulator_covariance needs aleatoric, which module \[iaemu\] "
                                          r"does not compute \(its covariance_terms = epistemic\)"):
        _pipeline(weights, data_file, values_file, **{"iaemu.covariance_terms": "epistemic",
                                                     "iaemu_like.emulator_covariance": "aleatoric"})
    with pytest.raises(ConfigError, match="does not compute"):
        _pipeline(weights, data_file, values_file, **{"iaemu.covariance_terms": "none"})


def test_likelihood_before_emulator_fails_in_setup(weights, data_file, values_file):
    with pytest.raises(ConfigError, match=r"module \[iaemu_like\] comes before \[iaemu\]"):
        _pipeline(weights, data_file, values_file, **{"pipeline.modules": "iaemu_like iaemu"})


def test_default_section_keys_are_not_unknown_options(weights, data_file, values_file, truth):
    pipeline = _pipeline(weights, data_file, values_file, **{"DEFAULT.my_data_dir": "/somewhere"})
    assert np.isfinite(pipeline.run_results(truth).post)


def test_failed_fit_is_reported_at_cleanup(tmp_path, weights, data_file, values_file, caplog):
    """cleanup warns when no point the likelihood saw fits the data (e.g. a maxlike that stopped)."""
    far = _example_values()[:, 1].copy()
    far[0], far[1] = -0.9, -0.9  # mu_cen, mu_sat far from the data's 0.8, 0.5
    pipeline = _pipeline(weights, data_file, values_file)
    assert np.isfinite(pipeline.run_results(far).post)
    with caplog.at_level(logging.INFO):
        pipeline.cleanup()
    assert "the data are not fitted" in caplog.text


def test_interface_execute_returns_nonzero(weights):
    from cosmosis.datablock import DataBlock, option_section

    interface = _load_interface()
    options = DataBlock()
    options[option_section, "weights"] = str(weights)
    options[option_section, "suffix"] = "red"
    config = interface.setup(options)
    assert config is not None

    def block_at(theta):
        block = DataBlock()
        for name, value in zip(PARAM_NAMES, theta):
            block[VALUES_SECTIONS[name] + "_red", name] = float(value)
        return block

    good = _example_values()[:, 1]
    block = block_at(good)
    assert interface.execute(block, config) == 0
    assert block["ia_correlations_red", "xi"].shape == (20,)
    assert block["ia_correlations_red", "covariance"].shape == (60, 60)
    assert block.has_value("hod_parameters_red", "n_gal")

    for name, value in (("mu_sat", 1.5), ("alpha", np.nan)):
        theta = good.copy()
        theta[PARAM_NAMES.index(name)] = value
        assert interface.execute(block_at(theta), config) == 1
    missing = block_at(good)
    missing._delete_section("hod_parameters_red")
    assert interface.execute(missing, config) == 1
    interface.cleanup(config)


BAD_OPTIONS = [
    ({"iaemu.covariance_terms": "aleatoric bogus"}, ValueError, "covariance_terms"),
    ({"iaemu.derived_section": "elsewhere"}, ValueError, "derived_section"),
    ({"iaemu.weights": "/no/such/weights"}, Exception, "not found"),
    ({"iaemu_like.data_file": "/no/such/file.npz"}, ValueError, "no such file"),
    ({"iaemu_like.statistics": "xi gamma"}, ValueError, "gamma"),
    ({"iaemu_like.r_min": "small"}, ValueError, "r_min"),
    ({"iaemu_like.r_min": 50.0}, ValueError, "leave no bin"),
    ({"iaemu_like.emulator_covariance": "everything"}, ValueError, "emulator_covariance"),
    ({"iaemu.covariance_term": "aleatoric"}, ConfigError,
     r"section \[iaemu\] of the parameter file: unknown key 'covariance_term'; did you mean "
     r"'covariance_terms'\?"),
    ({"iaemu_like.rmin": 1.0}, ConfigError, "unknown key 'rmin'; did you mean 'r_min'"),
    ({"iaemu_like.x_section": "elsewhere"}, ConfigError, "unknown key 'x_section'"),
    ({"iaemu_like.include_constant": "maybe"}, ConfigError, "include_constant = 'maybe' is not a boolean"),
    ({"iaemu_like.likelihood_only": "maybe"}, ConfigError, "likelihood_only = 'maybe' is not a boolean"),
    ({"iaemu.compute_derived": "maybe"}, ConfigError, "compute_derived = 'maybe' is not a boolean"),
    ({"iaemu.suffix": "red"}, ConfigError,
     r"reads section ia_correlations, but the iaemu module\(s\) of \[pipeline\] modules write "
     r"ia_correlations_red \(\[iaemu\]\)"),
]


@pytest.mark.parametrize("options,error,match", BAD_OPTIONS, ids=[str(o[0]) for o in BAD_OPTIONS])
def test_bad_options_raise_in_setup(weights, data_file, values_file, options, error, match):
    with pytest.raises(error, match=match):
        _pipeline(weights, data_file, values_file, **options)


# ---------------------------------------------------------------------------------------- documentation
@pytest.mark.parametrize("folder,section", [(MODULE_DIR, "iaemu"), (MODULE_DIR / "like", "iaemu_like")])
def test_module_yaml_documents_the_example_options(folder, section):
    from cosmosis.runtime.config import Inifile

    doc = yaml.safe_load((folder / "module.yaml").read_text())
    assert (folder / doc["interface"]).is_file()
    for key in ("name", "version", "purpose", "cite", "params", "inputs", "outputs"):
        assert doc.get(key), key
    documented = {name.strip() for key in doc["params"] for name in key.split(",")}
    used = {k for k, _ in Inifile(str(EXAMPLE_INI)).items(section) if k != "file"}
    assert used <= documented, used - documented


def test_example_ranges_match_the_cobaya_priors():
    from importlib import resources

    theory = yaml.safe_load((resources.files("iaemu_likelihood") / "IAEmuTheory.yaml").read_text())
    values = _example_values()
    for name, (low, start, high) in zip(PARAM_NAMES, values):
        prior = theory["params"][name]["prior"]
        assert (low, high) == (prior["min"], prior["max"]), name
        assert low < start < high, name


def test_shipped_example_runs_as_is_with_the_shipped_weights(tmp_path):
    """The example pipeline a user copies (`iaemu cosmosis-dir`), untouched: its values and priors
    files must lie inside the shipped weights' training box (setup refuses anything beyond it)."""
    proc = _run_cosmosis(tmp_path, {"test.save_dir": str(tmp_path / "out")})
    assert "iaemu" in (proc.stdout + proc.stderr)
    like = tmp_path / "out" / "likelihoods" / "values.txt"
    assert like.is_file()
    values = _read_values(like)
    assert np.isfinite(values["iaemu_like"]) and values["iaemu_like"] > 0  # normalised Gaussian at the example truth
