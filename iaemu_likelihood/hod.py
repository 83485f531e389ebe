"""Zheng et al. (2007) mean halo occupations, galaxy number density and satellite fraction.

The occupations are those of halotools' ``Zheng07Cens`` and ``Zheng07Sats`` (the latter with its
default ``modulate_with_cenocc=False``), so they match the mocks the emulator is trained on:

* centrals: ``<Ncen>(M) = 0.5 * (1 + erf((log10 M - logMmin) / sigma_logM))``
* satellites: ``<Nsat>(M) = ((M - M0) / M1) ** alpha`` for ``M > M0``, else 0.

Masses are in Msun/h (log10 in the parameters). The number density and satellite fraction of a
parameter point follow by summing the occupations over the binned host-halo mass function of the
training catalog (``halo_mass_function.npz`` of a weights folder): each bin's halos are counted at
the bin's mean log10 mass and the sum is divided by the catalog volume in (h^-1 Mpc)^3. Weights
trained over an N-body suite (inputs Omega_m, sigma_8, z) use the mass function interpolated to
each point's cosmology and redshift instead (``halo_mass_function_table.npz``,
:mod:`iaemu_likelihood.mass_function_table`).
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping

import numpy as np
from scipy.special import erf, erfc

from .conventions import PARAM_NAMES

__all__ = ["mean_ncen", "mean_nsat", "number_density", "satellite_fraction", "bin_mass_function",
           "occupation_point", "DerivedHOD", "DERIVED_PARAMS", "HOD_INPUTS",
           "validate_mass_function", "MASS_FUNCTION_KEYS"]

#: Derived parameters of an HOD point, and the inputs they need.
DERIVED_PARAMS = ("n_gal", "f_sat")
HOD_INPUTS = ("logMmin", "sigma_logM", "logM0", "logM1", "alpha")
#: Arrays of a binned halo mass function (``halo_mass_function.npz``).
MASS_FUNCTION_KEYS = ("log10_mass_edges", "counts", "mean_log10_mass", "volume")

_HOD_INDEX = {name: PARAM_NAMES.index(name) for name in ("logMmin", "sigma_logM", "logM0",
                                                         "logM1", "alpha")}


def mean_ncen(log10_mass, logMmin, sigma_logM):
    """Mean number of centrals in halos of mass ``10**log10_mass`` Msun/h (halotools Zheng07Cens).

    Parameters
    ----------
    log10_mass : array_like
        log10 of the host halo mass in Msun/h.
    logMmin : float or array_like
        log10 mass (Msun/h) where half the halos host a central.
    sigma_logM : float or array_like
        Width of the central transition in dex (> 0).

    Returns
    -------
    ndarray
        ``<Ncen>`` in [0, 1], broadcast shape of the inputs.
    """
    return 0.5 * (1.0 + erf((np.asarray(log10_mass, dtype=float) - logMmin) / sigma_logM))


def mean_nsat(log10_mass, logM0, logM1, alpha, mass=None):
    """Mean number of satellites in halos of mass ``10**log10_mass`` Msun/h (halotools Zheng07Sats).

    Parameters
    ----------
    log10_mass : array_like
        log10 of the host halo mass in Msun/h.
    logM0 : float or array_like
        log10 of the cut-off mass M0 (Msun/h); halos below it host no satellites.
    logM1 : float or array_like
        log10 of the mass scale M1 (Msun/h).
    alpha : float or array_like
        Power-law slope.

    mass : ndarray, optional
        ``10**log10_mass``, when the caller has it already (saves the power on every call).

    Returns
    -------
    ndarray
        ``<Nsat>`` >= 0, broadcast shape of the inputs.
    """
    if mass is None:
        mass = 10.0 ** np.asarray(log10_mass, dtype=float)
    excess = mass - 10.0 ** np.asarray(logM0, dtype=float)
    positive = excess > 0
    ratio = np.where(positive, excess, 1.0) / 10.0 ** np.asarray(logM1, dtype=float)
    return np.where(positive, ratio ** alpha, 0.0)


def _hod_columns(theta):
    """(logMmin, sigma_logM, logM0, logM1, alpha) as float arrays of shape (n, 1) or (1,)."""
    if isinstance(theta, Mapping):
        cols = [np.asarray(theta[name], dtype=float) for name in _HOD_INDEX]
    else:
        arr = np.asarray(theta, dtype=float)
        if arr.ndim not in (1, 2) or arr.shape[-1] != len(PARAM_NAMES):
            raise ValueError(f"theta has shape {arr.shape}; expected ({len(PARAM_NAMES)},) or "
                             f"(n, {len(PARAM_NAMES)}) in the order {PARAM_NAMES}")
        cols = [arr[..., i] for i in _HOD_INDEX.values()]
    return [c[..., None] for c in cols]


def validate_mass_function(mass_function: Mapping) -> dict:
    """Check a binned mass function and return it as a dict of float arrays.

    Raises
    ------
    ValueError
        Naming the key when one is missing, mis-shaped or non-physical.
    """
    missing = [k for k in MASS_FUNCTION_KEYS if k not in mass_function]
    if missing:
        raise ValueError(f"halo mass function lacks {missing}; required keys: {MASS_FUNCTION_KEYS}")
    out = {k: np.asarray(mass_function[k], dtype=float) for k in MASS_FUNCTION_KEYS}
    n_bins = out["log10_mass_edges"].size - 1
    if out["log10_mass_edges"].ndim != 1 or n_bins < 1 or np.any(np.diff(out["log10_mass_edges"]) <= 0):
        raise ValueError("halo mass function 'log10_mass_edges' must be 1-d and increasing")
    for key in ("counts", "mean_log10_mass"):
        if out[key].shape != (n_bins,):
            raise ValueError(f"halo mass function {key!r} has shape {out[key].shape}, expected "
                             f"({n_bins},) to match log10_mass_edges")
    if np.any(out["counts"] < 0) or not np.all(np.isfinite(out["counts"])):
        raise ValueError("halo mass function 'counts' must be finite and >= 0")
    if out["volume"].shape != () or not out["volume"] > 0:
        raise ValueError(f"halo mass function 'volume' = {out['volume']!r} must be a positive "
                         "scalar in (h^-1 Mpc)^3")
    return out


def _occupation_sums(theta, mass_function, validated=False):
    mf = mass_function if validated else validate_mass_function(mass_function)
    logMmin, sigma, logM0, logM1, alpha = _hod_columns(theta)
    logm, counts = mf["mean_log10_mass"], mf["counts"]
    n_cen = mean_ncen(logm, logMmin, sigma) @ counts
    n_sat = mean_nsat(logm, logM0, logM1, alpha, mf.get("mass")) @ counts
    return n_cen, n_sat, float(mf["volume"])


def occupation_point(logMmin, sigma_logM, logM0, logM1, alpha, mass_function):
    """:func:`occupation_summary` of ONE point, fast: (n_gal, f_sat) as floats.

    The same occupations, summed over the same bins, in fewer array operations (what a sampler
    pays per step): ``<Ncen> = erfc((logMmin - log10 M) / sigma_logM) / 2`` (equal to the
    ``erf`` form, without its cancellation where ``erf`` is near -1), and the satellite sum runs
    over the bins above M0 only (the others hold none), with ``M1**-alpha`` taken out of it.

    Parameters
    ----------
    logMmin, sigma_logM, logM0, logM1, alpha : float
        Zheng07 parameters (masses in log10(Msun/h)).
    mass_function : mapping
        A validated mass function (:func:`validate_mass_function`) whose ``mean_log10_mass`` is
        increasing, with ``mass`` = ``10**mean_log10_mass`` (Msun/h) and ``mass_list``, the same
        as a list, added (:class:`DerivedHOD` does).
    """
    logm, counts, mass = mass_function["mean_log10_mass"], mass_function["counts"], mass_function["mass"]
    x = np.subtract(logMmin, logm)
    x /= sigma_logM
    erfc(x, out=x)
    n_cen = 0.5 * float(x @ counts)
    m0 = 10.0 ** logM0
    start = bisect_right(mass_function["mass_list"], m0)  # first bin with M > M0
    excess = mass[start:] - m0
    excess **= alpha
    n_sat = float(excess @ counts[start:]) * 10.0 ** (-alpha * logM1)
    total = n_cen + n_sat
    return total / float(mass_function["volume"]), (n_sat / total if total > 0 else 0.0)


class DerivedHOD:
    """n_gal and f_sat of validated points of an emulator's inputs, from a weights' mass function.

    Parameters
    ----------
    mass_function : mapping
        Binned host-halo mass function (:data:`MASS_FUNCTION_KEYS`), validated here once; the sums
        skip its empty bins. The one mass function of weights trained on one catalog.
    param_names : sequence of str
        The emulator's inputs, in array order.
    chunk : int
        Points per chunk of a batch (the sums make (points, mass bins) temporaries).
    interpolator : MassFunctionInterpolator, optional
        The host mass function across an N-body suite
        (:class:`~iaemu_likelihood.mass_function_table.MassFunctionInterpolator`): each point's
        mass function is then the table's at the point's (Omega_m, sigma_8, z), and
        ``mass_function`` is not used. Weights with cosmology or redshift inputs need it.
    fixed : mapping, optional
        Values of ``Omega_m``, ``sigma_8`` or ``z`` that are not among the inputs (a suite
        dataset of one redshift), for the interpolated mass function.

    Attributes
    ----------
    available : bool
        Whether n_gal and f_sat can be computed: every Zheng07 input is among the emulator's,
        and a cosmology- or redshift-dependent emulator has an interpolator.
    unavailable_reason : str
        Why not (empty when available).
    """

    def __init__(self, mass_function, param_names, chunk: int = 1024, interpolator=None, fixed=None):
        from .cosmology_inputs import COSMOLOGY_INPUTS

        mf = validate_mass_function(mass_function)
        nonempty = mf["counts"] > 0
        logm = mf["mean_log10_mass"][nonempty]
        mass = 10.0 ** logm
        self.mass_function = dict(mf, counts=mf["counts"][nonempty], mean_log10_mass=logm,
                                  mass=mass, mass_list=mass.tolist())
        names = list(param_names)
        cosmology = [i.name for i in COSMOLOGY_INPUTS]
        self.available, self.unavailable_reason = True, ""
        if not set(HOD_INPUTS) <= set(names):
            self.available = False
            self.unavailable_reason = (f"inputs {names} lack the Zheng07 parameters {list(HOD_INPUTS)}")
        elif interpolator is None and set(cosmology) & set(names):
            self.available = False
            self.unavailable_reason = (f"inputs {[n for n in names if n in cosmology]} make the host mass "
                                       "function cosmology-dependent, and the weights carry no mass-function "
                                       "table (halo_mass_function_table.npz)")
        self._columns = [names.index(n) for n in HOD_INPUTS] if self.available else []
        self._chunk = int(chunk)
        self._interp = interpolator if self.available else None
        if self._interp is not None:
            fixed = dict(fixed or {})
            missing = [n for n in cosmology if n not in names and n not in fixed]
            if missing:
                raise ValueError(f"the mass-function table needs {missing}: neither inputs nor fixed values")
            #: per cosmology input: (column index, None) or (None, fixed value)
            self._cosmology = [(names.index(n), None) if n in names else (None, float(fixed[n]))
                               for n in cosmology]
            self._grid_logm = interpolator.mean_log10_mass
            self._grid_mass = 10.0 ** self._grid_logm
            self._last = (None, None)  # (Omega_m, sigma_8, z) of the last single point, its mass function

    def _cosmology_columns(self, arr) -> list:
        return [arr[:, j] if j is not None else np.full(len(arr), value) for j, value in self._cosmology]

    def _point_mass_function(self, key) -> dict:
        """The interpolated mass function at ``key`` = (Omega_m, sigma_8, z), in the form
        :func:`occupation_point` takes; the last one is kept (a sampler often moves only the HOD)."""
        if self._last[0] != key:
            counts = self._interp.counts([key[0]], [key[1]], [key[2]])[0]
            nonempty = counts > 0
            mass = self._grid_mass[nonempty]
            self._last = (key, {"counts": counts[nonempty], "mean_log10_mass": self._grid_logm[nonempty],
                                "mass": mass, "mass_list": mass.tolist(), "volume": self._interp.volume})
        return self._last[1]

    def point_mass_function(self, row) -> dict:
        """Host mass function of one validated point ``row`` (n_inputs,): the weights' own, or for
        cosmology-dependent weights the table's at the point's Omega_m, sigma_8 and z. Keys
        ``counts`` (halos per bin in the volume), ``mean_log10_mass`` (log10 Msun/h), ``mass``,
        ``mass_list`` and ``volume`` ((h^-1 Mpc)^3); empty bins are left out."""
        if self._interp is None:
            return self.mass_function
        return self._point_mass_function(
            tuple(float(row[j]) if j is not None else value for j, value in self._cosmology))

    def __call__(self, arr, single: bool) -> dict:
        """``{"n_gal", "f_sat"}`` of points ``arr`` (n, n_inputs): floats if ``single``."""
        if single:
            mass_function = self.point_mass_function(arr[0])
            n_gal, f_sat = occupation_point(*(float(arr[0, j]) for j in self._columns), mass_function)
            return {"n_gal": n_gal, "f_sat": f_sat}
        cols = {name: arr[:, j] for name, j in zip(HOD_INPUTS, self._columns)}
        cosmology = self._cosmology_columns(arr) if self._interp is not None else None
        n_gal, f_sat = np.empty(len(arr)), np.empty(len(arr))
        for start in range(0, len(arr), self._chunk):
            part = slice(start, start + self._chunk)
            theta = {k: v[part] for k, v in cols.items()}
            if cosmology is None:
                n_gal[part], f_sat[part] = occupation_summary(theta, self.mass_function, validated=True)
            else:
                counts = self._interp.counts(*(c[part] for c in cosmology))
                n_gal[part], f_sat[part] = _occupation_per_point(theta, self._grid_logm, self._grid_mass,
                                                                 counts, self._interp.volume)
        return {"n_gal": n_gal, "f_sat": f_sat}


def _occupation_per_point(theta, logm, mass, counts, volume):
    """(n_gal, f_sat), each (n,), of n points with a mass function each: ``counts`` (n, n_bins) at
    the bin masses ``logm`` (log10) and ``mass`` (n_bins,) of one grid; ``volume`` (h^-1 Mpc)^3."""
    logMmin, sigma, logM0, logM1, alpha = _hod_columns(theta)
    n_cen = np.einsum("ij,ij->i", mean_ncen(logm, logMmin, sigma), counts)
    n_sat = np.einsum("ij,ij->i", mean_nsat(logm, logM0, logM1, alpha, mass), counts)
    total = n_cen + n_sat
    frac = np.divide(n_sat, total, out=np.zeros_like(total), where=total > 0)
    return total / volume, frac


def _scalar_if_one(value, theta):
    single = isinstance(theta, Mapping) and np.ndim(theta["logMmin"]) == 0
    single = single or (not isinstance(theta, Mapping) and np.ndim(theta) == 1)
    return float(np.squeeze(value)) if single else value


def number_density(theta, mass_function):
    """Mean galaxy number density of an HOD point, in (h^-1 Mpc)^-3.

    Parameters
    ----------
    theta : mapping or array_like
        Parameters by name, or an array (7,) or (n, 7) in ``PARAM_NAMES`` order (the alignment
        parameters are ignored).
    mass_function : mapping
        Binned host-halo mass function with :data:`MASS_FUNCTION_KEYS`.

    Returns
    -------
    float or ndarray, shape (n,)
        ``sum_bins counts * (<Ncen> + <Nsat>) / volume``.
    """
    n_cen, n_sat, volume = _occupation_sums(theta, mass_function)
    return _scalar_if_one((n_cen + n_sat) / volume, theta)


def satellite_fraction(theta, mass_function):
    """Fraction of galaxies that are satellites, ``N_sat / (N_cen + N_sat)`` (0 if no galaxies).

    Parameters and returned shape as :func:`number_density`.
    """
    n_cen, n_sat, _ = _occupation_sums(theta, mass_function)
    total = n_cen + n_sat
    frac = np.divide(n_sat, total, out=np.zeros_like(total), where=total > 0)
    return _scalar_if_one(frac, theta)


def occupation_summary(theta, mass_function, validated: bool = False):
    """Number density and satellite fraction in one pass over the mass function.

    Parameters as :func:`number_density`; ``validated=True`` skips re-checking a mass function
    already returned by :func:`validate_mass_function`.

    Returns
    -------
    (n_gal, f_sat)
        (h^-1 Mpc)^-3 and dimensionless; arrays (n,) (no scalar conversion).
    """
    n_cen, n_sat, volume = _occupation_sums(theta, mass_function, validated)
    total = n_cen + n_sat
    frac = np.divide(n_sat, total, out=np.zeros_like(total), where=total > 0)
    return total / volume, frac


def bin_mass_function(log10_mass, volume, log10_mass_edges) -> dict:
    """Bin a halo catalog's host masses into the mass-function arrays the emulator ships.

    Parameters
    ----------
    log10_mass : array_like
        log10 host-halo masses in Msun/h (one per halo).
    volume : float
        Catalog volume in (h^-1 Mpc)^3.
    log10_mass_edges : array_like
        Increasing bin edges in log10(Msun/h); halos outside are dropped.

    Returns
    -------
    dict
        ``log10_mass_edges``, ``counts`` (int64), ``mean_log10_mass`` (mean log10 mass of the bin's
        halos; the bin centre for empty bins), ``volume``.
    """
    logm = np.asarray(log10_mass, dtype=float).ravel()
    edges = np.asarray(log10_mass_edges, dtype=float)
    counts, _ = np.histogram(logm, bins=edges)
    sums, _ = np.histogram(logm, bins=edges, weights=logm)
    centres = 0.5 * (edges[1:] + edges[:-1])
    mean = np.divide(sums, counts, out=centres.copy(), where=counts > 0)
    return {"log10_mass_edges": edges, "counts": counts.astype(np.int64), "mean_log10_mass": mean,
            "volume": np.float64(volume)}
