"""Halo catalogs for mock generation: one interface, two sources.

* :class:`OfflineHaloCatalog` -- the default, built here from a CAMB + PySCo particle-mesh run
  and kdcount FoF halos (:mod:`.catalog_builder`), saved as a compressed npz with its provenance
  and a content hash so the weights can name the exact catalog they were trained on.
* :class:`CachedHalotoolsCatalog` -- any halotools ``CachedHaloCatalog`` the user has cached
  (e.g. ``bolplanck``, rockstar, z = 0), exactly the reference IAEmu setup.

Both give a halotools ``UserSuppliedHaloCatalog``/``CachedHaloCatalog`` through
:meth:`HaloCatalogSource.to_halotools`, with the columns the IA models need
(``halo_axisA_x/y/z``, ``halo_rvir``, ``halo_upid`` = -1 for hosts, ...), and a binned host-halo
mass function for exact number densities. Lengths: comoving h^-1 Mpc; masses: Msun/h.
"""
from __future__ import annotations

import abc
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, npz_bytes
from ..errors import IAEmuError

__all__ = ["HaloCatalogSource", "OfflineHaloCatalog", "CachedHalotoolsCatalog", "save_halo_catalog",
           "load_catalog_source", "check_catalog_spec", "HaloCatalogError", "binned_mass_function",
           "MASS_FUNCTION_BIN_WIDTH"]

#: Width of the host mass-function bins shipped with the weights, dex.
MASS_FUNCTION_BIN_WIDTH = 0.005

_COLUMNS = ("mass", "rvir", "centre", "velocity", "axis_a", "axis_c", "b_to_a", "c_to_a",
            "n_particles", "n_shape")


def binned_mass_function(log10_mass: np.ndarray, volume: float,
                         width: float = MASS_FUNCTION_BIN_WIDTH) -> dict:
    """Host-halo counts in fine log-mass bins (``width`` dex) spanning ``log10_mass``.

    Summing an occupation function over these bins at each bin's mean log mass reproduces the sum
    over individual halos to far better than the Poisson noise of a mock.
    """
    from ..hod import bin_mass_function

    lo = np.floor(log10_mass.min() / width) * width
    hi = np.ceil(log10_mass.max() / width) * width + width
    return bin_mass_function(log10_mass, volume, np.arange(lo, hi + 0.5 * width, width))


class HaloCatalogSource(abc.ABC):
    """A host-halo catalog that halotools can populate."""

    #: Periodic box side, comoving h^-1 Mpc.
    box_size: float
    #: Particle mass, Msun/h.
    particle_mass: float
    #: Redshift of the snapshot the halos were found in.
    redshift: float = 0.0

    def cosmology(self) -> dict | None:
        """Flat-LCDM parameters of the simulation (``h``, ``omega_m``, ``omega_b``, ``sigma8``,
        ``n_s``, optionally ``t_cmb``, ``n_eff``), or None when the catalog does not record them."""
        return None

    def astropy_cosmology(self):
        """The simulation's cosmology as an astropy ``FlatLambdaCDM`` (None when unknown: halotools
        then uses its default). Used by the NFW satellite profile together with :attr:`redshift`."""
        params = self.cosmology()
        if params is None:
            return None
        from astropy.cosmology import FlatLambdaCDM

        return FlatLambdaCDM(H0=100.0 * float(params["h"]), Om0=float(params["omega_m"]),
                             Ob0=float(params.get("omega_b", 0.0)), Tcmb0=float(params.get("t_cmb", 0.0)),
                             Neff=float(params.get("n_eff", 3.046)))

    @abc.abstractmethod
    def to_halotools(self):
        """The catalog as a halotools halo catalog object (with ``halo_table``, ``Lbox``)."""

    @abc.abstractmethod
    def host_log10_mass(self) -> np.ndarray:
        """log10 host-halo masses (Msun/h) of the halos a mock can populate."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """Provenance: name, sha256, cosmology, box, particle mass, code versions."""

    def mass_function(self) -> dict:
        """Binned host-halo mass function, see :func:`binned_mass_function`."""
        return binned_mass_function(self.host_log10_mass(), self.box_size ** 3)


class HaloCatalogError(IAEmuError, ValueError):
    """A halo catalog file is unreadable, incomplete, non-finite or does not match its hash."""


def _read_catalog_file(path: Path) -> tuple[dict, dict]:
    """Columns and provenance of a catalog file, every array read and checked (no pickle).

    Raises
    ------
    HaloCatalogError
        Naming the file: unreadable (bad zip, bad CRC, pickled object), missing column,
        non-numeric or non-finite values, provenance not JSON or lacking the box size, particle
        mass or hash, or content that does not match ``content_sha256``.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as exc:  # zipfile, pickle refusal, truncation: all mean "not a catalog"
        raise HaloCatalogError(f"halo catalog {path} cannot be read ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())})") from None
    missing = [name for name in (*_COLUMNS, "provenance") if name not in arrays]
    if missing:
        raise HaloCatalogError(f"halo catalog {path} lacks arrays {missing}")
    columns = {name: arrays[name] for name in _COLUMNS}
    for name, value in columns.items():
        if value.dtype.kind not in "iuf":
            raise HaloCatalogError(f"halo catalog {path}: column {name!r} has dtype {value.dtype}, "
                                   "expected numbers")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise HaloCatalogError(f"halo catalog {path}: column {name!r} has "
                                   f"{int(np.sum(~np.isfinite(value)))} non-finite values")
    try:
        provenance = json.loads(str(arrays["provenance"]))
        box, mp = float(provenance["box_size"]), float(provenance["particle_mass"])
        recorded = str(provenance["content_sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise HaloCatalogError(f"halo catalog {path}: provenance is not a JSON object with box_size, "
                               f"particle_mass and content_sha256 ({type(exc).__name__}: {exc})") from None
    if not (np.isfinite(box) and box > 0 and np.isfinite(mp) and mp > 0):
        raise HaloCatalogError(f"halo catalog {path}: box_size = {box}, particle_mass = {mp}; "
                               "both must be finite and > 0")
    if _content_sha256(columns) != recorded:
        raise HaloCatalogError(f"halo catalog {path}: its arrays do not match the recorded "
                               f"content_sha256 {recorded[:12]}... (modified or damaged)")
    return columns, provenance


class OfflineHaloCatalog(HaloCatalogSource):
    """A FoF halo catalog saved by :func:`save_halo_catalog`.

    Its redshift and cosmology come from the provenance (``redshift``; ``cosmology`` or
    ``simulation.cosmology``, as ``iaemu build-catalog`` and ``iaemu build-suite`` write them);
    a catalog without them is taken as z = 0 of an unrecorded cosmology.

    Parameters
    ----------
    path : path-like
        The catalog ``.npz``.
    min_particles : int
        Passed to halotools as ``Num_ptcl_requirement``: only halos with more than this many
        particles are populated (halotools' cut is strict).
    """

    def __init__(self, path: str | os.PathLike, min_particles: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"halo catalog {self.path} does not exist; build it with "
                                    "`iaemu build-catalog`")
        self.columns, self.provenance = _read_catalog_file(self.path)
        self.box_size = float(self.provenance["box_size"])
        self.particle_mass = float(self.provenance["particle_mass"])
        self.min_particles = int(min_particles if min_particles is not None
                                 else self.provenance.get("min_particles_trusted", 20))
        self.redshift = _provenance_redshift(self.provenance, self.path)
        self._halotools = None

    def cosmology(self) -> dict | None:
        params = self.provenance.get("cosmology") or (self.provenance.get("simulation") or {}).get("cosmology")
        if params is None:
            return None
        missing = [k for k in ("h", "omega_m") if not isinstance(params.get(k), (int, float))]
        if missing:
            raise HaloCatalogError(f"halo catalog {self.path}: provenance cosmology lacks numbers "
                                   f"{missing}; it needs at least h and omega_m")
        return dict(params)

    def _kept(self) -> np.ndarray:
        return self.columns["n_particles"] >= self.min_particles

    def host_log10_mass(self) -> np.ndarray:
        # halotools' populate_mock keeps halos with M > Num_ptcl_requirement * particle_mass,
        # strictly: with min_particles = 20 a 20-particle halo is never populated
        mass = self.columns["mass"]
        return np.log10(mass[mass > self.min_particles * self.particle_mass])

    def describe(self) -> dict:
        return {"source": "offline", "path": self.path.name, "sha256": self.provenance["content_sha256"],
                "min_particles": self.min_particles, **{k: v for k, v in self.provenance.items()
                                                        if k != "content_sha256"}}

    def to_halotools(self):
        """A halotools ``UserSuppliedHaloCatalog`` of the kept halos (all hosts, no subhalos), at
        the catalog's :attr:`redshift`, with its astropy cosmology as the ``cosmology`` attribute
        (None if the provenance records none)."""
        if self._halotools is None:
            from halotools.sim_manager import UserSuppliedHaloCatalog

            keep = self._kept()
            c = {name: value[keep] for name, value in self.columns.items()}
            n = int(keep.sum())
            axis = c["axis_a"] / np.linalg.norm(c["axis_a"], axis=1, keepdims=True)
            halo_ids = np.arange(n, dtype=np.int64)
            box = self.box_size
            self._halotools = UserSuppliedHaloCatalog(
                redshift=self.redshift, Lbox=box, particle_mass=self.particle_mass,
                halo_id=halo_ids, halo_hostid=halo_ids, halo_upid=np.full(n, -1, dtype=np.int64),
                halo_x=np.mod(c["centre"][:, 0], box), halo_y=np.mod(c["centre"][:, 1], box),
                halo_z=np.mod(c["centre"][:, 2], box),
                halo_vx=c["velocity"][:, 0], halo_vy=c["velocity"][:, 1], halo_vz=c["velocity"][:, 2],
                halo_mvir=c["mass"], halo_rvir=c["rvir"],
                halo_axisA_x=axis[:, 0], halo_axisA_y=axis[:, 1], halo_axisA_z=axis[:, 2],
                halo_b_to_a=c["b_to_a"], halo_c_to_a=c["c_to_a"], halo_num_ptcl=c["n_particles"],
            )
            self._halotools.cosmology = self.astropy_cosmology()
        return self._halotools


def _provenance_redshift(provenance: dict, path: Path) -> float:
    """The snapshot redshift a catalog's provenance records (0 when absent: catalogs written before
    the suite); HaloCatalogError naming the file for a value that is not a finite number >= 0."""
    value = provenance.get("redshift", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (np.isfinite(value) and value >= 0):
        raise HaloCatalogError(f"halo catalog {path}: provenance redshift = {value!r}; allowed: a finite "
                               "number >= 0")
    return float(value)


class CachedHalotoolsCatalog(HaloCatalogSource):
    """A halotools ``CachedHaloCatalog`` (e.g. simname='bolplanck', halo_finder='rockstar', z=0).

    Only host halos (``halo_upid == -1``) count in the mass function, as in populate_mock.
    """

    def __init__(self, simname: str = "bolplanck", halo_finder: str = "rockstar",
                 redshift: float = 0.0, version_name: str | None = None, min_particles: int = 300):
        from halotools.sim_manager import CachedHaloCatalog

        kwargs = {"simname": simname, "halo_finder": halo_finder, "redshift": redshift}
        if version_name:
            kwargs["version_name"] = version_name
        try:
            self._halocat = CachedHaloCatalog(**kwargs)
        except Exception as exc:  # halotools raises several types for a missing cache
            raise FileNotFoundError(f"halotools cached catalog {kwargs} is not available here: {exc}") from exc
        self.box_size = float(np.atleast_1d(self._halocat.Lbox)[0])
        self.particle_mass = float(self._halocat.particle_mass)
        self.redshift = float(self._halocat.redshift)
        self.min_particles = min_particles
        self.kwargs = kwargs

    def to_halotools(self):
        return self._halocat

    def astropy_cosmology(self):
        """The cached simulation's astropy cosmology (halotools records it per simulation)."""
        return getattr(self._halocat, "cosmology", None)

    def host_log10_mass(self) -> np.ndarray:
        t = self._halocat.halo_table
        keep = (t["halo_upid"] == -1) & (t["halo_mvir"] > self.min_particles * self.particle_mass)
        return np.log10(np.asarray(t["halo_mvir"][keep]))

    def describe(self) -> dict:
        fname = getattr(self._halocat, "fname", None)
        return {"source": "halotools_cached", **self.kwargs, "fname": str(fname),
                "sha256": hashlib.sha256(json.dumps(self.kwargs, sort_keys=True).encode()).hexdigest(),
                "box_size": self.box_size, "particle_mass": self.particle_mass,
                "min_particles": self.min_particles}


def _content_sha256(columns: dict) -> str:
    digest = hashlib.sha256()
    for name in _COLUMNS:
        arr = np.ascontiguousarray(columns[name])
        digest.update(name.encode())
        digest.update(str(arr.dtype).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def save_halo_catalog(path: str | os.PathLike, halos: dict, provenance: dict) -> Path:
    """Save halo properties (from :func:`.halos.halo_properties`) and provenance atomically.

    Positions/axes are stored as float32 and masses as the particle count, which is exact; the
    content hash is computed over the stored arrays, so it identifies the catalog bit for bit.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {
        "mass": np.asarray(halos["mass"], dtype=np.float64),
        "rvir": np.asarray(halos["rvir"], dtype=np.float32),
        "centre": np.asarray(halos["centre"], dtype=np.float32),
        "velocity": np.asarray(halos["velocity"], dtype=np.float32),
        "axis_a": np.asarray(halos["axis_a"], dtype=np.float32),
        "axis_c": np.asarray(halos["axis_c"], dtype=np.float32),
        "b_to_a": np.asarray(halos["b_to_a"], dtype=np.float32),
        "c_to_a": np.asarray(halos["c_to_a"], dtype=np.float32),
        "n_particles": np.asarray(halos["n_particles"], dtype=np.int32),
        "n_shape": np.asarray(halos["n_shape"], dtype=np.int32),
    }
    provenance = dict(provenance, content_sha256=_content_sha256(columns), n_halos=int(columns["mass"].size))
    arrays = {"provenance": np.array(json.dumps(provenance, sort_keys=True)), **columns}
    atomic_write_bytes(path, npz_bytes(arrays, compressed=True))
    return path


#: Keys of a ``catalog`` config section, per source.
CATALOG_KEYS = {"offline": ("source", "path", "min_particles"),
                "halotools_cached": ("source", "simname", "halo_finder", "redshift", "version_name",
                                     "min_particles")}


def check_catalog_spec(spec, where: str = "catalog") -> dict:
    """Validate a ``catalog`` config mapping (see :func:`load_catalog_source`).

    Returns
    -------
    dict
        The mapping with ``source`` filled in (default ``"offline"``) and numbers converted.

    Raises
    ------
    ConfigError
        Unknown source or key (with a suggestion), missing ``path``, wrong type or range,
        naming ``where``.
    """
    from ..config_checks import check_float, check_int, check_keys, check_mapping, check_str

    spec = check_mapping(spec, where)
    kind = check_str(spec.get("source", "offline"), f"{where}: source", choices=tuple(CATALOG_KEYS))
    check_keys(spec, CATALOG_KEYS[kind], where, required=("path",) if kind == "offline" else ())
    out = {"source": kind}
    if kind == "offline":
        out["path"] = check_str(spec["path"], f"{where}: path")
    else:
        for key in ("simname", "halo_finder", "version_name"):
            if spec.get(key) is not None:
                out[key] = check_str(spec[key], f"{where}: {key}")
        if "redshift" in spec:
            out["redshift"] = check_float(spec["redshift"], f"{where}: redshift", minimum=0.0)
    if "min_particles" in spec:
        out["min_particles"] = check_int(spec["min_particles"], f"{where}: min_particles", minimum=1)
    return out


def load_catalog_source(spec: dict, base_dir: str | os.PathLike | None = None) -> HaloCatalogSource:
    """Build a catalog source from a config mapping.

    ``{"source": "offline", "path": "...", "min_particles": 50}`` or
    ``{"source": "halotools_cached", "simname": "bolplanck", ...}``. Relative paths are resolved
    against ``base_dir`` (the config file's folder). The mapping is checked with
    :func:`check_catalog_spec`.
    """
    spec = check_catalog_spec(spec)
    kind = spec.pop("source")
    if kind == "offline":
        path = Path(spec.pop("path"))
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        return OfflineHaloCatalog(path, **spec)
    return CachedHalotoolsCatalog(**spec)  # the only other source check_catalog_spec allows
