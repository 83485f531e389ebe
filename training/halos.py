"""Friends-of-friends halos and their properties from a periodic particle snapshot.

Groups are found with kdcount's FoF (Davis et al. 1985; b = 0.2 times the mean
inter-particle separation). For every group with at least ``min_particles`` members we
compute, with periodic unwrapping about the group's first particle:

* ``mass``: FoF mass, n_particles x particle mass (Msun/h);
* ``rvir``: radius enclosing the virial overdensity (Bryan & Norman 1998) for that mass
  (comoving h^-1 Mpc), the convention of halotools' ``halo_rvir``;
* ``centre``: centre of mass of the members within ``rvir`` of the FoF centre of mass
  (one shrinking step, so a bridged neighbour does not drag the centre), wrapped into the box;
* ``velocity``: mean member velocity (km/s);
* ``axis_a`` / ``axis_c``: major and minor axes (unit vectors) and ``b_to_a``, ``c_to_a`` of the
  second-moment (inertia) tensor of the members within ``rvir`` of the centre (all members when
  fewer than ``min_shape_particles`` lie inside).
"""
from __future__ import annotations

import logging

import numpy as np

__all__ = ["find_fof_groups", "halo_properties", "virial_radius", "virial_overdensity"]

logger = logging.getLogger(__name__)

#: Linking length in units of the mean inter-particle separation.
FOF_LINKING = 0.2


def virial_overdensity(omega_m: float) -> float:
    """Bryan & Norman (1998) virial overdensity at z = 0, relative to the *mean* matter density."""
    x = omega_m - 1.0
    delta_crit = 18 * np.pi ** 2 + 82 * x - 39 * x ** 2
    return delta_crit / omega_m


def virial_radius(mass, omega_m: float) -> np.ndarray:
    """Virial radius (comoving h^-1 Mpc) of halos of ``mass`` (Msun/h) at z = 0."""
    from .nbody import RHO_CRIT_H2

    rho_mean = omega_m * RHO_CRIT_H2
    return np.cbrt(3 * np.asarray(mass, dtype=float) / (4 * np.pi * virial_overdensity(omega_m) * rho_mean))


def find_fof_groups(positions: np.ndarray, box_size: float, min_particles: int = 20,
                    linking: float = FOF_LINKING) -> tuple[np.ndarray, np.ndarray]:
    """Run kdcount's periodic FoF and keep groups of at least ``min_particles``.

    Returns
    -------
    member_index : ndarray of int, shape (n_members,)
        Particle indices of the kept groups, group after group (largest group first).
    offsets : ndarray of int, shape (n_groups + 1,)
        Group ``g`` owns ``member_index[offsets[g]:offsets[g + 1]]``.
    """
    from kdcount import cluster

    n = positions.shape[0]
    ll = linking * box_size / np.cbrt(n)
    logger.info("FoF on %d particles, linking length %.4f h^-1 Mpc", n, ll)
    data = cluster.dataset(positions, boxsize=box_size)
    fof = cluster.fof(data, linking_length=ll, np=0)
    n_kept = int(np.searchsorted(-fof.length, -min_particles, side="right"))
    offsets = np.zeros(n_kept + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(fof.length[:n_kept])
    member_index = np.asarray(fof.indices[: offsets[-1]], dtype=np.int64)
    logger.info("FoF: %d groups, %d with >= %d particles", fof.N, n_kept, min_particles)
    return member_index, offsets


def _shape_kernel():
    import numba

    @numba.njit(cache=True)
    def _squared_distances(rel, centre):
        out = np.empty(rel.shape[0])
        for k in range(rel.shape[0]):
            out[k] = (rel[k, 0] - centre[0]) ** 2 + (rel[k, 1] - centre[1]) ** 2 + (rel[k, 2] - centre[2]) ** 2
        return out

    @numba.njit(parallel=True, cache=True)
    def kernel(pos, vel, member_index, offsets, rvir, box, min_shape):
        n_groups = offsets.size - 1
        centre = np.empty((n_groups, 3))
        velocity = np.empty((n_groups, 3))
        moments = np.zeros((n_groups, 3, 3))
        n_inside = np.zeros(n_groups, dtype=np.int64)
        half = 0.5 * box
        for g in numba.prange(n_groups):
            start, stop = offsets[g], offsets[g + 1]
            n = stop - start
            ref = pos[member_index[start]]
            rel = np.empty((n, 3))
            com = np.zeros(3)
            vmean = np.zeros(3)
            for k in range(n):
                p = member_index[start + k]
                for d in range(3):
                    dx = pos[p, d] - ref[d]
                    if dx > half:
                        dx -= box
                    elif dx < -half:
                        dx += box
                    rel[k, d] = dx
                    com[d] += dx
                    vmean[d] += vel[p, d]
            com /= n
            vmean /= n
            # one shrinking step: centre of mass of the members within rvir of the FoF centre
            r2max = rvir[g] * rvir[g]
            r2 = _squared_distances(rel, com)
            inside = r2 <= r2max
            m = inside.sum()
            if m >= min_shape:
                com = rel[inside].sum(axis=0) / m
                r2 = _squared_distances(rel, com)
                inside = r2 <= r2max
            if inside.sum() < min_shape:  # too few inside rvir: use every member for the shape
                inside[:] = True
            count = 0
            for k in range(n):
                if inside[k]:
                    count += 1
                    for i in range(3):
                        for j in range(3):
                            moments[g, i, j] += (rel[k, i] - com[i]) * (rel[k, j] - com[j])
            moments[g] /= count
            n_inside[g] = count
            for d in range(3):
                c = ref[d] + com[d]
                centre[g, d] = c - box * np.floor(c / box)
                velocity[g, d] = vmean[d]
        return centre, velocity, moments, n_inside

    return kernel


def halo_properties(positions: np.ndarray, velocities: np.ndarray, member_index: np.ndarray,
                    offsets: np.ndarray, box_size: float, particle_mass: float, omega_m: float,
                    min_shape_particles: int = 10) -> dict:
    """Mass, radius, centre, velocity and shape of every FoF group.

    Parameters
    ----------
    positions, velocities : ndarray, shape (n_particles, 3)
        Comoving positions in [0, box_size) h^-1 Mpc and velocities in km/s.
    member_index, offsets : ndarray
        Output of :func:`find_fof_groups`.
    box_size : float
        Periodic box side, h^-1 Mpc.
    particle_mass : float
        Msun/h.
    omega_m : float
        Matter density, for the virial radius.

    Returns
    -------
    dict of ndarray
        ``n_particles``, ``mass``, ``rvir``, ``centre`` (n, 3), ``velocity`` (n, 3), ``axis_a`` (n, 3),
        ``axis_c`` (n, 3), ``b_to_a``, ``c_to_a``, ``n_shape`` (members used for the shape).
    """
    n_particles = np.diff(offsets)
    mass = n_particles * particle_mass
    rvir = virial_radius(mass, omega_m)
    kernel = _shape_kernel()
    centre, velocity, moments, n_shape = kernel(positions, velocities, member_index, offsets, rvir,
                                                float(box_size), int(min_shape_particles))
    evals, evecs = np.linalg.eigh(moments)  # ascending eigenvalues
    evals = np.clip(evals, 0.0, None)
    axis_a = evecs[:, :, 2]
    axis_c = evecs[:, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        b_to_a = np.sqrt(evals[:, 1] / evals[:, 2])
        c_to_a = np.sqrt(evals[:, 0] / evals[:, 2])
    return {"n_particles": n_particles, "mass": mass, "rvir": rvir, "centre": centre,
            "velocity": velocity, "axis_a": axis_a, "axis_c": axis_c, "b_to_a": b_to_a,
            "c_to_a": c_to_a, "n_shape": n_shape}
