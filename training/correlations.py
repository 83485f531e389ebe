r"""Fused 3-D clustering and intrinsic-alignment correlation functions of a periodic box.

:func:`ia_correlations` measures, in a single pass over the galaxy pairs of one periodic cubic
box, the three statistics the emulator is trained on:

* :math:`\xi(r)`, the galaxy two-point correlation function;
* :math:`\omega(r)`, the ellipticity-direction (ED) correlation function;
* :math:`\eta(r)`, the ellipticity-ellipticity (EE) correlation function.

The definitions are exactly those of halotools 0.9.4 (Hearin et al. 2017; the alignment
statistics follow Joachimi et al. 2013), which the test-suite checks to a relative 1e-8:

* ``xi`` equals ``halotools.mock_observables.tpcf(sample1, rbins, period=period)``: the natural
  estimator with analytic randoms, :math:`\xi = DD / RR - 1` with
  :math:`RR = N^2 \, \Delta V / V_{\rm box}` (note :math:`N^2`, not :math:`N(N-1)`), where
  :math:`DD` counts ordered pairs :math:`i \neq j` and :math:`\Delta V` is the volume of the
  spherical shell;
* ``omega`` equals ``ed_3d(sample1, orientations1, sample1, rbins, period=period)``:
  :math:`\omega = \sum_{i \neq j} |\hat e_i \cdot \hat r_{ij}|^2 / DD - 1/3`;
* ``eta`` equals ``ee_3d(sample1, orientations1, sample1, orientations1, rbins, period=period)``:
  :math:`\eta = \sum_{i \neq j} |\hat e_i \cdot \hat e_j|^2 / DD - 1/3`.

As in halotools, a pair at separation :math:`d` falls in bin ``k`` when
``rbins[k]**2 < d**2 <= rbins[k+1]**2``. Each unordered pair is visited once and contributes
both of its ordered pairs.

The pair loop is a numba linked-cell (cell-list) search, parallel over cells, with minimum-image
periodic separations (a neighbour cell across the box edge is shifted by one period; exact because
``rbins[-1] < period / 3``) and float64 accumulation. Cells are shared among a fixed number of work
chunks whose partial sums are added in a fixed order, so the result does not depend on the number
of threads, bit for bit. Set ``NUMBA_THREADING_LAYER=workqueue`` in the environment before numba is
first used: with numba's default OpenMP layer two threads were measured no faster than one here.

All lengths are comoving :math:`h^{-1}\,{\rm Mpc}`.
"""
from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numba
import numpy as np

from .correlation_inputs import (validate_num_threads, validate_orientations, validate_period,
                                 validate_positions, validate_rbins)

__all__ = ["IACorrelations", "ia_correlations", "ia_correlations_from_mock"]

logger = logging.getLogger(__name__)

#: Cells per maximum search radius along each axis (the search covers +-this many cells).
_CELLS_PER_RMAX = 2
#: Upper limit on cells per box side (bounds the memory of the cell list for tiny rbins).
_MAX_CELLS_PER_SIDE = 128
#: Number of work chunks; fixed, so that the float64 summation order never depends on threads.
_N_CHUNKS = 256
#: Table resolution of the bin lookup: 2**this entries per factor 2 in squared separation.
_TABLE_MANTISSA_BITS = 6

#: Columns of a halotools galaxy table read by :func:`ia_correlations_from_mock`.
POSITION_COLUMNS = ("x", "y", "z")
ORIENTATION_COLUMNS = ("galaxy_axisA_x", "galaxy_axisA_y", "galaxy_axisA_z")


class IACorrelations(NamedTuple):
    """The three statistics of one box, each of shape ``(len(rbins) - 1,)``.

    Attributes
    ----------
    xi : numpy.ndarray
        Galaxy two-point correlation function (dimensionless).
    omega : numpy.ndarray
        Ellipticity-direction correlation function (dimensionless; ``nan`` in empty bins).
    eta : numpy.ndarray
        Ellipticity-ellipticity correlation function (dimensionless; ``nan`` in empty bins).
    """

    xi: np.ndarray
    omega: np.ndarray
    eta: np.ndarray


# --------------------------------------------------------------------------------------------
# numba kernel
# --------------------------------------------------------------------------------------------
@numba.njit(inline="always")  # no cache=True: numba pickles its on-disk cache index
def _wrap_cell(n, n_side, period):
    """Periodic cell index along one axis and the shift (0 or +-period) that brings that
    neighbour next to the current cell."""
    if n < 0:
        return n + n_side, -period
    if n >= n_side:
        return n - n_side, period
    return n, 0.0


@numba.njit(parallel=True, fastmath=False, nogil=True)
def _pair_sums(x, y, z, ex, ey, ez, cell_start, n_side, offsets, period, rsq, n_chunks,
               bin_table, table_shift, table_base):
    """Per-bin sums over unordered pairs (i < j) of points sorted by cell.

    Returns ``(npairs, ed_sum, ee_sum)``: the number of unordered pairs, the sum of
    ``(e_i.r)^2/r^2 + (e_j.r)^2/r^2`` and the sum of ``(e_i.e_j)^2`` in each bin.
    """
    n_bins = rsq.size - 1
    n_cells = n_side * n_side * n_side
    n_off = offsets.shape[0]
    rsq_min = rsq[0]
    rsq_max = rsq[n_bins]
    npairs = np.zeros((n_chunks, n_bins), dtype=np.int64)
    ed_sum = np.zeros((n_chunks, n_bins), dtype=np.float64)
    ee_sum = np.zeros((n_chunks, n_bins), dtype=np.float64)

    for chunk in numba.prange(n_chunks):
        cnt = np.zeros(n_bins, dtype=np.int64)
        eds = np.zeros(n_bins, dtype=np.float64)
        ees = np.zeros(n_bins, dtype=np.float64)
        # reinterpret a float64 as int64: its top bits are a monotonic, piecewise-linear log2
        scratch = np.empty(1, dtype=np.float64)
        scratch_bits = scratch.view(np.int64)
        for cell in range(chunk, n_cells, n_chunks):
            i0 = cell_start[cell]
            i1 = cell_start[cell + 1]
            if i0 == i1:
                continue
            cx = cell // (n_side * n_side)
            cy = (cell // n_side) % n_side
            cz = cell % n_side
            # o = -1 is the cell itself (pairs j > i); o >= 0 walks a half shell of neighbours
            for o in range(-1, n_off):
                sx = 0.0
                sy = 0.0
                sz = 0.0
                if o < 0:
                    j0_cell = i0
                    j1 = i1
                else:
                    # neighbour across the box edge: shift it by one period, which gives the
                    # minimum-image separation because rmax < period / 3
                    nx, sx = _wrap_cell(cx + offsets[o, 0], n_side, period)
                    ny, sy = _wrap_cell(cy + offsets[o, 1], n_side, period)
                    nz, sz = _wrap_cell(cz + offsets[o, 2], n_side, period)
                    other = (nx * n_side + ny) * n_side + nz
                    j0_cell = cell_start[other]
                    j1 = cell_start[other + 1]
                    if j0_cell == j1:
                        continue
                for i in range(i0, i1):
                    xi = x[i] - sx
                    yi = y[i] - sy
                    zi = z[i] - sz
                    exi = ex[i]
                    eyi = ey[i]
                    ezi = ez[i]
                    j0 = i + 1 if o < 0 else j0_cell
                    for j in range(j0, j1):
                        dx = x[j] - xi
                        dy = y[j] - yi
                        dz = z[j] - zi
                        dsq = dx * dx + dy * dy + dz * dz
                        if dsq <= rsq_min or dsq > rsq_max:
                            continue
                        # first guess from the table, then exact: rsq[k] < dsq <= rsq[k + 1]
                        scratch[0] = dsq
                        k = bin_table[(scratch_bits[0] >> table_shift) - table_base]
                        while dsq > rsq[k + 1]:
                            k += 1
                        while dsq <= rsq[k]:
                            k -= 1
                        exj = ex[j]
                        eyj = ey[j]
                        ezj = ez[j]
                        dot_i = exi * dx + eyi * dy + ezi * dz
                        dot_j = exj * dx + eyj * dy + ezj * dz
                        dot_ij = exi * exj + eyi * eyj + ezi * ezj
                        cnt[k] += 1
                        eds[k] += (dot_i * dot_i + dot_j * dot_j) / dsq
                        ees[k] += dot_ij * dot_ij
        for k in range(n_bins):
            npairs[chunk, k] = cnt[k]
            ed_sum[chunk, k] = eds[k]
            ee_sum[chunk, k] = ees[k]

    # fixed-order reduction over chunks
    npairs_tot = np.zeros(n_bins, dtype=np.int64)
    ed_tot = np.zeros(n_bins, dtype=np.float64)
    ee_tot = np.zeros(n_bins, dtype=np.float64)
    for chunk in range(n_chunks):
        for k in range(n_bins):
            npairs_tot[k] += npairs[chunk, k]
            ed_tot[k] += ed_sum[chunk, k]
            ee_tot[k] += ee_sum[chunk, k]
    return npairs_tot, ed_tot, ee_tot


def _bin_table(rsq):
    """Lookup table from the top bits of a float64 squared separation to a first-guess bin.

    The kernel indexes it with ``(bits(dsq) >> shift) - base`` for ``rsq[0] < dsq <= rsq[-1]``
    and corrects the guess exactly against ``rsq``, so the table only affects speed.
    """
    shift = 52 - _TABLE_MANTISSA_BITS
    bits = rsq.view(np.int64) >> shift
    base, top = int(bits[0]), int(bits[-1])
    lower_ends = (np.arange(base, top + 1, dtype=np.int64) << shift).view(np.float64)
    table = np.searchsorted(rsq, lower_ends, side="left") - 1
    return np.clip(table, 0, rsq.size - 2).astype(np.int64), shift, base


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _cell_list(pos, period, rmax):
    """Sort points into a cubic grid of cells; return order, cell starts, cells per side, offsets."""
    n_side = int(min(math.floor(_CELLS_PER_RMAX * period / rmax), _MAX_CELLS_PER_SIDE))
    n_side = max(n_side, 3)
    cell_size = period / n_side
    n_search = int(math.ceil(rmax / cell_size))
    # distinct neighbour cells need 2 * n_search + 1 <= n_side; guaranteed by rmax < period / 3
    if 2 * n_search + 1 > n_side:  # pragma: no cover - defensive, excluded by validation
        raise RuntimeError(f"cell grid too coarse: n_side={n_side}, n_search={n_search}")

    idx = np.floor(pos / cell_size).astype(np.int64)
    np.clip(idx, 0, n_side - 1, out=idx)  # a point at x == period belongs to the last cell
    cell = (idx[:, 0] * n_side + idx[:, 1]) * n_side + idx[:, 2]
    order = np.argsort(cell, kind="stable")
    counts = np.bincount(cell, minlength=n_side ** 3)
    cell_start = np.zeros(n_side ** 3 + 1, dtype=np.int64)
    np.cumsum(counts, out=cell_start[1:])

    # half shell of neighbour offsets (lexicographically positive), dropping cells that are
    # entirely farther than rmax from every point of the central cell
    rng = np.arange(-n_search, n_search + 1)
    off = np.stack(np.meshgrid(rng, rng, rng, indexing="ij"), axis=-1).reshape(-1, 3)
    positive = (off[:, 0] > 0) | ((off[:, 0] == 0) & (off[:, 1] > 0)) | (
        (off[:, 0] == 0) & (off[:, 1] == 0) & (off[:, 2] > 0))
    gap = np.clip(np.abs(off) - 1, 0, None) * cell_size
    reachable = np.sum(gap * gap, axis=1) <= rmax * rmax
    offsets = np.ascontiguousarray(off[positive & reachable], dtype=np.int64)
    return order, cell_start, n_side, offsets


def ia_correlations(positions, orientations, rbins, period, num_threads=None):
    r"""Galaxy clustering, ED and EE correlation functions of one periodic cubic box.

    One pass over the pairs gives the three statistics that halotools computes with
    ``tpcf(positions, rbins, period=period)``, ``ed_3d(positions, orientations, positions,
    rbins, period=period)`` and ``ee_3d(positions, orientations, positions, orientations,
    rbins, period=period)`` (auto-correlations, unit weights); see the module docstring for the
    definitions.

    Parameters
    ----------
    positions : array_like, shape (n, 3)
        Comoving galaxy positions in h^-1 Mpc, finite, inside ``[0, period]`` (a coordinate equal to
        ``period`` is the same point as 0); ``n >= 2``.
    orientations : array_like, shape (n, 3)
        3-D orientation (major-axis) vectors, any non-zero length: they are normalised here. The
        statistics are even in each vector's sign.
    rbins : array_like, shape (n_bins + 1,)
        Strictly increasing, positive radial bin edges in comoving h^-1 Mpc, with
        ``rbins[-1] < period / 3`` (the limit halotools imposes).
    period : float or sequence of 3 equal floats
        Side of the periodic cubic box in comoving h^-1 Mpc.
    num_threads : int, optional
        numba threads for this call, between 1 and ``NUMBA_NUM_THREADS``; default: numba's current
        setting. The result does not depend on it.

    Returns
    -------
    IACorrelations
        Named tuple ``(xi, omega, eta)`` of float64 arrays, each of shape ``(n_bins,)``.
        In a bin without any pair (``DD = 0``) halotools returns ``xi = -1`` and ``omega = eta =
        nan`` (0/0); so does this function, so that callers can detect and retry such
        realisations.

    Raises
    ------
    ValueError
        If an argument has the wrong shape, is not finite, or is out of its allowed range; the
        message names the argument, its value and what is allowed.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> pos = rng.uniform(0, 100.0, size=(2000, 3))
    >>> ori = rng.normal(size=(2000, 3))
    >>> xi, omega, eta = ia_correlations(pos, ori, np.logspace(0, 1, 6), period=100.0)
    >>> xi.shape
    (5,)
    """
    box = validate_period(period)
    edges = validate_rbins(rbins, box)
    pos = validate_positions(positions, box)
    n = pos.shape[0]
    ori = validate_orientations(orientations, n)
    threads = validate_num_threads(num_threads)

    rmax = float(edges[-1])
    order, cell_start, n_side, offsets = _cell_list(pos, box, rmax)
    rsq = edges * edges  # halotools compares squared separations with rbins * rbins
    sp = pos[order]
    so = ori[order]
    args = (np.ascontiguousarray(sp[:, 0]), np.ascontiguousarray(sp[:, 1]),
            np.ascontiguousarray(sp[:, 2]), np.ascontiguousarray(so[:, 0]),
            np.ascontiguousarray(so[:, 1]), np.ascontiguousarray(so[:, 2]),
            cell_start, n_side, offsets, box, rsq, _N_CHUNKS, *_bin_table(rsq))
    logger.debug("ia_correlations: n=%d, %d^3 cells, %d neighbour offsets, rmax=%g h^-1 Mpc",
                 n, n_side, offsets.shape[0], rmax)

    previous = numba.get_num_threads()
    try:
        if threads is not None:
            numba.set_num_threads(threads)
        npairs, ed_sum, ee_sum = _pair_sums(*args)
    finally:
        numba.set_num_threads(previous)

    # ordered pairs i != j, as halotools counts them
    dd = 2.0 * npairs.astype(np.float64)
    ed = ed_sum  # already the sum over both orders of each pair
    ee = 2.0 * ee_sum

    # analytic randoms exactly as halotools.tpcf: NR = N, RR = N**2 * dV / V
    shell = np.diff(4.0 / 3.0 * np.pi * edges ** 3)
    rr = shell * (float(n) ** 2 / box ** 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = dd / rr - 1.0
        omega = ed / dd - 1.0 / 3.0
        eta = ee / dd - 1.0 / 3.0
    return IACorrelations(xi, omega, eta)


def ia_correlations_from_mock(galaxy_table, rbins, period, num_threads=None):
    r"""Measure ``xi``, ``omega`` and ``eta`` of a halotools mock galaxy table.

    Parameters
    ----------
    galaxy_table : astropy.table.Table or mapping of column name to array
        Galaxy catalog with position columns ``x``, ``y``, ``z`` (comoving h^-1 Mpc) and the
        major-axis columns ``galaxy_axisA_x``, ``galaxy_axisA_y``, ``galaxy_axisA_z``, as written
        by halotools' intrinsic-alignment models (e.g. ``model.mock.galaxy_table``).
    rbins : array_like, shape (n_bins + 1,)
        Radial bin edges in comoving h^-1 Mpc; see :func:`ia_correlations`.
    period : float
        Box side in comoving h^-1 Mpc (``halocat.Lbox``; three equal values also accepted).
    num_threads : int, optional
        Passed to :func:`ia_correlations`.

    Returns
    -------
    dict
        ``{"xi": ..., "omega": ..., "eta": ...}``, float64 arrays of shape ``(n_bins,)``
        (``nan`` for ``omega`` and ``eta`` in bins without pairs).

    Raises
    ------
    ValueError
        If a required column is missing or the data are invalid (see :func:`ia_correlations`).
    """
    names = set(getattr(galaxy_table, "colnames", None) or galaxy_table.keys())
    missing = [c for c in POSITION_COLUMNS + ORIENTATION_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"galaxy_table lacks the column(s) {missing}; required: "
                         f"{list(POSITION_COLUMNS + ORIENTATION_COLUMNS)}")
    positions = np.column_stack([np.asarray(galaxy_table[c], dtype=np.float64)
                                 for c in POSITION_COLUMNS])
    orientations = np.column_stack([np.asarray(galaxy_table[c], dtype=np.float64)
                                    for c in ORIENTATION_COLUMNS])
    result = ia_correlations(positions, orientations, rbins, period, num_threads=num_threads)
    return {"xi": result.xi, "omega": result.omega, "eta": result.eta}
