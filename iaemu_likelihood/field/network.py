"""The painter network and the per-voxel count distribution it predicts (torch, MONAI).

The network is MONAI's 3-D residual U-Net (``monai.networks.nets.UNet``) whose input channels are
the normalised dark-matter density and the five HOD parameters as constant channels (parameter
conditioning). It has no normalisation layers: instance or group normalisation would subtract the
constant parameter channels right after the first convolution. Its three output channels define,
per voxel,

* phase 1 (classifier): ``logit``; trained with a binary cross-entropy whose positive voxels weigh
  ``pos_weight``, which shifts the optimal logit by ``log(pos_weight)`` (chosen for recall), so the
  calibrated probability of >= 1 galaxy is ``p = sigmoid(logit - log(pos_weight))``;
* phase 2 (regressor): for voxels with >= 1 galaxy, ``N - 1`` follows a negative binomial of mean
  ``mu = softplus(out_1)`` and shape ``r = softplus(out_2) + R_MIN`` (variance ``mu + mu^2 / r``).

So ``E[N] = p (1 + mu)``; a realization draws ``N = B (1 + K)``, ``B ~ Bernoulli(p)``,
``K ~ NegBin(r, mu)``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["build_network", "network_outputs", "count_nll", "sample_counts", "mean_counts",
           "normalise_density", "normalise_hod", "R_MIN"]

#: Smallest negative-binomial shape (keeps the variance finite).
R_MIN = 1e-2
#: Floor of the negative-binomial mean (keeps log(mu) finite).
MU_MIN = 1e-4


def build_network(config: dict):
    """The torch module for ``architecture_config`` {n_params, channels, strides, num_res_units}.

    Its ``forward(x, params)`` takes the normalised density ``x`` (B, 1, D, H, W) and normalised
    HOD parameters (B, n_params) and returns (B, 3, D, H, W); D, H, W must be multiples of
    ``prod(strides)``.
    """
    import torch
    from monai.networks.nets import UNet

    class PainterNet(torch.nn.Module):
        def __init__(self, n_params, channels, strides, num_res_units):
            super().__init__()
            self.unet = UNet(spatial_dims=3, in_channels=1 + n_params, out_channels=3,
                             channels=tuple(channels), strides=tuple(strides),
                             num_res_units=num_res_units, norm=None)

        def forward(self, x, params):
            p = params[:, :, None, None, None].expand(-1, -1, *x.shape[2:])
            return self.unet(torch.cat([x, p.to(x.dtype)], dim=1))

    return PainterNet(int(config["n_params"]), config["channels"], config["strides"],
                      int(config["num_res_units"]))


def normalise_density(rho, shift: float, scale: float):
    """``(log(1 + rho) - shift) / scale`` of a density in units of the mean (numpy or torch)."""
    if hasattr(rho, "log1p"):
        return (rho.log1p() - shift) / scale
    return (np.log1p(rho) - shift) / scale


def normalise_hod(hod, low, high) -> np.ndarray:
    """HOD parameters (..., n) mapped linearly from [low, high] to [-1, 1]."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    return (2 * (np.asarray(hod, float) - low) / (high - low) - 1).astype(np.float32)


def network_outputs(out, pos_weight: float, logit_offset: float = 0.0):
    """(calibrated p, logit, mu, r) from the raw output (B, 3, ...) (torch).

    ``p = sigmoid(logit - log(pos_weight) + logit_offset)``; ``logit_offset`` is the painter's
    post-hoc calibration (0 in training).
    """
    import torch
    import torch.nn.functional as F

    logit = out[:, 0]
    mu = F.softplus(out[:, 1]) + MU_MIN
    r = F.softplus(out[:, 2]) + R_MIN
    return torch.sigmoid(logit - math.log(pos_weight) + logit_offset), logit, mu, r


def count_nll(out, counts, pos_weight: float, mask=None):
    """Training loss per voxel: weighted BCE of ``N >= 1`` plus the NB NLL of ``N - 1`` where ``N >= 1``.

    Parameters
    ----------
    out : tensor (B, 3, D, H, W)
    counts : tensor (B, D, H, W), galaxies per voxel
    pos_weight : float
        Weight of the positive voxels in the cross-entropy.
    mask : tensor (B, D, H, W) of bool, optional
        Voxels that count (e.g. the centre of a crop).

    Returns
    -------
    (classification loss, count loss): means over the (masked) voxels, and over the masked
    positive voxels (0 when there is none).
    """
    import torch
    import torch.nn.functional as F

    _, logit, mu, r = network_outputs(out, pos_weight)
    positive = counts >= 1
    if mask is None:
        mask = torch.ones_like(positive)
    target = positive.to(logit.dtype)
    bce = F.binary_cross_entropy_with_logits(
        logit, target, pos_weight=torch.tensor(pos_weight, dtype=logit.dtype, device=logit.device),
        reduction="none")
    cls = bce[mask].mean()
    pos = positive & mask
    if not pos.any():
        return cls, logit.new_zeros(())
    k = (counts[pos] - 1).to(logit.dtype)
    mu_p, r_p = mu[pos], r[pos]
    # log NB(k; r, mu) = lgamma(k + r) - lgamma(r) - lgamma(k + 1) + r log(r / (r + mu)) + k log(mu / (r + mu))
    log_pmf = (torch.lgamma(k + r_p) - torch.lgamma(r_p) - torch.lgamma(k + 1)
               + r_p * (torch.log(r_p) - torch.log(r_p + mu_p))
               + k * (torch.log(mu_p) - torch.log(r_p + mu_p)))
    return cls, -log_pmf.mean()


def mean_counts(p: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Expected galaxies per voxel, ``p (1 + mu)``."""
    return p * (1.0 + mu)


def sample_counts(p: np.ndarray, mu: np.ndarray, r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One realization ``B (1 + K)`` (int32, shape of ``p``); see the module docstring."""
    occupied = rng.random(p.shape) < p
    n = np.zeros(p.shape, dtype=np.int32)
    r_o, mu_o = r[occupied].astype(np.float64), mu[occupied].astype(np.float64)
    n[occupied] = 1 + rng.negative_binomial(r_o, r_o / (r_o + mu_o))
    return n
