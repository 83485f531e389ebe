"""IAEmulator on synthetic weights: shapes, validation, physics of the outputs, torch path."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from iaemu_likelihood.conventions import PARAM_NAMES, R_EDGES, r_centres
from iaemu_likelihood.emulator import CHUNK_POINTS, NUMPY_BLOCK, EmulatorPrediction, IAEmulator
from iaemu_likelihood.errors import BatchTooLargeError, IAEmuError, InputShapeError, OutOfRangeError
from iaemu_likelihood.hod import number_density, satellite_fraction
from iaemu_likelihood.testing import SYNTHETIC_BOUNDS, toy_model, write_synthetic_weights

#: agreement of two float64 evaluations of the same network
EXACT_RTOL = 1e-10
#: numpy float64 vs torch float32 ("paper" predict runs in float32)
FLOAT32_RTOL = 1e-4
#: the synthetic members are fits to the toy model: mean |fractional error| of xi
TOY_XI_TOLERANCE = 0.05
#: finite-difference step (in units of the parameter range) and tolerance of the gradient check
FD_STEP = 1e-6
FD_RTOL = 1e-4


def _points(emulator, n, seed=0):
    low = np.array([emulator.bounds[p][0] for p in PARAM_NAMES])
    high = np.array([emulator.bounds[p][1] for p in PARAM_NAMES])
    return low + (high - low) * np.random.default_rng(seed).uniform(0.02, 0.98, size=(n, 7))


def _by_hand(emulator, theta):
    """Members' physical means and variances from the torch modules and the metadata (float64)."""
    import torch

    from iaemu_likelihood.networks import build_network

    meta = emulator.metadata
    low, high = (np.array(meta["normalisation"]["input"][k]) for k in ("low", "high"))
    x = torch.as_tensor(2 * (theta - low) / (high - low) - 1)
    means, variances = [], []
    for sd in emulator._members:
        net = build_network(meta["architecture"], meta["architecture_config"]).double().eval()
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})
        with torch.no_grad():
            m, v = (t.numpy() for t in net(x))
        mean, var = [], []
        for i, stat in enumerate(("xi", "omega", "eta")):
            out = meta["normalisation"]["output"][stat]
            y = m[:, 20 * i:20 * i + 20] * out["std"] + np.array(out["mean"])
            var_y = v[:, 20 * i:20 * i + 20] * np.array(out["std"]) ** 2
            if out["transform"] == "log":
                mean.append(np.exp(y))
                var.append(np.exp(y) ** 2 * var_y)  # delta method
            else:
                mean.append(y)
                var.append(var_y)
        means.append(np.hstack(mean))
        variances.append(np.hstack(var))
    return np.array(means), np.array(variances)


def test_attributes(emulator):
    assert emulator.param_names == PARAM_NAMES
    assert emulator.bounds == {k: tuple(v) for k, v in SYNTHETIC_BOUNDS.items()}
    np.testing.assert_array_equal(emulator.r_edges, R_EDGES)
    np.testing.assert_allclose(emulator.r, r_centres())
    assert emulator.metadata["architecture"] == "mlp" and emulator.ensemble_size == 4


def test_shapes_for_every_input_form(emulator):
    theta = emulator.reference_point
    single = emulator.predict(theta)
    assert isinstance(single, EmulatorPrediction)
    for name in ("xi", "omega", "eta", "xi_var", "omega_var", "eta_var"):
        assert getattr(single, name).shape == (20,) and getattr(single, name).dtype == np.float64
    assert single.xi_epi_var is None
    assert single.vector().shape == (60,)
    np.testing.assert_array_equal(single["omega"], single.omega)
    mapping = dict(zip(PARAM_NAMES, theta))
    np.testing.assert_array_equal(emulator.predict(mapping).vector(), single.vector())
    np.testing.assert_array_equal(emulator.predict(list(theta)).vector(), single.vector())
    np.testing.assert_allclose(emulator.predict(theta.astype(np.float32)).vector(),
                               emulator.predict(theta.astype(np.float32).astype(float)).vector())
    batch = _points(emulator, 5)
    pred = emulator.predict(batch, epistemic=True)
    assert pred.xi.shape == (5, 20) and pred.eta_epi_var.shape == (5, 20)
    cols = {name: batch[:, i] for i, name in enumerate(PARAM_NAMES)}
    np.testing.assert_array_equal(emulator.predict(cols).vector(), pred.vector())
    assert set(pred.keys()) >= {"xi_epi_var", "omega_epi_var", "eta_epi_var"}


def test_batch_equals_single_points_across_blocks(synthetic_weights):
    emulator = IAEmulator.load(synthetic_weights, batch_precision="float64")
    batch = _points(emulator, NUMPY_BLOCK * 2 + 7, seed=1)
    pred = emulator.predict(batch, epistemic=True)
    for i in (0, NUMPY_BLOCK - 1, NUMPY_BLOCK, len(batch) - 1):
        one = emulator.predict(batch[i], epistemic=True)
        np.testing.assert_allclose(pred.vector()[i], one.vector(), rtol=EXACT_RTOL)
        np.testing.assert_allclose(pred.variance_vector()[i], one.variance_vector(), rtol=EXACT_RTOL)
        np.testing.assert_allclose(pred.epistemic_vector()[i], one.epistemic_vector(), rtol=EXACT_RTOL)


def test_float32_threaded_batches_agree_with_float64(synthetic_weights):
    """Large batches run in float32 by default (two threads here): float64 outputs within a
    negligible fraction of the aleatoric sigma, and the thread count changes nothing."""
    exact = IAEmulator.load(synthetic_weights, batch_precision="float64")
    batch = _points(exact, NUMPY_BLOCK * 3 + 11, seed=2)
    ref = exact.predict(batch, epistemic=True)
    one = IAEmulator.load(synthetic_weights).predict(batch, epistemic=True)
    two = IAEmulator.load(synthetic_weights, threads=2).predict(batch, epistemic=True)
    assert one.vector().dtype == np.float64
    np.testing.assert_array_equal(one.vector(), two.vector())
    np.testing.assert_array_equal(one.variance_vector(), two.variance_vector())
    np.testing.assert_array_equal(one.epistemic_vector(), two.epistemic_vector())
    sigma = np.sqrt(ref.variance_vector())
    assert np.max(np.abs(one.vector() - ref.vector()) / sigma) < 1e-4
    np.testing.assert_allclose(one.variance_vector(), ref.variance_vector(), rtol=FLOAT32_RTOL)
    np.testing.assert_allclose(one.epistemic_vector(), ref.epistemic_vector(), rtol=1e-2,
                               atol=1e-6 * ref.variance_vector().max())
    # small batches and single points stay float64
    np.testing.assert_array_equal(IAEmulator.load(synthetic_weights).predict(batch[:5]).vector(),
                                  exact.predict(batch[:5]).vector())


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_precision": "float16"}, r"batch_precision = 'float16'; allowed: \['float32', 'float64'\]"),
    ({"threads": 0}, r"threads = 0; allowed: an integer >= 1"),
    ({"threads": 1.5}, r"threads = 1\.5; allowed"),
])
def test_invalid_batch_options_are_rejected(synthetic_weights, kwargs, match):
    with pytest.raises(ValueError, match=match):
        IAEmulator.load(synthetic_weights, **kwargs)


def test_out_of_range_message_names_parameter_value_and_bounds(emulator):
    theta = emulator.reference_point.copy()
    theta[2] = 14.2
    with pytest.raises(OutOfRangeError, match=r"'logMmin' = 14\.2 .*training range \[11\.6, 13\.5\]"):
        emulator.predict(theta)
    batch = np.tile(emulator.reference_point, (3, 1))
    batch[1, 6] = 0.1
    with pytest.raises(OutOfRangeError, match=r"'alpha' = 0\.1 at point 1 .*\[0\.6, 1\.4\]"):
        emulator.predict(batch)
    with pytest.raises(OutOfRangeError, match="'mu_sat' = 1.5"):
        emulator.predict({**dict(zip(PARAM_NAMES, emulator.reference_point)), "mu_sat": 1.5})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(emulator, bad):
    theta = emulator.reference_point.copy()
    theta[3] = bad
    with pytest.raises(OutOfRangeError, match=r"'sigma_logM' = .* is not finite; allowed range \[0\.05, 0\.8\]"):
        emulator.predict(theta)
    with pytest.raises(OutOfRangeError, match="sigma_logM"):
        emulator.validate(theta[None, :])


def test_shape_and_name_errors(emulator):
    """Wrongly shaped or typed inputs raise InputShapeError: an IAEmuError and a ValueError (not an
    OutOfRangeError, which samplers turn into a rejected point)."""
    mapping = dict(zip(PARAM_NAMES, emulator.reference_point))
    cases = [(np.zeros(6), r"shape \(6,\)"), (np.zeros((2, 3, 7)), r"shape \(2, 3, 7\)"),
             ({**mapping, "logMhalo": 12.0}, r"unknown: \['logMhalo'\]"),
             ({k: v for k, v in mapping.items() if k != "alpha"}, r"missing: \['alpha'\]"),
             ({**mapping, "mu_cen": np.zeros((2, 2))}, r"scalars or 1-d arrays"),
             ({**mapping, "mu_cen": np.zeros(2), "mu_sat": np.zeros(3)}, r"inconsistent shapes"),
             ({**mapping, "logM1": "13.1x"}, r"theta\['logM1'\] = '13\.1x' is not numeric"),
             ([["a"] * 7], r"theta = \[\['a'.* is not numeric")]
    for theta, match in cases:
        for call in (emulator.predict, emulator.covariance, emulator.derived, emulator.validate):
            with pytest.raises(InputShapeError, match=match) as info:
                call(theta)
            assert isinstance(info.value, IAEmuError) and isinstance(info.value, ValueError)
            assert not isinstance(info.value, OutOfRangeError)


def _broadcast_batch(emulator, n):
    """n copies of one valid point, as a read-only view that allocates nothing."""
    return np.broadcast_to(emulator.support_point(), (n, 7))


def test_huge_covariance_batch_is_refused_with_the_size_it_would_need(emulator):
    """10^6 points would need 28.2 GiB (60 x 60 float64 per point plus the prediction): refused
    before anything is allocated, naming that size and the largest batch allowed."""
    with pytest.raises(BatchTooLargeError, match=r"covariance of 1,000,000 points would need 28\.2 GiB "
                       r"of memory \(30,240 bytes per point\); the limit is 2\.0 GiB .*at most 71,014 points"):
        emulator.covariance(_broadcast_batch(emulator, 10 ** 6))
    with pytest.raises(BatchTooLargeError, match=r"predict of 2,000,000 points would need 2\.7 GiB"):
        emulator.predict(_broadcast_batch(emulator, 2 * 10 ** 6), epistemic=True)
    pred = emulator.predict(_broadcast_batch(emulator, 10))
    big = EmulatorPrediction(np.broadcast_to(pred.vector()[0], (10 ** 6, 60)),
                             np.broadcast_to(pred.variance_vector()[0], (10 ** 6, 60)))
    with pytest.raises(BatchTooLargeError, match="covariance of 1,000,000 points"):
        emulator.covariance(None, terms="aleatoric", prediction=big)


def test_memory_limit_is_per_instance_and_chunked_covariance_is_exact(synthetic_weights):
    emu = IAEmulator.load(synthetic_weights, batch_precision="float64")
    theta = _points(emu, 2 * CHUNK_POINTS + 5, seed=4)
    emu.max_batch_bytes = 60 * 60 * 8 * 100  # room for the matrices of 100 points only
    with pytest.raises(BatchTooLargeError, match=r"covariance of 2,053 points"):
        emu.covariance(theta)
    assert IAEmulator.max_batch_bytes == 2 * 1024 ** 3  # the class default is untouched
    emu.max_batch_bytes = IAEmulator.max_batch_bytes
    cov = emu.covariance(theta)  # three chunks
    for i in (0, CHUNK_POINTS - 1, CHUNK_POINTS, 2 * CHUNK_POINTS + 4):
        np.testing.assert_allclose(cov[i], emu.covariance(theta[i]), rtol=1e-12, atol=0)
    derived = emu.derived(theta)
    np.testing.assert_allclose(derived["n_gal"], number_density(theta, emu.halo_mass_function),
                               rtol=EXACT_RTOL)


def test_validate_returns_float_array(emulator):
    out = emulator.validate(list(emulator.reference_point))
    assert out.shape == (7,) and out.dtype == np.float64


def test_delta_method_and_ensemble_reduction_match_a_hand_computation(emulator):
    theta = _points(emulator, 6, seed=2)
    means, variances = _by_hand(emulator, theta)
    pred = emulator.predict(theta, epistemic=True)
    np.testing.assert_allclose(pred.vector(), means.mean(axis=0), rtol=EXACT_RTOL, atol=1e-14)
    np.testing.assert_allclose(pred.variance_vector(), variances.mean(axis=0), rtol=EXACT_RTOL)
    np.testing.assert_allclose(pred.epistemic_vector(), means.var(axis=0), rtol=1e-8, atol=1e-20)
    assert np.all(pred.epistemic_vector() > 0)


def test_predictions_follow_the_toy_model(emulator):
    theta = _points(emulator, 50, seed=3)
    mean, _ = toy_model(theta)
    pred = emulator.predict(theta)
    assert np.mean(np.abs(pred.xi / mean["xi"] - 1)) < TOY_XI_TOLERANCE
    assert np.all(pred.xi[:, 0] > 50) and np.all(pred.xi[:, -1] < 1)  # ~1e3 -> ~1e-2


def test_single_member_mlp_has_zero_epistemic_with_warning(tmp_path, caplog):
    folder = write_synthetic_weights(tmp_path / "one", ensemble_size=1, reference_points=0)
    emu = IAEmulator.load(folder)
    pred = emu.predict(emu.reference_point, epistemic=True)
    np.testing.assert_array_equal(pred.xi_epi_var, 0.0)
    assert "no epistemic estimate" in caplog.text


def test_covariance_is_symmetric_positive_definite(emulator):
    theta = emulator.reference_point
    cov = emulator.covariance(theta)
    assert cov.shape == (60, 60)
    np.testing.assert_allclose(cov, cov.T, rtol=0, atol=0)
    np.linalg.cholesky(cov)
    pred = emulator.predict(theta, epistemic=True)
    np.testing.assert_allclose(np.diag(cov), pred.variance_vector() + pred.epistemic_vector(),
                               rtol=EXACT_RTOL)
    alea = emulator.covariance(theta, terms=("aleatoric",))
    sd = np.sqrt(pred.variance_vector())
    np.testing.assert_allclose(alea, np.outer(sd, sd) * emulator.residual_correlation,
                               rtol=EXACT_RTOL)
    epi = emulator.covariance(theta, terms="epistemic")
    np.testing.assert_allclose(epi, np.diag(pred.epistemic_vector()), rtol=EXACT_RTOL)
    assert emulator.covariance(_points(emulator, 3), terms=("aleatoric",)).shape == (3, 60, 60)
    with pytest.raises(ValueError, match="'sample'"):
        emulator.covariance(theta, terms=("sample",))


def test_derived_quantities_use_the_shipped_mass_function(emulator):
    theta = emulator.reference_point
    derived = emulator.derived(theta)
    assert derived["n_gal"] == pytest.approx(number_density(theta, emulator.halo_mass_function),
                                             rel=EXACT_RTOL)
    assert derived["f_sat"] == pytest.approx(satellite_fraction(theta, emulator.halo_mass_function),
                                             rel=EXACT_RTOL)
    assert 1e-5 < derived["n_gal"] < 1e-1 and 0 < derived["f_sat"] < 1
    batch = emulator.derived(_points(emulator, 4))
    assert batch["n_gal"].shape == (4,) and batch["f_sat"].shape == (4,)
    with pytest.raises(OutOfRangeError):
        emulator.derived(np.full(7, 100.0))


def test_torch_forward_matches_predict_and_has_correct_gradients(emulator):
    import torch

    theta = _points(emulator, 3, seed=4)
    t = torch.tensor(theta, requires_grad=True)
    out = emulator.torch_forward(t)
    pred = emulator.predict(theta, epistemic=True)
    for key in pred.keys():
        np.testing.assert_allclose(out[key].detach().numpy(), pred[key], rtol=1e-8)
    out["xi"][:, 5].sum().backward()
    grad = t.grad.numpy()
    ranges = np.array([emulator.bounds[p][1] - emulator.bounds[p][0] for p in PARAM_NAMES])
    for j in range(7):
        step = np.zeros(7)
        step[j] = FD_STEP * ranges[j]
        fd = (emulator.predict(theta + step).xi[:, 5] - emulator.predict(theta - step).xi[:, 5]) / (2 * step[j])
        np.testing.assert_allclose(grad[:, j], fd, rtol=FD_RTOL, atol=1e-8 * np.abs(fd).max())
    single = emulator.torch_forward(torch.tensor(emulator.reference_point))
    assert single["xi"].shape == (20,)
    with pytest.raises(OutOfRangeError):
        emulator.torch_forward(torch.full((7,), 100.0, dtype=torch.float64))


def test_mlp_prediction_does_not_import_torch(synthetic_weights):
    code = (
        "import sys, json\n"
        "from iaemu_likelihood.emulator import IAEmulator\n"
        f"emu = IAEmulator.load({str(synthetic_weights)!r})\n"
        "emu.predict(emu.reference_point, epistemic=True); emu.covariance(emu.reference_point)\n"
        "emu.derived(emu.reference_point)\n"
        "print(json.dumps('torch' in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) is False


def test_cobaya_model_on_numpy_weights_does_not_import_torch(synthetic_weights):
    """IAEmuTheory's ``torch_threads`` (default 1) waits for torch's first import instead of
    importing it (2.5 s of every ``cobaya-run`` and ``iaemu sample`` start-up on numpy weights)."""
    info = {"theory": {"iaemu_likelihood.IAEmuTheory": {"weights": str(synthetic_weights)}},
            "likelihood": {"one": {"external": "lambda _self=None: 0.0",
                                   "requires": {"iaemu_xi": None}}}}
    code = (
        "import sys, json\n"
        "from cobaya.model import get_model\n"
        f"model = get_model({info!r})\n"
        "model.logposterior(model.prior.reference())\n"
        "imported = 'torch' in sys.modules\n"
        "from iaemu_likelihood.torch_backend import torch_module\n"
        "print(json.dumps([imported, torch_module().get_num_threads()]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env=env)
    imported, threads = json.loads(result.stdout.splitlines()[-1])
    assert imported is False and threads == 1  # the pending setting, applied at the import


def test_paper_architecture_with_mc_dropout(synthetic_paper_weights):
    import torch

    emu = IAEmulator.load(synthetic_paper_weights)
    assert emu.architecture == "paper" and emu.ensemble_size == 1
    theta = _points(emu, 3, seed=5)
    pred = emu.predict(theta, epistemic=True, n_samples=8)
    assert pred.xi.shape == (3, 20) and np.all(pred.xi > 0) and np.all(pred.xi_var > 0)
    assert np.all(pred.xi_epi_var > 0)
    again = emu.predict(theta, epistemic=True, n_samples=8)
    np.testing.assert_array_equal(again.epistemic_vector(), pred.epistemic_vector())  # seeded
    out = emu.torch_forward(torch.tensor(theta))
    np.testing.assert_allclose(out["omega"].numpy(), pred.omega, rtol=FLOAT32_RTOL,
                               atol=FLOAT32_RTOL * np.abs(pred.omega).max())
    np.testing.assert_allclose(out["xi_var"].numpy(), pred.xi_var, rtol=FLOAT32_RTOL * 10)
    with pytest.raises(ValueError, match="n_samples"):
        emu.predict(theta, epistemic=True, n_samples=1)


def test_training_support_band_is_enforced(synthetic_weights, tmp_path):
    """Points inside the box but outside the prior's band around the Zheng07 lines are refused."""
    from iaemu_likelihood.training.design import DesignRule

    rule = DesignRule(logMmin_range=(11.6, 13.2))
    base = IAEmulator.load(synthetic_weights)
    box = {n: (max(lo, base.bounds[n][0]), min(hi, base.bounds[n][1]))
           for n, (lo, hi) in rule.bounding_box().items()}
    emu = IAEmulator(dict(base.metadata, support=rule.support_metadata()), base._members,
                     base.residual_correlation, base.halo_mass_function)
    rng = np.random.default_rng(1)
    lo = np.array([box[n][0] for n in PARAM_NAMES])
    hi = np.array([box[n][1] for n in PARAM_NAMES])
    pts = lo + (hi - lo) * rng.random((3000, 7))
    inside = emu.in_support(pts)
    assert inside.tolist() == (rule.contains(pts) & base.in_support(pts)).tolist()
    assert 0 < inside.sum() < len(pts)
    emu.predict(pts[inside][:5])
    outside = pts[~inside & base.in_support(pts)][0]
    with pytest.raises(OutOfRangeError, match="training support at logMmin"):
        emu.predict(outside)  # the lean single-point path checks the band too
    with pytest.raises(OutOfRangeError, match="at point 1"):
        emu.predict(np.stack([pts[inside][0], outside]))


def _masked(point):
    masked = np.ma.masked_array(point, mask=np.zeros(7, bool))
    masked[0] = np.ma.masked
    return masked


@pytest.mark.parametrize("make, match", [
    (lambda m, p: {**m, "mu_cen": True}, r"theta\['mu_cen'\] = True is not numeric \(dtype bool\)"),
    (lambda m, p: {**m, "alpha": np.bool_(False)}, r"theta\['alpha'\] = .*False_? is not numeric"),
    (lambda m, p: {**m, "logM1": "13.1"}, r"theta\['logM1'\] = '13\.1' is not numeric"),
    (lambda m, p: {**m, "mu_sat": 0.1 + 0.0j}, r"theta\['mu_sat'\] = \(0\.1\+0j\) is not numeric"),
    (lambda m, p: {**m, "mu_sat": None}, r"theta\['mu_sat'\] = None is not numeric"),
    (lambda m, p: {**m, "mu_sat": [0.1, None]}, r"theta\['mu_sat'\] = \[0\.1, None\] is not numeric"),
    (lambda m, p: p.astype(complex) + 1j, r"theta = array.* is not numeric \(dtype complex128\)"),
    (lambda m, p: p.astype(str), r"is not numeric \(dtype <U"),
    (lambda m, p: np.ones(7, dtype=bool), r"is not numeric \(dtype bool\)"),
    (lambda m, p: np.array(list(p[:6]) + [True], dtype=object), r"is not numeric"),
    (lambda m, p: _masked(p), r"has masked entries"),
])
def test_values_that_are_not_real_numbers_are_refused_not_converted(emulator, make, match):
    """Booleans, strings, complex numbers, None and masked entries are never converted into a
    point (True -> 1.0, '0.5' -> 0.5, 0.5+1j -> 0.5, a masked value -> its hidden data)."""
    point = emulator.reference_point
    theta = make(dict(zip(PARAM_NAMES, point)), point)
    for call in (emulator.predict, emulator.covariance, emulator.derived, emulator.validate,
                 emulator.in_support):
        with pytest.raises(InputShapeError, match=match):
            call(theta)
    # real numbers in any numeric container still work
    for ok in (point.astype(np.float32), list(point), point.astype(object), np.round(point).astype(int)):
        assert emulator.in_support(ok) in (True, False)


@pytest.mark.parametrize("call, match", [
    (lambda e, t: e.predict(t, epistemic="yes"), r"epistemic = 'yes'; allowed: True or False"),
    (lambda e, t: e.predict(t, epistemic=None), r"epistemic = None; allowed"),
    (lambda e, t: e.predict(t, epistemic=np.array([1, 0])), r"epistemic = array\(\[1, 0\]\); allowed"),
    (lambda e, t: e.covariance(t, terms=None), r"terms = None; allowed: a non-empty subset"),
    (lambda e, t: e.covariance(t, terms=3), r"terms = 3; allowed: a non-empty subset"),
    (lambda e, t: e.covariance(t, terms=["aleatoric", "epistemc"]),
     r"'epistemc' is not a covariance term; did you mean 'epistemic'\?"),
    (lambda e, t: e.covariance(t, prediction="xi"), r"prediction is a str; allowed"),
    (lambda e, t: e.covariance(t, prediction=e.predict(np.tile(t, (3, 1)))),
     r"prediction is for a batch of 3 but theta is a single point"),
    (lambda e, t: e.torch_forward([t]), r"theta must be a torch\.Tensor"),
])
def test_bad_options_of_the_api_are_named_errors(emulator, call, match):
    with pytest.raises(IAEmuError, match=match) as info:
        call(emulator, emulator.reference_point)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("kwargs, match", [
    ({"device": "gpu0"}, r"device = 'gpu0'; allowed: 'cpu', 'cuda', 'cuda:N', 'mps'"),
    ({"device": 0}, r"device = 0; allowed"),
    ({"threads": "2"}, r"threads = '2'; allowed: an integer >= 1"),
    ({"version": 3}, r"weights = 3 \(int\); allowed: a shipped version name"),
    ({"version": ["a"]}, r"weights = \['a'\] \(list\)"),
])
def test_bad_load_options_are_named_before_anything_runs(synthetic_weights, kwargs, match):
    kwargs.setdefault("version", synthetic_weights)
    with pytest.raises(IAEmuError, match=match):
        IAEmulator.load(**kwargs)


def test_device_is_checked_against_the_machine_before_torch_runs(synthetic_weights,
                                                                  synthetic_paper_weights):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: 'cuda' is a valid device here")
    with pytest.raises(IAEmuError, match=r"device = 'cuda:3': no CUDA GPU is visible here"):
        IAEmulator.load(synthetic_paper_weights, device="cuda:3")  # torch runs every prediction
    emu = IAEmulator.load(synthetic_weights, device="cuda")  # numpy predictions need no device
    assert emu.predict(emu.reference_point).xi.shape == (20,)
    with pytest.raises(IAEmuError, match=r"device = 'cuda': no CUDA GPU"):
        emu.torch_forward(torch.tensor(emu.reference_point))


@pytest.mark.parametrize("n_samples", [1, 0, -5, 2.5, "8", True, float("nan"), 10 ** 12])
def test_mc_dropout_passes_are_checked_and_bounded(synthetic_paper_weights, n_samples):
    """Also for one float64 point (the sampler's fast path): 10^12 passes would run for days."""
    from iaemu_likelihood.emulator import MAX_MC_SAMPLES

    emu = IAEmulator.load(synthetic_paper_weights)
    point = emu.reference_point
    for call in (lambda: emu.predict(point, epistemic=True, n_samples=n_samples),
                 lambda: emu.covariance(point, n_samples=n_samples)):
        with pytest.raises(IAEmuError, match=rf"n_samples = .*must be an integer >= 2 and <= {MAX_MC_SAMPLES}"):
            call()


def test_a_value_refused_by_a_hair_is_never_shown_inside_the_printed_range(synthetic_weights, tmp_path):
    """Bounds in messages print every digit when %g would round them: 'x = 0.80000001 is outside
    [0.05, 0.8]' reads as a bug; the printed limit must itself be refused-side exact."""
    import shutil

    from iaemu_likelihood.weights_io import METADATA_FILE, write_checksums

    folder = shutil.copytree(synthetic_weights, tmp_path / "w")
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["bounds"]["sigma_logM"] = [0.05, 0.7674693797671619]
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    write_checksums(folder)
    emu = IAEmulator.load(folder)
    theta = emu.reference_point.copy()
    theta[3] = np.nextafter(0.7674693797671619, 1.0)
    with pytest.raises(OutOfRangeError) as info:
        emu.predict(theta)
    printed_high = float(str(info.value).split("[0.05, ")[1].split("]")[0])
    assert printed_high == 0.7674693797671619 < theta[3]
    with pytest.raises(OutOfRangeError, match=r"training range \[11\.6, 13\.5\]"):  # short when exact
        emu.predict(np.where(np.arange(7) == 2, 14.0, emu.reference_point))


@pytest.mark.parametrize("version", ["synthetic mlp", "shipped factorised"])
def test_prediction_without_aleatoric_variances(synthetic_weights, version):
    """aleatoric=False: the same means and epistemic variances, no aleatoric ones (the factorised
    mirror skips its variance network), and a covariance of that prediction refuses the aleatoric
    term; a point evaluator for Cobaya (variances=False) asks for them only with that term."""
    from iaemu_likelihood.point import PointEvaluator

    emu = IAEmulator.load(synthetic_weights if version == "synthetic mlp" else None)
    theta = emu.support_point()
    full = emu.predict(theta, epistemic=True)
    lean = emu.predict(theta, epistemic=True, aleatoric=False)
    assert lean.variance_vector() is None and "xi_var" not in lean.keys() and "xi_epi_var" in lean.keys()
    np.testing.assert_array_equal(lean.vector(), full.vector())
    np.testing.assert_array_equal(lean.epistemic_vector(), full.epistemic_vector())
    np.testing.assert_array_equal(emu.covariance(theta, ["epistemic"], prediction=lean),
                                  emu.covariance(theta, ["epistemic"], prediction=full))
    with pytest.raises(InputShapeError, match="no aleatoric variances"):
        emu.covariance(theta, ["aleatoric"], prediction=lean)
    batch = emu.predict(np.tile(theta, (3, 1)), aleatoric=False)
    assert batch.variance_vector() is None and batch.vector().shape == (3, emu.n_out)
    with pytest.raises(IAEmuError, match="aleatoric = 'no'"):
        emu.predict(theta, aleatoric="no")
    evaluator = PointEvaluator(emu, [("epistemic",)], variances=False)
    assert evaluator.evaluate(theta).prediction.variance_vector() is None
    evaluator.request(("aleatoric", "epistemic"))
    result = evaluator.evaluate(theta)
    np.testing.assert_array_equal(result.prediction.variance_vector(), full.variance_vector())
    np.testing.assert_array_equal(result.covariances[("aleatoric", "epistemic")],
                                  emu.covariance(theta, ["aleatoric", "epistemic"], prediction=full))


def test_single_point_check_agrees_with_the_array_check():
    """The sampler's fast path (one point's box and band in Python floats) accepts exactly the
    points the array check accepts: random points around the shipped weights' box, which has a
    support band, plus NaN and the box edges."""
    emu = IAEmulator.load()
    assert emu._domain.band is not None
    low, high = emu._domain.low, emu._domain.high
    points = low + (high - low) * np.random.default_rng(3).uniform(-0.05, 1.05, size=(2000, len(low)))
    points[0, 2] = np.nan
    points[1], points[2] = low, high
    fast = [emu._domain.contains_point(p.tolist()) for p in points]
    np.testing.assert_array_equal(fast, emu.in_support(points))
    assert 200 < sum(fast) < 1800
