"""beta-NLL loss, warm-up betas and the validation metric."""
import numpy as np
import pytest
import torch

from iaemu_likelihood.training.losses import (DEFAULT_BETAS, beta_nll_loss, beta_vector,
                                              gaussian_nll, validation_metric)

TOL = 1e-6


def test_beta_vector_warmup_then_per_statistic():
    assert torch.all(beta_vector(0, warmup_epochs=3) == 1.0)
    assert torch.all(beta_vector(2, warmup_epochs=3) == 1.0)
    b = beta_vector(3, warmup_epochs=3)
    assert b.shape == (60,)
    assert torch.allclose(b[:20], torch.full((20,), DEFAULT_BETAS["xi"]))
    assert torch.allclose(b[20:], torch.full((40,), 0.5))
    with pytest.raises(ValueError, match="omega"):
        beta_vector(5, 0, betas={"xi": 1.0, "eta": 0.5})


def test_beta_zero_is_decoupled_gaussian_nll_value():
    mean = torch.tensor([[0.5]]).repeat(1, 60)
    var = torch.tensor([[2.0]]).repeat(1, 60)
    tm, tv = torch.zeros(1, 60), torch.full((1, 60), 3.0)
    expected = 0.5 * (0.25 / 2.0) + 0.5 * (np.log(2.0) + 3.0 / 2.0)
    assert abs(float(beta_nll_loss(mean, var, tm, tv, 0.0)) - expected) < TOL
    # beta = 1 multiplies by var
    assert abs(float(beta_nll_loss(mean, var, tm, tv, 1.0)) - 2.0 * expected) < TOL


def test_gradients_mean_mse_like_and_variance_optimum_at_sample_variance():
    mean = torch.zeros(4, 60, requires_grad=True)
    var = torch.full((4, 60), 0.7, requires_grad=True)
    tm, tv = torch.full((4, 60), 2.0), torch.full((4, 60), 0.7)
    beta_nll_loss(mean, var, tm, tv, torch.ones(60)).backward()
    n = 4 * 60
    # beta = 1: d/dmu = var * (mu - y)/var / n = (mu - y)/n, the MSE gradient
    assert torch.allclose(mean.grad, torch.full((4, 60), -2.0 / n), atol=1e-7)
    # var equal to the Bessel-corrected sample variance: zero gradient, whatever the mean error
    assert torch.allclose(var.grad, torch.zeros(4, 60), atol=1e-7)


def test_minimising_loss_recovers_true_variance():
    """Fit a constant mean and variance to noisy 10-realization points: var -> sigma**2."""
    gen = torch.Generator().manual_seed(0)
    sigma, n_real, n_pts, n_bins = 0.3, 10, 2000, 4
    y = 1.0 + sigma * torch.randn(n_pts, n_real, n_bins, generator=gen)
    tm, tv = y.mean(1), y.var(1, unbiased=True)
    mu = torch.zeros(n_bins, requires_grad=True)
    log_var = torch.zeros(n_bins, requires_grad=True)
    opt = torch.optim.Adam([mu, log_var], lr=0.1)
    for _ in range(150):
        opt.zero_grad()
        ones = torch.ones(n_pts, n_bins)  # broadcast tensors are slow in torch's pow/log
        beta_nll_loss(mu * ones, log_var.exp() * ones, tm, tv, 0.5).backward()
        opt.step()
    assert torch.allclose(mu, torch.ones(n_bins), atol=0.01)
    assert torch.allclose(log_var.exp().sqrt(), torch.full((n_bins,), sigma), rtol=0.02)


def test_gaussian_nll_equals_per_realization_average():
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(5, 10, 60, generator=gen)
    mean, var = torch.randn(5, 60, generator=gen), torch.rand(5, 60, generator=gen) + 0.5
    direct = (0.5 * (torch.log(var[:, None]) + (y - mean[:, None]) ** 2 / var[:, None])).mean()
    fast = gaussian_nll(mean, var, y.mean(1), y.var(1, unbiased=True), 10)
    assert abs(float(direct - fast)) < 1e-5


def test_validation_metric_mix():
    mean, var = torch.zeros(2, 60), torch.ones(2, 60)
    tm, tv = torch.ones(2, 60), torch.ones(2, 60)
    m = validation_metric(mean, var, tm, tv, n_realizations=10, mse_weight=0.7)
    assert m["mse"] == pytest.approx(1.0)
    assert m["nll"] == pytest.approx(0.5 * (0.0 + 1.0))  # scatter only: log 1 + 1/1
    assert m["full_nll"] == pytest.approx(0.5 * (0.9 + 1.0))
    assert m["combined"] == pytest.approx(0.7 * 1.0 + 0.3 * 0.5)
    with pytest.raises(ValueError):
        validation_metric(mean, var, tm, tv, 10, mse_weight=1.5)
