"""Output transforms of the emulator networks, in numpy and in torch (one place for both).

A network predicts, per output value, a mean ``y`` and a variance in standardised space: ``y`` is
``(t - mean) / std`` of the transformed value ``t`` (``log`` of the value for a statistic whose
normalisation transform is ``"log"``, the value itself for ``"identity"``). Undoing it: ``t = y *
std + mean``, then ``exp(t)`` for log-transformed statistics, whose variance follows by the delta
method, ``exp(t)**2 * var_t``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["OutputTransform"]


class OutputTransform:
    """The standardisation and transforms of a weights folder's outputs.

    Parameters
    ----------
    layout : Layout
        Statistics in output order.
    normalisation : mapping
        ``metadata["normalisation"]["output"]``: per statistic ``transform``, ``mean``, ``std``.

    Attributes
    ----------
    mean, std, var : ndarray, shape (n_out,)
        Standardisation of the transformed outputs (``var = std**2``).
    log_slices : list of slice
        Output ranges of the log-transformed statistics.
    """

    def __init__(self, layout, normalisation):
        stats = layout.statistic_names
        self.mean = np.concatenate([np.asarray(normalisation[s]["mean"], float) for s in stats])
        self.std = np.concatenate([np.asarray(normalisation[s]["std"], float) for s in stats])
        self.var = self.std ** 2
        self.log_slices = [layout.slices[s] for s in stats if normalisation[s]["transform"] == "log"]
        self._blocks = [(layout.slices[s], normalisation[s]["transform"] == "log") for s in stats]

    def destandardise(self, y_std, var_std):
        """Standardised (..., n_out) -> transformed-space mean and variance (new arrays)."""
        return y_std * self.std + self.mean, var_std * self.var

    def to_physical(self, y, var_y):
        """Transformed-space means/variances (..., n_out) -> physical ones, in place (``var_y``
        may be None: means only)."""
        for sl in self.log_slices:
            block = y[..., sl]
            np.exp(block, out=block)
            if var_y is not None:
                var_y[..., sl] *= block * block  # delta method
        return y, var_y

    def torch_to_physical(self, torch, m, v):
        """Differentiable torch version from standardised (n, n_out) tensors: physical (mean,
        variance), float64 on ``m``'s device."""
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float64, device=m.device)  # noqa: E731
        y, var_y = m * as_t(self.std) + as_t(self.mean), v * as_t(self.var)
        means, variances = [], []
        for sl, is_log in self._blocks:
            if is_log:  # per block, so no exp of an identity block enters the gradient
                value = torch.exp(y[:, sl])
                means.append(value)
                variances.append(value ** 2 * var_y[:, sl])
            else:
                means.append(y[:, sl])
                variances.append(var_y[:, sl])
        return torch.cat(means, dim=1), torch.cat(variances, dim=1)
