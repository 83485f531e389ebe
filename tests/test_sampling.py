"""iaemu sample: the log-posterior against Cobaya's, the JAX mirror, the support map, bad input.

The Cobaya comparisons are real: Cobaya builds its model from the same yaml (shipped weights and
bundled example data, and synthetic weights with scale cuts, both covariance terms and fixed
parameters), and its ``model.logposterior`` is compared point by point.
"""
import math

import numpy as np
import pytest
import yaml
from cobaya.model import get_model

from iaemu_likelihood.conventions import PARAM_NAMES
from iaemu_likelihood.data import save_measurement
from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.sampling.posterior import (InputFileError, UnsupportedInputError,
                                                 load_posterior)
from iaemu_likelihood.sampling.support import SupportError

REPO_YAML = "yamls/ia_hod.yaml"
THEORY = "iaemu_likelihood.IAEmuTheory"
LIKE = "iaemu_likelihood.IAEmuLikelihood"
#: agreement of the fast path's log-posterior with Cobaya's (the brief's requirement)
LOGPOST_RTOL = 1e-8
#: agreement of the JAX mirror with the numpy emulator
JAX_RTOL = 1e-10
N_POINTS = 24
FIDUCIAL = dict(zip(PARAM_NAMES, (0.8, 0.5, 12.02, 0.26, 11.38, 13.31, 1.06)))


def shipped_info():
    from pathlib import Path

    info = yaml.safe_load((Path(__file__).resolve().parents[1] / REPO_YAML).read_text())
    info.pop("sampler")
    return info


def cobaya_model(info):
    return get_model({k: info[k] for k in ("theory", "likelihood", "params") if k in info})


def box_points(post, rng, n):
    return post.low + (post.high - post.low) * rng.random((n, post.dim))


@pytest.fixture(scope="module")
def shipped():
    info = shipped_info()
    return load_posterior(info), cobaya_model(info)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, synthetic_weights):
    """Synthetic weights, omega + eta with a scale cut, both covariance terms, two fixed inputs."""
    emu = IAEmulator.load(synthetic_weights)
    pred = emu.predict(FIDUCIAL)
    cov = emu.covariance(FIDUCIAL, ["aleatoric"])
    data = np.random.default_rng(3).multivariate_normal(pred.vector(), cov)
    path = save_measurement(tmp_path_factory.mktemp("data") / "m.npz", emu.r,
                            {"omega": data[20:40], "eta": data[40:]}, cov[20:, 20:],
                            {"truth": FIDUCIAL})
    info = {"theory": {THEORY: {"weights": str(synthetic_weights)}},
            "likelihood": {LIKE: {"data_file": str(path), "r_min": 0.5,
                                  "emulator_covariance": ["aleatoric", "epistemic"]}},
            "params": {"logM0": 12.0, "alpha": 1.0,
                       "mu_cen": {"prior": {"min": 0.0, "max": 1.0}, "latex": r"\mu_c"}},
            "output": str(tmp_path_factory.mktemp("chains") / "synthetic")}
    return load_posterior(info), cobaya_model(info), info


# ---------------------------------------------------------------------------- equality with Cobaya
def _compare(post, model, points):
    names = list(post.names)
    finite = 0
    for theta in points:
        expected = model.logposterior(dict(zip(names, theta))).logpost
        got = post.logpost(theta)
        if expected == -math.inf:
            assert got == -math.inf, theta
        else:
            finite += 1
            assert got == pytest.approx(expected, rel=LOGPOST_RTOL, abs=0)
    batch = post.logpost_batch(points)
    single = np.array([post.logpost(p) for p in points])
    np.testing.assert_array_equal(np.isinf(batch), np.isinf(single))
    ok = np.isfinite(single)
    np.testing.assert_allclose(batch[ok], single[ok], rtol=LOGPOST_RTOL)
    return finite


def test_logpost_equals_cobaya_shipped(shipped):
    post, model = shipped
    rng = np.random.default_rng(11)
    box = box_points(post, rng, 200)
    inside = box[post.support.contains(box)][:N_POINTS]
    outside_band = box[~post.support.contains(box)][:6]
    beyond_box = box[:4].copy()
    beyond_box[:, 2] = [11.5, 13.3, 11.59999, 13.20001]   # logMmin outside [11.6, 13.2]
    points = np.vstack([[FIDUCIAL[n] for n in post.names], inside, outside_band, beyond_box])
    assert _compare(post, model, points) >= N_POINTS


def test_logpost_equals_cobaya_synthetic_options(synthetic):
    post, model, _ = synthetic
    assert post.names == ("mu_cen", "mu_sat", "logMmin", "sigma_logM", "logM1")
    assert post.fixed == {"logM0": 12.0, "alpha": 1.0}
    assert post.terms == ("aleatoric", "epistemic")
    rng = np.random.default_rng(5)
    points = box_points(post, rng, N_POINTS)
    outside = points[:3].copy()
    outside[:, 0] = [-0.5, 1.2, -1e-9]                    # mu_cen prior is [0, 1]
    assert _compare(post, model, np.vstack([points, outside])) == N_POINTS


def test_support_matches_emulator(shipped):
    post, _ = shipped
    pts = box_points(post, np.random.default_rng(2), 2000)
    np.testing.assert_array_equal(post.support.contains(pts),
                                  post.emulator.in_support(post.full(pts)))


# ---------------------------------------------------------------------------- JAX mirror
def test_jax_forward_equals_numpy(shipped, synthetic):
    from iaemu_likelihood.sampling.jax_model import build_forward, jax

    _, jnp = jax()
    for post in (shipped[0], synthetic[0]):
        emu = post.emulator
        pts = post.full(box_points(post, np.random.default_rng(4), 400))
        pts = pts[np.atleast_1d(emu.in_support(pts))][:30]
        mean, alea, epi = build_forward(emu)(jnp.asarray(pts))
        pred = emu.predict(pts, epistemic=True)
        np.testing.assert_allclose(mean, pred.vector(), rtol=JAX_RTOL)
        np.testing.assert_allclose(alea, pred.variance_vector(), rtol=JAX_RTOL)
        np.testing.assert_allclose(epi, pred.epistemic_vector(), rtol=1e-9)


def test_jax_logpost_equals_numpy(shipped, synthetic):
    from iaemu_likelihood.sampling.jax_model import build_logpost, jax

    j, jnp = jax()
    for post in (shipped[0], synthetic[0]):
        pts = box_points(post, np.random.default_rng(8), 400)
        pts = pts[post.support.contains(pts)][:20]
        got = np.asarray(j.vmap(build_logpost(post))(jnp.asarray(pts)))
        expected = np.array([post.logpost(p) for p in pts])
        np.testing.assert_allclose(got, expected, rtol=LOGPOST_RTOL)


def test_jax_batch_logpost_equals_numpy(shipped):
    """The ensemble's compiled backend: same values, -inf at the same points (box and band)."""
    from iaemu_likelihood.sampling.jax_model import BatchLogPosterior

    post = shipped[0]
    box = box_points(post, np.random.default_rng(12), 60)
    box[:3, 2] = [11.5, 13.3, 11.59999]                 # outside the logMmin prior
    inside = post.support.to_theta(np.random.default_rng(13).normal(0, 1, (12, post.dim)))
    points = np.vstack([box, inside])                   # 72 points: 4 batches of 20, one padded
    got = BatchLogPosterior(post, 20)(points)
    expected = post.logpost_batch(points)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    assert np.isfinite(expected).sum() >= 20 and np.isinf(expected).sum() >= 20
    ok = np.isfinite(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=LOGPOST_RTOL)


def test_gaussian_loglike_batched_equals_gaussian_terms():
    from iaemu_likelihood.likelihood_math import gaussian_loglike_batched, gaussian_terms

    rng = np.random.default_rng(21)
    m, n = 12, 9
    a = rng.normal(size=(n, m, m))
    covs = a @ a.transpose(0, 2, 1) / m + 0.1 * np.eye(m)
    data, models = rng.normal(size=m), rng.normal(size=(n, m))
    models[1, 3] = np.nan                              # not finite -> -inf
    covs[2, 0, 0] = -1.0                               # not positive definite -> -inf
    expected = [gaussian_terms(data, mk, ck).loglike() for mk, ck in zip(models, covs)]
    got = gaussian_loglike_batched(data, models, covs)
    assert got[1] == got[2] == -math.inf and np.isfinite(np.delete(got, [1, 2])).all()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    ok = [0, 3, 4, 5, 6, 7, 8]                          # all positive definite: one batched call
    np.testing.assert_allclose(gaussian_loglike_batched(data, models[ok], covs[ok]),
                               np.array(expected)[ok], rtol=1e-12)


def test_jax_gaussian_gradient_equals_autodiff():
    """The hand-written gradient of the Gaussian equals JAX's through Cholesky and solve."""
    from jax.scipy.linalg import solve_triangular

    from iaemu_likelihood.sampling.jax_model import _build_gaussian, jax

    j, jnp = jax()
    rng = np.random.default_rng(22)
    m = 15
    a = rng.normal(size=(m, m))
    base, corr = jnp.asarray(a @ a.T / m + np.eye(m)), jnp.asarray(np.corrcoef(rng.normal(size=(m, 40))))

    def reference(resid, cov):
        chol = jnp.linalg.cholesky(cov)
        white = solve_triangular(chol, resid, lower=True)
        return -0.5 * (white @ white) - jnp.sum(jnp.log(jnp.diagonal(chol)))

    def through(gaussian):  # a covariance that depends on the inputs, as the epistemic term does
        return lambda sd, resid: gaussian(resid, base + sd[:, None] * sd[None, :] * corr)

    gaussian = _build_gaussian()
    for _ in range(3):
        sd, resid = jnp.asarray(rng.uniform(0.2, 1.0, m)), jnp.asarray(rng.normal(size=m))
        assert float(through(gaussian)(sd, resid)) == pytest.approx(
            float(through(reference)(sd, resid)), rel=1e-12)
        got = j.grad(through(gaussian), argnums=(0, 1))(sd, resid)
        expected = j.grad(through(reference), argnums=(0, 1))(sd, resid)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)


def test_jax_logpost_gradient_matches_finite_differences(shipped):
    from iaemu_likelihood.sampling.jax_model import build_logpost, jax

    j, jnp = jax()
    post = shipped[0]
    theta = np.array([FIDUCIAL[n] for n in post.names])
    grad = np.asarray(j.grad(build_logpost(post))(jnp.asarray(theta)))
    h = 1e-6 * (post.high - post.low)
    steps = np.diag(h)
    numeric = (post.logpost_batch(theta + steps) - post.logpost_batch(theta - steps)) / (2 * h)
    # mu_cen and mu_sat enter through a piecewise-linear table (cells of 1.5e-5): its slope is
    # exact per cell, a central difference averages two neighbouring cells
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6 * np.abs(numeric).max())


def test_load_posterior_leaves_logging_alone(synthetic):
    """Cobaya's get_model adds a stdout handler to the root logger (each line printed twice)."""
    import logging
    import sys

    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    load_posterior(yaml.safe_load(yaml.safe_dump(synthetic[2])))
    assert root.handlers == handlers and root.level == level and sys.excepthook is hook


# ---------------------------------------------------------------------------- unconstrained map
def test_transform_stays_inside_and_inverts(shipped):
    support = shipped[0].support
    z = np.random.default_rng(0).normal(0, 3, (5000, support.dim))
    theta = support.to_theta(z)
    assert support.contains(theta).all()
    # beyond |z| ~ 6 the normal CDF leaves fewer digits than float64 holds next to an edge
    inner = np.abs(z).max(axis=1) < 6
    np.testing.assert_allclose(support.to_z(theta[inner]), z[inner], atol=1e-6)


def test_log_jacobian_is_log_det(shipped, synthetic):
    from iaemu_likelihood.sampling.jax_model import jax

    j, jnp = jax()
    for post in (shipped[0], synthetic[0]):
        support = post.support
        for z in np.random.default_rng(1).normal(0, 1.5, (5, support.dim)):
            jac = j.jacfwd(lambda v, s=support: s.to_theta(v, jnp))(jnp.asarray(z))
            sign, logdet = np.linalg.slogdet(np.asarray(jac))
            assert sign > 0
            assert support.log_jacobian(z) == pytest.approx(logdet, rel=1e-10)
            assert float(support.log_jacobian(jnp.asarray(z), jnp)) == pytest.approx(logdet, rel=1e-10)


def test_transform_with_fixed_pivot(shipped):
    """logMmin fixed, band parameters sampled: their intervals are the band at that logMmin."""
    from iaemu_likelihood.sampling.support import Support

    emu = shipped[0].emulator
    names = ("mu_cen", "sigma_logM", "logM0")
    low = np.array([emu.bounds[n][0] for n in names])
    high = np.array([emu.bounds[n][1] for n in names])
    fixed = {"mu_sat": 0.5, "logMmin": 12.0, "logM1": 13.3, "alpha": 1.05}
    support = Support.build(names, low, high, fixed, emu.support)
    z = np.random.default_rng(3).normal(0, 2, (3000, 3))
    theta = support.to_theta(z)
    np.testing.assert_array_equal(emu.in_support(support.full(theta)), True)
    # the sampled intervals reach the band's edges at logMmin = 12 (and no further)
    lo, hi = support.to_theta(np.array([[-40.0] * 3, [40.0] * 3]))
    for edge, sign in ((lo, -1.0), (hi, 1.0)):
        assert emu.in_support(support.full(edge))
        for k in (1, 2):
            beyond = edge.copy()
            beyond[k] += sign * 1e-6
            assert not emu.in_support(support.full(beyond)), (names[k], beyond)
    h = 1e-6
    # |z| < 3: further out a step of h moves theta by less than float64 resolves near an edge
    zs = z[np.abs(z).max(axis=1) < 3][:5]
    numeric = [np.log(np.abs(np.diag((support.to_theta(z0 + h * np.eye(3))
                                      - support.to_theta(z0 - h * np.eye(3))) / (2 * h))).prod())
               for z0 in zs]
    np.testing.assert_allclose(support.log_jacobian(zs), numeric, rtol=1e-6)


def test_sampled_prior_is_uniform_on_support(shipped):
    """NUTS on the Jacobian alone (no likelihood) must give the uniform prior on box and band."""
    from jax import random
    from numpyro.infer import MCMC, NUTS
    from scipy.stats import ks_2samp

    from iaemu_likelihood.sampling.jax_model import jax

    _, jnp = jax()
    post = shipped[0]
    support = post.support
    mcmc = MCMC(NUTS(potential_fn=lambda z: -support.log_jacobian(z, jnp)), num_warmup=150,
                num_samples=1000, num_chains=2, chain_method="vectorized", progress_bar=False)
    mcmc.run(random.PRNGKey(0), init_params=jnp.zeros((2, support.dim)))
    sampled = support.to_theta(np.asarray(mcmc.get_samples()))[::3]
    rng = np.random.default_rng(9)
    box = box_points(post, rng, 40000)
    uniform = box[support.contains(box)][:4000]
    assert support.contains(sampled).all()
    for k, name in enumerate(post.names):
        assert ks_2samp(sampled[:, k], uniform[:, k]).pvalue > 1e-3, name


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("change, match", [
    (lambda i: i["params"].update(mu_cen={"prior": {"dist": "norm", "loc": 0, "scale": 0.3}}),
     r"'mu_cen' has a 'norm' prior"),
    (lambda i: i.update(prior={"extra": "lambda mu_cen: 0"}), r"external prior"),
    (lambda i: i["params"].update(mu_cen="lambda mu_sat: mu_sat"), r"\['mu_cen'\] defined as functions"),
    (lambda i: i["params"].update(twice={"derived": "lambda mu_sat: 2 * mu_sat"}),
     r"derived parameter\(s\) \['twice'\]"),
    (lambda i: i["likelihood"].update({"one": "lambda mu_sat: 0"}), r"likelihood: .*only exactly"),
    (lambda i: i.update(emcee={"a": 1}), r"top-level block\(s\) \['emcee'\]"),
])
def test_unsupported_yaml_features(synthetic, change, match):
    info = yaml.safe_load(yaml.safe_dump(synthetic[2]))
    change(info)
    with pytest.raises(UnsupportedInputError, match=match):
        load_posterior(info)


def test_fixed_value_out_of_range(synthetic):
    info = yaml.safe_load(yaml.safe_dump(synthetic[2]))
    info["params"]["alpha"] = 3.0
    with pytest.raises(InputFileError, match=r"alpha is fixed to 3"):
        load_posterior(info)


def test_fixed_values_outside_the_band():
    info = shipped_info()
    info["params"] = {"logMmin": 11.6, "logM0": 14.0}  # band allows logM0 <= 12.84 at 11.6
    with pytest.raises((SupportError, InputFileError), match=r"logM0.*(fixed to 14|logMmin fixed)"):
        load_posterior(info)


def test_priors_that_miss_the_band(shipped):
    info = shipped_info()
    info["params"] = {"logMmin": {"prior": {"min": 11.6, "max": 11.7}},
                      "logM0": {"prior": {"min": 13.5, "max": 14.6}}}
    with pytest.raises((SupportError, InputFileError), match=r"logM0"):
        load_posterior(info)
    # the fast path's own check, whatever the Cobaya theory checks
    from iaemu_likelihood.sampling.support import Support

    support_meta = shipped[0].emulator.support
    with pytest.raises(SupportError, match=r"'logM0'.*logMmin prior \[11.6, 11.7\].*no point inside"):
        Support.build(("logMmin", "logM0"), [11.6, 13.5], [11.7, 14.6], {}, support_meta)
    narrowed = Support.build(("logMmin", "logM0"), [11.6, 12.9], [13.2, 14.6], {}, support_meta)
    assert narrowed.pivot_range[0] > 11.6  # logMmin values below it leave logM0 no room


def test_missing_yaml(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_posterior(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------- samplers and output
def test_ensemble_is_reproducible(synthetic):
    from iaemu_likelihood.sampling.ensemble import run_ensemble

    post = synthetic[0]
    runs = [run_ensemble(post, seed=4, n_walkers=12, min_ess=20, max_steps=200, progress=False)
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0].chains[0], runs[1].chains[0])
    assert post.support.contains(runs[0].chains[0]).all()
    other = run_ensemble(post, seed=5, n_walkers=12, min_ess=20, max_steps=200, progress=False)
    assert not np.array_equal(other.chains[0], runs[0].chains[0])


def test_nuts_is_reproducible(synthetic):
    from iaemu_likelihood.sampling.jax_model import UnconstrainedModel
    from iaemu_likelihood.sampling.nuts import run_nuts

    from iaemu_likelihood.sampling.posterior import load_posterior

    # top-level options beside the model's blocks reach the worker too (its posterior must have
    # the same fingerprint)
    post = load_posterior({**synthetic[2], "debug": False, "timing": False})
    model = UnconstrainedModel(post)
    # a short warm-up (the adaptation runs), and the same draws whether the chains run in this
    # process or one of them in a worker process
    runs = [run_nuts(post, seed=2, n_chains=2, n_warmup=10, block=10, min_ess=1, max_samples=20,
                     progress=False, model=model, target_accept=0.9, processes=processes)
            for processes in (1, 2)]
    assert [r.info["processes"] for r in runs] == [1, 2]
    for a, b in zip(runs[0].chains, runs[1].chains):
        np.testing.assert_array_equal(a, b)
    assert runs[0].info["gradient_evaluations"] == runs[1].info["gradient_evaluations"]
    assert runs[0].info["target_accept_prob"] == 0.9 and runs[0].info["divergences"] >= 0
    assert set(runs[0].rhat) == set(post.names) and len(runs[0].chains) == 2


def test_cli_writes_a_cobaya_style_chain(synthetic, tmp_path, capsys):
    from iaemu_likelihood.cli import main
    from iaemu_likelihood.plotting import load_chains
    from iaemu_likelihood.sampling.output import OutputExistsError, chain_columns

    post, _, info = synthetic
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump(info))
    prefix = tmp_path / "out" / "run"
    args = ["sample", str(path), "--sampler", "ensemble", "-o", str(prefix), "--min-ess", "20",
            "--walkers", "12", "--max-samples", "200", "--no-progress", "--seed", "3"]
    assert main(args) == 0
    header = (tmp_path / "out" / "run.1.txt").read_text().splitlines()[0].split()[1:]
    assert header == chain_columns(post)
    table = np.loadtxt(tmp_path / "out" / "run.1.txt")
    # 10 significant digits in the file
    np.testing.assert_allclose(-table[:5, 1], post.logpost_batch(table[:5, 2:2 + post.dim]),
                               rtol=1e-7)
    samples = load_chains([str(prefix)], burn_in=0)[0]
    names = samples.getParamNames()
    assert names.parWithName("mu_cen").label == r"\mu_c"
    assert names.parWithName("n_gal").isDerived and names.parWithName("f_sat").isDerived
    assert samples.ranges.getLower("mu_cen") == 0.0 and samples.ranges.getUpper("mu_cen") == 1.0
    updated = yaml.safe_load((tmp_path / "out" / "run.updated.yaml").read_text())
    assert "iaemu.ensemble" in updated["sampler"] and updated["params"]["logM0"]["value"] == 12.0
    # an existing output is refused without --force, replaced with it
    with pytest.raises(OutputExistsError, match="--force"):
        from iaemu_likelihood.sampling.cli import build_parser, main as sample_main

        sample_main(build_parser().parse_args(args[1:]))
    assert main(args + ["--force"]) == 0
    assert main(args[:-2] + ["--seed", "-1", "--chains", "0"]) == 1
    assert "--chains = 0 must be a positive integer" in capsys.readouterr().err
    assert main(args + ["--force", "--sampler", "nuts", "--target-accept", "1.2"]) == 1
    assert "--target-accept = 1.2 must lie strictly between 0 and 1" in capsys.readouterr().err
    assert main(args + ["--force", "--sampler", "nuts", "--processes", "0"]) == 1
    assert "--processes = 0 must be a positive integer" in capsys.readouterr().err
