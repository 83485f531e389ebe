"""Meshes of the field-level painter: dark-matter density (CIC) and galaxy counts (per voxel).

The dark-matter mesh is PySCo's cloud-in-cell assignment (``pysco.mesh.CIC``, the routine PySCo
itself uses for its particle-mesh force), normalised to the mean: ``rho / rho_mean`` (dimensionless,
mean 1). Galaxy meshes count galaxies per voxel (nearest grid point). Voxel ``(i, j, k)`` covers
``[i, i + 1) * L / n`` along x, and so on. Lengths are comoving h^-1 Mpc.
"""
from __future__ import annotations

import numpy as np

__all__ = ["density_mesh", "count_mesh", "voxel_index"]


def _check_positions(positions, box_size: float) -> np.ndarray:
    pos = np.asarray(positions)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions have shape {pos.shape}; expected (n, 3)")
    if not box_size > 0:
        raise ValueError(f"box_size={box_size!r} must be positive (h^-1 Mpc)")
    if pos.size and not np.isfinite(pos).all():
        raise ValueError("positions contain NaN or inf")
    return pos


def density_mesh(positions, box_size: float, n_mesh: int) -> np.ndarray:
    """Cloud-in-cell density of particles, in units of the mean density.

    Parameters
    ----------
    positions : ndarray, shape (n, 3)
        Comoving positions, h^-1 Mpc (wrapped periodically into the box).
    box_size : float
        Box side, h^-1 Mpc.
    n_mesh : int
        Voxels per side.

    Returns
    -------
    ndarray, shape (n_mesh, n_mesh, n_mesh), float32
        ``rho / rho_mean``; sums to ``n_mesh**3``.
    """
    from pysco import mesh

    pos = _check_positions(positions, box_size)
    if pos.shape[0] == 0:
        raise ValueError("no particles: the density is undefined")
    # PySCo works in box units in [0, 1) and puts voxel i's centre at (i + 0.5) / n
    unit = np.ascontiguousarray(np.mod(pos / box_size, 1.0), dtype=np.float32)
    rho = np.asarray(mesh.CIC(unit, int(n_mesh)), dtype=np.float64)
    return (rho * (n_mesh ** 3 / rho.sum())).astype(np.float32)


def voxel_index(positions, box_size: float, n_mesh: int) -> np.ndarray:
    """Flat (C-order) index of the voxel holding each position, shape (n,)."""
    pos = _check_positions(positions, box_size)
    ijk = np.floor(np.mod(pos, box_size) * (n_mesh / box_size)).astype(np.int64)
    np.minimum(ijk, n_mesh - 1, out=ijk)  # mod can return box_size itself for -tiny values
    return (ijk[:, 0] * n_mesh + ijk[:, 1]) * n_mesh + ijk[:, 2]


def count_mesh(positions, box_size: float, n_mesh: int) -> np.ndarray:
    """Number of galaxies per voxel, shape (n_mesh, n_mesh, n_mesh), int32."""
    idx = voxel_index(positions, box_size, n_mesh)
    return np.bincount(idx, minlength=n_mesh ** 3).astype(np.int32).reshape((n_mesh,) * 3)
