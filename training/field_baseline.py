"""Halo-free baseline of the painter: a local bias model fitted on the training boxes.

Galaxies per voxel are Poisson with mean ``lambda(rho_R)``, a function of the dark-matter density
smoothed with a Gaussian of radius ``R`` (comoving h^-1 Mpc). ``lambda`` is the mean galaxy count of
the training voxels in bins of ``log(1 + rho_R)`` (quantile bins, refined towards the densest
voxels where the galaxies are), so the fit is non-parametric and reproduces the mean number of
galaxies by construction. ``R`` is chosen among ``smoothings`` by the Poisson log-likelihood of the
training counts. One model is fitted per HOD point (the baseline gets the truth's HOD for free).
"""
from __future__ import annotations

import numpy as np

__all__ = ["smooth", "LocalBiasModel", "fit_local_bias"]

#: Cumulative fractions of the voxels at the bin edges: coarse in voids, fine in the densest tail.
_QUANTILES = np.unique(np.r_[np.linspace(0.0, 0.9, 10), 1.0 - np.geomspace(0.1, 1e-6, 60), 1.0])


def smooth(rho: np.ndarray, box_size: float, radius: float) -> np.ndarray:
    """``rho`` convolved with a Gaussian of rms ``radius`` (h^-1 Mpc) on its periodic mesh."""
    if radius <= 0:
        return np.asarray(rho, dtype=np.float64)
    n = rho.shape[0]
    k1 = 2 * np.pi * np.fft.fftfreq(n, d=box_size / n)
    kz = 2 * np.pi * np.fft.rfftfreq(n, d=box_size / n)
    k2 = k1[:, None, None] ** 2 + k1[None, :, None] ** 2 + kz[None, None, :] ** 2
    return np.fft.irfftn(np.fft.rfftn(rho) * np.exp(-0.5 * k2 * radius ** 2), s=rho.shape, axes=(0, 1, 2))


class LocalBiasModel:
    """``lambda(log(1 + rho_R))`` tabulated in bins; see the module docstring.

    Attributes
    ----------
    radius : float
        Smoothing radius, h^-1 Mpc.
    voxel_size : float
        Voxel side, h^-1 Mpc (the model applies to periodic boxes of any size with these voxels).
    edges : ndarray
        Bin edges in ``log(1 + rho_R)`` (the outer ones open).
    lam : ndarray
        Mean galaxies per voxel in each bin.
    """

    def __init__(self, radius: float, edges: np.ndarray, lam: np.ndarray, voxel_size: float):
        self.radius, self.edges, self.lam, self.voxel_size = radius, edges, lam, voxel_size

    def _feature(self, rho):
        return _feature(rho, self.voxel_size, self.radius)

    def mean(self, rho: np.ndarray) -> np.ndarray:
        """Expected galaxies per voxel on a density mesh ``rho / rho_mean``."""
        b = np.clip(np.searchsorted(self.edges, self._feature(rho), side="right") - 1, 0, self.lam.size - 1)
        return self.lam[b]

    def sample(self, rho: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One Poisson realization (int64 counts)."""
        return rng.poisson(self.mean(rho))


def _feature(rho, voxel_size: float, radius: float) -> np.ndarray:
    return np.log1p(np.maximum(smooth(rho, voxel_size * rho.shape[0], radius), 0.0))


def _fit_bins(features: np.ndarray, counts: np.ndarray):
    edges = np.unique(np.quantile(features, _QUANTILES))
    b = np.clip(np.searchsorted(edges, features, side="right") - 1, 0, edges.size - 2)
    n_vox = np.bincount(b, minlength=edges.size - 1)
    lam = np.bincount(b, weights=counts, minlength=edges.size - 1) / np.maximum(n_vox, 1)
    return edges[:-1], lam, lam[b]


def fit_local_bias(densities, count_meshes, voxel_size: float, smoothings=(0.0, 1.0, 2.0, 3.0)) -> LocalBiasModel:
    """Fit the model to training meshes of one HOD point.

    Parameters
    ----------
    densities : list of ndarray (n, n, n)
        ``rho / rho_mean`` of the training boxes.
    count_meshes : list of list of ndarray (n, n, n)
        For each box, galaxy counts of one or more realizations.
    voxel_size : float
        Voxel side, h^-1 Mpc.
    smoothings : sequence of float
        Candidate radii, h^-1 Mpc.
    """
    best = None
    for radius in smoothings:
        feats, cnts = [], []
        for rho, meshes in zip(densities, count_meshes):
            f = _feature(rho, voxel_size, radius).ravel()
            for c in meshes:
                feats.append(f)
                cnts.append(np.asarray(c, dtype=np.float64).ravel())
        f, c = np.concatenate(feats), np.concatenate(cnts)
        edges, lam, lam_voxel = _fit_bins(f, c)
        pos = lam_voxel > 0
        loglike = float(np.sum(c[pos] * np.log(lam_voxel[pos])) - lam_voxel.sum())
        if best is None or loglike > best[0]:
            best = (loglike, LocalBiasModel(float(radius), edges, lam, voxel_size))
    return best[1]
