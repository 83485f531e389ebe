"""``iaemu sample`` with cosmology- and redshift-dependent weights (issues 13 and 15).

The fast path reads the same yaml as ``cobaya-run``: ``omegam`` and ``sigma8`` sampled beside HOD
parameters, z from the theory's ``redshift`` option. Its log-posterior equals Cobaya's (1e-8), also
where the cosmology prior reaches beyond the weights' training range (both -inf there), the JAX
mirror equals the numpy path, and a short ensemble run stays inside the training range.
"""
import math

import numpy as np
import pytest

import test_extending as ext
from test_cosmology_inputs import COSMO, _theta, emulator, v2_weights  # noqa: F401  (fixtures)
from test_sampling import LOGPOST_RTOL, _compare, box_points, cobaya_model

THEORY = "iaemu_likelihood.IAEmuTheory"
LIKE = "iaemu_likelihood.IAEmuLikelihood"
#: sampled HOD parameters (the others fixed at the toy point)
SAMPLED_HOD = ("mu_cen", "logMmin")
#: cosmology priors wider than the weights' training ranges (Omega_m 0.25-0.36, sigma_8 0.72-0.92)
PRIORS = {"omegam": (0.22, 0.40), "sigma8": (0.70, 0.95)}


@pytest.fixture(scope="module")
def cosmology_posterior(v2_weights, emulator, tmp_path_factory):  # noqa: F811
    from iaemu_likelihood.sampling.posterior import load_posterior

    theta = _theta(emulator)
    data_file, _ = ext._measurement(tmp_path_factory.mktemp("data"), emulator, theta)
    hod = dict(zip(emulator.param_names[:7], theta[:7]))
    lows, highs = emulator.bounds, emulator.bounds
    params = {name: float(value) for name, value in hod.items() if name not in SAMPLED_HOD}
    params.update({name: {"prior": {"min": lows[name][0], "max": highs[name][1]}}
                   for name in SAMPLED_HOD})
    params.update({name: {"prior": {"min": lo, "max": hi}} for name, (lo, hi) in PRIORS.items()})
    info = {"theory": {THEORY: {"weights": str(v2_weights), "redshift": COSMO["z"]}},
            "likelihood": {LIKE: {"data_file": str(data_file),
                                  "emulator_covariance": ["aleatoric", "epistemic"]}},
            "params": params,
            "output": str(tmp_path_factory.mktemp("chains") / "cosmology")}
    return load_posterior(info), cobaya_model(info), info


def test_inputs_map_to_the_emulator(cosmology_posterior, emulator):  # noqa: F811
    post, _, _ = cosmology_posterior
    assert set(post.names) == {*SAMPLED_HOD, "omegam", "sigma8"}
    assert dict(zip(post.names, post.input_names))["omegam"] == "Omega_m"
    assert post.fixed["z"] == COSMO["z"]
    # the support is the prior box cut to the training ranges
    j = post.names.index("omegam")
    assert (post.support.low[j], post.support.high[j]) == emulator.bounds["Omega_m"]
    assert (post.low[j], post.high[j]) == PRIORS["omegam"]


def test_logpost_equals_cobaya(cosmology_posterior):
    post, model, _ = cosmology_posterior
    points = box_points(post, np.random.default_rng(21), 40)
    finite = _compare(post, model, points)
    assert finite >= 20 and finite < len(points)  # some points lie outside the training range


def test_jax_equals_numpy(cosmology_posterior):
    from iaemu_likelihood.sampling.jax_model import BatchLogPosterior

    post, _, _ = cosmology_posterior
    points = np.vstack([box_points(post, np.random.default_rng(22), 30),
                        post.support.to_theta(np.random.default_rng(23).normal(size=(10, post.dim)))])
    got = BatchLogPosterior(post, 8)(points)
    expected = post.logpost_batch(points)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    ok = np.isfinite(expected)
    assert ok.sum() >= 15
    np.testing.assert_allclose(got[ok], expected[ok], rtol=LOGPOST_RTOL)


def test_ensemble_samples_cosmology(cosmology_posterior, emulator):  # noqa: F811
    from iaemu_likelihood.sampling.ensemble import run_ensemble

    post, _, _ = cosmology_posterior
    result = run_ensemble(post, seed=3, n_walkers=16, min_ess=50, max_steps=300, progress=False)
    chain = result.chains[0]
    j = post.names.index("sigma8")
    lo, hi = emulator.bounds["sigma_8"]
    assert chain.shape[1] == post.dim and np.all((chain[:, j] >= lo) & (chain[:, j] <= hi))
    assert np.all(np.isfinite(result.logpost[0])) and not math.isnan(chain.std(axis=0).sum())
