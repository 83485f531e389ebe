"""The (box, snapshot) catalogs of a generation run over an N-body suite (emulator v2, issue 15).

A generation config with a ``suite`` section (instead of ``catalog``) names a suite config
(``iaemu build-suite``) and the boxes and redshifts to populate::

    suite:
      config: suite_v2.yaml        # relative to the generation config
      boxes: train                 # "train", "test", "all" or a list of box names
      redshifts: [0.0, 0.5, 1.0]   # default: every snapshot of the suite
      min_mass: 2.33e11            # Msun/h: only hosts with M > min_mass are populated, in every box

Every (box, z) pair is a :class:`Snapshot`; the design draws its own ``n_points`` HOD + IA points
for each (seeded by the config seed, the box name and z, so adding boxes changes no existing
point), and each point records its box, Omega_m, sigma_8, z and catalog hash. One mass cut for
every box: the 20-particle cut of the heaviest particle would otherwise move the galaxy sample's
low-mass edge with Omega_m. halotools keeps hosts with more than ``Num_ptcl_requirement``
particles, so the cut is passed as ``floor(min_mass / particle_mass)`` particles; FoF masses are
whole multiples of the particle mass, so that is exactly ``M > min_mass`` (a box whose particle
mass divides ``min_mass`` exactly would also drop halos at exactly ``min_mass``).

A box that is not finished yet (no verified ``box.json``) is *pending*: its points wait, and
``iaemu generate`` runs the points of the finished boxes and resumes when run again.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import zlib
from pathlib import Path

import numpy as np

from ..config_checks import check_float, check_float_array, check_keys, check_mapping, check_str
from ..errors import ConfigError

__all__ = ["Snapshot", "SuiteSelection", "SUITE_SECTION_KEYS", "snapshot_design_seed"]

logger = logging.getLogger(__name__)

#: Keys of the ``suite`` section of a generation config.
SUITE_SECTION_KEYS = ("config", "boxes", "redshifts", "min_mass")
#: Box selections by role.
_ROLE_SELECTIONS = {"train": ("train",), "test": ("test",), "all": ("train", "test")}


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One (box, redshift) halo catalog of the suite.

    Attributes
    ----------
    box : str
        Box name (its folder in the suite output).
    omega_m, sigma8 : float
        The box's cosmology (flat LCDM; sigma_8 linear at z = 0).
    z : float
        Snapshot redshift.
    path : Path
        The catalog ``.npz``.
    """

    box: str
    omega_m: float
    sigma8: float
    z: float
    path: Path

    @property
    def label(self) -> str:
        return f"{self.box} z={self.z:.2f}"


def snapshot_design_seed(seed: int, box: str, z: float) -> int:
    """Design seed of one (box, z): a function of the config seed, the box name and z only."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(box.encode()), int(round(z * 10_000))])
    return int(state.generate_state(1, dtype=np.uint32)[0] >> 1)


class SuiteSelection:
    """The ``suite`` section of a generation config, checked, with its snapshots.

    Parameters
    ----------
    spec : mapping
        The section (keys :data:`SUITE_SECTION_KEYS`).
    base_dir : Path
        Folder of the generation config (``config`` is relative to it).
    where : str
        For messages, e.g. ``"generate_v2.yaml: suite"``.
    """

    def __init__(self, spec, base_dir: Path, where: str):
        from .suite_config import load_suite_config

        spec = check_mapping(spec, where)
        check_keys(spec, SUITE_SECTION_KEYS, where, required=("config", "min_mass"))
        path = Path(check_str(spec["config"], f"{where}: config"))
        self.config_path = path if path.is_absolute() else Path(base_dir) / path
        if not self.config_path.is_file():
            raise ConfigError(f"{where}: config = {spec['config']!r}: no such suite config "
                              f"({self.config_path})")
        self.suite = load_suite_config(self.config_path)
        self.min_mass = check_float(spec["min_mass"], f"{where}: min_mass", minimum=0.0, min_inclusive=False)
        boxes = spec.get("boxes", "train")
        if isinstance(boxes, str):
            if boxes not in _ROLE_SELECTIONS:
                raise ConfigError(f"{where}: boxes = {boxes!r}; allowed: one of {list(_ROLE_SELECTIONS)} "
                                  "or a list of box names")
            chosen = [b for b in self.suite.boxes if b.role in _ROLE_SELECTIONS[boxes]]
        elif isinstance(boxes, list) and boxes:
            names = [check_str(b, f"{where}: boxes[{i}]") for i, b in enumerate(boxes)]
            if len(set(names)) != len(names):
                raise ConfigError(f"{where}: boxes = {names}: a box is listed twice")
            chosen = [self.suite.box(name) for name in names]
        else:
            raise ConfigError(f"{where}: boxes = {boxes!r}; allowed: one of {list(_ROLE_SELECTIONS)} "
                              "or a non-empty list of box names")
        z = spec.get("redshifts", list(self.suite.snapshots))
        z = check_float_array(z, f"{where}: redshifts", ndim=1).tolist()
        unknown = [v for v in z if v not in self.suite.snapshots]
        if unknown or not z or len(set(z)) != len(z):
            raise ConfigError(f"{where}: redshifts = {z}; allowed: distinct snapshots of "
                              f"{self.config_path.name} ({sorted(self.suite.snapshots)})")
        from .suite import catalog_name

        self.snapshots = tuple(
            Snapshot(box.name, box.omega_m, box.sigma8, float(zz), self.suite.output / box.name / catalog_name(zz))
            for box in chosen for zz in sorted(z))
        self._records: dict = {}

    def binding(self) -> dict:
        """What, besides each snapshot's catalog, changes the mocks: the suite and the mass cut."""
        return {"source": "suite", "suite": self.suite.name, "min_mass": float(self.min_mass)}

    def record(self, k: int) -> dict | None:
        """``box.json``'s entry of snapshot ``k`` (``content_sha256``, ``particle_mass``...), or None
        while its box is not finished (verified as ``iaemu build-suite`` does, then cached)."""
        if k in self._records:
            return self._records[k]
        from .suite import box_status, catalog_name

        snap = self.snapshots[k]
        box = self.suite.box(snap.box)
        if box_status(self.suite, box) != "done":
            return None
        manifest = json.loads((self.suite.output / box.name / "box.json").read_text())
        record = dict(manifest["catalogs"][catalog_name(snap.z)])
        for other, s in enumerate(self.snapshots):  # one box.json check serves its snapshots
            if s.box == snap.box:
                self._records[other] = dict(manifest["catalogs"][catalog_name(s.z)])
        return record

    def min_particles(self, k: int) -> int:
        """The particle cut that populates exactly the hosts with M > min_mass in snapshot ``k``."""
        record = self.record(k)
        if record is None:
            raise ConfigError(f"suite box {self.snapshots[k].box!r} is not built yet")
        return max(1, int(math.floor(self.min_mass / float(record["particle_mass"]))))

    def catalog_binding(self, k: int) -> dict:
        """Identity of snapshot ``k``'s catalog in part bindings and the dataset."""
        snap = self.snapshots[k]
        return {"box": snap.box, "z": snap.z, "sha256": self.record(k)["content_sha256"],
                "min_particles": self.min_particles(k)}

    def load_catalog(self, k: int):
        """Snapshot ``k``'s catalog as an :class:`~.catalogs.OfflineHaloCatalog` (content hash
        verified, and checked against its box's ``box.json``)."""
        from .catalogs import HaloCatalogError, OfflineHaloCatalog

        binding = self.catalog_binding(k)
        catalog = OfflineHaloCatalog(self.snapshots[k].path, min_particles=binding["min_particles"])
        if catalog.provenance["content_sha256"] != binding["sha256"]:
            raise HaloCatalogError(f"halo catalog {catalog.path}: content_sha256 does not match its "
                                   "box.json (rebuilt since?); run `iaemu build-suite` again")
        return catalog
