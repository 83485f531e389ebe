"""The configuration of an ``iaemu generate`` run, read from YAML and validated key by key.

Keys (see ``training/configs/train.yaml``):

=================== ========================================================================
``name``            label of the dataset (string)
``seed``            integer >= 0: seeds the design and every realization
``n_points``        integer >= 1: Latin-hypercube points (or give ``points`` instead); with
                    ``suite``: points per (box, z)
``points``          explicit parameter rows (n, 7) in PARAM_NAMES order, instead of a design;
                    with ``suite``: the same rows at every (box, z)
``n_realizations``  integer >= 2 (default 10): mocks per point
``max_retries``     integer >= 0 (default 5): redraws of a realization with a non-finite statistic
``output``          dataset ``.npz`` to write (relative to the config file)
``catalog``         halo catalog, see :func:`.catalogs.check_catalog_spec`
``suite``           instead of ``catalog``: the (box, z) catalogs of an N-body suite, see
                    :mod:`.generation_snapshots`
``design``          prior of the design, see :meth:`.design.DesignRule.from_config`
``rbins``           bin edges, comoving h^-1 Mpc, strictly increasing and > 0 (default the
                    emulator's 20 bins)
=================== ========================================================================

Unknown keys, wrong types and out-of-range values raise
:class:`~iaemu_likelihood.errors.ConfigError` naming the file, the key, the value and what is
allowed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..config_checks import (check_float_array, check_int, check_keys, check_mapping, check_str)
from ..conventions import PARAM_NAMES, R_EDGES
from ..errors import ConfigError

__all__ = ["GenerationConfig", "load_config", "GENERATION_KEYS"]

#: Every key a generation config may hold.
GENERATION_KEYS = ("name", "seed", "n_points", "points", "n_realizations", "max_retries", "output",
                   "catalog", "suite", "design", "rbins")
#: Largest ``max_retries`` accepted (each retry is a full mock).
MAX_RETRIES_LIMIT = 1000


class GenerationConfig:
    """A generation run (see the module docstring for the keys).

    Parameters
    ----------
    raw : dict
        The YAML mapping.
    base_dir : path-like
        Folder that relative paths (``output``, the catalog ``path``) are resolved against: the
        config file's folder.
    source : str
        Where ``raw`` came from, for error messages (the file name).
    """

    def __init__(self, raw: dict, base_dir: str | os.PathLike = ".", source: str = "generation config"):
        from .catalogs import check_catalog_spec
        from .design import DesignRule, make_design

        where = str(source)
        raw = check_mapping(raw, where)
        check_keys(raw, GENERATION_KEYS, where, required=("name", "seed", "output"))
        if ("catalog" in raw) == ("suite" in raw):
            raise ConfigError(f"{where}: give exactly one of 'catalog' (one halo catalog) and 'suite' "
                              "(the (box, z) catalogs of an N-body suite)")
        self.raw = raw
        self.source = where
        self.base_dir = Path(base_dir).resolve()
        self.name = check_str(raw["name"], f"{where}: name")
        self.seed = check_int(raw["seed"], f"{where}: seed", minimum=0)
        self.n_realizations = check_int(raw.get("n_realizations", 10), f"{where}: n_realizations",
                                        minimum=2)  # the scatter about the mean is a target
        self.max_retries = check_int(raw.get("max_retries", 5), f"{where}: max_retries", minimum=0,
                                     maximum=MAX_RETRIES_LIMIT)
        output = Path(check_str(raw["output"], f"{where}: output"))
        self.output = output if output.is_absolute() else self.base_dir / output
        self.catalog_spec = check_catalog_spec(raw["catalog"], f"{where}: catalog") if "catalog" in raw else None
        self.suite = None
        if "suite" in raw:
            from .generation_snapshots import SuiteSelection

            self.suite = SuiteSelection(raw["suite"], self.base_dir, f"{where}: suite")
        self.rbins = check_float_array(raw.get("rbins", R_EDGES), f"{where}: rbins", ndim=1,
                                       increasing=True, positive=True)
        if self.rbins.size < 2:
            raise ConfigError(f"{where}: rbins = {raw['rbins']!r}: needs at least 2 edges")
        self.rule = DesignRule.from_config(raw.get("design", {}), f"{where}: design")
        if ("points" in raw) == ("n_points" in raw):
            raise ConfigError(f"{where}: give exactly one of 'n_points' (a Latin-hypercube design) "
                              "and 'points' (explicit parameter rows)")
        if "points" in raw:
            self.params = check_float_array(raw["points"], f"{where}: points", ndim=2,
                                            shape=(None, len(PARAM_NAMES)))
            mu = self.params[:, :2]
            if np.any(np.abs(mu) > 1):
                row = int(np.flatnonzero(np.any(np.abs(mu) > 1, axis=1))[0])
                raise ConfigError(f"{where}: points row {row} has mu_cen, mu_sat = "
                                  f"{mu[row].tolist()}; alignment strengths must lie in [-1, 1]")
            self.unit_cube = None
            if self.suite is not None:
                self.params = np.tile(self.params, (len(self.suite.snapshots), 1))
        elif self.suite is None:
            n_points = check_int(raw["n_points"], f"{where}: n_points", minimum=1)
            self.unit_cube, self.params = make_design(n_points, self.seed, self.rule)
        else:
            from .generation_snapshots import snapshot_design_seed

            n_points = check_int(raw["n_points"], f"{where}: n_points", minimum=1)
            designs = [make_design(n_points, snapshot_design_seed(self.seed, snap.box, snap.z), self.rule)
                       for snap in self.suite.snapshots]
            self.unit_cube = np.concatenate([u for u, _ in designs])
            self.params = np.concatenate([p for _, p in designs])
        #: index into ``suite.snapshots`` of every point (snapshot-major), None without a suite
        self.point_snapshot = (None if self.suite is None else
                               np.repeat(np.arange(len(self.suite.snapshots)),
                                         self.params.shape[0] // len(self.suite.snapshots)))
        self._catalog = None
        self._catalogs: dict = {}
        self._binding = None

    @property
    def n_points(self) -> int:
        """Number of design points."""
        return self.params.shape[0]

    @property
    def parts_dir(self) -> Path:
        """Folder of the per-point part files, ``<output>.parts``."""
        return self.output.with_name(self.output.name + ".parts")

    def part_path(self, i: int) -> Path:
        """Part file of design point ``i``."""
        return self.parts_dir / f"point_{i:06d}.npz"

    @property
    def timings_path(self) -> Path:
        """Wall-clock summary written beside the dataset, ``<stem>.timings.json``."""
        return self.output.with_name(self.output.stem + ".timings.json")

    def catalog(self):
        """The halo catalog source (loaded once, then cached); with a ``suite``, see
        :meth:`point_catalog`."""
        if self.suite is not None:
            raise ConfigError(f"{self.source}: a suite run has one catalog per (box, z): use point_catalog(i)")
        if self._catalog is None:
            from .catalogs import load_catalog_source

            self._catalog = load_catalog_source(self.catalog_spec, self.base_dir)
        return self._catalog

    def point_catalog(self, i: int):
        """The halo catalog design point ``i`` populates (each loaded once, then cached)."""
        if self.suite is None:
            return self.catalog()
        k = int(self.point_snapshot[i])
        if k not in self._catalogs:
            self._catalogs[k] = self.suite.load_catalog(k)
        return self._catalogs[k]

    def point_catalog_binding(self, i: int) -> dict:
        """Identity of point ``i``'s catalog: ``{"sha256"}``, plus ``box``, ``z`` and
        ``min_particles`` with a suite (read from the box's ``box.json``, without loading it)."""
        if self.suite is None:
            return {"sha256": self.binding()["catalog"]["sha256"]}
        return self.suite.catalog_binding(int(self.point_snapshot[i]))

    def ready(self, points) -> tuple[list, list]:
        """Split ``points`` into those whose catalog exists and those whose suite box is not
        finished yet (always all ready without a suite)."""
        if self.suite is None:
            return list(points), []
        ready, waiting = [], []
        for i in points:
            (ready if self.suite.record(int(self.point_snapshot[i])) is not None else waiting).append(i)
        return ready, waiting

    def binding(self) -> dict:
        """What, besides a point's parameters, determines its mocks (see
        :func:`.generation_parts.result_binding`); loads the catalog for its hash."""
        if self._binding is None:
            from .generation_parts import result_binding

            self._binding = result_binding(self)
        return self._binding


def load_config(path: str | os.PathLike) -> GenerationConfig:
    """Read and validate a generation config YAML file.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ConfigError
        If the file is not valid YAML or a key is unknown, mistyped or out of range.
    """
    from ..config_checks import load_yaml_mapping

    path = Path(path)
    return GenerationConfig(load_yaml_mapping(path, "generation config"), path.parent, source=str(path))
