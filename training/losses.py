"""Training losses: beta-NLL (Seitzer et al. 2022) with an MSE-like warm-up, and the validation metric.

Every loss works in standardised output space (see :mod:`.normalisation`) on the 60-element
``[xi(20), omega(20), eta(20)]`` vectors.

How the mean and variance heads are trained
-------------------------------------------
A design point has ``n`` realizations ``y_k`` with mean ``ybar`` and unbiased (ddof=1) sample
variance ``s2``. The Gaussian NLL of all realizations under ``N(mu, var)`` splits exactly into a
term for the mean and one for the scatter::

    mean_k NLL(y_k) = 0.5 * [log var + ((n - 1)/n * s2 + (ybar - mu)**2) / var]

We use that decomposition with two changes, so that the predicted ``var`` estimates the
variance of ONE realization and is calibrated:

* the mean head sees ``0.5 * (ybar - mu)**2 / sg(var)`` (``sg`` = stop-gradient): the model's own
  error in the mean never leaks into ``var``. Trained on the full likelihood, ``var`` would
  absorb ``(ybar - mu)**2``: inflated early in training and (when the mean over-fits ``ybar``)
  deflated by the factor ``(n - 1)/n`` at the end.
* the variance head sees ``0.5 * (log var + s2 / var)``, minimised in expectation at
  ``var = E[s2] = sigma**2`` because ``s2`` is Bessel-corrected.

Both terms are weighted by ``sg(var)**beta`` (beta-NLL). With ``beta = 1`` (the warm-up) the mean
gradient is the plain MSE gradient ``(mu - ybar)``; after the warm-up the betas are per statistic
(0.9 for xi, 0.5 for omega and eta, as in the reference IAEmu training).
"""
from __future__ import annotations

import torch

from ..conventions import N_BINS, STATISTICS

__all__ = ["DEFAULT_BETAS", "beta_vector", "beta_nll_loss", "gaussian_nll", "scatter_nll",
           "validation_metric"]

#: beta of each statistic after the warm-up.
DEFAULT_BETAS = {"xi": 0.9, "omega": 0.5, "eta": 0.5}


def beta_vector(epoch: int, warmup_epochs: int, betas: dict | None = None,
                dtype=torch.float32) -> torch.Tensor:
    """Per-element beta for one epoch, shape (60,).

    Parameters
    ----------
    epoch : int
        Zero-based epoch index.
    warmup_epochs : int
        Epochs ``0 .. warmup_epochs - 1`` use beta = 1 everywhere (MSE-like).
    betas : dict, optional
        Statistic -> beta after the warm-up; default :data:`DEFAULT_BETAS`.
    """
    betas = DEFAULT_BETAS if betas is None else betas
    if epoch < warmup_epochs:
        return torch.ones(len(STATISTICS) * N_BINS, dtype=dtype)
    missing = [s for s in STATISTICS if s not in betas]
    if missing:
        raise ValueError(f"betas lacks statistics {missing}; got {sorted(betas)}")
    return torch.cat([torch.full((N_BINS,), float(betas[s]), dtype=dtype) for s in STATISTICS])


def beta_nll_loss(mean: torch.Tensor, var: torch.Tensor, target_mean: torch.Tensor,
                  target_var: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """beta-NLL of a batch of design points, averaged over points and bins.

    Parameters
    ----------
    mean, var : Tensor, shape (n, 60)
        Network outputs (standardised space); ``var`` > 0 is the variance of one realization.
    target_mean : Tensor, shape (n, 60)
        Mean over realizations of the standardised statistic.
    target_var : Tensor, shape (n, 60)
        Unbiased (ddof=1) variance over realizations of the standardised statistic.
    beta : Tensor of shape (60,) or float
        beta-NLL exponent; 0 gives the Gaussian NLL, 1 an MSE-like loss.

    Returns
    -------
    Tensor
        Scalar loss (see the module docstring for the exact form).
    """
    var_sg = var.detach()
    weight = var_sg ** beta
    mean_term = 0.5 * (target_mean - mean) ** 2 / var_sg
    var_term = 0.5 * (torch.log(var) + target_var / var)
    return (weight * (mean_term + var_term)).mean()


def gaussian_nll(mean: torch.Tensor, var: torch.Tensor, target_mean: torch.Tensor,
                 target_var: torch.Tensor, n_realizations: int) -> torch.Tensor:
    """Mean per-realization Gaussian NLL (without the constant ``0.5 log 2 pi``).

    Uses the sufficient statistics: the average over ``n`` realizations of
    ``0.5 * [log var + (y_k - mu)**2 / var]`` equals
    ``0.5 * [log var + ((n - 1)/n * s2 + (ybar - mu)**2) / var]``. Shapes as in
    :func:`beta_nll_loss`; returns a scalar averaged over points and bins.
    """
    n = float(n_realizations)
    sq = (n - 1.0) / n * target_var + (target_mean - mean) ** 2
    return (0.5 * (torch.log(var) + sq / var)).mean()


def scatter_nll(var: torch.Tensor, target_var: torch.Tensor) -> torch.Tensor:
    """NLL of the realizations' scatter about their own mean under the predicted one-realization
    variance: mean of ``0.5 * (log var + s2 / var)`` (without constants), minimal at
    ``var = s2``. It scores the variance head alone, like the training loss does."""
    return (0.5 * (torch.log(var) + target_var / var)).mean()


def validation_metric(mean: torch.Tensor, var: torch.Tensor, target_mean: torch.Tensor,
                      target_var: torch.Tensor, n_realizations: int,
                      mse_weight: float = 0.7) -> dict:
    """Validation losses used for early stopping.

    The NLL part scores the variance head on the scatter of the realizations about their own
    mean (:func:`scatter_nll`), not about the predicted mean: on real mocks the realization scatter
    is far smaller than the emulator's error on the mean for most of the training, and the full
    per-realization NLL (:func:`gaussian_nll`, also reported) is then dominated by
    ``(mean error)**2 / var`` and picks a nearly untrained epoch.

    Returns
    -------
    dict
        ``mse`` (of the mean against the realization mean), ``nll`` (:func:`scatter_nll`),
        ``full_nll`` (:func:`gaussian_nll`) and
        ``combined = mse_weight * mse + (1 - mse_weight) * nll``, all Python floats.
    """
    if not 0.0 <= mse_weight <= 1.0:
        raise ValueError(f"mse_weight must lie in [0, 1], got {mse_weight}")
    with torch.no_grad():
        mse = float(((mean - target_mean) ** 2).mean())
        nll = float(scatter_nll(var, target_var))
        full = float(gaussian_nll(mean, var, target_mean, target_var, n_realizations))
    return {"mse": mse, "nll": nll, "full_nll": full,
            "combined": mse_weight * mse + (1.0 - mse_weight) * nll}
