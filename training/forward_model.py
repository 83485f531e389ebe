"""The forward model: halotools HOD + intrinsic-alignment mocks and their IA statistics.

Centrals: ``Zheng07Cens`` occupation, placed at the host centre (``TrivialPhaseSpace``),
major axis drawn around the host's major axis by ``CentralAlignment(mu_cen)``.
Satellites: ``Zheng07Sats`` occupation (halotools default, not modulated by the central
occupation), positions drawn from an NFW profile inside ``halo_rvir`` (``NFWPhaseSpace``,
Dutton & Maccio 2014 concentrations since FoF catalogs carry none), major axis drawn around the
host-centre direction by ``RadialSatelliteAlignment(mu_sat)``.

One realization is fully determined by its seed. halotools' ``populate_mock(seed=...)`` seeds the
occupation and profile draws, but its alignment components call their random-vector helpers
without a seed, and astropy's ``NumpyRNGContext(None)`` then reseeds numpy from OS entropy, so
alignments would differ on every run. :func:`seeded_alignment_draws` therefore hands those
helpers explicit seeds, drawn from a generator seeded by the realization seed, for the duration
of one population.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import warnings

import numpy as np

from ..conventions import PARAM_NAMES, R_EDGES

__all__ = ["MockSimulator", "simulate_statistics", "seeded_alignment_draws", "HOD_KEYS"]

logger = logging.getLogger(__name__)

#: emulator parameter -> halotools param_dict key
HOD_KEYS = {
    "mu_cen": "central_alignment_strength",
    "mu_sat": "satellite_alignment_strength",
    "logMmin": "logMmin",
    "sigma_logM": "sigma_logM",
    "logM0": "logM0",
    "logM1": "logM1",
    "alpha": "alpha",
}


#: random helpers that halotools' alignment components call without a seed
_UNSEEDED_HELPERS = ("axes_correlated_with_input_vector", "random_perpendicular_directions",
                     "random_unit_vectors_3d")


@contextlib.contextmanager
def seeded_alignment_draws(seed: int):
    """Within the block, halotools' alignment draws are reproducible functions of ``seed``.

    Each call of a helper listed in ``_UNSEEDED_HELPERS`` made by
    ``halotools.empirical_models.ia_models.ia_model_components`` receives the next seed of a
    ``numpy.random.Generator`` seeded with ``seed``; the originals are restored on exit.
    """
    from astropy.utils.misc import NumpyRNGContext
    from halotools.empirical_models.ia_models import ia_model_components as ia

    rng = np.random.default_rng(int(seed))
    originals = {name: getattr(ia, name) for name in _UNSEEDED_HELPERS}

    def seeded(func):
        takes_seed = "seed" in inspect.signature(func).parameters

        def wrapper(*args, **kwargs):
            seed_i = int(rng.integers(2 ** 32))
            if takes_seed:
                return func(*args, **{**kwargs, "seed": seed_i})
            with NumpyRNGContext(seed_i):
                return func(*args, **kwargs)
        return wrapper

    try:
        for name, func in originals.items():
            setattr(ia, name, seeded(func))
        yield
    finally:
        for name, func in originals.items():
            setattr(ia, name, func)


def satellite_alignment(satellite_alignment_strength: float = 0.0):
    """halotools' ``RadialSatelliteAlignment`` that does nothing on an empty galaxy table.

    A small suite box at a high M1 can hold no satellite in a mock; halotools' satellite
    alignment then fails normalising an empty array of vectors. With no satellite there is nothing
    to orient (the table's orientation columns are allocated, empty); every non-empty table gets
    exactly halotools' draws. (A subclass, not a patched method: the model factory copies its
    components.)
    """
    from halotools.empirical_models import RadialSatelliteAlignment

    class SatelliteAlignment(RadialSatelliteAlignment):
        def assign_satellite_orientation(self, **kwargs):
            table = kwargs.get("table")
            if table is not None and len(table) == 0:
                return table
            return super().assign_satellite_orientation(**kwargs)

    return SatelliteAlignment(satellite_alignment_strength=satellite_alignment_strength)


def _as_theta(theta) -> dict:
    if isinstance(theta, dict):
        missing = [n for n in PARAM_NAMES if n not in theta]
        if missing:
            raise ValueError(f"theta lacks parameters {missing}; needs {PARAM_NAMES}")
        return {n: float(theta[n]) for n in PARAM_NAMES}
    arr = np.asarray(theta, dtype=float)
    if arr.shape != (len(PARAM_NAMES),):
        raise ValueError(f"theta must be a mapping or shape ({len(PARAM_NAMES)},), got shape {arr.shape}")
    return dict(zip(PARAM_NAMES, arr.tolist()))


class MockSimulator:
    """Populates one halo catalog again and again and measures xi, omega, eta.

    Parameters
    ----------
    catalog : HaloCatalogSource
        The halo catalog (see :mod:`.catalogs`).
    rbins : array_like
        Separation bin edges, comoving h^-1 Mpc.
    num_threads : int
        Threads for the pair counting.
    """

    def __init__(self, catalog, rbins=R_EDGES, num_threads: int = 1):
        from halotools.empirical_models import (CentralAlignment, HodModelFactory, NFWPhaseSpace,
                                                TrivialPhaseSpace, Zheng07Cens, Zheng07Sats)

        self.catalog = catalog
        self.halocat = catalog.to_halotools()
        self.rbins = np.asarray(rbins, dtype=float)
        self.num_threads = num_threads
        # every component at the catalog's redshift (halotools refuses a model whose redshift
        # differs from the catalog's); the NFW concentrations (Dutton & Maccio 2014) depend on it,
        # and the profile takes the simulation's cosmology when the catalog records one
        at_z = {"redshift": float(getattr(self.halocat, "redshift", catalog.redshift))}
        cosmology = catalog.astropy_cosmology()
        profile = {"cosmology": cosmology} if cosmology is not None else {}
        self.model = HodModelFactory(
            centrals_occupation=Zheng07Cens(**at_z),
            centrals_profile=TrivialPhaseSpace(**at_z, **profile),
            satellites_occupation=Zheng07Sats(**at_z),
            satellites_profile=NFWPhaseSpace(conc_mass_model="dutton_maccio14", mdef="vir", **at_z, **profile),
            centrals_orientation=CentralAlignment(central_alignment_strength=0.0),
            satellites_orientation=satellite_alignment(satellite_alignment_strength=0.0),
            model_feature_calling_sequence=("centrals_occupation", "centrals_profile",
                                            "satellites_occupation", "satellites_profile",
                                            "centrals_orientation", "satellites_orientation"),
        )
        self._populated = False

    def set_parameters(self, theta) -> dict:
        """Set the 7 emulator parameters on the halotools model; returns them as a dict."""
        values = _as_theta(theta)
        for name, key in HOD_KEYS.items():
            self.model.param_dict[key] = values[name]
        return values

    def populate(self, theta, seed: int):
        """One mock realization: the halotools galaxy table."""
        self.set_parameters(theta)
        with warnings.catch_warnings(), seeded_alignment_draws(seed):
            # halotools warns at every populate that the alignment strengths are read from param_dict
            # (which is where set_parameters puts them); every other warning is still shown
            warnings.filterwarnings("ignore", category=UserWarning, module=r"halotools\.empirical_models\.ia_models")
            if not self._populated:
                self.model.populate_mock(self.halocat, seed=int(seed),
                                         Num_ptcl_requirement=self.catalog.min_particles)
                self._populated = True
            else:
                self.model.mock.populate(seed=int(seed))
        return self.model.mock.galaxy_table

    def realization(self, theta, seed: int) -> dict:
        """xi, omega, eta (each (n_bins,)) and galaxy counts of one realization."""
        from .correlations import ia_correlations_from_mock

        table = self.populate(theta, seed)
        stats = ia_correlations_from_mock(table, self.rbins, self.catalog.box_size,
                                          num_threads=self.num_threads)
        n_cen = int(np.count_nonzero(table["gal_type"] == "centrals"))
        return {**stats, "n_gal": len(table), "n_cen": n_cen, "n_sat": len(table) - n_cen}


def simulate_statistics(theta, catalog, seed: int, rbins=R_EDGES) -> dict:
    """One-off convenience: build a :class:`MockSimulator` and measure one realization."""
    return MockSimulator(catalog, rbins).realization(theta, seed)
