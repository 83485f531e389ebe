"""Build the offline halo catalog: CAMB + PySCo particle-mesh run, kdcount FoF, halo properties.

The particle snapshot (gigabytes) stays in a work folder; only the halo catalog (tens of MB,
compressed) is kept, with the simulation settings, seed, code versions and a content hash.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import catalogs, halos, nbody

__all__ = ["build_offline_catalog", "catalog_from_snapshot", "code_versions", "MASS_DEFINITION"]

logger = logging.getLogger(__name__)

#: How the catalogs define a halo's mass and radius (stored in every catalog's provenance).
MASS_DEFINITION = ("FoF (n_particles x particle_mass), comoving linking length b = 0.2 x mean inter-particle "
                   "separation at every redshift; rvir from Bryan & Norman (1998) Delta_vir at the snapshot's z")


def code_versions(packages=("numpy", "camb", "pysco-nbody", "kdcount", "numba", "halotools",
                            "iaemu-likelihood")) -> dict:
    """Installed versions of the codes that made a data product."""
    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def build_offline_catalog(config: nbody.SimulationConfig, workdir: str | os.PathLike,
                          output: str | os.PathLike, min_particles: int = 20,
                          min_particles_trusted: int = 20) -> Path:
    """Run (or reuse) the N-body simulation, find FoF halos and save the catalog.

    Parameters
    ----------
    config : SimulationConfig
        Box, particle number, seed and cosmology.
    workdir : path-like
        Folder for the PySCo run; an existing z = 0 snapshot there is reused.
    output : path-like
        The catalog ``.npz`` to write.
    min_particles : int
        Smallest FoF group stored.
    min_particles_trusted : int
        Smallest group a mock populates by default (stored in the provenance).
    """
    t0 = time.perf_counter()
    snapshot = nbody.run_simulation(config, workdir)
    t_sim = time.perf_counter() - t0
    path = catalog_from_snapshot(snapshot, config, config.snapshot_redshifts[-1], output, min_particles,
                                 min_particles_trusted, timings={"nbody": t_sim})
    logger.info("saved %s (%.0f s)", path, time.perf_counter() - t0)
    return path


def catalog_from_snapshot(snapshot: str | os.PathLike, config: nbody.SimulationConfig, redshift: float,
                          output: str | os.PathLike, min_particles: int = 20,
                          min_particles_trusted: int = 20, timings: dict | None = None,
                          extra_provenance: dict | None = None) -> Path:
    """FoF halos and their properties from one particle snapshot, saved with provenance.

    Parameters
    ----------
    snapshot : path-like
        PySCo HDF5 snapshot of the run described by ``config``.
    config : SimulationConfig
        The run (box, particles, seed, cosmology), recorded in the provenance.
    redshift : float
        Redshift of ``snapshot`` (virial radii use Delta_vir(z); lengths stay comoving).
    output : path-like
        The catalog ``.npz`` to write (atomically).
    min_particles, min_particles_trusted : int
        Smallest FoF group stored; smallest a mock populates by default.
    timings : dict, optional
        Wall-clock seconds of earlier steps, stored beside the FoF time.
    extra_provenance : dict, optional
        More JSON-serialisable provenance (e.g. the suite box it belongs to).
    """
    t1 = time.perf_counter()
    positions, velocities = nbody.read_snapshot(snapshot, config.box_size)
    member_index, offsets = halos.find_fof_groups(positions, config.box_size, min_particles)
    t_fof = time.perf_counter() - t1
    mp = nbody.particle_mass(config)
    props = halos.halo_properties(positions, velocities, member_index, offsets, config.box_size, mp,
                                  config.cosmology.omega_m, redshift=redshift)
    provenance = {
        "simulation": config.to_dict(), "box_size": config.box_size, "particle_mass": mp,
        "redshift": float(redshift), "seed": config.seed, "cosmology": dataclasses.asdict(config.cosmology),
        "halo_finder": f"kdcount FoF, b={halos.FOF_LINKING}", "mass_definition": MASS_DEFINITION,
        "shape": "second-moment tensor of members within rvir of the (one-step shrunk) centre",
        "min_particles": min_particles, "min_particles_trusted": min_particles_trusted,
        "code_versions": code_versions(), "timings_s": {**(timings or {}), "fof": t_fof},
        **(extra_provenance or {}),
    }
    path = catalogs.save_halo_catalog(output, props, provenance)
    logger.info("z = %g: saved %d halos to %s", redshift, props["mass"].size, path)
    return path
