"""Power spectra of periodic meshes (numpy FFT): auto, cross and the cross-correlation r(k).

Conventions: a field ``f`` on an ``n^3`` mesh of a periodic box of side ``L`` (comoving h^-1 Mpc)
is turned into its overdensity ``delta = f / mean(f) - 1``; with ``delta_k`` the FFT times the cell
volume ``(L / n)^3``, ``P(k) = <|delta_k|^2> / L^3`` in (h^-1 Mpc)^3, averaged over the Fourier
modes in shells of width ``dk`` (default the fundamental ``2 pi / L``) from ``dk / 2``.
No mass-assignment window is deconvolved: the spectra are meant for ratios of fields assigned to
the same mesh in the same way (painted vs true galaxies), where the window cancels.
"""
from __future__ import annotations

import numpy as np

__all__ = ["PowerSpectra", "power_spectra", "overdensity"]


def overdensity(field: np.ndarray) -> np.ndarray:
    """``field / mean(field) - 1`` (float64); a field with a non-positive mean is an error."""
    field = np.asarray(field, dtype=np.float64)
    mean = field.mean()
    if not mean > 0:
        raise ValueError(f"field has mean {mean!r}; an overdensity needs a positive mean")
    return field / mean - 1.0


class PowerSpectra:
    """Binned spectra of one or two fields.

    Attributes
    ----------
    k : ndarray, shape (n_bins,)
        Mean |k| of the modes in each shell, h Mpc^-1.
    n_modes : ndarray of int, shape (n_bins,)
        Independent Fourier modes per shell (a mode and its conjugate count once).
    auto_a, auto_b, cross : ndarray, shape (n_bins,)
        P_aa, P_bb, P_ab in (h^-1 Mpc)^3 (``auto_b`` and ``cross`` are None for one field).
    """

    def __init__(self, k, n_modes, auto_a, auto_b=None, cross=None):
        self.k, self.n_modes = k, n_modes
        self.auto_a, self.auto_b, self.cross = auto_a, auto_b, cross

    def r(self, shot_a: float = 0.0, shot_b: float = 0.0) -> np.ndarray:
        """Cross-correlation coefficient ``P_ab / sqrt((P_aa - shot_a)(P_bb - shot_b))``.

        Subtracting the shot noise of both fields (``1 / nbar``, (h^-1 Mpc)^3) gives the
        correlation of the underlying densities; leaving it in gives that of the samples.
        """
        if self.cross is None:
            raise ValueError("r(k) needs two fields; power_spectra was called with one")
        return self.cross / np.sqrt((self.auto_a - shot_a) * (self.auto_b - shot_b))


def _kmesh(n: int, box_size: float) -> np.ndarray:
    """|k| (h Mpc^-1) of the rfftn modes of an n^3 mesh, shape (n, n, n // 2 + 1)."""
    kf = 2 * np.pi / box_size
    k1 = np.fft.fftfreq(n, d=1.0 / n) * kf
    kz = np.fft.rfftfreq(n, d=1.0 / n) * kf
    return np.sqrt(k1[:, None, None] ** 2 + k1[None, :, None] ** 2 + kz[None, None, :] ** 2)


def _half_space_weights(n: int) -> np.ndarray:
    """How many modes each rfftn column stands for: 2 except the kz = 0 and Nyquist planes."""
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w


def power_spectra(delta_a: np.ndarray, box_size: float, delta_b: np.ndarray | None = None,
                  dk: float | None = None, k_max: float | None = None) -> PowerSpectra:
    """Auto spectra of one or two overdensity meshes and their cross spectrum.

    Parameters
    ----------
    delta_a, delta_b : ndarray, shape (n, n, n)
        Overdensities (see :func:`overdensity`) on the same periodic mesh.
    box_size : float
        Box side, comoving h^-1 Mpc.
    dk : float, optional
        Shell width, h Mpc^-1 (default the fundamental frequency 2 pi / box_size).
    k_max : float, optional
        Largest shell edge, h Mpc^-1 (default the Nyquist frequency pi n / box_size).

    Returns
    -------
    PowerSpectra
        Empty shells are dropped.
    """
    delta_a = np.asarray(delta_a, dtype=np.float64)
    n = delta_a.shape[0]
    if delta_a.ndim != 3 or delta_a.shape != (n, n, n):
        raise ValueError(f"delta_a has shape {delta_a.shape}; expected a cubic (n, n, n) mesh")
    if delta_b is not None and np.shape(delta_b) != delta_a.shape:
        raise ValueError(f"delta_b has shape {np.shape(delta_b)}; expected {delta_a.shape} like delta_a")
    kf = 2 * np.pi / box_size
    dk = kf if dk is None else float(dk)
    k_max = np.pi * n / box_size if k_max is None else float(k_max)
    edges = np.arange(0.5 * kf, k_max + 1e-12 * kf, dk)
    cell = (box_size / n) ** 3
    volume = box_size ** 3
    kmag = _kmesh(n, box_size)
    weights = np.broadcast_to(_half_space_weights(n)[None, None, :], kmag.shape)
    idx = np.digitize(kmag.ravel(), edges) - 1
    valid = (idx >= 0) & (idx < edges.size - 1)
    idx, w = idx[valid], weights.ravel()[valid]
    nb = edges.size - 1
    n_modes = np.bincount(idx, weights=w, minlength=nb)

    def shell_mean(values):
        return np.bincount(idx, weights=w * values.ravel()[valid], minlength=nb) / np.maximum(n_modes, 1)

    fa = np.fft.rfftn(delta_a) * cell
    k_mean = shell_mean(kmag)
    auto_a = shell_mean(np.abs(fa) ** 2) / volume
    auto_b = cross = None
    if delta_b is not None:
        fb = np.fft.rfftn(np.asarray(delta_b, dtype=np.float64)) * cell
        auto_b = shell_mean(np.abs(fb) ** 2) / volume
        cross = shell_mean((fa * np.conj(fb)).real) / volume
    keep = n_modes > 0
    pick = lambda a: None if a is None else a[keep]  # noqa: E731
    # half-space weights count each +-k pair twice; independent modes are half of that
    return PowerSpectra(k_mean[keep], np.round(n_modes[keep] / 2).astype(np.int64), auto_a[keep],
                        pick(auto_b), pick(cross))
