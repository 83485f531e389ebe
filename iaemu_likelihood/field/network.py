"""The painter network and the per-voxel count distribution it predicts (torch, MONAI).

The network is MONAI's 3-D residual U-Net (``monai.networks.nets.UNet``) whose input channels are
the normalised dark-matter density and the five HOD parameters as constant channels (parameter
conditioning). The density may be given on a mesh ``input_factor`` times finer than the galaxy mesh:
each galaxy voxel then receives the ``input_factor**3`` density cells it contains as channels
(space-to-depth), so the network sees sub-voxel structure -- a compact halo and a diffuse filament
of the same mass per voxel differ there. It has no normalisation layers: instance or group normalisation would
subtract the constant parameter channels right after the first convolution. Its three output channels define,
per voxel,

* phase 1 (classifier): ``logit``; trained with a binary cross-entropy whose positive voxels weigh
  ``pos_weight``, which shifts the optimal logit by ``log(pos_weight)`` (chosen for recall), so the
  calibrated probability of >= 1 galaxy is ``p = sigmoid(logit - log(pos_weight))``;
* phase 2 (regressor): for voxels with >= 1 galaxy, ``N - 1`` follows a negative binomial of mean
  ``mu = softplus(out_1)`` and shape ``r = softplus(out_2) + R_MIN`` (variance ``mu + mu^2 / r``).

So ``E[N] = p (1 + mu)``; a realization draws ``N = B (1 + K)``, ``P(B = 1) = p``,
``K ~ NegBin(r, mu)`` (:mod:`iaemu_likelihood.field.sampling`).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["KINDS", "build_network", "network_outputs", "count_nll", "block_count_nll",
           "logit_offset_for_total", "expected_pairs", "dispersion_for_pairs", "space_to_depth",
           "periodic_space_to_depth",
           "normalise_density", "normalise_hod", "R_MIN"]

#: Smallest negative-binomial shape (keeps the variance finite).
R_MIN = 1e-2
#: Floor of the negative-binomial mean (keeps log(mu) finite).
MU_MIN = 1e-4


def space_to_depth(x, factor: int):
    """(B, 1, f D, f H, f W) -> (B, f^3, D, H, W): the f^3 fine cells of each coarse voxel as channels (torch)."""
    if factor == 1:
        return x
    b, c, d, h, w = x.shape
    f = factor
    x = x.reshape(b, c, d // f, f, h // f, f, w // f, f)
    # one copy, into channels-last memory (what the CPU convolutions read): (B, D, H, W, C f^3) viewed as NCDHW
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, d // f, h // f, w // f, c * f ** 3)
    return x.permute(0, 4, 1, 2, 3)


def periodic_space_to_depth(x, factor: int, before: int, after: int):
    """A periodic fine mesh (fD, fH, fW) -> (1, f^3, D + before + after, ...) (torch): ``space_to_depth`` of
    the mesh with ``before`` / ``after`` galaxy voxels of periodic context on every side, in one copy
    into channels-last memory (the same values and layout as ``space_to_depth(F.pad(x, circular), f)``,
    without the padded fine copy)."""
    import torch

    f = factor
    d, h, w = (s // f for s in x.shape)
    if before > min(d, h, w) or after > min(d, h, w):
        raise ValueError(f"periodic context {before} + {after} voxels exceeds the mesh {d, h, w}")
    cells = x.reshape(d, f, h, f, w, f).permute(0, 2, 4, 1, 3, 5)  # a view: voxel axes, then cell axes
    out = torch.empty((d + before + after, h + before + after, w + before + after, f ** 3), dtype=x.dtype)
    core = (slice(before, before + d), slice(before, before + h), slice(before, before + w))
    out[core].view(d, h, w, f, f, f).copy_(cells)
    for axis, size in enumerate((d, h, w)):  # wrap each axis in turn, corners included
        lead = (slice(None),) * axis
        out[lead + (slice(0, before),)] = out[lead + (slice(size, size + before),)]
        out[lead + (slice(before + size, before + size + after),)] = out[lead + (slice(before, before + after),)]
    return out[None].permute(0, 4, 1, 2, 3)


#: Network kinds of ``architecture_config["kind"]`` (absent = "unet", the first painters).
KINDS = ("unet", "encoder_head")


def build_network(config: dict):
    """The torch module for ``architecture_config``.

    Common keys: ``n_params``, ``channels``, ``strides``, ``num_res_units`` (MONAI UNet settings),
    ``input_factor`` (default 1) and ``kind`` (default ``"unet"``):

    * ``"unet"``: the HOD parameters are constant input channels of one U-Net (painters v1-v3);
    * ``"encoder_head"``: a U-Net *encoder* reads the density alone (a 1x1x1 stem over the
      ``input_factor**3`` sub-voxel cells, then the U-Net) and gives ``features`` channels per
      voxel; a per-voxel *head* (layers of width ``head_width`` over the channels, i.e. 1x1x1
      convolutions) reads them with the HOD parameters as further inputs. The encoder does not
      depend on the HOD, so one density is encoded once for any number of HOD points (training
      scores several HOD targets per crop, painting reuses the features).

    Its ``forward(x, params)`` takes the normalised density ``x`` (B, 1, f D, f H, f W) on a mesh
    ``f = input_factor`` times finer than the galaxy mesh, and normalised HOD parameters
    (B, n_params), and returns (B, 3, D, H, W); ``forward_targets(x, params)`` takes params
    (B, K, n_params) and returns (B, K, 3, D, H, W). D, H, W must be multiples of ``prod(strides)``.
    Training and painting use its two halves: ``prepare(x)`` (the HOD-independent part, reusable
    for any number of HOD points) and ``targets(prepared, params, window)``, the outputs for params
    (B, K, n_params) on the voxels ``[lo, lo + size)`` of each axis (``window = (lo, size)``; None =
    all), computed on those voxels only where the network allows.
    """
    import torch
    import torch.nn.functional as F
    from monai.networks.nets import UNet

    kind = config.get("kind", "unet")
    if kind not in KINDS:
        raise ValueError(f"architecture_config kind={kind!r}; allowed: {list(KINDS)}")
    n_params, f = int(config["n_params"]), int(config.get("input_factor", 1))
    channels, strides = tuple(config["channels"]), tuple(config["strides"])
    units = int(config["num_res_units"])

    class PainterNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.input_factor = f
            self.unet = UNet(spatial_dims=3, in_channels=f ** 3 + n_params, out_channels=3, channels=channels,
                             strides=strides, num_res_units=units, norm=None)

        def forward(self, x, params):
            x = space_to_depth(x, self.input_factor)
            p = params[:, :, None, None, None].expand(-1, -1, *x.shape[2:])
            return self.unet(torch.cat([x, p.to(x.dtype)], dim=1))

        def prepare(self, x):
            return x  # the HOD enters at the input: nothing to compute before it

        def targets(self, x, params, window=None):
            b, k = params.shape[:2]
            out = self.forward(x if k == 1 else x.repeat_interleave(k, dim=0), params.reshape(b * k, -1))
            out = _window(out, window)
            return out.reshape(b, k, *out.shape[1:])

        def forward_targets(self, x, params):
            return self.targets(x, params)

    class EncoderHeadNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.input_factor = f
            n_feat, width = int(config["features"]), int(config["head_width"])
            self.stem = torch.nn.Sequential(torch.nn.Conv3d(f ** 3, channels[0], 1), torch.nn.SiLU())
            self.unet = UNet(spatial_dims=3, in_channels=channels[0], out_channels=n_feat, channels=channels,
                             strides=strides, num_res_units=units, norm=None)
            # the head is per voxel: linear layers over the channels of a channels-last view
            # (1x1x1 convolutions in effect; a batched matrix product is several times faster on CPUs)
            self.head_features = torch.nn.Linear(n_feat, width)
            self.head_params = torch.nn.Linear(n_params, width, bias=False)
            self.head_hidden = torch.nn.Linear(width, width)
            self.head_out = torch.nn.Linear(width, 3)

        def encode(self, x):
            """Density (B, 1, fD, fH, fW) -> HOD-independent features (B, features, D, H, W)."""
            return self.encode_cells(space_to_depth(x, self.input_factor))

        def encode_cells(self, cells):
            """:meth:`encode` of the density already as cells per voxel (B, f^3, D, H, W) (``space_to_depth``)."""
            return F.silu(self.unet(self.stem(cells)))

        def head(self, features, params):
            """Features (B, C, D, H, W) and params (B, K, n_params) -> outputs (B, K, 3, D, H, W).

            Per voxel, so features cropped to some voxels give those voxels' outputs."""
            b, k = params.shape[:2]
            spatial = features.shape[2:]
            # (B, V, C): one copy of the voxels (a plain view of channels-last features before windowing)
            v = features.permute(0, 2, 3, 4, 1).reshape(b, -1, features.shape[1])
            h = self.head_features(v)[:, None] + self.head_params(params.to(v.dtype))[:, :, None]  # (B, K, V, W)
            inplace = not torch.is_grad_enabled()  # painting: no mesh-sized temporaries
            out = self.head_out(F.silu(self.head_hidden(F.silu(h, inplace=inplace)), inplace=inplace))  # (B, K, V, 3)
            return out.permute(0, 1, 3, 2).reshape(b, k, 3, *spatial)

        def prepare(self, x):
            return self.encode(x)

        def targets(self, features, params, window=None):
            return self.head(_window(features, window), params)  # the head only on the window's voxels

        def forward_targets(self, x, params):
            return self.targets(self.prepare(x), params)

        def forward(self, x, params):
            return self.forward_targets(x, params[:, None])[:, 0]

    return PainterNet() if kind == "unet" else EncoderHeadNet()


def _window(t, window):
    """The voxels ``[lo, lo + size)`` of the last three axes of ``t`` (``window = (lo, size)``, ``size`` an
    int or one per axis; None = all)."""
    if window is None:
        return t
    lo, size = window
    a, b, c = (size,) * 3 if isinstance(size, (int, np.integer)) else size
    return t[..., lo:lo + a, lo:lo + b, lo:lo + c]


def normalise_density(rho, shift: float, scale: float):
    """``(log(1 + rho) - shift) / scale`` of a density in units of the mean: a new numpy array, or a
    torch tensor normalised in place (the painter's own copy of a whole mesh)."""
    if hasattr(rho, "log1p_"):
        return rho.log1p_().sub_(shift).div_(scale)
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


def block_count_nll(out, counts, pos_weight: float, sizes=(4, 8)):
    """Poisson NLL of galaxy counts summed over blocks of ``size^3`` voxels, averaged over sizes (torch).

    The expected block count is the sum of ``E[N] = p (1 + mu)`` over the block. The Poisson
    deviance is minimised by the right conditional mean whatever the true dispersion, so this term
    ties the painted mean field to the truth on 4-8 voxel scales (the large-scale bias of the
    galaxies), which a per-voxel likelihood constrains only weakly. ``counts`` (B, c, c, c) and
    ``out`` (B, 3, c, c, c) with ``c`` a multiple of every size; the NLL per block drops the
    ``log N!`` constant and is divided by ``size^3`` so sizes weigh alike per voxel.
    """
    import torch.nn.functional as F

    p, _, mu, _ = network_outputs(out, pos_weight)
    lam = (p * (1 + mu))[:, None]
    y = counts[:, None].to(lam.dtype)
    total = 0.0
    for size in sizes:
        lam_b = F.avg_pool3d(lam, size) * size ** 3
        y_b = F.avg_pool3d(y, size) * size ** 3
        total = total + (lam_b - y_b * (lam_b + 1e-8).log()).mean() / size ** 3
    return total / len(sizes)


def logit_offset_for_total(logit: np.ndarray, target: float, weight: np.ndarray | None = None,
                           bound: float = 30.0) -> float | None:
    """The one offset ``b`` with ``sum weight * sigmoid(logit + b) = target`` (numpy, float64 sums).

    ``weight`` defaults to 1 (then the total is the expected number of occupied voxels; with
    ``1 + mu`` it is the expected galaxy number). The total grows with ``b``, so Newton steps kept
    inside a shrinking bracket ``[-bound, bound]`` (a bisection step wherever Newton would leave it)
    find it to ~1e-14 in a handful of passes over the mesh; None when ``target`` lies outside the
    totals reachable there.
    """
    logit = np.asarray(logit, dtype=np.float64).ravel()
    weight = np.ones_like(logit) if weight is None else np.asarray(weight, dtype=np.float64).ravel()

    def total_and_slope(b):
        s = 1.0 / (1.0 + np.exp(-(logit + b)))
        ws = weight * s
        return float(ws.sum()), float(np.dot(ws, 1.0 - s))

    low, high = -bound, bound
    if not total_and_slope(low)[0] < target < total_and_slope(high)[0]:
        return None
    b = min(max(0.0, low), high)
    for _ in range(200):
        value, slope = total_and_slope(b)
        if value == target:
            return b
        low, high = (b, high) if value < target else (low, b)
        step = b + (target - value) / slope if slope > 0 else np.inf
        new = step if low < step < high else 0.5 * (low + high)
        if abs(new - b) <= 1e-14 * max(1.0, abs(b)) or high - low <= 1e-14 * max(1.0, abs(b)):
            return new
        b = new
    return b


#: Range of the factor on the dispersion ``1 / r`` that :func:`dispersion_for_pairs` returns.
DISPERSION_SCALE_RANGE = (1e-3, 1e3)


def expected_pairs(p: np.ndarray, mu: np.ndarray, r: np.ndarray) -> float:
    """Expected same-voxel galaxy pairs ``sum p E[N (N - 1) | N >= 1]`` (float64 sum).

    With ``N = 1 + K``, ``K`` negative binomial of mean ``mu`` and shape ``r``:
    ``E[N (N - 1)] = E[K^2 + K] = 2 mu + mu^2 + mu^2 / r``.
    """
    return sum(_pair_terms(p, mu, r))


def _pair_terms(p, mu, r) -> tuple[float, float]:
    """The Poisson part ``sum p (2 mu + mu^2)`` and the excess ``sum p mu^2 / r`` of the expected pairs."""
    mu = np.asarray(mu, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    return float(np.sum(p * (2 * mu + mu ** 2))), float(np.sum(p * mu ** 2 / np.asarray(r, np.float64)))


def dispersion_for_pairs(p: np.ndarray, mu: np.ndarray, r: np.ndarray, pairs: float) -> float:
    """The factor ``t`` on ``1 / r`` (shape ``r / t``) that makes :func:`expected_pairs` equal ``pairs``.

    The pairs are linear in ``t``; ``t`` is clipped to :data:`DISPERSION_SCALE_RANGE` (fewer pairs
    than a Poisson count gives are out of a negative binomial's reach).
    """
    poisson, excess = _pair_terms(p, mu, r)
    t = (pairs - poisson) / excess if excess > 0 else 1.0
    return float(np.clip(t, *DISPERSION_SCALE_RANGE))
