"""Per-point part files of ``iaemu generate``, bound to what produced them.

Each finished design point is one uncompressed ``.npz`` in ``<output>.parts/``, written
atomically (:func:`iaemu_likelihood._io.atomic_write_bytes`). Besides the statistics it stores a
``binding``: the part schema, the point index, the point's parameters, the config seed, the
SHA-256 of everything else in the config that changes the mocks (:func:`result_binding`) and the
halo catalog's content hash. A part counts on resume or assembly only if

* every array member reads back (so a bad CRC inside one member is caught),
* its binding equals the one the current config gives for that point,
* shapes and dtypes are right, the seeds are the ones :func:`realization_seed` gives, and the
  statistics are finite wherever the realization did not fail after ``max_retries`` redraws.

Anything else (a part copied from another point, left by a run with another seed, design or
catalog, damaged or truncated) is logged with the file and the reason, deleted, and redone.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, npz_bytes
from ..conventions import STATISTICS

__all__ = ["PART_SCHEMA", "COUNT_ARRAYS", "BINDING_DIGITS", "rounded", "realization_seed", "result_binding",
           "part_binding", "write_part", "read_part", "PartRejected", "scan_parts", "remove_stale_temporaries"]

logger = logging.getLogger(__name__)

#: Version of the part-file layout; parts of another schema are redone.
PART_SCHEMA = 2
#: Integer arrays of a part, one entry per realization.
COUNT_ARRAYS = ("n_gal", "n_cen", "n_sat", "seeds", "retries")
_PART_NAME = re.compile(r"point_(\d{6})\.npz$")


class PartRejected(Exception):
    """A part file does not count (internal: the reason is logged and the point redone)."""


def realization_seed(base_seed: int, point: int, realization: int, attempt: int = 0) -> int:
    """The seed of one realization, independent of scheduling (a 31-bit int)."""
    state = np.random.SeedSequence([int(base_seed), int(point), int(realization), int(attempt)])
    return int(state.generate_state(1, dtype=np.uint32)[0] >> 1)


#: Significant digits of the bin edges and parameters in a binding: numpy versions differ in the
#: last bit of ``np.logspace`` and of the design arithmetic, which must not void a resume.
BINDING_DIGITS = 12


def rounded(values) -> list:
    """``values`` as a list of floats rounded to :data:`BINDING_DIGITS` significant digits."""
    return [float(f"{x:.{BINDING_DIGITS}g}") for x in np.asarray(values, dtype=float).ravel()]


def result_binding(config) -> dict:
    """Everything in a generation config, besides the points, that changes the mocks.

    Seed, realizations per point, retry limit, bin edges and the halo catalog (source, content
    hash, particle cut). Not the name, the output path or the catalog's file name. For a run
    over a suite, the suite's name and mass cut stand for the catalog: each part carries its own
    (box, z, catalog hash, particle cut), so a box finished later voids no part.
    """
    common = {"seed": int(config.seed), "n_realizations": int(config.n_realizations),
              "max_retries": int(config.max_retries), "rbins": rounded(config.rbins)}
    if config.suite is not None:
        return {**common, "catalog": config.suite.binding()}
    described = config.catalog().describe()
    return {"seed": int(config.seed), "n_realizations": int(config.n_realizations),
            "max_retries": int(config.max_retries),
            "rbins": rounded(config.rbins),
            "catalog": {"source": described["source"], "sha256": described["sha256"],
                        "min_particles": int(described["min_particles"])}}


def _sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def part_binding(config, i: int) -> dict:
    """The binding a part of point ``i`` must carry under ``config``."""
    binding = config.binding()
    catalog = config.point_catalog_binding(i)
    out = {"schema": PART_SCHEMA, "point": int(i),
           "params": rounded(config.params[i]), "seed": binding["seed"],
           "config_sha256": _sha256_json(binding), "catalog_sha256": catalog["sha256"]}
    if config.suite is not None:
        out["snapshot"] = {k: catalog[k] for k in ("box", "z", "min_particles")}
    return out


def write_part(config, i: int, result: dict) -> Path:
    """Write point ``i``'s ``result`` (from :func:`.generate.run_point`) with its binding."""
    path = config.part_path(i)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.asarray(result[name]) for name in (*STATISTICS, *COUNT_ARRAYS, "wall_s")}
    arrays["binding"] = np.array(json.dumps(part_binding(config, i), sort_keys=True))
    atomic_write_bytes(path, npz_bytes(arrays, compressed=False))
    return path


def read_part(config, i: int) -> dict:
    """Read and check point ``i``'s part file completely.

    Returns
    -------
    dict
        The arrays (statistics, counts, seeds, retries, ``wall_s``).

    Raises
    ------
    PartRejected
        With the reason the part does not count.
    """
    path = config.part_path(i)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}  # reads (and CRC-checks) every member
    except Exception as exc:  # truncated, bad CRC, not a zip, pickled: all mean "redo"
        raise PartRejected(f"unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    missing = [name for name in (*STATISTICS, *COUNT_ARRAYS, "wall_s", "binding") if name not in arrays]
    if missing:
        raise PartRejected(f"lacks arrays {missing} (left by an older iaemu?)")
    try:
        found = json.loads(str(arrays.pop("binding")))
    except ValueError:
        raise PartRejected("its binding is not JSON") from None
    expected = part_binding(config, i)
    if found != expected:
        keys = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        raise PartRejected("made by another run: " + "; ".join(
            f"{k} {_brief(found.get(k))} != expected {_brief(expected.get(k))}" for k in keys))
    _check_arrays(arrays, config, i)
    return arrays


def _brief(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_arrays(arrays: dict, config, i: int) -> None:
    n_real, n_bins = config.n_realizations, config.rbins.size - 1
    for name in STATISTICS:
        a = arrays[name]
        if a.dtype.kind != "f" or a.shape != (n_real, n_bins):
            raise PartRejected(f"{name} has dtype {a.dtype} and shape {a.shape}, expected float "
                               f"({n_real}, {n_bins})")
    for name in COUNT_ARRAYS:
        a = arrays[name]
        if a.dtype.kind not in "iu" or a.shape != (n_real,) or np.any(a < 0):
            raise PartRejected(f"{name} has dtype {a.dtype} and shape {a.shape}, expected "
                               f"non-negative integers ({n_real},)")
    wall = arrays["wall_s"]
    if wall.shape != () or wall.dtype.kind != "f" or not (np.isfinite(wall) and wall >= 0):
        raise PartRejected(f"wall_s = {wall!r} is not one finite time >= 0")
    retries = arrays["retries"]
    if np.any(retries > config.max_retries + 1):
        raise PartRejected(f"retries {retries.tolist()} exceed max_retries + 1 = {config.max_retries + 1}")
    if np.any(arrays["n_cen"] + arrays["n_sat"] != arrays["n_gal"]):
        raise PartRejected("n_cen + n_sat != n_gal")
    attempts = np.minimum(retries, config.max_retries)
    expected = [realization_seed(config.seed, i, j, int(k)) for j, k in enumerate(attempts)]
    if arrays["seeds"].tolist() != expected:
        raise PartRejected(f"seeds {arrays['seeds'].tolist()[:3]}... are not those of seed "
                           f"{config.seed}, point {i}")
    succeeded = retries <= config.max_retries
    for name in STATISTICS:
        bad = succeeded & ~np.all(np.isfinite(arrays[name]), axis=1)
        if np.any(bad):
            raise PartRejected(f"{name} is not finite in realization(s) {np.flatnonzero(bad).tolist()} "
                               "that are recorded as successful")


def scan_parts(config, points=None, remove_rejected: bool = True) -> tuple[dict, list]:
    """Check the part files of ``points`` (default: every design point).

    Parameters
    ----------
    config : GenerationConfig
    points : iterable of int, optional
        Design points to look at.
    remove_rejected : bool
        Delete rejected parts (each is logged with its reason).

    Returns
    -------
    done : dict
        point -> arrays of every part that counts.
    todo : list of int
        Points without a part that counts, in increasing order.
    """
    config.parts_dir.mkdir(parents=True, exist_ok=True)
    points = range(config.n_points) if points is None else points
    present = {int(m.group(1)) for p in config.parts_dir.iterdir() if (m := _PART_NAME.match(p.name))}
    done, todo = {}, []
    for i in points:
        if i not in present:
            todo.append(i)
            continue
        try:
            done[i] = read_part(config, i)
        except PartRejected as exc:
            path = config.part_path(i)
            logger.warning("part %s is redone: %s", path, exc)
            if remove_rejected:
                path.unlink(missing_ok=True)
            todo.append(i)
    extra = sorted(i for i in present if i >= config.n_points)
    if extra:
        logger.warning("%s holds parts for points %s beyond the %d design points; they are ignored",
                       config.parts_dir, extra[:5], config.n_points)
    return done, todo


def remove_stale_temporaries(config) -> list[Path]:
    """Delete temporary files an interrupted run left: part and dataset temporaries.

    Only names this code writes are touched: ``.<name>.*.tmp`` (the atomic-write helper) and
    ``<name>.tmp`` (older versions), for the parts, the dataset and its timings file. Call it
    before any worker starts, never while another run on the same config is writing.

    Returns
    -------
    list of Path
        What was removed (each also logged).
    """
    stale = []
    if config.parts_dir.is_dir():
        stale += [p for p in config.parts_dir.iterdir()
                  if p.name.endswith(".tmp") and "point_" in p.name]
    for target in (config.output, config.timings_path):
        if target.parent.is_dir():
            stale += list(target.parent.glob(f".{target.name}.*.tmp"))
            legacy = target.with_name(target.name + ".tmp")
            if legacy.exists():
                stale.append(legacy)
    for p in stale:
        logger.info("removing %s, left by an interrupted run", p)
        p.unlink(missing_ok=True)
    return stale
