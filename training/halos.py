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


def virial_overdensity(omega_m: float, redshift: float = 0.0) -> float:
    """Bryan & Norman (1998) virial overdensity at ``redshift``, relative to the *mean* matter density.

    ``omega_m`` is today's value; flat LCDM without radiation gives Omega_m(z).
    """
    a3 = (1.0 + redshift) ** 3
    omega_z = omega_m * a3 / (omega_m * a3 + 1.0 - omega_m)
    x = omega_z - 1.0
    delta_crit = 18 * np.pi ** 2 + 82 * x - 39 * x ** 2
    return delta_crit / omega_z


def virial_radius(mass, omega_m: float, redshift: float = 0.0) -> np.ndarray:
    """Virial radius (comoving h^-1 Mpc) of halos of ``mass`` (Msun/h) at ``redshift``.

    The comoving mean matter density does not change with time, so only the overdensity does.
    """
    from .nbody import RHO_CRIT_H2

    rho_mean = omega_m * RHO_CRIT_H2
    delta = virial_overdensity(omega_m, redshift)
    return np.cbrt(3 * np.asarray(mass, dtype=float) / (4 * np.pi * delta * rho_mean))


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
    """The compiled shape kernel (numba is imported only when it is needed; cached on disk)."""
    from ._halo_kernels import shape_kernel

    return shape_kernel


def halo_properties(positions: np.ndarray, velocities: np.ndarray, member_index: np.ndarray,
                    offsets: np.ndarray, box_size: float, particle_mass: float, omega_m: float,
                    min_shape_particles: int = 10, redshift: float = 0.0) -> dict:
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
        Matter density today, for the virial radius.
    min_shape_particles : int
        Fewest members within rvir for a shape from rvir (else all members).
    redshift : float
        Redshift of the snapshot, for the virial overdensity.

    Returns
    -------
    dict of ndarray
        ``n_particles``, ``mass``, ``rvir``, ``centre`` (n, 3), ``velocity`` (n, 3), ``axis_a`` (n, 3),
        ``axis_c`` (n, 3), ``b_to_a``, ``c_to_a``, ``n_shape`` (members used for the shape).
    """
    n_particles = np.diff(offsets)
    mass = n_particles * particle_mass
    rvir = virial_radius(mass, omega_m, redshift)
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
