"""A synthetic training set with a known smooth truth, for tests and development.

:func:`synthetic_truth` is a smooth, cheap stand-in for the mock pipeline: physically shaped
xi (power law plus a satellite one-halo term, amplitude growing with ``logMmin``), omega (driven
by ``mu_cen`` on large scales and ``mu_sat`` inside haloes, so it changes sign) and eta (small,
noise-dominated), with a parameter-dependent realization scatter. :func:`make_synthetic_dataset`
draws correlated Gaussian realizations around it (correlation :func:`synthetic_correlation`
across the 60 bins) and returns an :class:`~.dataset_io.IADataset` whose provenance carries the
same keys as a real one (bounds, halo catalog, binned halo mass function). Never shipped.
"""
from __future__ import annotations

import numpy as np

from ..conventions import N_BINS, PARAM_NAMES, R_EDGES, STATISTICS, r_centres
from .dataset_io import IADataset

__all__ = ["SYNTHETIC_BOUNDS", "synthetic_truth", "synthetic_correlation", "synthetic_mass_function",
           "make_synthetic_dataset"]

#: Parameter box of the synthetic design (log masses in log10(Msun/h)).
SYNTHETIC_BOUNDS = {"mu_cen": (-1.0, 1.0), "mu_sat": (-1.0, 1.0), "logMmin": (11.6, 13.2),
                    "sigma_logM": (0.05, 1.0), "logM0": (11.0, 13.5), "logM1": (12.3, 14.5),
                    "alpha": (0.5, 1.5)}


def _columns(params):
    p = np.atleast_2d(np.asarray(params, dtype=float))
    return [p[:, j:j + 1] for j in range(len(PARAM_NAMES))]


def synthetic_truth(params, r=None) -> tuple[dict, dict]:
    """Noise-free mean and one-realization scatter of each statistic.

    Parameters
    ----------
    params : array_like, shape (n, 7) or (7,)
        Parameters in ``PARAM_NAMES`` order.
    r : array_like, optional
        Separations in comoving h^-1 Mpc; default the 20 bin centres.

    Returns
    -------
    mean, sigma : dict
        Statistic -> array (n, n_r).
    """
    r = r_centres() if r is None else np.asarray(r, dtype=float)
    mu_cen, mu_sat, logmmin, sig, logm0, logm1, alpha = _columns(params)
    bias = 1.0 + 0.8 * (logmmin - 12.0) + 0.2 * sig
    # satellite weight: grows as M1 approaches Mmin and with alpha; M0 cuts it off
    fsat = alpha / (1.0 + np.exp(2.0 * (logm1 - logmmin - 1.2))) / (1.0 + np.exp(logm0 - logm1 + 0.5))
    xi = bias ** 2 * (r / 5.0) ** -1.8 + 20.0 * fsat * (r / 0.3) ** -1.5 * np.exp(-r / 1.5)
    omega = 0.08 * mu_cen * bias * r ** -0.7 + 0.15 * mu_sat * fsat * np.exp(-r / 1.0)
    eta = (0.02 * mu_cen ** 2 * bias * r ** -0.8 + 0.05 * mu_sat ** 2 * fsat * np.exp(-r / 0.8)
           + 0.01 * mu_cen * mu_sat * fsat * np.exp(-r / 2.0))
    shot = (r / 0.1) ** -0.5
    noise_scale = 1.0 + 0.3 * (logmmin - 12.0)  # fewer galaxies, noisier mocks
    sigma = {"xi": xi * (0.03 + 0.12 * shot) * noise_scale,
             "omega": (0.004 + 0.02 * shot) * noise_scale,
             "eta": (0.002 + 0.01 * shot) * noise_scale}
    return {"xi": xi, "omega": omega, "eta": eta}, sigma


def synthetic_correlation(length: float = 3.0, cross: float = 0.3) -> np.ndarray:
    """Correlation (60, 60) of the realization noise: ``exp(-|i - j| / length)`` between bins
    ``i, j`` of one statistic, times ``cross`` between different statistics."""
    idx = np.arange(N_BINS)
    block = np.exp(-np.abs(idx[:, None] - idx[None, :]) / length)
    n = len(STATISTICS)
    mix = np.full((n, n), cross) + (1.0 - cross) * np.eye(n)
    return np.kron(mix, block)


def synthetic_mass_function() -> dict:
    """A plausible binned host-halo mass function (250 h^-1 Mpc box) for derived quantities."""
    edges = np.linspace(11.0, 15.0, 41)
    centres = 0.5 * (edges[1:] + edges[:-1])
    counts = np.round(2.0e5 * 10 ** (-0.9 * (centres - 11.0)) * np.exp(-10 ** (centres - 14.5)))
    return {"log10_mass_edges": edges.tolist(), "counts": counts.tolist(),
            "mean_log10_mass": centres.tolist(), "volume": 250.0 ** 3}


def make_synthetic_dataset(n_points: int, n_realizations: int = 10, seed: int = 0,
                           bounds: dict | None = None) -> IADataset:
    """Draw a synthetic dataset: uniform design in ``bounds``, correlated Gaussian realizations.

    Parameters
    ----------
    n_points, n_realizations : int
        Design points and realizations per point.
    seed : int
        Seed of everything (numpy ``default_rng``).
    bounds : dict, optional
        ``{name: (low, high)}``; default :data:`SYNTHETIC_BOUNDS`.

    Returns
    -------
    IADataset
        Statistics on ``conventions.R_EDGES``; provenance has ``synthetic: True``, ``bounds``,
        ``halo_catalog`` and ``halo_mass_function``.
    """
    if n_points < 1 or n_realizations < 2:
        raise ValueError(f"need n_points >= 1 and n_realizations >= 2, got {n_points}, {n_realizations}")
    bounds = dict(SYNTHETIC_BOUNDS if bounds is None else bounds)
    rng = np.random.default_rng(seed)
    low = np.array([bounds[n][0] for n in PARAM_NAMES])
    high = np.array([bounds[n][1] for n in PARAM_NAMES])
    params = low + (high - low) * rng.random((n_points, len(PARAM_NAMES)))
    mean, sigma = synthetic_truth(params)
    chol = np.linalg.cholesky(synthetic_correlation())
    z = rng.standard_normal((n_points, n_realizations, len(STATISTICS) * N_BINS)) @ chol.T
    stats = {}
    for i, stat in enumerate(STATISTICS):
        sl = slice(i * N_BINS, (i + 1) * N_BINS)
        stats[stat] = mean[stat][:, None, :] + sigma[stat][:, None, :] * z[..., sl]
    n_gal = rng.poisson(50000, size=(n_points, n_realizations)).astype(np.int64)
    n_sat = rng.binomial(n_gal, 0.2).astype(np.int64)
    seeds = (seed * 1_000_003 + np.arange(n_points * n_realizations)).reshape(n_points, n_realizations)
    provenance = {"name": "synthetic", "synthetic": True, "seed": seed,
                  "bounds": {k: list(v) for k, v in bounds.items()},
                  "halo_catalog": {"source": "synthetic", "sha256": "0" * 64},
                  "halo_mass_function": synthetic_mass_function()}
    return IADataset(params=params, r_edges=np.array(R_EDGES), n_gal=n_gal, n_cen=n_gal - n_sat,
                     n_sat=n_sat, seeds=seeds.astype(np.int64),
                     retries=np.zeros((n_points, n_realizations), dtype=np.int64),
                     provenance=provenance, **stats)
