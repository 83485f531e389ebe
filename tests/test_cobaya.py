"""The Cobaya theory and likelihood, on the synthetic test weights (never the product)."""
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from cobaya.likelihood import Likelihood
from cobaya.log import LoggedError
from cobaya.model import get_model

from iaemu_likelihood.conventions import PARAM_LATEX, PARAM_NAMES
from iaemu_likelihood.data import save_measurement
from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.testing import write_synthetic_weights

THEORY = "iaemu_likelihood.IAEmuTheory"
LIKE = "iaemu_likelihood.IAEmuLikelihood"
REPO = Path(__file__).resolve().parents[1]
YAMLS = sorted((REPO / "yamls").glob("*.yaml"))
#: the yamls for the seven-input weights (ia_hod_cosmology.yaml needs cosmology inputs: its own
#: tests in tests/test_examples_cosmology.py)
HOD_YAMLS = [p for p in YAMLS if "redshift" not in yaml.safe_load(p.read_text())["theory"][THEORY]]
#: agreement of Cobaya's log-posterior with the independent numpy computation
LOGPOST_RTOL = 1e-10
#: the example fiducial point (Zheng07 Mr < -20, mu_cen = 0.8, mu_sat = 0.5)
FIDUCIAL = dict(zip(PARAM_NAMES, (0.8, 0.5, 12.02, 0.26, 11.38, 13.31, 1.06)))


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_synthetic_weights(tmp_path_factory.mktemp("weights") / "synthetic")


@pytest.fixture(scope="module")
def emulator(weights):
    return IAEmulator.load(weights)


def write_measurement(path, emulator, truth=FIDUCIAL, seed=1, statistics=("xi", "omega", "eta")):
    """One realization drawn from the emulator's one-mock covariance, with that covariance."""
    pred = emulator.predict(truth)
    cov = emulator.covariance(truth, ["aleatoric"])
    data = np.random.default_rng(seed).multivariate_normal(pred.vector(), cov)
    blocks = {s: data[20 * i:20 * (i + 1)] for i, s in enumerate(("xi", "omega", "eta"))}
    keep = [i for i, s in enumerate(("xi", "omega", "eta")) if s in statistics]
    idx = np.concatenate([np.arange(20 * i, 20 * (i + 1)) for i in keep])
    return save_measurement(path, emulator.r, {s: blocks[s] for s in statistics},
                            cov[np.ix_(idx, idx)], {"truth": dict(truth)})


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, emulator):
    return write_measurement(tmp_path_factory.mktemp("data") / "measurement.npz", emulator)


def make_info(weights, data_file, theory=None, like=None, params=None):
    info = {"theory": {THEORY: {"weights": str(weights), **(theory or {})}},
            "likelihood": {LIKE: {"data_file": str(data_file), **(like or {})}}}
    if params:
        info["params"] = params
    return info


def copy_weights_with_metadata(src, dst, **changes):
    """A copy of a weights folder with metadata entries changed (checksums rewritten)."""
    from iaemu_likelihood.weights_io import write_checksums

    shutil.copytree(src, dst)
    meta = json.loads((dst / "metadata.json").read_text())
    meta.update(changes)
    (dst / "metadata.json").write_text(json.dumps(meta))
    write_checksums(dst)
    return dst


def numpy_logposterior(emulator, data_file, theta, terms=("epistemic",), statistics=None,
                       r_min=0.0, r_max=np.inf, bounds=None):
    """ln prior + ln L computed directly with numpy (no iaemu likelihood code)."""
    with np.load(data_file) as f:
        r = f["r"]
        present = [str(s) for s in f["statistics"]]
        d_all = np.concatenate([f[s] for s in present])
        cov_all = f["cov"]
    stats = statistics or present
    keep_r = (r >= r_min) & (r <= r_max)
    d_idx, e_idx = [], []
    for s in stats:
        i = present.index(s)
        d_idx += list(i * r.size + np.flatnonzero(keep_r))
        e_idx += list(("xi", "omega", "eta").index(s) * 20
                      + np.searchsorted(emulator.r, r[keep_r] * (1 - 1e-9)))
    pred = emulator.predict(theta, epistemic=True)
    sd = np.sqrt(pred.variance_vector())
    cov_emu = np.zeros((60, 60))
    if "aleatoric" in terms:
        cov_emu += sd[:, None] * emulator.residual_correlation * sd[None, :]
    if "epistemic" in terms:
        cov_emu += np.diag(pred.epistemic_vector())
    cov = cov_all[np.ix_(d_idx, d_idx)] + cov_emu[np.ix_(e_idx, e_idx)]
    resid = d_all[d_idx] - pred.vector()[e_idx]
    chi2 = resid @ np.linalg.solve(cov, resid)
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0
    loglike = -0.5 * (chi2 + logdet + len(resid) * np.log(2 * np.pi))
    bounds = bounds or emulator.bounds
    logprior = -sum(np.log(hi - lo) for lo, hi in bounds.values())
    return logprior + loglike


def point(emulator, rng):
    lo = np.array([emulator.bounds[p][0] for p in PARAM_NAMES])
    hi = np.array([emulator.bounds[p][1] for p in PARAM_NAMES])
    return dict(zip(PARAM_NAMES, lo + (hi - lo) * rng.uniform(0.1, 0.9, size=7)))


# ---------------------------------------------------------------------------- log-posterior
LIKE_CONFIGS = {
    "default": ({}, {}),
    "cuts, both terms": ({"statistics": ["omega", "eta"], "r_min": 0.5, "r_max": 8.0,
                          "emulator_covariance": ["aleatoric", "epistemic"]},
                         {"statistics": ["omega", "eta"], "r_min": 0.5, "r_max": 8.0,
                          "terms": ("aleatoric", "epistemic")}),
    "data covariance only": ({"emulator_covariance": []}, {"terms": ()}),
    "xi only, aleatoric": ({"statistics": "xi", "emulator_covariance": "aleatoric"},
                           {"statistics": ["xi"], "terms": ("aleatoric",)}),
}


@pytest.mark.parametrize("config", sorted(LIKE_CONFIGS))
def test_logposterior_equals_numpy(weights, emulator, data_file, config):
    like_opts, ref_opts = LIKE_CONFIGS[config]
    model = get_model(make_info(weights, data_file, like=like_opts))
    rng = np.random.default_rng(7)
    for theta in [FIDUCIAL] + [point(emulator, rng) for _ in range(3)]:
        got = model.logposterior(theta).logpost
        expected = numpy_logposterior(emulator, data_file, theta, **ref_opts)
        assert math.isfinite(expected)
        assert got == pytest.approx(expected, rel=LOGPOST_RTOL, abs=LOGPOST_RTOL)


def test_data_subset_file(weights, emulator, tmp_path):
    path = write_measurement(tmp_path / "eta_only.npz", emulator, statistics=("eta",))
    model = get_model(make_info(weights, path, like={"r_min": 1.0}))
    got = model.logposterior(FIDUCIAL).logpost
    assert got == pytest.approx(numpy_logposterior(emulator, path, FIDUCIAL, r_min=1.0),
                                rel=LOGPOST_RTOL)


def test_derived_parameters(weights, emulator, data_file):
    model = get_model(make_info(weights, data_file))
    result = model.logposterior(FIDUCIAL, as_dict=True)
    expected = emulator.derived(FIDUCIAL)
    assert result["derived"]["n_gal"] == pytest.approx(expected["n_gal"], rel=1e-12)
    assert result["derived"]["f_sat"] == pytest.approx(expected["f_sat"], rel=1e-12)


def test_labels_and_default_priors_follow_weights(weights, emulator, data_file, tmp_path):
    model = get_model(make_info(weights, data_file))
    sampled = model.parameterization.sampled_params_info()
    assert list(sampled) == list(PARAM_NAMES)
    for name, info in sampled.items():
        assert info["prior"] == {"min": emulator.bounds[name][0], "max": emulator.bounds[name][1]}
        assert info["latex"] == PARAM_LATEX[name]
    # other weights with another training box: priors, ref and proposal move with it
    narrow = {p: [lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo)] for p, (lo, hi) in emulator.bounds.items()}
    other = copy_weights_with_metadata(weights, tmp_path / "narrow", bounds=narrow)
    model = get_model(make_info(other, data_file))
    info = model.parameterization.sampled_params_info()
    for name, (lo, hi) in narrow.items():
        assert info[name]["prior"] == {"min": lo, "max": hi}
        assert lo < info[name]["ref"]["loc"] < hi
        assert info[name]["proposal"] < 0.5 * (hi - lo)
    bounds = model.prior.bounds()
    np.testing.assert_allclose(bounds, [narrow[p] for p in PARAM_NAMES])


# ---------------------------------------------------------------------------- range handling
def test_prior_beyond_training_range_is_an_error(weights, data_file):
    params = {"logMmin": {"prior": {"min": 10.0, "max": 13.0}}}
    with pytest.raises(LoggedError, match=r"range of logMmin is \[10, 13\], beyond the training range"):
        get_model(make_info(weights, data_file, params=params))


def test_fixed_value_outside_training_range_is_an_error(weights, data_file):
    with pytest.raises(LoggedError, match=r"alpha is fixed to 3, outside the training range"):
        get_model(make_info(weights, data_file, params={"alpha": 3.0}))


def test_narrower_prior_is_accepted(weights, emulator, data_file):
    model = get_model(make_info(weights, data_file, params={"mu_cen": {"prior": {"min": 0.0, "max": 1.0}}}))
    bounds = dict(emulator.bounds, mu_cen=(0.0, 1.0))
    assert model.logposterior(FIDUCIAL).logpost == pytest.approx(
        numpy_logposterior(emulator, data_file, FIDUCIAL, bounds=bounds), rel=LOGPOST_RTOL)


@pytest.mark.parametrize("value", [1.5, -7.0, np.nan, np.inf])
def test_out_of_range_point_is_rejected_never_nan(weights, data_file, value):
    params = {"mu_cen": {"prior": {"dist": "norm", "loc": 0.0, "scale": 1.0}}}
    model = get_model(make_info(weights, data_file, params=params))
    theta = dict(FIDUCIAL, mu_cen=value)
    loglikes, _ = model.loglikes(theta)
    assert loglikes.tolist() == [-np.inf]
    if np.isfinite(value):
        assert model.logposterior(theta).logpost == -np.inf


def test_out_of_range_raise_policy(weights, data_file):
    params = {"mu_cen": {"prior": {"dist": "norm", "loc": 0.0, "scale": 1.0}}}
    model = get_model(make_info(weights, data_file, theory={"out_of_range": "raise"}, params=params))
    assert math.isfinite(model.logposterior(FIDUCIAL).logpost)
    with pytest.raises(LoggedError, match="mu_cen"):
        model.logposterior(dict(FIDUCIAL, mu_cen=1.5))


def test_design_band(weights, data_file, tmp_path):
    from iaemu_likelihood.training.design import DesignRule

    rule = DesignRule(logMmin_range=(11.6, 13.5))
    banded = copy_weights_with_metadata(weights, tmp_path / "banded", support=rule.support_metadata())
    model = get_model(make_info(banded, data_file))
    assert math.isfinite(model.logposterior(FIDUCIAL).logpost)
    _, high = rule.band("logM0", FIDUCIAL["logMmin"])
    outside = dict(FIDUCIAL, logM0=float(high) + 0.1)  # inside the box, above the band
    assert model.loglikes(outside)[0].tolist() == [-np.inf]
    raising = get_model(make_info(banded, data_file, theory={"out_of_range": "raise"}))
    with pytest.raises(LoggedError, match="training support"):
        raising.loglikes(outside)


def test_fixed_value_outside_support_band_fails_at_start_up(banded, band_rule, data_file):
    """Inside the box but outside the band: one line naming the parameter, value and band, at
    start-up (not a sampler that never finds a finite starting point)."""
    _, high = band_rule.band("logM0", FIDUCIAL["logMmin"])
    value = round(float(high) + 0.2, 3)
    params = {"logMmin": FIDUCIAL["logMmin"], "logM0": value}
    with pytest.raises(LoggedError) as info:
        get_model(make_info(banded, data_file, params=params))
    message = str(info.value)
    assert f"logM0 is fixed to {value:g}, outside the training support" in message
    assert f"{float(high):.5g}] at logMmin = 12.02" in message
    assert band_rule.support_metadata()["description"] in message
    assert "\n" not in message


@pytest.mark.parametrize("value", [True, False, float("nan"), float("inf")])
def test_fixed_value_that_is_not_a_real_number_fails_at_start_up(banded, data_file, value):
    """yaml `mu_cen: true` must not run as mu_cen = 1.0."""
    with pytest.raises(LoggedError, match=r"parameter mu_cen fixed to .*: a fixed value must be a "
                                          r"finite real number") as info:
        get_model(make_info(banded, data_file, params={"mu_cen": value}))
    assert "\n" not in str(info.value)


def test_prior_with_no_point_in_the_band_fails_at_start_up(banded, band_rule, data_file):
    _, high = band_rule.band("logM0", 12.0)
    params = {"logMmin": {"prior": {"min": 11.6, "max": 12.0}},
              "logM0": {"prior": {"min": float(high) + 0.1, "max": 14.0}}}
    with pytest.raises(LoggedError, match=r"the range of logM0 is \[.*\], outside the training "
                                          r"support: allowed logM0 in .* at logMmin = 11.6 to"):
        get_model(make_info(banded, data_file, params=params))


def test_fixed_reference_outside_the_band_fails_at_start_up(banded, band_rule, data_file):
    _, high = band_rule.band("logM0", FIDUCIAL["logMmin"])
    params = {"logMmin": {"prior": {"min": 12.0, "max": 12.05}, "ref": FIDUCIAL["logMmin"]},
              "logM0": {"prior": {"min": 10.5, "max": 14.0}, "ref": float(high) + 0.3}}
    with pytest.raises(LoggedError, match=r"reference \(starting\) values outside the emulator's "
                                          r"training support: logM0 is fixed to .* allowed logM0 in"):
        get_model(make_info(banded, data_file, params=params))


def test_prior_partly_in_the_band_is_logged_once(banded, data_file, caplog):
    with caplog.at_level(logging.INFO):
        model = get_model(make_info(banded, data_file))
    notes = [r for r in caplog.records if "reach outside the emulator's training support" in r.getMessage()]
    assert len(notes) == 1 and "prior volume is inside it" in notes[0].getMessage()
    assert math.isfinite(model.logposterior(FIDUCIAL).logpost)


def test_poor_best_fit_is_reported_when_the_run_ends(weights, data_file, caplog):
    """The likelihood warns at close if no point it saw fits the data (e.g. a failed minimisation)."""
    model = get_model(make_info(weights, data_file))
    model.logposterior(dict(FIDUCIAL, mu_cen=-0.9, mu_sat=-0.9, logM1=14.5))
    with caplog.at_level(logging.INFO):
        model.close()
    assert "the data are not fitted" in caplog.text
    caplog.clear()
    model = get_model(make_info(weights, data_file))
    model.logposterior(FIDUCIAL)
    with caplog.at_level(logging.INFO):
        model.close()
    assert "best point: chi2 =" in caplog.text and "not fitted" not in caplog.text


def test_every_point_rejected_is_reported(weights, data_file, caplog):
    params = {"mu_cen": {"prior": {"dist": "norm", "loc": 0.0, "scale": 1.0}}}
    model = get_model(make_info(weights, data_file, params=params))
    for value in (1.5, 2.0, -3.0):
        assert model.logposterior(dict(FIDUCIAL, mu_cen=value)).logpost == -np.inf
    with caplog.at_level(logging.INFO):
        model.close()
    assert "every one of the 3 points asked for was rejected" in caplog.text


def test_non_finite_emulator_output_is_rejected(weights, data_file):
    model = get_model(make_info(weights, data_file))
    theory = model.theory[THEORY]
    real_predict = theory.emulator.predict

    def broken(theta, epistemic=False, **kwargs):
        pred = real_predict(theta, epistemic=epistemic, **kwargs)
        pred.vector()[3] = np.nan
        return pred

    theory.emulator.predict = broken
    result = model.logposterior(FIDUCIAL)
    assert result.logpost == -np.inf and not np.isnan(result.loglike)


# ---------------------------------------------------------------------------- configuration errors
@pytest.mark.parametrize("options, message", [
    ({"out_of_range": "ignore"}, "out_of_range"),
    ({"covariance_terms": ["aleatoric", "systematic"]}, "systematic"),
    ({"torch_threads": 0}, "torch_threads"),
    ({"weights": "/nonexistent/weights"}, "weights missing or unusable"),
    ({"covariance_terms": 3}, "covariance_terms = 3: give a list"),
    ({"device": "gpu0"}, "IAEmuTheory option: device = 'gpu0'"),
])
def test_invalid_theory_options(weights, data_file, options, message):
    info = make_info(weights, data_file)
    info["theory"][THEORY].update(options)
    with pytest.raises(LoggedError, match=message):
        get_model(info)


def test_unknown_option_is_reported(weights, data_file):
    with pytest.raises(LoggedError, match="does not recognize"):
        get_model(make_info(weights, data_file, like={"rmin": 1.0}))


def test_corrupted_weights_are_refused(weights, data_file, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(weights, bad)
    with open(bad / "weights.npz", "ab") as f:
        f.write(b"x")
    with pytest.raises(LoggedError, match="weights missing or unusable"):
        get_model(make_info(bad, data_file))


def test_missing_default_weights_message(data_file, tmp_path, monkeypatch):
    """An installation without shipped weights stops with a clear message (simulated by an empty
    weights folder, so the test also runs where weights ship)."""
    import iaemu_likelihood.weights as weights_module

    monkeypatch.setattr(weights_module, "weights_root", lambda: tmp_path)
    assert weights_module.default_version() is None
    info = {"theory": {THEORY: None}, "likelihood": {LIKE: {"data_file": str(data_file)}}}
    with pytest.raises(LoggedError, match="weights missing"):
        get_model(info)


@pytest.mark.parametrize("options, message", [
    ({"data_file": "does/not/exist.npz"}, "no such file"),
    ({"statistics": ["gamma"]}, "unknown statistic"),
    ({"r_min": 50.0}, "leave no bin"),
    ({"r_min": {"xi": -1}}, ">= 0"),
    ({"emulator_covariance": ["noise"]}, "noise"),
    ({"emulator_covariance": 5}, "emulator_covariance = 5: give a list"),
    ({"statistics": 5}, "statistics = 5: give a name or a list"),
])
def test_invalid_likelihood_options(weights, data_file, options, message):
    with pytest.raises(LoggedError, match=message):
        get_model(make_info(weights, data_file, like=options))


def test_statistic_missing_from_file(weights, emulator, tmp_path):
    path = write_measurement(tmp_path / "xi.npz", emulator, statistics=("xi",))
    with pytest.raises(LoggedError, match=r"not available") as info:
        get_model(make_info(weights, path, like={"statistics": ["omega"]}))
    assert str(path) in str(info.value)


def test_malformed_data_file_names_file(weights, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, r=np.arange(1.0, 4.0), statistics=np.array(["xi"]), xi=np.zeros(3), cov=-np.eye(3))
    with pytest.raises(LoggedError, match="not positive definite") as info:
        get_model(make_info(weights, bad))
    assert str(bad) in str(info.value)


def test_data_off_emulator_bins(weights, emulator, tmp_path):
    path = save_measurement(tmp_path / "off.npz", emulator.r * 1.05, {"xi": np.ones(20)}, np.eye(20))
    with pytest.raises(LoggedError, match="not emulator bin centres") as info:
        get_model(make_info(weights, path))
    assert str(path) in str(info.value)


def test_relative_data_path_is_relative_to_cwd(weights, data_file, monkeypatch):
    monkeypatch.chdir(data_file.parent)
    model = get_model(make_info(weights, data_file.name))
    assert model.likelihood[LIKE].data_path == data_file.resolve()


# ---------------------------------------------------------------------------- products
class UserLikelihood(Likelihood):
    """A user's likelihood reading the theory's products."""

    def get_requirements(self):
        return {"iaemu_r": None, "iaemu_xi": None, "iaemu_omega": None, "iaemu_eta": None,
                "iaemu_covariance": {"terms": ["aleatoric"]}, "n_gal": None}

    def logp(self, **params_values):
        p = self.provider
        self.seen = {"r": p.get_iaemu_r(), "xi": p.get_iaemu_xi(), "omega": p.get_iaemu_omega(),
                     "eta": p.get_iaemu_eta(), "cov": p.get_iaemu_covariance(["aleatoric"]),
                     "via_get_result": p.get_result("iaemu_xi"), "n_gal": p.get_param("n_gal")}
        return -0.5 * float(self.seen["omega"][10] ** 2)


def test_user_likelihood_consumes_products(weights, emulator, data_file):
    info = make_info(weights, data_file)
    info["likelihood"]["mine"] = {"external": UserLikelihood}
    model = get_model(info)
    result = model.logposterior(FIDUCIAL, as_dict=True)
    seen = model.likelihood["mine"].seen
    pred = emulator.predict(FIDUCIAL)
    np.testing.assert_array_equal(seen["r"], emulator.r)
    for stat in ("xi", "omega", "eta"):
        np.testing.assert_allclose(seen[stat], pred[stat], rtol=1e-14)
    np.testing.assert_array_equal(seen["via_get_result"], seen["xi"])
    np.testing.assert_allclose(seen["cov"], emulator.covariance(FIDUCIAL, ["aleatoric"]), rtol=1e-14)
    assert seen["n_gal"] == pytest.approx(emulator.derived(FIDUCIAL)["n_gal"], rel=1e-12)
    assert result["loglikes"]["mine"] == pytest.approx(-0.5 * pred.omega[10] ** 2, rel=1e-12)
    # the iaemu likelihood in the same model still gets its own (epistemic) covariance
    assert result["loglikes"][LIKE] == pytest.approx(
        numpy_logposterior(emulator, data_file, FIDUCIAL)
        + sum(np.log(hi - lo) for lo, hi in emulator.bounds.values()), rel=LOGPOST_RTOL)


def test_theory_alone_with_a_user_likelihood(weights):
    """The theory needs no iaemu likelihood: a user's likelihood alone is enough."""
    model = get_model({"theory": {THEORY: {"weights": str(weights)}},
                       "likelihood": {"mine": {"external": UserLikelihood}}})
    assert math.isfinite(model.logposterior(FIDUCIAL).logpost)


# ---------------------------------------------------------------------------- running yamls
def _yaml_for_test(path, weights, data_file, output):
    info = yaml.safe_load(path.read_text())
    info["theory"][THEORY]["weights"] = str(weights)
    info["likelihood"][LIKE]["data_file"] = str(data_file)
    info["output"] = str(output)
    sampler = info["sampler"]
    if "mcmc" in sampler:
        sampler["mcmc"].update({"max_samples": 300})
    if "minimize" in sampler:
        sampler["minimize"].update({"best_of": 1, "max_evals": 300})
    return info


def _cobaya_run_script():
    script = Path(sys.executable).parent / "cobaya-run"
    return str(script) if script.exists() else shutil.which("cobaya-run")


@pytest.fixture(scope="module")
def short_chain(weights, data_file, tmp_path_factory):
    """A short chain of yamls/ia_hod.yaml run by the installed cobaya-run script."""
    out = tmp_path_factory.mktemp("chain")
    info = _yaml_for_test(REPO / "yamls" / "ia_hod.yaml", weights, data_file, out / "chains" / "ia_hod")
    (out / "run.yaml").write_text(yaml.safe_dump(info))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([_cobaya_run_script(), "run.yaml"], cwd=out, capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "chains" / "ia_hod"


def test_cobaya_run_chain_loads_in_getdist(short_chain):
    from getdist import loadMCSamples

    samples = loadMCSamples(str(short_chain), settings={"ignore_rows": 0.3})
    names = samples.getParamNames().list()
    assert set(PARAM_NAMES) | {"n_gal", "f_sat"} <= set(names)
    assert samples.numrows > 50
    assert np.isfinite(samples.loglikes).all()
    for p in PARAM_NAMES:
        col = samples[p]
        assert np.all(np.isfinite(col))
    updated = yaml.safe_load(Path(str(short_chain) + ".updated.yaml").read_text())
    assert updated["params"]["logMmin"]["prior"]["max"] == 13.5  # the synthetic weights' range


@pytest.mark.parametrize("path", HOD_YAMLS, ids=[p.name for p in HOD_YAMLS])
def test_every_yaml_runs(path, weights, data_file, tmp_path):
    from cobaya.run import run

    info = _yaml_for_test(path, weights, data_file, tmp_path / "chains" / path.stem)
    updated, sampler = run(info)
    products = sampler.products()
    if "mcmc" in info["sampler"]:
        assert len(products["sample"]) > 10
        assert np.isfinite(products["sample"]["minuslogpost"]).all()
    else:
        assert np.isfinite(products["minimum"]["minuslogpost"])


def test_alignment_only_yaml_fixes_the_fiducial_hod():
    info = yaml.safe_load((REPO / "yamls" / "ia_alignment_only.yaml").read_text())
    fixed = {k: v for k, v in info["params"].items() if not isinstance(v, dict)}
    assert fixed == {p: FIDUCIAL[p] for p in PARAM_NAMES[2:]}


def test_theory_yaml_matches_shipped_weights():
    from importlib import resources

    from iaemu_likelihood.weights import default_version, read_metadata

    defaults = yaml.safe_load((resources.files("iaemu_likelihood") / "IAEmuTheory.yaml").read_text())
    for name in PARAM_NAMES:
        assert defaults["params"][name]["latex"] == PARAM_LATEX[name]
    if default_version() is None:
        pytest.skip("no shipped weights yet")
    bounds = read_metadata()["bounds"]
    for name in PARAM_NAMES:
        prior = defaults["params"][name]["prior"]
        assert [prior["min"], prior["max"]] == pytest.approx(bounds[name], abs=1e-3), name


# ---------------------------------------------------------------------------- yamls from anywhere
def test_example_yamls_run_from_any_directory(weights, data_file, tmp_path, monkeypatch):
    """`iaemu examples DIR` copies every yaml; run there they need no file of the repository."""
    from cobaya.run import run

    from iaemu_likelihood.cli import main

    dest = tmp_path / "my examples"
    assert main(["examples", str(dest)]) == 0
    assert sorted(p.name for p in dest.glob("*.yaml")) == [p.name for p in YAMLS]
    monkeypatch.chdir(dest)
    info = yaml.safe_load((dest / "ia_hod.yaml").read_text())
    info["theory"][THEORY]["weights"] = str(weights)
    info["likelihood"][LIKE]["data_file"] = str(data_file)
    info["sampler"]["mcmc"]["max_samples"] = 50
    _, sampler = run(info)  # the proposal covariance is part of the yaml
    assert (dest / "chains" / "ia_hod.1.txt").is_file()
    assert len(sampler.products()["sample"]) == 50


def test_examples_command_does_not_overwrite(tmp_path, capsys):
    from iaemu_likelihood.cli import main

    assert main(["examples", str(tmp_path)]) == 0
    (tmp_path / "ia_hod.yaml").write_text("mine")
    assert main(["examples", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "ia_hod.yaml" in err and "--force" in err and err.count("\n") == 1
    assert (tmp_path / "ia_hod.yaml").read_text() == "mine"
    assert main(["examples", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "ia_hod.yaml").read_bytes() == (REPO / "yamls" / "ia_hod.yaml").read_bytes()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert main(["examples", str(not_a_folder)]) == 1


def test_examples_command_refuses_an_empty_destination_and_folders_in_the_way(tmp_path, capsys):
    from iaemu_likelihood.cli import main

    assert main(["examples", ""]) == 1
    assert "destination ''" in capsys.readouterr().err
    (tmp_path / "ia_hod.yaml").mkdir()
    assert main(["examples", str(tmp_path), "--force"]) == 1
    err = capsys.readouterr().err
    assert "ia_hod.yaml exists and is not a file" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ia_hod.yaml"]


def test_inline_proposal_covmat_is_the_covmat_file():
    mcmc = yaml.safe_load((REPO / "yamls" / "ia_hod.yaml").read_text())["sampler"]["mcmc"]
    path = REPO / "yamls" / "ia_hod.covmat"
    assert mcmc["covmat_params"] == path.read_text().splitlines()[0].lstrip("#").split()
    np.testing.assert_array_equal(np.array(mcmc["covmat"]), np.loadtxt(path))


# ---------------------------------------------------------------------------- reproducibility
def test_same_seed_gives_the_same_chain(weights, data_file, tmp_path):
    """yamls/ia_hod.yaml with its seed: two runs give the identical chain (no speed measured by
    wall time decides anything)."""
    from cobaya.run import run

    chains = []
    for i in range(2):
        info = _yaml_for_test(REPO / "yamls" / "ia_hod.yaml", weights, data_file,
                              tmp_path / f"run{i}" / "ia_hod")
        assert info["sampler"]["mcmc"]["measure_speeds"] is False
        _, sampler = run(info)
        chains.append(sampler.products()["sample"].data.to_numpy())
    np.testing.assert_array_equal(chains[0], chains[1])


# ---------------------------------------------------------------------------- best fit
#: a best fit must lie within this many posterior standard deviations (yamls/ia_hod.covmat) of the
#: example's truth (measured: at most 1.7)
BEST_FIT_SIGMAS = 3.0
#: accepted chi^2 per data point at the best fit: 1 -+ 3 sqrt(2/60) for 60 points (measured 0.81)
CHI2_PER_POINT = (0.45, 1.55)


@pytest.mark.slow
def test_minimize_yaml_recovers_the_example_truth(tmp_path, monkeypatch, caplog):
    """yamls/ia_hod_minimize.yaml as shipped (default weights, bundled example) finds the maximum
    of the posterior: near the truth, at least as probable as the truth, and a good fit."""
    from cobaya.run import run

    from iaemu_likelihood.data import example_data_path, load_measurement

    info = yaml.safe_load((REPO / "yamls" / "ia_hod_minimize.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        _, sampler = run(info)
    best = {p: float(sampler.products()["minimum"][p]) for p in PARAM_NAMES}
    truth = load_measurement(example_data_path()).metadata["truth"]
    sigma = np.sqrt(np.diag(np.loadtxt(REPO / "yamls" / "ia_hod.covmat")))
    pulls = {p: (best[p] - truth[p]) / s for p, s in zip(PARAM_NAMES, sigma)}
    assert max(abs(v) for v in pulls.values()) < BEST_FIT_SIGMAS, pulls
    model = get_model(info)
    assert model.logposterior(best).logpost >= model.logposterior(truth).logpost
    model.logposterior(best)
    terms = model.likelihood[LIKE].terms()
    assert CHI2_PER_POINT[0] < terms.chi2 / terms.n < CHI2_PER_POINT[1], terms
    assert "not fitted" not in caplog.text


def test_minimiser_stuck_at_its_start_is_reported(tmp_path, monkeypatch, caplog):
    """The old set-up (scipy's default L-BFGS-B, whose first step leaves the support band) stops at
    its random start and reports success: the likelihood says the result is no fit."""
    from cobaya.run import run

    info = yaml.safe_load((REPO / "yamls" / "ia_hod_minimize.yaml").read_text())
    info["sampler"] = {"minimize": {"method": "scipy", "best_of": 1, "seed": 1}}
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        run(info)
    assert "the data are not fitted. If this was a minimisation, it failed" in caplog.text
