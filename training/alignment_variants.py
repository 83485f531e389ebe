"""Alignment models the emulator was NOT trained on, for out-of-model tests (issue 13, part 6).

The emulator learns one halotools model: ``CentralAlignment(mu_cen)`` (central major axis drawn
around the host halo's major axis) and ``RadialSatelliteAlignment(mu_sat)`` (satellite major axis
drawn around the direction to the host centre), see :mod:`.forward_model`. The variants here keep
the same HOD (``Zheng07Cens``/``Zheng07Sats``, the same phase-space models) and change only how
the galaxy orientations are drawn:

========================== ====================================================================
``in_model``               the training model itself (the control)
``major_axis_satellites``  satellites aligned with their host halo's **major axis** (halotools
                           ``SatelliteAlignment``; named ``MajorAxisSatelliteAlignment`` in later
                           halotools releases) at strength ``mu_sat``; centrals as in training
``mass_dependent_centrals`` central strength depending on host mass,
                           ``mu(M) = clip(mu_pivot + slope (log10 M - logM_pivot), -0.99, 0.99)``
                           (:class:`MassDependentCentralAlignmentStrength`, read by halotools'
                           ``CentralAlignment`` from the galaxy table); the emulator's ``mu_cen`` is
                           then unused; satellites as in training
========================== ====================================================================

Every variant needs only columns the FoF halo catalog provides (``halo_axisA_x/y/z`` from the
second-moment tensor of the members within ``rvir``, ``halo_mvir``, ``halo_rvir``, positions). The
orientation draws go through the same halotools helpers as in training, so
:func:`.forward_model.seeded_alignment_draws` makes each realization a pure function of its seed,
and the same seed gives the same galaxy positions in every variant.

Masses are log10(M / (Msun/h)) of the FoF host mass (``halo_mvir``).
"""
from __future__ import annotations

import logging

import numpy as np

from ..config_checks import check_float, check_str
from ..conventions import R_EDGES
from .forward_model import MockSimulator

__all__ = ["VARIANTS", "VARIANT_DEFAULTS", "MassDependentCentralAlignmentStrength",
           "build_variant_model", "check_variant", "VariantMockSimulator", "MU_CLIP",
           "effective_central_strength"]

logger = logging.getLogger(__name__)

#: The alignment models, in the order they are reported.
VARIANTS = ("in_model", "major_axis_satellites", "mass_dependent_centrals")
#: Largest |mu| a mass-dependent strength reaches (halotools' own strength models clip at 0.99).
MU_CLIP = 0.99
#: Parameters of each variant beyond the emulator's seven, with their defaults.
VARIANT_DEFAULTS = {
    "in_model": {},
    "major_axis_satellites": {},
    "mass_dependent_centrals": {"central_alignment_pivot_strength": 0.8,
                                "central_alignment_mass_slope": 0.5,
                                "central_alignment_pivot_logM": 13.0},
}
#: Allowed range of each variant parameter (inclusive).
_RANGES = {"central_alignment_pivot_strength": (-1.0, 1.0),
           "central_alignment_mass_slope": (-10.0, 10.0),
           "central_alignment_pivot_logM": (10.0, 16.0)}


def check_variant(name, params=None) -> tuple[str, dict]:
    """Validate a variant name and its parameters; returns them with defaults filled in.

    Parameters
    ----------
    name : str
        One of :data:`VARIANTS`.
    params : mapping, optional
        Values overriding :data:`VARIANT_DEFAULTS` of that variant.

    Raises
    ------
    ConfigError
        Unknown variant, a parameter the variant does not have, or a value that is not a finite
        number in its range (one line naming it).
    """
    from ..config_checks import check_keys

    name = check_str(name, "alignment variant", choices=VARIANTS)
    defaults = VARIANT_DEFAULTS[name]
    params = dict(params or {})
    check_keys(params, tuple(defaults), f"alignment variant {name!r} parameters")
    out = {}
    for key, default in defaults.items():
        lo, hi = _RANGES[key]
        out[key] = check_float(params.get(key, default), f"{name}: {key}", minimum=lo, maximum=hi)
    return name, out


class MassDependentCentralAlignmentStrength:
    """halotools model component: a per-central alignment strength set by the host mass.

    ``mu(M) = clip(mu_pivot + slope * (log10 M - logM_pivot), -MU_CLIP, MU_CLIP)`` is written to
    the galaxy table column ``central_alignment_strength``, which halotools' ``CentralAlignment``
    reads instead of its single ``central_alignment_strength`` parameter. Place this component
    before the centrals' orientation in the model's calling sequence.

    Parameters
    ----------
    central_alignment_pivot_strength : float
        ``mu_pivot``, strength at the pivot mass, in [-1, 1].
    central_alignment_mass_slope : float
        ``slope``, change of ``mu`` per dex of host mass, in [-10, 10].
    central_alignment_pivot_logM : float
        ``logM_pivot``, log10(M / (Msun/h)), in [10, 16].

    Raises
    ------
    ConfigError
        A parameter that is not a finite number in its range (also when the model's
        ``param_dict`` is changed before a population).
    """

    def __init__(self, central_alignment_pivot_strength=0.8, central_alignment_mass_slope=0.5,
                 central_alignment_pivot_logM=13.0):
        self.gal_type = "centrals"
        self._mock_generation_calling_sequence = ["assign_central_alignment_strength"]
        self._galprop_dtypes_to_allocate = np.dtype([("central_alignment_strength", "f4")])
        self.list_of_haloprops_needed = ["halo_mvir"]
        self._methods_to_inherit = ["assign_central_alignment_strength"]
        self.param_dict = check_variant("mass_dependent_centrals", {
            "central_alignment_pivot_strength": central_alignment_pivot_strength,
            "central_alignment_mass_slope": central_alignment_mass_slope,
            "central_alignment_pivot_logM": central_alignment_pivot_logM})[1]

    def strength(self, halo_mvir) -> np.ndarray:
        """``mu`` of centrals in hosts of mass ``halo_mvir`` (Msun/h), shape of the input.

        Raises
        ------
        ConfigError
            Bad parameters in ``param_dict``, or masses that are not finite and positive.
        """
        p = check_variant("mass_dependent_centrals", self.param_dict)[1]
        mass = np.asarray(halo_mvir, dtype=np.float64)
        if mass.size and not (np.all(np.isfinite(mass)) and np.all(mass > 0)):
            bad = float(mass[~(np.isfinite(mass) & (mass > 0))].ravel()[0])
            from ..errors import ConfigError

            raise ConfigError(f"halo_mvir = {bad!r}: host masses must be finite and > 0 (Msun/h)")
        mu = (p["central_alignment_pivot_strength"]
              + p["central_alignment_mass_slope"] * (np.log10(mass) - p["central_alignment_pivot_logM"]))
        return np.clip(mu, -MU_CLIP, MU_CLIP)

    def assign_central_alignment_strength(self, **kwargs):
        """Fill ``central_alignment_strength`` of the centrals in ``table`` (0 for others).

        Called by halotools during ``populate_mock`` with ``table=`` the galaxy table; without a
        table, returns :meth:`strength` of ``halo_mvir=``.
        """
        table = kwargs.get("table")
        if table is None:
            return self.strength(kwargs["halo_mvir"])
        mask = np.asarray(table["gal_type"] == self.gal_type)
        values = np.zeros(len(table), dtype=np.float32)
        values[mask] = self.strength(np.asarray(table["halo_mvir"])[mask])
        # in place: halotools hands each method a slice of the mock's galaxy table, so a
        # replaced column would never reach the mock (nor CentralAlignment, which reads it)
        table["central_alignment_strength"][:] = values
        return table


def build_variant_model(name: str, params=None):
    """The halotools ``HodModelFactory`` of one alignment variant (see the module docstring).

    The HOD and phase-space components are those of :class:`.forward_model.MockSimulator`; the
    alignment strengths ``mu_cen``/``mu_sat`` are set per population from the emulator
    parameters (``central_alignment_strength``, ``satellite_alignment_strength``).

    Raises
    ------
    ConfigError
        Unknown variant or bad parameters (:func:`check_variant`).
    """
    from halotools.empirical_models import (CentralAlignment, HodModelFactory, NFWPhaseSpace,
                                            RadialSatelliteAlignment, SatelliteAlignment,
                                            TrivialPhaseSpace, Zheng07Cens, Zheng07Sats)

    name, params = check_variant(name, params)
    components = {
        "centrals_occupation": Zheng07Cens(),
        "centrals_profile": TrivialPhaseSpace(),
        "satellites_occupation": Zheng07Sats(),
        "satellites_profile": NFWPhaseSpace(conc_mass_model="dutton_maccio14", mdef="vir"),
    }
    sequence = ["centrals_occupation", "centrals_profile", "satellites_occupation",
                "satellites_profile"]
    if name == "mass_dependent_centrals":
        components["centrals_alignment_strength"] = MassDependentCentralAlignmentStrength(**params)
        sequence.append("centrals_alignment_strength")
    components["centrals_orientation"] = CentralAlignment(central_alignment_strength=0.0)
    if name == "major_axis_satellites":
        components["satellites_orientation"] = SatelliteAlignment(satellite_alignment_strength=0.0)
    else:
        components["satellites_orientation"] = RadialSatelliteAlignment(satellite_alignment_strength=0.0)
    sequence += ["centrals_orientation", "satellites_orientation"]
    return HodModelFactory(**components, model_feature_calling_sequence=tuple(sequence))


class VariantMockSimulator(MockSimulator):
    """:class:`.forward_model.MockSimulator` with the galaxy orientations of one variant.

    Parameters
    ----------
    catalog : HaloCatalogSource
        The halo catalog (needs ``halo_axisA_x/y/z``, ``halo_mvir``, ``halo_rvir``).
    variant : str
        One of :data:`VARIANTS`.
    params : mapping, optional
        Variant parameters (:data:`VARIANT_DEFAULTS`).
    rbins : array_like
        Separation bin edges, comoving h^-1 Mpc.
    num_threads : int
        Threads for the pair counting.

    Notes
    -----
    ``realization(theta, seed)`` works as in the parent class; ``theta`` holds the emulator's
    seven parameters (``mu_cen`` is not used by ``mass_dependent_centrals``).
    """

    def __init__(self, catalog, variant: str, params=None, rbins=R_EDGES, num_threads: int = 1):
        self.variant, self.variant_params = check_variant(variant, params)
        super().__init__(catalog, rbins=rbins, num_threads=num_threads)
        self.model = build_variant_model(self.variant, self.variant_params)
        self._populated = False

    def describe(self) -> dict:
        """``{"variant": name, "params": {...}}``, JSON-ready (binds part files and data)."""
        return {"variant": self.variant, "params": dict(self.variant_params)}


def effective_central_strength(params, logMmin: float, sigma_logM: float, host_log10_mass) -> dict:
    """What one constant ``mu_cen`` a mass-dependent central strength corresponds to.

    Averages over the centrals of a halo catalog, weighted by the mean central occupation
    <Ncen>(M) of the HOD: the mean strength, and the strength whose ``c(mu) = <P2>`` (the factor
    that sets omega and eta, :func:`iaemu_likelihood.alignment.alignment_p2`) equals the mean of
    ``c(mu(M))``.

    Parameters
    ----------
    params : mapping
        ``mass_dependent_centrals`` parameters (:data:`VARIANT_DEFAULTS`).
    logMmin, sigma_logM : float
        Zheng07 central occupation, log10(Msun/h) and dex.
    host_log10_mass : array_like
        log10 host masses (Msun/h) of the halos a mock populates.

    Returns
    -------
    dict
        ``{"mean_mu": float, "mu_of_mean_c": float, "mean_c": float}``.
    """
    from scipy.optimize import brentq

    from ..alignment import alignment_p2
    from ..hod import mean_ncen

    logm = np.asarray(host_log10_mass, dtype=np.float64)
    mu = MassDependentCentralAlignmentStrength(**check_variant("mass_dependent_centrals", params)[1]
                                               ).strength(10.0 ** logm)
    weight = mean_ncen(logm, logMmin, sigma_logM)
    mean_c = float(np.sum(weight * alignment_p2(mu)) / np.sum(weight))
    mu_eff = brentq(lambda m: float(alignment_p2(m)) - mean_c, -1.0, 1.0, xtol=1e-10)
    return {"mean_mu": float(np.sum(weight * mu) / np.sum(weight)), "mu_of_mean_c": float(mu_eff),
            "mean_c": mean_c}
