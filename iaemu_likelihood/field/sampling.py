"""Draw galaxy count fields from the painter's per-voxel distribution (numpy, scipy).

The network gives, per voxel, the probability ``p`` of >= 1 galaxy and a negative binomial for
``N - 1`` (mean ``mu``, shape ``r``). A realization is ``N = B (1 + K)``. How the occupancies ``B``
are drawn is the choice here (``OCCUPANCY``); both keep ``P(B = 1) = p`` in every voxel exactly, so
the expected count field, the galaxy number and everything linear in them are the same:

* ``"independent"``: ``B ~ Bernoulli(p)`` in each voxel, independently;
* ``"peak_groups"`` (the default): voxels are grouped around the local maxima of ``p`` (3x3x3
  periodic neighbourhood, steepest ascent of at most ``reach`` steps), and each group is drawn by
  systematic sampling: it holds ``floor(S)`` or ``ceil(S)`` occupied voxels, ``S`` the sum of its
  ``p``. A host halo whose central the network spreads over two or three neighbouring voxels
  (``p`` 0.5, 0.3, 0.2, say) then gets one central, as in the HOD truth, instead of 0 to 3 of them:
  the anticorrelation of neighbouring voxels that independent draws lose (their white-noise
  excess shows in P(k) at k >~ 0.3 h/Mpc and in r(k) with the truth).

Systematic sampling: the group's voxels in a fixed order with cumulative sums ``C_i`` of ``p``,
one uniform ``u``; voxel ``i`` is occupied when an integer lies in ``(C_{i-1} - u, C_i - u]``,
which happens with probability ``p_i`` exactly (``p_i <= 1``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["OCCUPANCY", "DEFAULT_OCCUPANCY", "PEAK_REACH", "P_GROUP_MIN", "peak_groups", "sample_occupancy",
           "sample_counts", "mean_counts"]

OCCUPANCY = ("peak_groups", "independent")
DEFAULT_OCCUPANCY = "peak_groups"
#: Steepest-ascent steps from a voxel to the local maximum whose group it joins.
PEAK_REACH = 1
#: Voxels with ``p`` at or below this are drawn independently (grouping them changes nothing measurable).
P_GROUP_MIN = 1e-3

_OFFSETS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])


def peak_groups(p: np.ndarray, reach: int = PEAK_REACH, p_min: float = P_GROUP_MIN) -> tuple[np.ndarray, np.ndarray]:
    """Group the voxels with ``p > p_min`` around the local maxima of ``p``.

    Parameters
    ----------
    p : ndarray, shape (n, n, n)
        Probability of >= 1 galaxy per voxel (periodic mesh).
    reach : int
        A voxel joins the local maximum that steepest ascent (to the largest ``p`` of its 3x3x3
        neighbourhood) reaches in at most ``reach`` steps; otherwise it is a group of its own.
    p_min : float
        Voxels with ``p <= p_min`` are left out (drawn independently).

    Returns
    -------
    voxels, groups : ndarray of int64
        Flat indices of the grouped voxels and, for each, the flat index of its group's maximum
        (or its own).
    """
    from scipy import ndimage

    if p.ndim != 3 or len(set(p.shape)) != 1:
        raise ValueError(f"p has shape {p.shape}; expected a cubic (n, n, n) mesh")
    if reach < 0:
        raise ValueError(f"reach={reach!r}; expected a non-negative integer")
    n = p.shape[0]
    flat = p.ravel()
    highest = ndimage.maximum_filter(p, size=3, mode="wrap").ravel()
    voxels = np.flatnonzero(flat > p_min)

    def parent(v):  # the neighbour holding the neighbourhood's maximum (the voxel itself at a maximum)
        i, j, k = np.unravel_index(v, p.shape)
        up = np.full(v.size, -1, np.int64)
        for di, dj, dk in _OFFSETS:
            nb = (((i + di) % n) * n + (j + dj) % n) * n + (k + dk) % n
            hit = (up < 0) & (flat[nb] == highest[v])
            up[hit] = nb[hit]
        return up

    root = voxels
    for _ in range(reach):
        root = parent(root)
    at_peak = flat[root] == highest[root]
    return voxels, np.where(at_peak, root, voxels)


def sample_occupancy(p: np.ndarray, rng: np.random.Generator, occupancy: str = DEFAULT_OCCUPANCY,
                     reach: int = PEAK_REACH) -> np.ndarray:
    """Occupied voxels (bool, shape of ``p``), ``P(occupied) = p`` in each; see the module docstring
    (``reach``: see :func:`peak_groups`)."""
    if occupancy not in OCCUPANCY:
        raise ValueError(f"occupancy={occupancy!r}; allowed: {list(OCCUPANCY)}")
    occupied = rng.random(p.shape) < p
    if occupancy == "independent":
        return occupied
    voxels, groups = peak_groups(p, reach)
    if voxels.size == 0:
        return occupied
    order = np.argsort(groups, kind="stable")
    g, q = groups[order], p.ravel()[voxels[order]].astype(np.float64)
    first = np.r_[True, g[1:] != g[:-1]]
    group_id = np.cumsum(first) - 1
    upper = np.cumsum(q)
    before = (upper - q)[first]  # cumulative sum before each group
    u = rng.random(int(group_id[-1]) + 1)
    upper = upper - before[group_id] - u[group_id]
    occupied.ravel()[voxels[order]] = np.floor(upper) > np.floor(upper - q)
    return occupied


def sample_counts(p: np.ndarray, mu: np.ndarray, r: np.ndarray, rng: np.random.Generator,
                  occupancy: str = DEFAULT_OCCUPANCY) -> np.ndarray:
    """One realization ``B (1 + K)`` (int32, shape of ``p``): occupancies by :func:`sample_occupancy`,
    ``K`` negative binomial of mean ``mu`` and shape ``r``."""
    occupied = sample_occupancy(p, rng, occupancy)
    n = np.zeros(p.shape, dtype=np.int32)
    r_o, mu_o = r[occupied].astype(np.float64), mu[occupied].astype(np.float64)
    n[occupied] = 1 + rng.negative_binomial(r_o, r_o / (r_o + mu_o))
    return n


def mean_counts(p: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Expected galaxies per voxel, ``p (1 + mu)``."""
    return p * (1.0 + mu)
