"""Particle-mesh N-body simulation of a periodic box with CAMB + PySCo.

This module only drives existing, published codes: CAMB (Lewis, Challinor &
Lasenby 2000) computes the linear matter power spectrum and PySCo (Breton 2024)
evolves 2LPT initial conditions to z = 0 with a particle-mesh solver. Nothing
here is a home-made gravity solver.

All lengths are comoving h^-1 Mpc, masses are Msun/h.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes

__all__ = ["Cosmology", "SimulationConfig", "BOLSHOI_PLANCK", "linear_power_spectrum",
           "run_simulation", "read_snapshot", "particle_mass", "snapshot_path", "snapshot_paths"]

logger = logging.getLogger(__name__)

#: Critical density today in (Msun/h) / (h^-1 Mpc)^3.
RHO_CRIT_H2 = 2.77536627e11


@dataclasses.dataclass(frozen=True)
class Cosmology:
    """Flat LCDM cosmology.

    Parameters
    ----------
    h : float
        Dimensionless Hubble constant, H0 / (100 km/s/Mpc).
    omega_m, omega_b : float
        Total matter and baryon density parameters today.
    n_s : float
        Scalar spectral index.
    sigma8 : float
        Linear rms fluctuation in 8 h^-1 Mpc spheres at z = 0.
    """

    h: float
    omega_m: float
    omega_b: float
    n_s: float
    sigma8: float
    t_cmb: float = 2.7255
    n_eff: float = 3.046


#: Bolshoi-Planck cosmology (Klypin et al. 2016), the cosmology of halotools' ``bolplanck`` catalog.
BOLSHOI_PLANCK = Cosmology(h=0.678, omega_m=0.307, omega_b=0.048, n_s=0.96, sigma8=0.823)


#: PySCo time stepping of every run unless set otherwise (``Courant_factor``, ``max_aexp_stepping``).
DEFAULT_STEPPING = {"courant_factor": 0.8, "max_aexp_step_percent": 5.0}


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """Settings of one particle-mesh run.

    Parameters
    ----------
    box_size : float
        Side of the periodic box, comoving h^-1 Mpc.
    n_particles_1d : int
        Particles per dimension (a power of two); the PM grid has the same size.
    seed : int
        Seed of the initial Gaussian random field.
    z_start : float
        Starting redshift of the 2LPT initial conditions.
    cosmology : Cosmology
        Background cosmology and linear power spectrum normalisation.
    n_threads : int
        Threads used by PySCo (numba). PySCo's mass assignment adds with atomics, so only
        ``n_threads = 1`` gives bit-identical particles from run to run.
    snapshot_redshifts : tuple of float
        Redshifts of the particle snapshots PySCo writes (one run; ``output_00001`` holds the
        highest redshift, the last ``output_*`` folder the lowest).
    courant_factor : float
        PySCo's ``Courant_factor``: time steps are this fraction of the dynamical and Courant limits.
    max_aexp_step_percent : float
        PySCo's ``max_aexp_stepping``: a time step grows the scale factor by at most this many per cent.
        With the defaults (0.8, 5) a 256^3, 125 h^-1 Mpc run takes ~150 steps; larger values give a
        cheaper run with the same initial conditions (the painter's "cheap simulation" check).
    """

    box_size: float = 250.0
    n_particles_1d: int = 512
    seed: int = 20070101
    z_start: float = 49.0
    cosmology: Cosmology = BOLSHOI_PLANCK
    n_threads: int = 2
    snapshot_redshifts: tuple = (0.0,)
    courant_factor: float = DEFAULT_STEPPING["courant_factor"]
    max_aexp_step_percent: float = DEFAULT_STEPPING["max_aexp_step_percent"]

    def __post_init__(self):
        from ..config_checks import check_float

        for name in DEFAULT_STEPPING:
            check_float(getattr(self, name), name, minimum=0.0, min_inclusive=False, maximum=1e3)
        n = self.n_particles_1d
        if n < 16 or n & (n - 1):
            raise ValueError(f"n_particles_1d={n} must be a power of two >= 16")
        if not self.box_size > 0:
            raise ValueError(f"box_size={self.box_size} must be positive (h^-1 Mpc)")
        z = tuple(float(v) for v in self.snapshot_redshifts)
        if not z or len(set(z)) != len(z) or not all(0.0 <= v < self.z_start for v in z):
            raise ValueError(f"snapshot_redshifts={self.snapshot_redshifts} must be distinct redshifts "
                             f">= 0 and below z_start = {self.z_start}")
        object.__setattr__(self, "snapshot_redshifts", tuple(sorted(z, reverse=True)))

    def to_dict(self) -> dict:
        """Plain-dict form, for provenance records.

        The time-stepping settings appear only where they differ from :data:`DEFAULT_STEPPING`, so
        the records (and suite bindings) of runs made before they were settings stay valid.
        """
        record = dataclasses.asdict(self)
        for name, default in DEFAULT_STEPPING.items():
            if record[name] == default:
                del record[name]
        return record


def particle_mass(config: SimulationConfig) -> float:
    """Mass of one simulation particle in Msun/h."""
    volume = config.box_size ** 3
    return config.cosmology.omega_m * RHO_CRIT_H2 * volume / config.n_particles_1d ** 3


def linear_power_spectrum(cosmology: Cosmology, kmin: float = 1e-4, kmax: float = 50.0,
                          n_k: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Linear matter power spectrum at z = 0 from CAMB, normalised to ``sigma8``.

    Returns
    -------
    k : ndarray, shape (n_k,)
        Wavenumbers in h Mpc^-1.
    pk : ndarray, shape (n_k,)
        P(k) in (h^-1 Mpc)^3.
    """
    import camb

    pars = camb.CAMBparams()
    h = cosmology.h
    pars.set_cosmology(H0=100 * h, ombh2=cosmology.omega_b * h ** 2,
                       omch2=(cosmology.omega_m - cosmology.omega_b) * h ** 2,
                       mnu=0.0, omk=0.0, TCMB=cosmology.t_cmb)
    pars.InitPower.set_params(As=2.1e-9, ns=cosmology.n_s)
    pars.set_matter_power(redshifts=[0.0], kmax=kmax * 1.2)
    pars.NonLinear = camb.model.NonLinear_none
    results = camb.get_results(pars)
    sigma8 = float(results.get_sigma8_0())
    k, _, pk = results.get_matter_power_spectrum(minkh=kmin, maxkh=kmax, npoints=n_k)
    pk = pk[0] * (cosmology.sigma8 / sigma8) ** 2
    return np.asarray(k), np.asarray(pk)


def _pysco_parameters(config: SimulationConfig, workdir: Path, pk_file: Path) -> dict:
    n = config.n_particles_1d
    c = config.cosmology
    return {
        "nthreads": config.n_threads, "theory": "newton",
        "H0": 100.0 * c.h, "Om_m": c.omega_m, "T_cmb": c.t_cmb, "N_eff": c.n_eff,
        "w0": -1.0, "wa": 0.0, "evolution_table": "no", "mpgrafic_table": "no",
        "boxlen": float(config.box_size), "ncoarse": int(np.log2(n)), "npart": n ** 3,
        "z_start": float(config.z_start), "seed": int(config.seed),
        "fixed_ICS": False, "paired_ICS": False, "dealiased_ICS": False, "position_ICS": "center",
        "power_spectrum_file": str(pk_file), "initial_conditions": "2LPT",
        "base": str(workdir), "z_out": repr(list(config.snapshot_redshifts)), "output_snapshot_format": "HDF5",
        "save_power_spectrum": "z_out", "integrator": "leapfrog", "mass_scheme": "TSC",
        "n_reorder": 25, "Courant_factor": float(config.courant_factor),
        "max_aexp_stepping": float(config.max_aexp_step_percent),
        "linear_newton_solver": "fft", "gradient_stencil_order": 5,
        "Npre": 2, "Npost": 1, "epsrel": 1e-2, "verbose": 1,
    }


def snapshot_paths(workdir: str | os.PathLike, redshifts=(0.0,), wanted=None) -> dict:
    """Where :func:`run_simulation` leaves the snapshot of each of ``redshifts``.

    PySCo numbers its outputs in time order from ``output_00001`` (``output_00000`` holds the
    initial conditions), so the snapshot of the ``j``-th highest of ``redshifts`` (the run's
    ``snapshot_redshifts``) is in ``output_{j + 1:05d}``.

    Parameters
    ----------
    workdir : path-like
        The run's folder.
    redshifts : iterable of float
        Every snapshot redshift of the run.
    wanted : iterable of float, optional
        Only these of ``redshifts`` (default all).

    Returns
    -------
    dict
        redshift (float) -> Path of its ``particles_*.h5``.

    Raises
    ------
    FileNotFoundError
        Naming the first snapshot that is missing.
    """
    out = {}
    wanted = None if wanted is None else {float(v) for v in wanted}
    for j, z in enumerate(sorted((float(v) for v in redshifts), reverse=True)):
        if wanted is not None and z not in wanted:
            continue
        folder = Path(workdir) / f"output_{j + 1:05d}"
        matches = sorted(folder.glob("particles_*.h5"))
        if not matches:
            raise FileNotFoundError(f"no z={z:g} snapshot under {folder}/")
        out[z] = matches[0]
    return out


def snapshot_path(workdir: Path) -> Path:
    """Where :func:`run_simulation` leaves the z = 0 particle snapshot of a z = 0-only run."""
    return snapshot_paths(workdir, (0.0,))[0.0]


def run_simulation(config: SimulationConfig, workdir: str | os.PathLike) -> Path:
    """Run CAMB + PySCo to z = 0 and return the path of the lowest-redshift particle snapshot.

    The snapshots are kept if they already exist, so a rerun after a crash in a later
    step (halo finding) does not repeat the N-body run; every one of
    ``config.snapshot_redshifts`` is in :func:`snapshot_paths` afterwards.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    lowest = config.snapshot_redshifts[-1]
    try:
        return snapshot_paths(workdir, config.snapshot_redshifts)[lowest]
    except FileNotFoundError:
        pass
    k, pk = linear_power_spectrum(config.cosmology)
    pk_file = workdir / "linear_pk_z0.txt"
    np.savetxt(pk_file, np.column_stack([k, pk]), header="k [h/Mpc]  P(k) [(Mpc/h)^3], z=0 linear, CAMB")
    atomic_write_bytes(workdir / "simulation_config.json", json.dumps(config.to_dict(), indent=2).encode())
    import pysco

    logger.info("running PySCo: %d^3 particles in a %.1f h^-1 Mpc box", config.n_particles_1d,
                config.box_size)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        pysco.run(_pysco_parameters(config, workdir, pk_file))
    finally:  # pysco.run replaces the root logger's handlers (logging.basicConfig(force=True))
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
    return snapshot_paths(workdir, config.snapshot_redshifts)[lowest]


def read_snapshot(path: str | os.PathLike, box_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Read a PySCo HDF5 snapshot.

    Returns
    -------
    positions : ndarray, shape (n, 3)
        Comoving positions in h^-1 Mpc, wrapped into [0, box_size).
    velocities : ndarray, shape (n, 3)
        Peculiar velocities in km/s.
    """
    import h5py

    with h5py.File(path, "r") as f:
        pos = f["position"][:].astype(np.float64)
        vel = f["velocity"][:].astype(np.float64)
        unit_l = float(f.attrs["unit_l"])
        unit_t = float(f.attrs["unit_t"])
    pos = np.mod(pos * box_size, box_size)
    # PySCo velocities are supercomoving; unit_l / unit_t converts them to km/s.
    vel *= unit_l / unit_t
    return pos, vel
