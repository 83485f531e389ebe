"""What the emulator returns for one point or a batch: :class:`EmulatorPrediction`."""
from __future__ import annotations

import numpy as np

from .layout import DEFAULT_LAYOUT

__all__ = ["EmulatorPrediction"]


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
    <statistic>_var : ndarray
        Aleatoric variance: the scatter of ONE mock realization around the mean (mean over members
        of the predicted variances, in physical units).
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

    def variance_vector(self) -> np.ndarray:
        """Aleatoric variances in the order of :meth:`vector`."""
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
        names = [*stats, *(f"{s}_var" for s in stats)]
        if self._epi is not None:
            names += [f"{s}_epi_var" for s in stats]
        return names

    def as_dict(self) -> dict:
        """All present arrays by name."""
        return {k: self[k] for k in self.keys()}

    def __repr__(self):
        shape = self._mean.shape[:-1]
        return f"EmulatorPrediction(points={shape[0] if shape else 'single'}, keys={self.keys()})"
