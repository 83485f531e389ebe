"""A new statistic, input and architecture are local changes: everything below lives in this file.

The layout of a weights folder (:mod:`iaemu_likelihood.layout`) and the architecture registry
(:mod:`iaemu_likelihood.architectures`) are the only places the package reads them from, so a toy
statistic on its own bin axis, a toy input and a toy architecture go end to end -- weights written
by a tiny synthetic network, loaded, predicted, served through Cobaya and CosmoSIS -- without any
other file knowing about them.
"""
import math
from pathlib import Path

import numpy as np
import pytest

from iaemu_likelihood.architectures import ARCHITECTURES, Architecture, get_architecture
from iaemu_likelihood.cli_cosmosis_dir import cosmosis_dir
from iaemu_likelihood.data import save_measurement
from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.layout import DEFAULT_LAYOUT, Input, Layout, Statistic
from iaemu_likelihood.likelihood_math import gaussian_loglike
from iaemu_likelihood.testing import SYNTHETIC_BOUNDS, synthetic_mass_function
from iaemu_likelihood.weights_io import write_weights_folder

torch = pytest.importorskip("torch")

#: agreement of the emulator with an independent torch evaluation, and of CosmoSIS with Cobaya
RTOL = 1e-10
SEED = 11
#: the toy input (a redshift-like parameter read from its own CosmoSIS section) and statistic
TOY_INPUT = Input("toy_z", "", r"z_{\rm toy}", (0.0, 3.0, False), "toy")
TOY_STATISTIC = Statistic("wgp", "r_p", "comoving h^-1 Mpc", tuple(np.logspace(-0.5, 1.5, 9)),
                          "identity", "projected position-shape correlation (toy)")
#: the toy statistic first, so every index into the output vector must come from the layout
TOY_LAYOUT = Layout(inputs=(*DEFAULT_LAYOUT.inputs, TOY_INPUT),
                    statistics=(TOY_STATISTIC, *DEFAULT_LAYOUT.statistics))
TOY_BOUNDS = {**SYNTHETIC_BOUNDS, "toy_z": (0.0, 2.0)}
MODULE_DIR = Path(cosmosis_dir())


def _metadata(layout, architecture, config, n_members, rng):
    """metadata.json of synthetic weights with ``layout`` (log xi around 1, the rest around 0)."""
    low = [TOY_BOUNDS[n][0] for n in layout.param_names]
    high = [TOY_BOUNDS[n][1] for n in layout.param_names]
    output = {}
    for stat in layout.statistics:
        log = stat.name == "xi"
        output[stat.name] = {"transform": "log" if log else "identity",
                             "mean": (np.full(stat.n_bins, 1.0) if log else np.zeros(stat.n_bins)).tolist(),
                             "std": (0.1 + 0.05 * rng.random(stat.n_bins)).tolist()}
    return {"schema_version": 1, "version": f"toy-{architecture}", "synthetic": True,
            "architecture": architecture, "architecture_config": config, "ensemble_size": n_members,
            "param_names": list(layout.param_names), "statistics": list(layout.statistic_names),
            "layout": layout.to_metadata(),
            "bounds": {n: list(TOY_BOUNDS[n]) for n in layout.param_names},
            "normalisation": {"input": {"low": low, "high": high}, "output": output}}


def _write(folder, layout, architecture, config, n_members=3):
    """A weights folder of small random members of ``architecture`` (shapes from the registry)."""
    rng = np.random.default_rng(SEED)
    entry = get_architecture(architecture)
    shapes = entry.expected_shapes(entry.merged_config(config), {}, layout)
    members = [{k: (0.3 * rng.normal(size=shape)).astype(np.float32) for k, shape in shapes.items()}
               for _ in range(n_members)]
    corr = np.eye(layout.n_out)
    meta = _metadata(layout, architecture, config, n_members, rng)
    return write_weights_folder(folder, meta, members, corr, synthetic_mass_function())


def _torch_prediction(emulator, theta):
    """Mean and aleatoric variance computed independently: the registry's torch modules."""
    layout, meta = emulator.layout, emulator.metadata
    norm = meta["normalisation"]
    low, high = np.array(norm["input"]["low"]), np.array(norm["input"]["high"])
    x = torch.as_tensor((2.0 * (theta - low) / (high - low) - 1.0)[None, :], dtype=torch.float64)
    means, variances = [], []
    for sd in emulator._members:
        net = get_architecture(emulator.architecture).build_torch(emulator.architecture_config, layout)
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})
        m, v = (a.detach().numpy()[0] for a in net.double().eval()(x))
        mean, var = [], []
        for stat in layout.statistics:
            sl, out = layout.slices[stat.name], norm["output"][stat.name]
            y = m[sl] * np.array(out["std"]) + np.array(out["mean"])
            vy = v[sl] * np.array(out["std"]) ** 2
            if out["transform"] == "log":
                y = np.exp(y)
                vy = vy * y ** 2
            mean.append(y)
            var.append(vy)
        means.append(np.concatenate(mean))
        variances.append(np.concatenate(var))
    return np.mean(means, axis=0), np.mean(variances, axis=0)


def _point(emulator):
    return 0.5 * (emulator._low + emulator._high) + 0.1 * (emulator._high - emulator._low)


def _measurement(folder, emulator, theta):
    """xi, omega, eta measured at ``theta`` (the emulator's mean plus noise), on their r bins."""
    names = [s for s in emulator.layout.statistic_names if s in ("xi", "omega", "eta")]
    pred = emulator.predict(theta)
    idx = np.concatenate([np.arange(emulator.layout.slices[s].start, emulator.layout.slices[s].stop)
                          for s in names])
    cov = emulator.covariance(theta, ("aleatoric",))[np.ix_(idx, idx)]
    data = np.random.default_rng(SEED).multivariate_normal(pred.vector()[idx], cov)
    values = {s: data[20 * k:20 * (k + 1)] for k, s in enumerate(names)}
    return save_measurement(folder / "measurement.npz", emulator.axis("xi"), values, cov), idx


class WgpLikelihood:
    """A Cobaya likelihood of the toy statistic, as a user would add it (built lazily, so this
    module imports without Cobaya)."""

    @staticmethod
    def make(target, sigma):
        from cobaya.likelihood import Likelihood

        class Wgp(Likelihood):
            def get_requirements(self):
                return {"iaemu_wgp": None}

            def logp(self, **params_values):
                w = self.provider.get_iaemu_wgp()
                return -0.5 * float(np.sum(((w - target) / sigma) ** 2))

        return Wgp


def _cobaya_model(weights, data_file, extra_likelihood=None):
    from cobaya.model import get_model

    likelihood = {"iaemu_likelihood.IAEmuLikelihood": {"data_file": str(data_file),
                                                       "emulator_covariance": ["epistemic"]}}
    if extra_likelihood is not None:
        likelihood["wgp"] = {"external": extra_likelihood}
    info = {"theory": {"iaemu_likelihood.IAEmuTheory": {"weights": str(weights)}},
            "likelihood": likelihood}
    emulator_names = IAEmulator.load(weights).param_names
    if "toy_z" in emulator_names:
        info["params"] = {"toy_z": {"prior": {"min": 0.0, "max": 2.0}, "ref": 1.0, "proposal": 0.1}}
    return get_model(info)


def _cosmosis_loglike(tmp_path, weights, data_file, emulator, theta):
    """One CosmoSIS pipeline run at ``theta``: (log-likelihood, the data block)."""
    from cosmosis.runtime.config import Inifile
    from cosmosis.runtime.pipeline import LikelihoodPipeline

    sections = {"alignment": "intrinsic_alignment_parameters", "hod": "hod_parameters"}
    values = {}
    for item, value in zip(emulator.layout.inputs, theta):
        section = sections.get(item.group, f"{item.group}_parameters")
        values.setdefault(section, []).append(f"{item.name} = {float(value)!r}")
    path = tmp_path / "values.ini"
    path.write_text("".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in values.items()))
    ini = Inifile(None, override={
        ("runtime", "sampler"): "test", ("runtime", "verbosity"): "quiet",
        ("pipeline", "modules"): "iaemu iaemu_like", ("pipeline", "values"): str(path),
        ("pipeline", "likelihoods"): "iaemu", ("test", "fatal_errors"): "T",
        ("iaemu", "file"): str(MODULE_DIR / "iaemu_interface.py"), ("iaemu", "weights"): str(weights),
        ("iaemu", "covariance_terms"): "aleatoric epistemic",
        ("iaemu_like", "file"): str(MODULE_DIR / "like" / "iaemu_like.py"),
        ("iaemu_like", "data_file"): str(data_file), ("iaemu_like", "emulator_covariance"): "epistemic"})
    pipeline = LikelihoodPipeline(ini)
    block = pipeline.run_parameters([])
    return float(block["likelihoods", "iaemu_like"]), block


def _expected_loglike(emulator, data_file, idx, theta):
    with np.load(data_file) as f:
        data = np.concatenate([f[s] for s in ("xi", "omega", "eta")])
        cov = f["cov"]
    pred = emulator.predict(theta, epistemic=True)
    emu_cov = emulator.covariance(theta, ("epistemic",), prediction=pred)[np.ix_(idx, idx)]
    return gaussian_loglike(data, pred.vector()[idx], cov + emu_cov)


# ---------------------------------------------------------------------------------------- toy statistic
@pytest.fixture(scope="module")
def toy_weights(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("toy") / "weights", TOY_LAYOUT, "mlp",
                  {"width": 16, "n_hidden": 2, "activation": "silu", "var_floor": 1e-6})


def test_toy_statistic_and_input_load_and_predict(toy_weights):
    emulator = IAEmulator.load(toy_weights)
    assert emulator.layout == TOY_LAYOUT and emulator.param_names[-1] == "toy_z"
    theta = _point(emulator)
    pred = emulator.predict(theta, epistemic=True)
    assert pred.wgp.shape == (TOY_STATISTIC.n_bins,) and pred.xi.shape == (20,)
    assert pred.vector().shape == (TOY_LAYOUT.n_out,) and "wgp_epi_var" in pred.keys()
    np.testing.assert_allclose(emulator.axis("wgp"), TOY_STATISTIC.centres, rtol=0)
    mean, var = _torch_prediction(emulator, theta)
    np.testing.assert_allclose(pred.vector(), mean, rtol=RTOL)
    np.testing.assert_allclose(pred.variance_vector(), var, rtol=RTOL)
    assert emulator.covariance(theta).shape == (TOY_LAYOUT.n_out, TOY_LAYOUT.n_out)
    derived = emulator.derived(theta)
    assert derived["n_gal"] > 0 and 0 <= derived["f_sat"] < 1
    with pytest.raises(ValueError, match="toy_z"):
        emulator.predict(theta[:-1])


def test_toy_statistic_and_input_through_cobaya_and_cosmosis(toy_weights, tmp_path):
    emulator = IAEmulator.load(toy_weights)
    theta = _point(emulator)
    data_file, idx = _measurement(tmp_path, emulator, theta)
    target = emulator.predict(theta).wgp + 0.01
    model = _cobaya_model(toy_weights, data_file, WgpLikelihood.make(target, 0.05))
    point = dict(zip(emulator.param_names, theta))
    loglikes, derived = model.loglikes(point)
    expected = _expected_loglike(emulator, data_file, idx, theta)
    assert loglikes[0] == pytest.approx(expected, rel=RTOL)
    wgp = -0.5 * np.sum(((emulator.predict(theta).wgp - target) / 0.05) ** 2)
    assert loglikes[1] == pytest.approx(wgp, rel=RTOL)
    assert derived[0] == pytest.approx(emulator.derived(theta)["n_gal"], rel=RTOL)
    like, block = _cosmosis_loglike(tmp_path, toy_weights, data_file, emulator, theta)
    assert math.isfinite(like) and like == pytest.approx(float(loglikes[0]), rel=RTOL)
    np.testing.assert_allclose(block["ia_correlations", "wgp"], emulator.predict(theta).wgp, rtol=RTOL)
    np.testing.assert_allclose(block["ia_correlations", "r_p_wgp"], TOY_STATISTIC.centres, rtol=0)


# ---------------------------------------------------------------------------------------- toy architecture
class ToyAffineNet(torch.nn.Module):
    """A toy architecture: one affine map to the means and a softplus of another to the variances."""

    def __init__(self, config, layout):
        super().__init__()
        self.var_floor = float(config["var_floor"])
        self.mean = torch.nn.Linear(layout.n_inputs, layout.n_out)
        self.log_var = torch.nn.Linear(layout.n_inputs, layout.n_out)

    def forward(self, x):
        return self.mean(x), torch.nn.functional.softplus(self.log_var(x)) + self.var_floor


class ToyAffineEnsemble:
    """Its numpy mirror: (y, var_std), each (members, n, n_out), y de-standardised."""

    def __init__(self, members, config, input_low, input_high, output_mean, output_std, layout):
        self.scale = 2.0 / (np.asarray(input_high) - np.asarray(input_low))
        self.low = np.asarray(input_low)
        self.w = np.stack([np.asarray(m["mean.weight"], float).T for m in members])
        self.b = np.stack([np.asarray(m["mean.bias"], float) for m in members])[:, None, :]
        self.wv = np.stack([np.asarray(m["log_var.weight"], float).T for m in members])
        self.bv = np.stack([np.asarray(m["log_var.bias"], float) for m in members])[:, None, :]
        self.out_mean, self.out_std = np.asarray(output_mean), np.asarray(output_std)
        self.var_floor = float(config["var_floor"])

    def __call__(self, theta):
        x = (theta - self.low) * self.scale - 1.0
        y = (x @ self.w + self.b) * self.out_std + self.out_mean
        return y, np.logaddexp(0.0, x @ self.wv + self.bv) + self.var_floor


def _toy_shapes(config, member, layout):
    n_in, n_out = layout.n_inputs, layout.n_out
    return {"mean.weight": (n_out, n_in), "mean.bias": (n_out,),
            "log_var.weight": (n_out, n_in), "log_var.bias": (n_out,)}


@pytest.fixture
def toy_architecture(monkeypatch):
    entry = Architecture("toy_affine", {"var_floor": 1e-6}, torch_builder=ToyAffineNet,
                         numpy_builder=ToyAffineEnsemble, shapes=_toy_shapes,
                         predicts="an affine map of the inputs (test only)")
    monkeypatch.setitem(ARCHITECTURES, entry.name, entry)  # registered for this test only
    return entry


def test_toy_architecture_end_to_end(toy_architecture, tmp_path):
    weights = _write(tmp_path / "weights", DEFAULT_LAYOUT, "toy_affine", {})
    emulator = IAEmulator.load(weights)
    assert emulator.architecture == "toy_affine" and emulator.point_precision == "float64"
    theta = _point(emulator)
    mean, var = _torch_prediction(emulator, theta)
    pred = emulator.predict(theta)
    np.testing.assert_allclose(pred.vector(), mean, rtol=RTOL)
    np.testing.assert_allclose(pred.variance_vector(), var, rtol=RTOL)
    data_file, idx = _measurement(tmp_path, emulator, theta)
    model = _cobaya_model(weights, data_file)
    loglikes, _ = model.loglikes(dict(zip(emulator.param_names, theta)))
    assert loglikes[0] == pytest.approx(_expected_loglike(emulator, data_file, idx, theta), rel=RTOL)
    like, _ = _cosmosis_loglike(tmp_path, weights, data_file, emulator, theta)
    assert like == pytest.approx(float(loglikes[0]), rel=RTOL)
