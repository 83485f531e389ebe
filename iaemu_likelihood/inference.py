"""How the emulator computes the numbers of a prediction, for points already validated.

A numpy mirror of the network (one block in float64 for a sampler's points; large batches block
by block, in float32 or float64 and over threads) or, for architectures without one, the torch
members; then the reduction over ensemble members (:func:`~.ensemble_stats.reduce_members`).
:class:`~iaemu_likelihood.emulator.IAEmulator` validates the inputs and wraps the result.
"""
from __future__ import annotations

import logging
from functools import cached_property

import numpy as np

from .emulator_options import DEFAULT_MC_SAMPLES, NUMPY_BLOCK, check_n_samples
from .ensemble_stats import reduce_members
from .numpy_forward import predict_in_blocks
from .weights_checks import check_correlation

__all__ = ["EnsembleInference", "epistemic_calibration"]

log = logging.getLogger(__name__)


def epistemic_calibration(metadata, layout, where: str):
    """The epistemic term's correlation and calibration of a weights folder.

    Returns
    -------
    correlation : ndarray, shape (n_out, n_out), or None
        ``metadata["epistemic"]["correlation"]`` (validated, symmetrised); None: independent bins.
    scale : ndarray, shape (n_out,)
        Factor on the raw epistemic variance per output (``metadata["epistemic"]["scale"]`` per
        statistic; 1 where none is given).
    """
    epistemic = metadata.get("epistemic") or {}
    scale = epistemic.get("scale") or {}
    correlation = None
    if epistemic.get("correlation") is not None:
        corr = check_correlation(epistemic["correlation"], where, "epistemic.correlation", layout.n_out)
        correlation = 0.5 * (corr + corr.T)
    factors = np.concatenate([np.full(s.n_bins, float(scale.get(s.name, 1.0))) for s in layout.statistics])
    return correlation, factors


class EnsembleInference:
    """Validated points (n, n_inputs) -> physical mean, aleatoric and epistemic variances.

    Parameters
    ----------
    numpy_net : callable or None
        The architecture's numpy mirror (``net(x) -> (y, var_std)``; optionally ``net.means(x)``
        and ``net.astype(dtype)``), None for torch inference.
    torch_members : TorchMembers
    transform : OutputTransform
    input_low, input_high : ndarray, shape (n_inputs,)
        The input normalisation (physical -> [-1, 1]) of the torch members.
    epistemic_scale : ndarray, shape (n_out,)
        Calibration of the epistemic variance.
    architecture : str
        For messages.
    """

    def __init__(self, numpy_net, torch_members, transform, input_low, input_high, epistemic_scale,
                 architecture):
        self.numpy_net, self.torch, self.transform = numpy_net, torch_members, transform
        self._in_low, self._in_high = input_low, input_high
        self.epistemic_scale, self.architecture = epistemic_scale, architecture
        # a numpy mirror that computes the means apart: predictions without aleatoric variances
        # skip the variance network
        self._means_only = getattr(numpy_net, "means", None)

    @cached_property
    def numpy_net32(self):
        """The numpy mirror in float32 (itself if it has no ``astype``)."""
        net = self.numpy_net
        return net.astype(np.float32) if hasattr(net, "astype") else net

    def run(self, arr, epistemic: bool, n_samples, aleatoric: bool, batch_precision="float64",
            threads: int = 1):
        """(mean, aleatoric or None, epistemic or None), each (n, n_out), physical units.

        ``batch_precision`` and ``threads`` apply to numpy batches of more than
        :data:`~.emulator_options.NUMPY_BLOCK` points; ``n_samples`` to a single torch network.
        """
        if self.numpy_net is None:
            y, var_y = self.transform.destandardise(*self.torch.forward(self._unit(arr), mc_dropout=False))
            mean, alea, epi = self._reduce(arr, y, var_y, epistemic, n_samples)
        elif len(arr) <= NUMPY_BLOCK:
            mean, alea, epi = self._numpy_block(arr, epistemic, aleatoric=aleatoric)
        else:  # large batches block by block (see numpy_forward.predict_in_blocks)
            net = self.numpy_net32 if batch_precision == "float32" else self.numpy_net
            n_out = len(self.epistemic_scale)
            mean, alea, epi = predict_in_blocks(lambda part: self._numpy_block(part, epistemic, net),
                                                arr, n_out, epistemic, NUMPY_BLOCK, threads)
        return mean, (alea if aleatoric else None), epi

    def _unit(self, arr):
        return (arr - self._in_low) * (2.0 / (self._in_high - self._in_low)) - 1.0

    def _numpy_block(self, arr, epistemic, net=None, aleatoric=True):
        if not aleatoric and net is None and self._means_only is not None:
            return self._reduce(arr, self._means_only(arr), None, epistemic, None)
        y, var_std = (net or self.numpy_net)(arr)
        var_std *= self.transform.var
        return self._reduce(arr, y, var_std, epistemic, None)

    def _reduce(self, arr, y, var_y, epistemic, n_samples):
        return reduce_members(self.transform, y, var_y, self.epistemic_scale if epistemic else None,
                              lambda: self._single_member_epistemic(arr, y.shape[1:], n_samples))

    def _single_member_epistemic(self, arr, shape, n_samples):
        if self.numpy_net is not None:
            log.warning("a single-member %r model has no epistemic estimate; returning zeros",
                        self.architecture)
            return np.zeros(shape)
        n = DEFAULT_MC_SAMPLES if n_samples is None else check_n_samples(n_samples)
        samples = self.torch.mc_dropout_samples(self._unit(arr), n, self.transform)
        return np.var(samples, axis=0) * self.epistemic_scale
