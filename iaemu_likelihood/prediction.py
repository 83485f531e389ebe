"""What the emulator returns for one point or a batch: :class:`EmulatorPrediction`."""
from __future__ import annotations

import math

import numpy as np

from .errors import InputShapeError, WeightsIntegrityError
from .layout import DEFAULT_LAYOUT

__all__ = ["EmulatorPrediction", "require_finite", "check_outputs", "check_prediction"]


class EmulatorPrediction:
    """Emulator output for one point (arrays of shape (n_bins,)) or n points ((n, n_bins)), float64.

    For the default layout the statistics are ``xi``, ``omega`` and ``eta`` on 20 bins of
    separation; other weights may emulate other statistics (see :mod:`iaemu_likelihood.layout`).

    Attributes
    ----------
    <statistic> : ndarray
        Mean over mock realizations (ensemble mean of the members' means), e.g. ``xi``; each on
        its statistic's own bins (``IAEmulator.axis(name)``; for the default layout ``IAEmulator.r``,
        comoving h^-1 Mpc).
    <statistic>_var : ndarray or None
        Aleatoric variance: the scatter of ONE mock realization around the mean (mean over members
        of the predicted variances, in physical units); None when predicted with
        ``aleatoric=False``.
    <statistic>_epi_var : ndarray or None
        Epistemic variance of the mean (spread across ensemble members or MC-dropout passes);
        None unless requested with ``epistemic=True``.

    Mapping access works too: ``pred["xi"]``, ``pred["xi_var"]``, ``pred["xi_epi_var"]``.
    """

    __slots__ = ("_mean", "_var", "_epi", "_layout")

    def __init__(self, mean, var, epi=None, layout=DEFAULT_LAYOUT):
        self._mean, self._var, self._epi, self._layout = mean, var, epi, layout

    def vector(self) -> np.ndarray:
        """Means of every statistic concatenated in layout order: shape (n_out,) or (n, n_out)
        (``[xi, omega, eta]``, 60 values, for the default layout)."""
        return self._mean

    def variance_vector(self):
        """Aleatoric variances in the order of :meth:`vector` (None if not computed)."""
        return self._var

    def epistemic_vector(self):
        """Epistemic variances in the order of :meth:`vector` (None if not computed)."""
        return self._epi

    def __getitem__(self, name: str):
        slices = self._layout.slices
        stat, kind = name, ""
        if stat not in slices:
            for suffix in ("_epi_var", "_var"):
                if name.endswith(suffix) and name[:-len(suffix)] in slices:
                    stat, kind = name[:-len(suffix)], suffix[1:]
                    break
        if stat not in slices:
            raise KeyError(f"{name!r}: expected one of {list(self.keys())}")
        source = {"": self._mean, "var": self._var, "epi_var": self._epi}[kind]
        return None if source is None else source[..., slices[stat]]

    def __getattr__(self, name: str):
        # statistics by attribute (pred.xi, pred.omega_var, ...): whatever the layout holds
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"EmulatorPrediction has no attribute {name!r}") from None

    def keys(self):
        stats = self._layout.statistic_names
        names = list(stats)
        if self._var is not None:
            names += [f"{s}_var" for s in stats]
        if self._epi is not None:
            names += [f"{s}_epi_var" for s in stats]
        return names

    def as_dict(self) -> dict:
        """All present arrays by name."""
        return {k: self[k] for k in self.keys()}

    def __repr__(self):
        shape = self._mean.shape[:-1]
        return f"EmulatorPrediction(points={shape[0] if shape else 'single'}, keys={self.keys()})"


def require_finite(pred: EmulatorPrediction, arr, param_names, folder) -> None:
    """Refuse a prediction holding NaN or inf (weights broken for these inputs ``arr``, (n, k)):
    :class:`WeightsIntegrityError` naming the statistic, bin, value and point."""
    blocks = (("", pred.vector()), ("_var", pred.variance_vector()),
              ("_epi_var", pred.epistemic_vector()))
    # fast path, one errstate for all blocks (this runs on every sampler call): a finite total
    # means every entry is finite; an overflowing total of finite entries falls through to
    # the exact per-entry check below, which then finds nothing
    with np.errstate(over="ignore", invalid="ignore"):
        total = sum(float(block.sum()) for _, block in blocks if block is not None)
    if math.isfinite(total):
        return
    slices = pred._layout.slices
    n_out = pred._layout.n_out
    for kind, block in blocks:
        if block is None:
            continue
        bad = ~np.isfinite(block.reshape(-1, n_out))
        if not bad.any():
            continue
        i, j = (int(v) for v in np.argwhere(bad)[0])
        stat = next(s for s, sl in slices.items() if sl.start <= j < sl.stop)
        point = dict(zip(param_names, np.round(arr[i], 6).tolist()))
        raise WeightsIntegrityError(
            f"{folder}: the weights predict {stat}{kind}[{j - slices[stat].start}] = "
            f"{block.reshape(-1, n_out)[i, j]} at {point}; allowed: finite values (the tensors "
            "or the normalisation are broken for this input)")


def check_outputs(pred: EmulatorPrediction, point, param_names, folder) -> None:
    """Refuse weights whose prediction at ``point`` (the load-time support point) is not finite or
    has a negative variance."""
    for name, value in pred.as_dict().items():
        bad = ~np.isfinite(value) | ((value < 0) if name.endswith("var") else False)
        if np.any(bad):
            where = dict(zip(param_names, np.round(point, 4).tolist()))
            first = float(np.ravel(value)[np.argmax(np.ravel(bad))])
            raise WeightsIntegrityError(
                f"{folder}: the weights predict {name} = {first} at the support point {where}; "
                "allowed: finite values (variances >= 0): the tensors or the normalisation are broken")


def check_prediction(pred, parsed, epistemic: bool, aleatoric: bool = False) -> None:
    """A ``prediction`` handed to ``IAEmulator.covariance``: the right type, the points of
    ``parsed`` (``(points, single)`` of the theta given with it, or None) and the terms asked for
    (``epistemic``, ``aleatoric``: whether each term is)."""
    if not isinstance(pred, EmulatorPrediction):
        raise InputShapeError(f"prediction is a {type(pred).__name__}; allowed: the "
                              "EmulatorPrediction that predict(theta) returned")
    if parsed is not None:
        arr, single = parsed
        have = pred.vector().shape[:-1]
        want = () if single else (len(arr),)
        if have != want:
            def points(shape):
                return f"a batch of {shape[0]}" if shape else "a single point"

            raise InputShapeError(f"prediction is for {points(have)} but theta is "
                                  f"{points(want)}; pass the prediction of this theta")
    if epistemic and pred.epistemic_vector() is None:
        raise InputShapeError("prediction holds no epistemic variances; call predict(theta, "
                              "epistemic=True) for an epistemic covariance")
    if aleatoric and pred.variance_vector() is None:
        raise InputShapeError("prediction holds no aleatoric variances; call predict(theta, "
                              "aleatoric=True) for an aleatoric covariance")
