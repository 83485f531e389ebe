"""Orientations for painted galaxies from the dark-matter field (numpy): the mocks' alignment model without halos.

In the mocks (:mod:`iaemu_likelihood.training.forward_model`) a central's major axis is drawn around
its host halo's major axis by halotools' ``CentralAlignment(mu_cen)``, a satellite's around the
direction from its host's centre by ``RadialSatelliteAlignment(mu_sat)``: ``cos theta`` to the
reference axis follows the Dimroth-Watson density ``p(cos theta) ~ exp(kappa cos^2 theta)`` with
``kappa = tan(pi mu / 2)`` (halotools' ``alignment_strength`` gives ``-kappa``, its sign convention),
and the azimuth is uniform: ``mu = 1`` is perfect alignment, 0 random, -1 perpendicular.

A painting has no halos, so both reference directions come from the density the painter read:

* **host axis**: the major axis of the dark matter around the voxel, the eigenvector of the largest
  eigenvalue of the second-moment tensor of the density mesh in a sphere of ``radius`` around
  the voxel centre (:func:`local_major_axes`). A halo's own shape and the filament it sits in
  both set it. On the training box box_1001, for the 2,762 FoF halos above 10^12.5 Msun/h with
  >= 50 shape particles, it follows the halo's major axis with mean ``|cos|`` 0.775 and
  ``<P2(cos)>`` 0.51 at ``radius`` 1 voxel (0.31 for 10^12.5-10^13, 0.77 above 10^13.5), against
  0.72 / 0.41 at 1.5 voxels and 0.64 / 0.26 for the tidal field's axis of slowest collapse
  (Gaussian smoothing 1 h^-1 Mpc); the bench (``benchmarks/bench_field_orientations.py``)
  measures what that does to omega(r);
* **host centre**: each occupied voxel belongs to the group of the local maximum of its
  occupation probability (:func:`~iaemu_likelihood.field.sampling.peak_groups`, the groups the
  painter draws centrals by); the group's host centre is the density-weighted centroid of the
  dark matter around the densest density cell of that maximum's voxel (:func:`host_centres`).

The first galaxy of a group's maximum voxel is its central (oriented around the host axis of that
voxel); every other galaxy is a satellite, oriented around the direction from the host centre to
it (a random direction when it sits on the centre). Orientations are unit vectors, ``(n_gal, 3)``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["ALIGNMENT_RADIUS", "check_strength", "watson_kappa", "sample_watson_cosines", "watson_p2",
           "strength_for_p2", "axes_around", "local_major_axes", "host_centres", "galaxy_orientations"]

#: Radius (galaxy voxels) of the sphere whose dark matter defines a voxel's major axis.
ALIGNMENT_RADIUS = 1.0
_TABLE = 4097  # points of the tabulated Dimroth-Watson inverse CDF on [0, 1]


def check_strength(mu, name: str) -> float:
    """``mu`` as a float after checking it is a number (not a bool or a string) in [-1, 1]."""
    if isinstance(mu, (bool, np.bool_, str, bytes)):
        raise ValueError(f"{name}={mu!r}: must be a number in [-1, 1]")
    try:
        value = float(mu)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={mu!r}: must be a number in [-1, 1]") from None
    if not -1.0 <= value <= 1.0:  # also refuses nan
        raise ValueError(f"{name}={mu!r}: the alignment strength must lie in [-1, 1]")
    return value


def watson_kappa(mu: float, name: str = "mu") -> float:
    """Dimroth-Watson concentration ``kappa = tan(pi mu / 2)`` of an alignment strength ``mu`` in [-1, 1]
    (+-inf at +-1)."""
    mu = check_strength(mu, name)
    return math.copysign(math.inf, mu) if abs(mu) == 1.0 else math.tan(0.5 * math.pi * mu)


def _abs_cos_table(kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """(grid of |cos theta| on [0, 1], its CDF, unnormalised) for a finite ``kappa``."""
    grid = np.linspace(0.0, 1.0, _TABLE)
    density = np.exp(kappa * (grid ** 2 - (1.0 if kappa > 0 else 0.0)))
    return grid, np.r_[0.0, np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))]


def watson_p2(mu: float) -> float:
    """``<P2(cos theta)>`` of the Dimroth-Watson law of strength ``mu``: 1 at ``mu = 1``, 0 at 0, -1/2 at -1.

    Drawn around reference axes ``a``, the galaxies' traceless orientation tensor averages to this
    times that of the ``a``, so every correlation of the orientations with the matter (omega(r))
    scales by it."""
    kappa = watson_kappa(mu)
    if math.isinf(kappa):
        return 1.0 if kappa > 0 else -0.5
    grid, cdf = _abs_cos_table(kappa)
    mean_cos2 = 1.0 - 2.0 * np.trapezoid(grid * cdf, grid) / cdf[-1]  # E[t^2] = 1 - int 2 t F(t) dt
    return float(1.5 * mean_cos2 - 0.5)


def strength_for_p2(p2: float) -> float:
    """The strength ``mu`` in [-1, 1] whose :func:`watson_p2` is ``p2`` (clipped to [-1/2, 1]; bisection)."""
    target = min(max(float(p2), -0.5), 1.0)
    lo, hi = -1.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if watson_p2(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


def sample_watson_cosines(mu: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of ``cos theta`` in [-1, 1] from ``p ~ exp(kappa cos^2 theta)``, ``kappa = tan(pi mu / 2)``.

    ``|cos theta|`` is drawn by inverting the CDF tabulated on a fine grid (``exp(kappa (t^2 - 1))``
    for ``kappa > 0``, so any finite concentration is representable), then given a random sign;
    ``mu = +-1`` are the limits (``+-1`` and 0).
    """
    kappa = watson_kappa(mu)
    if math.isinf(kappa):
        t = np.ones(size) if kappa > 0 else np.zeros(size)
    elif kappa == 0:
        t = rng.random(size)
    else:
        grid, cdf = _abs_cos_table(kappa)
        t = np.interp(rng.random(size) * cdf[-1], cdf, grid)
    return t * np.where(rng.random(size) < 0.5, -1.0, 1.0)


def axes_around(axes: np.ndarray, mu: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors whose angle to each row of ``axes`` (n, 3; any length > 0) follows the
    Dimroth-Watson law of strength ``mu``, with a uniform azimuth."""
    axes = np.asarray(axes, dtype=np.float64).reshape(-1, 3)
    norm = np.linalg.norm(axes, axis=1, keepdims=True)
    if not (np.isfinite(axes).all() and (norm > 0).all()):
        raise ValueError("axes must be finite, non-zero vectors")
    a = axes / norm
    cos = sample_watson_cosines(mu, len(a), rng)
    # an orthonormal pair perpendicular to each axis: cross with the coordinate axis least parallel to it
    helper = np.eye(3)[np.argmin(np.abs(a), axis=1)]
    e1 = np.cross(a, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(a, e1)
    phi = rng.random(len(a)) * 2.0 * np.pi
    sin = np.sqrt(np.clip(1.0 - cos ** 2, 0.0, None))[:, None]
    return cos[:, None] * a + sin * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)


def _sphere_offsets(radius_cells: float) -> np.ndarray:
    r = int(math.ceil(radius_cells))
    grid = np.arange(-r, r + 1)
    offsets = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    return offsets[(offsets ** 2).sum(1) <= radius_cells ** 2]


def _window_moments(density: np.ndarray, centres: np.ndarray, radius_cells: float, chunk: int = 4096):
    """Mass, first and second moments (about the window's centre cell) of ``density`` in spheres of
    ``radius_cells`` around the fine cells ``centres`` (m, 3) (periodic)."""
    n = density.shape[0]
    offsets = _sphere_offsets(radius_cells)
    mass = np.empty(len(centres))
    first = np.empty((len(centres), 3))
    second = np.empty((len(centres), 3, 3))
    x = offsets.astype(np.float64)
    for s in range(0, len(centres), chunk):
        cells = (centres[s:s + chunk, None, :] + offsets[None]) % n  # (m, K, 3)
        w = density[cells[..., 0], cells[..., 1], cells[..., 2]].astype(np.float64)  # (m, K)
        mass[s:s + chunk] = w.sum(1)
        first[s:s + chunk] = w @ x
        second[s:s + chunk] = np.einsum("mk,ki,kj->mij", w, x, x, optimize=True)
    return mass, first, second


def local_major_axes(density: np.ndarray, voxels: np.ndarray, input_factor: int,
                     radius: float = ALIGNMENT_RADIUS) -> np.ndarray:
    """Major axes (unit vectors, (m, 3)) of the dark matter around galaxy voxels.

    Parameters
    ----------
    density : ndarray, shape (n f, n f, n f)
        Dark-matter density on the painter's input mesh (any unit; periodic).
    voxels : ndarray of int, shape (m, 3)
        Galaxy-mesh indices ``(i, j, k)`` (mesh ``n``).
    input_factor : int
        Density cells per galaxy voxel along an axis (``f``).
    radius : float
        Sphere radius in galaxy voxels (> 0).

    Returns
    -------
    ndarray, shape (m, 3)
        Eigenvector of the largest eigenvalue of the mass-weighted covariance of the cell
        positions in the sphere (the voxel-centre cell, ``i f + f // 2``, at its centre).
    """
    if not radius > 0:
        raise ValueError(f"radius={radius!r}: must be > 0 (galaxy voxels)")
    voxels = np.asarray(voxels, dtype=np.int64).reshape(-1, 3)
    f = int(input_factor)
    mass, first, second = _window_moments(density, voxels * f + f // 2, radius * f)
    mass = np.maximum(mass, np.finfo(float).tiny)
    mean = first / mass[:, None]
    covariance = second / mass[:, None, None] - mean[:, :, None] * mean[:, None, :]
    return np.linalg.eigh(covariance)[1][:, :, 2]


def host_centres(density: np.ndarray, voxels: np.ndarray, input_factor: int, box_size: float) -> np.ndarray:
    """Halo-centre estimates (h^-1 Mpc, (m, 3)) in galaxy voxels ``voxels`` (m, 3): the density-weighted
    centroid of the 3^3 density cells around the densest cell of each voxel (density cell ``i``
    centred at ``(i + 1/2)`` cells, the CIC convention of the painter's meshes)."""
    f = int(input_factor)
    voxels = np.asarray(voxels, dtype=np.int64).reshape(-1, 3)
    n_fine = density.shape[0]
    grid = np.arange(f)
    own = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)  # a voxel's f^3 cells
    cells = (voxels[:, None, :] * f + own[None]) % n_fine
    densest = cells[np.arange(len(voxels)), np.argmax(density[cells[..., 0], cells[..., 1], cells[..., 2]], axis=1)]
    around = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    near = (densest[:, None, :] + around[None]) % n_fine
    w = density[near[..., 0], near[..., 1], near[..., 2]].astype(np.float64)
    shift = (w @ around) / np.maximum(w.sum(1), np.finfo(float).tiny)[:, None]
    return ((densest + shift + 0.5) * (box_size / n_fine)) % box_size


def galaxy_orientations(density: np.ndarray, p: np.ndarray, counts: np.ndarray, positions: np.ndarray,
                        mu_cen: float, mu_sat: float, box_size: float, rng: np.random.Generator,
                        radius: float = ALIGNMENT_RADIUS, central_p2_scale: float = 1.0) -> np.ndarray:
    """Major axes (unit vectors, (n_gal, 3)) of painted galaxies; see the module docstring.

    Parameters
    ----------
    density : ndarray, shape (n f, n f, n f)
        The dark-matter density the painter read (any unit).
    p : ndarray, shape (n, n, n)
        The painter's probability of >= 1 galaxy per voxel (the groups' maxima are its local maxima).
    counts, positions : the painting (``GalaxyPainter.paint(..., positions=True)``): galaxies per
        voxel and their positions (n_gal, 3), h^-1 Mpc, in the order ``paint`` writes them (voxels in
        C order, the galaxies of a voxel together).
    mu_cen, mu_sat : float
        Central and satellite alignment strengths in [-1, 1] (halotools' convention).
    box_size : float
        Box side, h^-1 Mpc.
    rng : numpy Generator
    radius : float
        See :func:`local_major_axes`.
    central_p2_scale : float
        Centrals are drawn with the strength whose ``<P2>`` is this times ``mu_cen``'s
        (:func:`strength_for_p2`): the painter's alignment calibration (``painter.json``
        ``alignment``), which makes up for a reference axis more (> 1 would be less) coherent with
        the large-scale matter than the halos' axes.
    """
    from .sampling import peak_groups

    mu_cen, mu_sat = check_strength(mu_cen, "mu_cen"), check_strength(mu_sat, "mu_sat")
    if not 0 < central_p2_scale < math.inf:
        raise ValueError(f"central_p2_scale={central_p2_scale!r}: must be a positive number")
    if central_p2_scale != 1.0:
        mu_cen = strength_for_p2(central_p2_scale * watson_p2(mu_cen))
    n = counts.shape[0]
    f = density.shape[0] // n
    if density.shape != (n * f,) * 3 or p.shape != counts.shape:
        raise ValueError(f"density {density.shape}, p {p.shape} and counts {counts.shape} do not describe one "
                         "painting (density: a whole multiple of the counts' mesh per side)")
    flat = counts.ravel()
    occupied = np.flatnonzero(flat)
    if int(flat.sum()) != len(positions):
        raise ValueError(f"positions has {len(positions)} galaxies, counts {int(flat.sum())}")
    # each occupied voxel's group maximum (its own voxel where it has no group)
    voxels, groups = peak_groups(p)
    root = np.arange(flat.size)
    root[voxels] = groups
    host = root[occupied]  # per occupied voxel
    host_voxels = np.unique(host)
    order = np.searchsorted(host_voxels, host)
    host_ijk = np.column_stack(np.unravel_index(host_voxels, counts.shape))
    centre_of_host = host_centres(density, host_ijk, f, box_size)
    galaxy_voxel = np.repeat(occupied, flat[occupied])
    galaxy_host = np.repeat(order, flat[occupied])
    first = np.r_[True, galaxy_voxel[1:] != galaxy_voxel[:-1]]
    central = first & (galaxy_voxel == host_voxels[galaxy_host])
    out = np.empty((len(positions), 3))
    if central.any():
        ijk = np.column_stack(np.unravel_index(galaxy_voxel[central], counts.shape))
        out[central] = axes_around(local_major_axes(density, ijk, f, radius), mu_cen, rng)
    sat = ~central
    if sat.any():
        d = np.asarray(positions, dtype=np.float64)[sat] - centre_of_host[galaxy_host[sat]]
        d -= box_size * np.round(d / box_size)  # nearest periodic image
        tiny = np.linalg.norm(d, axis=1) < 1e-9 * box_size
        d[tiny] = rng.normal(size=(int(tiny.sum()), 3))
        out[sat] = axes_around(d, mu_sat, rng)
    return out
