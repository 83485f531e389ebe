"""The configuration of an ``iaemu build-suite`` run: a list of N-body boxes, read from YAML and checked.

Keys (see ``training/configs/suite_v2.yaml``):

========================= ==================================================================
``name``                  label of the suite (string)
``output``                folder of the boxes (relative to the config file)
``box_size``              periodic box side, comoving h^-1 Mpc (> 0)
``n_particles_1d``        particles per dimension, a power of two >= 16 (PM grid the same)
``z_start``               starting redshift of the 2LPT initial conditions (> every snapshot)
``seed``                  phase seed of the initial conditions, shared by every box that does
                          not set its own
``snapshots``             redshifts of the particle snapshots (one PySCo run), distinct, >= 0
``keep_snapshots``        redshifts whose particle snapshots stay on disk once their catalogs
                          exist (default ``[]``; a subset of ``snapshots``)
``n_threads``             PySCo threads per box (default 1; only 1 is bit-reproducible)
``min_particles``         smallest FoF group stored (default 20)
``min_particles_trusted`` smallest group a mock populates by default (default 20)
``fixed``                 ``h``, ``omega_b``, ``n_s`` shared by every box (flat LCDM)
``design``                optional record of how the box list was drawn (``seed``, ``n_train``,
                          ``omega_m`` and ``sigma8`` ranges, ...): documentation only
``boxes``                 list of boxes: ``name`` (letters, digits, ``_``, ``-``), ``omega_m``,
                          ``sigma8``, ``role`` (``train`` or ``test``), optional ``seed``
========================= ==================================================================

Every key is checked when the file is read; a typo, a wrong type or an out-of-range value raises
:class:`~iaemu_likelihood.errors.ConfigError` with one line naming the file, the key, the value
and what is allowed.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from ..config_checks import (check_float, check_float_array, check_int, check_keys, check_mapping, check_str,
                             load_yaml_mapping)
from ..errors import ConfigError

__all__ = ["SuiteConfig", "BoxSpec", "load_suite_config", "latin_hypercube_cosmologies", "SUITE_KEYS",
           "BOX_KEYS", "ROLES"]

#: Every key a suite config may hold.
SUITE_KEYS = ("name", "output", "box_size", "n_particles_1d", "z_start", "seed", "snapshots", "keep_snapshots",
              "n_threads", "min_particles", "min_particles_trusted", "fixed", "design", "boxes")
#: Keys of one entry of ``boxes``.
BOX_KEYS = ("name", "omega_m", "sigma8", "role", "seed")
#: Keys of ``fixed``: the cosmological parameters every box shares.
FIXED_KEYS = ("h", "omega_b", "n_s")
#: What a box is for.
ROLES = ("train", "test")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class BoxSpec:
    """One box of the suite.

    Parameters
    ----------
    name : str
        Folder name of the box.
    omega_m, sigma8 : float
        Matter density today and linear sigma_8 at z = 0 (flat LCDM).
    role : str
        ``"train"`` or ``"test"`` (held out).
    seed : int
        Phase seed of its initial conditions.
    """

    name: str
    omega_m: float
    sigma8: float
    role: str
    seed: int


def latin_hypercube_cosmologies(n: int, seed: int, omega_m_range, sigma8_range, inner: float = 0.0) -> np.ndarray:
    """``n`` (Omega_m, sigma_8) pairs of a seeded Latin hypercube over the ranges.

    Parameters
    ----------
    n : int
        Number of cosmologies.
    seed : int
        Seed of the hypercube (:func:`.design.latin_hypercube`).
    omega_m_range, sigma8_range : (float, float)
        Lower and upper bounds.
    inner : float
        Fraction of each range cut off at both ends (0.1 keeps held-out points in the inner 80%).

    Returns
    -------
    ndarray, shape (n, 2)
        Columns Omega_m and sigma_8, rounded to 4 decimals (the values written to the config).
    """
    from .design import latin_hypercube

    u = inner + (1.0 - 2.0 * inner) * latin_hypercube(n, 2, seed)
    lo = np.array([omega_m_range[0], sigma8_range[0]], dtype=float)
    hi = np.array([omega_m_range[1], sigma8_range[1]], dtype=float)
    return np.round(lo + u * (hi - lo), 4)


class SuiteConfig:
    """A suite run (see the module docstring for the keys).

    Parameters
    ----------
    raw : dict
        The YAML mapping.
    base_dir : path-like
        Folder that ``output`` is resolved against (the config file's folder).
    source : str
        Where ``raw`` came from, for error messages.
    """

    def __init__(self, raw: dict, base_dir: str | os.PathLike = ".", source: str = "suite config"):
        w = source
        raw = check_mapping(raw, w)
        check_keys(raw, SUITE_KEYS, w, required=("name", "output", "box_size", "n_particles_1d", "seed",
                                                  "snapshots", "fixed", "boxes"))
        self.raw, self.base_dir, self.source = raw, Path(base_dir), source
        self.name = check_str(raw["name"], f"{w}: name")
        output = Path(check_str(raw["output"], f"{w}: output"))
        self.output = output if output.is_absolute() else self.base_dir / output
        self.box_size = check_float(raw["box_size"], f"{w}: box_size", minimum=0.0, min_inclusive=False)
        n = check_int(raw["n_particles_1d"], f"{w}: n_particles_1d", minimum=16, maximum=4096)
        if n & (n - 1):
            raise ConfigError(f"{w}: n_particles_1d = {n}: must be a power of two >= 16")
        self.n_particles_1d = n
        self.z_start = check_float(raw.get("z_start", 49.0), f"{w}: z_start", minimum=0.0, min_inclusive=False)
        self.seed = check_int(raw["seed"], f"{w}: seed", minimum=0, maximum=2 ** 32 - 1)
        z = check_float_array(raw["snapshots"], f"{w}: snapshots", ndim=1)
        if np.any(z < 0) or np.any(z >= self.z_start) or np.unique(z).size != z.size:
            raise ConfigError(f"{w}: snapshots = {z.tolist()}: must be distinct redshifts >= 0 and "
                              f"below z_start = {self.z_start}")
        self.snapshots = tuple(sorted(z.tolist(), reverse=True))
        keep = raw.get("keep_snapshots") or []
        keep = check_float_array(keep, f"{w}: keep_snapshots", ndim=1).tolist() if len(keep) else []
        unknown = [v for v in keep if v not in self.snapshots]
        if unknown:
            raise ConfigError(f"{w}: keep_snapshots = {keep}: {unknown[0]} is not one of snapshots "
                              f"{list(self.snapshots)}")
        self.keep_snapshots = tuple(keep)
        self.n_threads = check_int(raw.get("n_threads", 1), f"{w}: n_threads", minimum=1, maximum=256)
        self.min_particles = check_int(raw.get("min_particles", 20), f"{w}: min_particles", minimum=2)
        self.min_particles_trusted = check_int(raw.get("min_particles_trusted", 20),
                                               f"{w}: min_particles_trusted", minimum=self.min_particles)
        fixed = check_mapping(raw["fixed"], f"{w}: fixed")
        check_keys(fixed, FIXED_KEYS, f"{w}: fixed", required=FIXED_KEYS)
        self.h = check_float(fixed["h"], f"{w}: fixed: h", minimum=0.2, maximum=2.0)
        self.omega_b = check_float(fixed["omega_b"], f"{w}: fixed: omega_b", minimum=0.0, maximum=0.2,
                                   min_inclusive=False)
        self.n_s = check_float(fixed["n_s"], f"{w}: fixed: n_s", minimum=0.5, maximum=1.5)
        if "design" in raw:
            check_mapping(raw["design"], f"{w}: design")
        self.boxes = self._boxes(raw["boxes"], w)

    def _boxes(self, entries, w: str) -> tuple[BoxSpec, ...]:
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{w}: boxes = {entries!r:.80}: must be a non-empty list of boxes")
        boxes, names = [], set()
        for i, entry in enumerate(entries):
            where = f"{w}: boxes[{i}]"
            entry = check_mapping(entry, where)
            check_keys(entry, BOX_KEYS, where, required=("name", "omega_m", "sigma8", "role"))
            name = check_str(entry["name"], f"{where}: name")
            if not _NAME.match(name):
                raise ConfigError(f"{where}: name = {name!r}: must be 1-64 letters, digits, '_' or '-' "
                                  "(it names the box's folder)")
            if name in names:
                raise ConfigError(f"{where}: name = {name!r} is used by an earlier box; names must be unique")
            names.add(name)
            omega_m = check_float(entry["omega_m"], f"{where} ({name}): omega_m", minimum=self.omega_b,
                                  maximum=1.0, min_inclusive=False)
            sigma8 = check_float(entry["sigma8"], f"{where} ({name}): sigma8", minimum=0.0, maximum=2.0,
                                 min_inclusive=False)
            role = check_str(entry["role"], f"{where} ({name}): role", choices=ROLES)
            seed = check_int(entry.get("seed", self.seed), f"{where} ({name}): seed", minimum=0,
                             maximum=2 ** 32 - 1)
            boxes.append(BoxSpec(name, omega_m, sigma8, role, seed))
        return tuple(boxes)

    def box(self, name: str) -> BoxSpec:
        """The box called ``name`` (ConfigError naming the known boxes otherwise)."""
        for box in self.boxes:
            if box.name == name:
                return box
        from ..config_checks import suggest

        raise ConfigError(f"{self.source}: no box {name!r}{suggest(name, [b.name for b in self.boxes])} "
                          f"({len(self.boxes)} boxes: {', '.join(b.name for b in self.boxes[:5])}, ...)")

    def simulation(self, box: BoxSpec):
        """The :class:`.nbody.SimulationConfig` of ``box``."""
        from .nbody import Cosmology, SimulationConfig

        cosmology = Cosmology(h=self.h, omega_m=box.omega_m, omega_b=self.omega_b, n_s=self.n_s, sigma8=box.sigma8)
        return SimulationConfig(box_size=self.box_size, n_particles_1d=self.n_particles_1d, seed=box.seed,
                                z_start=self.z_start, cosmology=cosmology, n_threads=self.n_threads,
                                snapshot_redshifts=self.snapshots)

    def binding(self, box: BoxSpec) -> dict:
        """Everything that changes ``box``'s catalogs (not names of folders, not ``keep_snapshots``)."""
        from .halos import FOF_LINKING

        return {"simulation": self.simulation(box).to_dict(), "min_particles": self.min_particles,
                "min_particles_trusted": self.min_particles_trusted, "fof_linking": FOF_LINKING}


def load_suite_config(path: str | os.PathLike) -> SuiteConfig:
    """Read and check a suite YAML file (relative paths resolve against its folder)."""
    path = Path(path)
    raw = load_yaml_mapping(path, kind="suite config")
    return SuiteConfig(raw, base_dir=path.parent, source=path.name)
