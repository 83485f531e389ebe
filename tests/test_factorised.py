"""The physics-factorised emulator: the exact alignment factor c(mu), the structure it imposes,
numpy vs torch, training and export."""
import json

import numpy as np
import pytest

from iaemu_likelihood.alignment import (alignment_p2, alignment_p2_derivative, alignment_p2_table,
                                        torch_alignment_p2)
from iaemu_likelihood.conventions import PARAM_NAMES

#: two float64 evaluations of the same network
EXACT_RTOL = 1e-9


def test_alignment_factor_limits_and_monotonicity():
    np.testing.assert_allclose(alignment_p2([-1.0, 0.0, 1.0]), [-0.5, 0.0, 1.0], atol=1e-12)
    mu = np.linspace(-1, 1, 4001)
    c = alignment_p2(mu)
    assert np.all(np.diff(c) > 0)
    # continuity across the series / closed-form switch near kappa = 0: dc/dkappa = 1.5 * 4/45
    kappa = np.array([-2e-4, -6.4e-5, 6.4e-5, 2e-4])
    near = alignment_p2(np.arctan(kappa) * 2 / np.pi)
    np.testing.assert_allclose(np.diff(near) / np.diff(kappa), 1.5 * 4 / 45, rtol=1e-3)
    with pytest.raises(ValueError, match=r"mu = 1\.5 is outside \[-1, 1\]"):
        alignment_p2([0.2, 1.5])


def test_alignment_factor_matches_halotools_draws():
    """c(mu) = E[P2(cos theta)] of the Dimroth-Watson draws halotools makes for strength mu."""
    pytest.importorskip("halotools")
    from halotools.empirical_models.ia_models.ia_strength_models import alignment_strength
    from halotools.empirical_models.ia_models.watson_distribution import DimrothWatson

    n = 100_000
    for mu in (-0.9, -0.4, 0.3, 0.8, 0.97):
        np.random.seed(7)  # noqa: NPY002  (halotools' DimrothWatson draws from numpy's global state)
        x = DimrothWatson().rvs(alignment_strength(np.full(n, mu)))
        p2 = 1.5 * x ** 2 - 0.5
        assert abs(p2.mean() - alignment_p2(mu)) < 5 * p2.std() / np.sqrt(n), mu


def test_alignment_factor_derivative_and_torch_gradient():
    import torch

    mu = np.array([-1.0, -0.7, -0.1, 0.0, 0.2, 0.9, 1.0])
    d = alignment_p2_derivative(mu)
    assert np.all(d > 0)
    # at mu -> 1: c ~ 1 - 3/(2 kappa), kappa = tan(pi mu / 2): dc/dmu -> 3 pi / 4
    assert d[-1] == pytest.approx(3 * np.pi / 4, rel=1e-3)
    t = torch.tensor(mu[1:-1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: torch_alignment_p2(m, table=False), (t,), eps=1e-6,
                                    atol=1e-6)


@pytest.fixture(scope="module")
def factorised_folder(tmp_path_factory):
    from iaemu_likelihood.training.dataset_io import save_dataset
    from iaemu_likelihood.training.synthetic import make_synthetic_dataset
    from iaemu_likelihood.training.train import TrainConfig, train

    tmp = tmp_path_factory.mktemp("factorised")
    save_dataset(tmp / "train.npz", make_synthetic_dataset(120, 4, seed=3))
    cfg = TrainConfig(data=str(tmp / "train.npz"), output=str(tmp / "weights"),
                      architecture="factorised", ensemble_size=2, max_epochs=4, warmup_epochs=2,
                      patience=10, batch_size=32, reference_points=2,
                      architecture_config={"width": 16, "n_hidden": 2, "var_width": 8, "var_hidden": 1})
    return train(cfg, restart=True, progress=False).folder


def _point(emu):
    return np.array([np.mean(emu.bounds[n]) for n in PARAM_NAMES])


def test_export_records_mu_range_and_uncentred_normalisation(factorised_folder):
    meta = json.loads((factorised_folder / "metadata.json").read_text())
    assert meta["architecture"] == "factorised"
    cfg = meta["architecture_config"]
    assert cfg["mu_low"] == [meta["bounds"]["mu_cen"][0], meta["bounds"]["mu_sat"][0]]
    out = meta["normalisation"]["output"]
    assert out["omega"]["mean"] == [0.0] * 20 and out["eta"]["mean"] == [0.0] * 20
    assert any(v != 0 for v in out["xi"]["mean"])


def test_structure_xi_free_omega_linear_eta_quadratic_in_c(factorised_folder):
    from iaemu_likelihood.emulator import IAEmulator

    emu = IAEmulator.load(factorised_folder)
    theta = np.tile(_point(emu), (3, 1))
    theta[:, 0] = [-0.8, 0.1, 0.9]  # mu_cen
    pred = emu.predict(theta)
    np.testing.assert_allclose(pred.xi[1:], np.broadcast_to(pred.xi[0], (2, 20)), rtol=1e-12)
    c = alignment_p2_table(theta[:, 0])  # the emulator's c(mu)
    # omega(c) on a line through the three points
    slope = (pred.omega[2] - pred.omega[0]) / (c[2] - c[0])
    np.testing.assert_allclose(pred.omega[1], pred.omega[0] + slope * (c[1] - c[0]),
                               rtol=1e-9, atol=1e-12 * np.abs(pred.omega).max())
    # eta is a quadratic in c_cen: four points fix it, so a fifth lies on the fit
    theta5 = np.tile(_point(emu), (5, 1))
    theta5[:, 0] = [-0.9, -0.3, 0.2, 0.6, 0.95]
    c5 = alignment_p2_table(theta5[:, 0])
    eta = emu.predict(theta5).eta
    coef = np.polyfit(c5[:4], eta[:4], 2)
    np.testing.assert_allclose(np.polyval(coef, c5[4]), eta[4], rtol=1e-7,
                               atol=1e-9 * np.abs(eta).max())


def test_numpy_matches_torch_and_gradients_flow(factorised_folder):
    import torch

    from iaemu_likelihood.emulator import IAEmulator

    emu = IAEmulator.load(factorised_folder, batch_precision="float64")
    rng = np.random.default_rng(0)
    low = np.array([emu.bounds[n][0] for n in PARAM_NAMES])
    high = np.array([emu.bounds[n][1] for n in PARAM_NAMES])
    theta = low + (high - low) * rng.uniform(0.05, 0.95, size=(300, 7))
    pred = emu.predict(theta, epistemic=True)
    t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    out = emu.torch_forward(t)
    for stat in ("xi", "omega", "eta"):
        np.testing.assert_allclose(out[stat].detach().numpy(), pred[stat], rtol=EXACT_RTOL,
                                   atol=1e-12 * np.abs(pred[stat]).max())
        np.testing.assert_allclose(out[f"{stat}_var"].detach().numpy(), pred[f"{stat}_var"],
                                   rtol=EXACT_RTOL)
        np.testing.assert_allclose(out[f"{stat}_epi_var"].detach().numpy(), pred[f"{stat}_epi_var"],
                                   rtol=1e-7, atol=1e-12 * pred[f"{stat}_epi_var"].max())
    out["omega"].sum().backward()
    assert torch.isfinite(t.grad).all() and (t.grad[:, 0] != 0).any()
    # float32 large batches agree with float64
    fast = IAEmulator.load(factorised_folder).predict(theta)
    sigma = np.sqrt(pred.variance_vector())
    assert np.max(np.abs(fast.vector() - pred.vector()) / sigma) < 1e-4


def test_interpolation_table_is_accurate():
    mu = np.random.default_rng(0).uniform(-1, 1, 200_000)
    mu[:4] = [-1.0, 1.0, 0.0, 0.999999]
    assert np.max(np.abs(alignment_p2_table(mu) - alignment_p2(mu))) < 1e-9
