"""The torch back end of the emulator: members as torch modules, MC dropout, gradients.

Used for architectures without a numpy forward pass (the "paper" network) and for
:meth:`~iaemu_likelihood.emulator.IAEmulator.torch_forward` (gradients for any architecture).
torch is imported on first use only.
"""
from __future__ import annotations

import sys

import numpy as np

from .config_checks import check_torch_device
from .errors import InputShapeError

__all__ = ["TorchMembers", "torch_module", "torch_forward", "set_torch_threads", "TORCH_CHUNK",
           "MC_DROPOUT_SEED"]

#: Points per torch forward pass (bounds memory).
TORCH_CHUNK = 4096
#: Seed of the Monte Carlo dropout masks (fixed, so predictions are reproducible).
MC_DROPOUT_SEED = 0


#: A thread count asked for before torch was imported, applied at its import (torch_module).
_PENDING = {"threads": None}


def set_torch_threads(threads: int) -> None:
    """Let torch use ``threads`` threads: at once if torch is imported, else when
    :func:`torch_module` first imports it (a run on the numpy path never imports torch)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
        _PENDING["threads"] = None
    else:
        _PENDING["threads"] = threads


def torch_module():
    import torch  # heavy: imported only for torch inference and torch_forward

    if _PENDING["threads"] is not None:
        torch.set_num_threads(_PENDING["threads"])
        _PENDING["threads"] = None
    return torch


class TorchMembers:
    """The ensemble members of a weights folder as torch modules (eval mode, no gradients to
    the weights), built on first use and cached per dtype.

    Parameters
    ----------
    architecture : Architecture
        Registry entry (builds the modules).
    config : mapping
        ``architecture_config``.
    layout : Layout
    members : list of dict
        State dicts (numpy arrays).
    device : str
        Torch device, checked against the machine on first use.
    """

    def __init__(self, architecture, config, layout, members, device):
        self.architecture, self.config, self.layout = architecture, config, layout
        self.members, self.device = members, device
        self._cache = {}
        self._device_checked = False

    def check_device(self) -> None:
        """Check :attr:`device` against this machine (imports torch) once, before torch runs."""
        if not self._device_checked:
            check_torch_device(self.device, "device")
            self._device_checked = True

    def modules(self, dtype_name="float32"):
        """Torch modules of every member in eval mode, cached per dtype."""
        if dtype_name not in self._cache:
            self.check_device()
            torch = torch_module()
            nets = []
            for sd in self.members:
                net = self.architecture.build_torch(self.config, self.layout)
                net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})
                net = net.to(device=self.device, dtype=getattr(torch, dtype_name)).eval()
                for p in net.parameters():
                    p.requires_grad_(False)
                nets.append(net)
            self._cache[dtype_name] = nets
        return self._cache[dtype_name]

    def forward(self, x, mc_dropout: bool):
        """Standardised ``(mean, var)`` of every member, each (M, n, n_out) float64 numpy arrays,
        for inputs ``x`` (n, n_inputs) already mapped to [-1, 1] (no gradients)."""
        torch = torch_module()
        n_out = self.layout.n_out
        ys, vs = [], []
        with torch.inference_mode():
            for net in self.modules("float32"):
                if hasattr(net, "set_mc_dropout"):
                    net.set_mc_dropout(mc_dropout)
                parts_m, parts_v = [], []
                for start in range(0, len(x), TORCH_CHUNK):
                    xt = torch.as_tensor(x[start:start + TORCH_CHUNK], dtype=torch.float32,
                                         device=self.device)
                    m, v = net(xt)
                    parts_m.append(m.double().cpu().numpy())
                    parts_v.append(v.double().cpu().numpy())
                ys.append(np.concatenate(parts_m) if parts_m else np.zeros((0, n_out)))
                vs.append(np.concatenate(parts_v) if parts_v else np.zeros((0, n_out)))
                if hasattr(net, "set_mc_dropout"):
                    net.set_mc_dropout(False)
        return np.stack(ys), np.stack(vs)

    def mc_dropout_samples(self, x, n, transform):
        """Physical means of ``n`` MC-dropout passes, (n, points, n_out), masks seeded with
        :data:`MC_DROPOUT_SEED`."""
        torch = torch_module()
        samples = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(MC_DROPOUT_SEED)
            for _ in range(n):
                y, var_y = transform.destandardise(*self.forward(x, mc_dropout=True))
                samples.append(transform.to_physical(y, var_y)[0][0])
        return np.stack(samples)

    def differentiable(self, x, transform, epistemic_scale):
        """Physical member means and variances for torch inputs ``x`` (n, n_inputs) in [-1, 1],
        float64, with gradients: (ensemble mean, aleatoric, epistemic or None), each (n, n_out)."""
        torch = torch_module()
        means, variances = [], []
        for net in self.modules("float64"):
            value, var = transform.torch_to_physical(torch, *net(x))
            means.append(value)
            variances.append(var)
        means = torch.stack(means)
        epi = None
        if len(variances) > 1:
            scale = torch.as_tensor(epistemic_scale, dtype=torch.float64, device=x.device)
            epi = means.var(dim=0, unbiased=False) * scale
        return means.mean(dim=0), torch.stack(variances).mean(dim=0), epi


def torch_forward(emulator, theta):
    """:meth:`IAEmulator.torch_forward <iaemu_likelihood.emulator.IAEmulator.torch_forward>`."""
    torch = torch_module()
    n_in = len(emulator.param_names)
    if not torch.is_tensor(theta):
        raise InputShapeError(f"theta must be a torch.Tensor (n, {n_in}) or ({n_in},), got "
                              f"{type(theta).__name__}")
    if theta.dtype.is_complex or not theta.dtype.is_floating_point:
        raise InputShapeError(f"theta has dtype {theta.dtype}; allowed: a floating tensor")
    emulator._torch.check_device()
    single = theta.ndim == 1
    x = theta[None, :] if single else theta
    emulator.validate(x.detach().cpu().numpy())  # validation only
    x = x.to(device=emulator.device, dtype=torch.float64)
    low = torch.as_tensor(emulator._in_low, dtype=torch.float64, device=emulator.device)
    high = torch.as_tensor(emulator._in_high, dtype=torch.float64, device=emulator.device)
    x = (x - low) * (2.0 / (high - low)) - 1.0
    mean, alea, epi = emulator._torch.differentiable(x, emulator._transform, emulator.epistemic_scale)
    out = {"": mean, "_var": alea}
    if epi is not None:
        out["_epi_var"] = epi
    result = {}
    for suffix, value in out.items():
        for stat, sl in emulator.layout.slices.items():
            block = value[:, sl]
            result[stat + suffix] = block[0] if single else block
    return result
