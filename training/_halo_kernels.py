"""Compiled (numba) kernel of :mod:`.halos`, at module level so numba compiles it once per process.

No ``cache=True``: numba's on-disk cache index is a pickle, and iaemu unpickles nothing. Imported only
when halo properties are computed: importing it imports numba.
"""
import numba
import numpy as np

__all__ = ["shape_kernel"]


@numba.njit
def _squared_distances(rel, centre):
    out = np.empty(rel.shape[0])
    for k in range(rel.shape[0]):
        out[k] = (rel[k, 0] - centre[0]) ** 2 + (rel[k, 1] - centre[1]) ** 2 + (rel[k, 2] - centre[2]) ** 2
    return out


@numba.njit(parallel=True)
def shape_kernel(pos, vel, member_index, offsets, rvir, box, min_shape):
    """Centre, mean velocity, second-moment tensor and members used, per FoF group (see
    :func:`.halos.halo_properties`; lengths comoving h^-1 Mpc, velocities km/s)."""
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
