"""``iaemu build-suite``: every N-body box of a suite config and a halo catalog per snapshot, resumable.

Each box is one CAMB + PySCo run (:mod:`.nbody`) writing particle snapshots at the config's
redshifts, then kdcount FoF halos per snapshot (:func:`.catalog_builder.catalog_from_snapshot`).
A box lives in ``<output>/<name>/``:

* ``nbody/``: the PySCo run (snapshots of ``keep_snapshots`` stay; the others and the initial
  conditions are deleted once the catalogs exist);
* ``nbody.json``: written (atomically, flushed) when PySCo has finished: the box's binding and the
  sha256 of every snapshot;
* ``halos_z<z>.npz``: one catalog per snapshot (atomic), with provenance (cosmology, z, seed,
  particle mass, code versions, ``content_sha256``) and the box's binding;
* ``box.json``: written last (atomically, flushed): the binding, the sha256 of each catalog file,
  timings. A box with a ``box.json`` whose binding matches the config and whose catalog files still
  have their recorded sha256 is finished and skipped.

Resume. A box without a valid ``box.json`` is redone from its last durable step: a catalog that
reads back with its content hash and the box's binding is kept; the others are rebuilt from the
snapshots if ``nbody.json`` matches and the snapshots still have their recorded sha256, else the
N-body run is redone from scratch (a PySCo run cannot be resumed mid-way with the same result).
A ``box.json`` or catalog made by another configuration is refused, never overwritten. A box being
built holds an advisory lock on ``<box>/.lock`` (released by the OS if the process dies), so a
second run started by mistake skips it instead of building it twice.

Workers: serial, a spawned process pool (``--workers N``) or MPI ranks (``mpirun -n N iaemu
build-suite CONFIG --mpi``; boxes dealt round-robin). Each box depends only on its own settings
(and PySCo runs with ``n_threads`` threads, 1 by default), so the catalogs' arrays are identical
whatever ran them; the provenance's timings differ. When every box is finished, ``suite.json``
in ``<output>`` lists the boxes, their roles and their catalogs' hashes.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

from .._io import atomic_write_bytes
from ..errors import IAEmuError
from .suite_config import BoxSpec, SuiteConfig, load_suite_config

__all__ = ["SuiteError", "build_box", "box_status", "build_suite", "catalog_name", "build_parser", "main"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 22


class SuiteError(IAEmuError, RuntimeError):
    """A suite run cannot go on: a box failed, a worker died, or an output belongs to another configuration."""


def catalog_name(redshift: float) -> str:
    """File name of the halo catalog of the snapshot at ``redshift``."""
    return f"halos_z{redshift:.2f}.npz"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True)


def _read_json(path: Path):
    """A JSON file's content, or None if it is missing or unreadable (a damaged marker counts as absent)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode(), durable=True)


def box_status(config: SuiteConfig, box: BoxSpec) -> str:
    """``"done"`` (finished, files verified), ``"partial"`` or ``"new"``.

    Raises
    ------
    SuiteError
        If the box's ``box.json`` was made by another configuration.
    """
    folder = config.output / box.name
    manifest = _read_json(folder / "box.json")
    if manifest is None:
        return "partial" if folder.exists() else "new"
    if _canonical(manifest.get("binding")) != _canonical(config.binding(box)):
        raise SuiteError(f"{folder / 'box.json'} was made by another configuration (its simulation or FoF "
                         f"settings differ from box {box.name!r} of {config.source}); move {folder} away "
                         "or set another 'output'")
    for z in config.snapshots:
        record = (manifest.get("catalogs") or {}).get(catalog_name(z))
        path = folder / catalog_name(z)
        if not record or not path.is_file() or _sha256_file(path) != record.get("sha256"):
            logger.warning("box %s: %s is missing or changed since the box was finished; redoing it",
                           box.name, path.name)
            return "partial"
    return "done"


def _catalog_ok(path: Path, binding: dict) -> bool:
    """Whether ``path`` is a complete catalog (content hash verified) made with ``binding``."""
    from .catalogs import HaloCatalogError, OfflineHaloCatalog

    if not path.is_file():
        return False
    try:
        catalog = OfflineHaloCatalog(path)
    except (HaloCatalogError, OSError) as exc:
        logger.warning("%s is redone: %s", path, exc)
        return False
    if _canonical(catalog.provenance.get("suite_binding")) != _canonical(binding):
        raise SuiteError(f"{path} was made by another configuration; move it away or set another 'output'")
    return True


def _snapshots_ok(folder: Path, binding: dict, redshifts) -> bool:
    """Whether ``nbody.json`` matches ``binding`` and the snapshots at ``redshifts`` still have their sha256."""
    marker = _read_json(folder / "nbody.json")
    if marker is None or _canonical(marker.get("binding")) != _canonical(binding):
        return False
    for z in redshifts:
        record = (marker.get("snapshots") or {}).get(f"{z:.6g}")
        if not record:
            return False
        path = folder / "nbody" / record["path"]
        if not path.is_file() or _sha256_file(path) != record["sha256"]:
            logger.warning("%s: snapshot z = %g is missing or changed; the N-body run is redone", folder, z)
            return False
    return True


def _run_nbody(config: SuiteConfig, box: BoxSpec, folder: Path) -> float:
    """The PySCo run of ``box`` from scratch; writes ``nbody.json``. Returns its wall time, s."""
    from . import nbody

    (folder / "nbody.json").unlink(missing_ok=True)
    shutil.rmtree(folder / "nbody", ignore_errors=True)
    sim = config.simulation(box)
    t0 = time.perf_counter()
    nbody.run_simulation(sim, folder / "nbody")
    wall = time.perf_counter() - t0
    paths = nbody.snapshot_paths(folder / "nbody", sim.snapshot_redshifts)
    snapshots = {f"{z:.6g}": {"path": str(p.relative_to(folder / "nbody")), "sha256": _sha256_file(p)}
                 for z, p in paths.items()}
    _write_json(folder / "nbody.json", {"binding": config.binding(box), "snapshots": snapshots,
                                        "wall_s": wall})
    logger.info("box %s: N-body done in %.0f s", box.name, wall)
    return wall


def _drop_snapshots(config: SuiteConfig, folder: Path) -> None:
    """Delete the initial conditions (PySCo's ``output_00000``) and the particle snapshots not in
    ``keep_snapshots`` (``output_{j+1}`` holds the j-th highest redshift)."""
    drop = [0] + [j + 1 for j, z in enumerate(config.snapshots) if z not in config.keep_snapshots]
    for index in drop:
        for path in (folder / "nbody" / f"output_{index:05d}").glob("particles_*.h5"):
            path.unlink()


@contextlib.contextmanager
def _box_lock(folder: Path):
    """Hold ``<box>/.lock`` (an advisory lock the OS drops when the process dies); yields False
    if another process holds it."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_box(config: SuiteConfig, box: BoxSpec) -> dict | None:
    """Build (or finish) one box: N-body run, a catalog per snapshot, ``box.json``.

    Returns
    -------
    dict or None
        The box's ``box.json`` content; None if another process is building the box now (it is
        left to that process).
    """
    folder = config.output / box.name
    if box_status(config, box) == "done":
        logger.info("box %s: finished, skipped", box.name)
        _drop_snapshots(config, folder)  # left by an older run or a larger keep_snapshots
        return _read_json(folder / "box.json")
    with _box_lock(folder) as locked:
        if not locked:
            logger.warning("box %s: another process is building it; skipped", box.name)
            return None
        return _build_locked(config, box, folder)


def _build_locked(config: SuiteConfig, box: BoxSpec, folder: Path) -> dict:
    from . import nbody
    from .catalog_builder import catalog_from_snapshot, code_versions
    from .catalogs import OfflineHaloCatalog

    if box_status(config, box) == "done":  # finished by another process while we waited
        return _read_json(folder / "box.json")
    binding = config.binding(box)
    t0, cpu0 = time.perf_counter(), time.process_time()
    todo = [z for z in config.snapshots if not _catalog_ok(folder / catalog_name(z), binding)]
    timings = {}
    if todo and not _snapshots_ok(folder, binding, todo):
        timings["nbody_s"] = _run_nbody(config, box, folder)
    sim = config.simulation(box)
    paths = nbody.snapshot_paths(folder / "nbody", sim.snapshot_redshifts, wanted=todo)
    extra = {"suite": {"name": config.name, "box": box.name, "role": box.role}, "suite_binding": binding}
    for z in todo:
        t1 = time.perf_counter()
        catalog_from_snapshot(paths[z], sim, z, folder / catalog_name(z), config.min_particles,
                              config.min_particles_trusted, extra_provenance=extra)
        timings[f"catalog_z{z:g}_s"] = time.perf_counter() - t1
    _drop_snapshots(config, folder)
    catalogs = {}
    for z in config.snapshots:
        path = folder / catalog_name(z)
        prov = OfflineHaloCatalog(path).provenance
        catalogs[path.name] = {"redshift": z, "sha256": _sha256_file(path),
                               "content_sha256": prov["content_sha256"], "n_halos": prov["n_halos"],
                               "particle_mass": prov["particle_mass"]}
    manifest = {"box": {"name": box.name, "omega_m": box.omega_m, "sigma8": box.sigma8, "role": box.role,
                        "seed": box.seed}, "binding": binding, "catalogs": catalogs,
                "timings_s": {**timings, "total_s": time.perf_counter() - t0,
                              "total_cpu_s": time.process_time() - cpu0},
                "code_versions": code_versions()}
    _write_json(folder / "box.json", manifest)
    logger.info("box %s: done (%s)", box.name, ", ".join(f"{k} {v:.0f}" for k, v in manifest["timings_s"].items()))
    return manifest


# -- workers -----------------------------------------------------------------------------------
def _pool_task(raw: dict, base_dir: str, source: str, name: str, log_level: int) -> str:
    package_logger = logging.getLogger("iaemu_likelihood")
    if not logging.getLogger().handlers:  # a spawned worker: log like the parent
        logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s [{name}] %(name)s: %(message)s")
    package_logger.setLevel(log_level)
    config = SuiteConfig(raw, base_dir, source)
    try:
        build_box(config, config.box(name))
    except Exception as exc:  # re-raised in the parent with the box named, as one line
        from ..cli import one_line

        raise SuiteError(f"box {name} failed in worker process {os.getpid()}: {type(exc).__name__}: "
                         f"{one_line(exc)}") from None
    return name


def _run_pool(config: SuiteConfig, todo: list[str], workers: int, bar) -> None:
    """Boxes ``todo`` on ``workers`` spawned processes; the first failure or a dead worker stops the run."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    executor = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
    try:
        level = logging.getLogger("iaemu_likelihood").getEffectiveLevel()
        pending = {executor.submit(_pool_task, config.raw, str(config.base_dir), config.source, name, level)
                   for name in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in finished:
                future.result()
                bar.update()
    except BrokenProcessPool:
        raise SuiteError(f"a worker process of `iaemu build-suite {config.source}` died (killed or out of "
                         "memory); finished boxes are kept, run again to resume") from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _run_mpi(config: SuiteConfig, names: list[str], progress: bool) -> bool:
    """Boxes dealt round-robin over MPI ranks; returns True on rank 0 once every rank is done.

    Rank 0 checks which boxes are finished and tells the others; a rank that fails on a box logs
    the error and aborts every rank (``MPI_Abort``) rather than leaving them waiting.
    """
    from mpi4py import MPI
    from tqdm import tqdm

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    todo, error = None, None
    if rank == 0:
        try:
            todo = _pending(config, names)
        except Exception as exc:  # shared with every rank, then raised everywhere
            error = f"rank 0: {exc}"
    todo, error = comm.bcast((todo, error), root=0)
    if error:
        raise SuiteError(error)
    for name in tqdm(todo[rank::size], desc=f"rank {rank}", disable=rank != 0 or not progress, unit="box"):
        try:
            build_box(config, config.box(name))
        except Exception as exc:
            logger.error("rank %d: box %s failed (%s: %s); aborting every rank", rank, name,
                         type(exc).__name__, exc)
            comm.Abort(1)
    comm.Barrier()
    return rank == 0


def _pending(config: SuiteConfig, names: list[str]) -> list[str]:
    """The boxes of ``names`` that are not finished (checks every finished box's files; deletes the
    particle files a finished box no longer needs)."""
    todo = []
    for name in names:
        if box_status(config, config.box(name)) == "done":
            _drop_snapshots(config, config.output / name)
        else:
            todo.append(name)
    return todo


def _write_suite_manifest(config: SuiteConfig) -> Path:
    boxes = [_read_json(config.output / b.name / "box.json") for b in config.boxes]
    manifest = {"name": config.name, "config": config.raw,
                "boxes": [{**m["box"], "catalogs": m["catalogs"]} for m in boxes]}
    path = config.output / "suite.json"
    _write_json(path, manifest)
    return path


def build_suite(config: SuiteConfig, workers: int = 1, use_mpi: bool = False, only=None,
                progress: bool = True) -> Path | None:
    """Build (or resume) every box of ``config``.

    Parameters
    ----------
    config : SuiteConfig
    workers : int
        Local processes (1: in this process); ignored with ``use_mpi``.
    use_mpi : bool
        Deal the boxes over MPI ranks.
    only : list of str, optional
        Build only these boxes (by name).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    Path or None
        ``<output>/suite.json`` once every box of the suite is finished (on rank 0), else None.
    """
    from tqdm import tqdm

    names = [config.box(n).name for n in only] if only else [b.name for b in config.boxes]
    if use_mpi:
        if not _run_mpi(config, names, progress):
            return None
    else:
        todo = _pending(config, names)
        logger.info("%s: %d of %d boxes to build", config.source, len(todo), len(names))
        with tqdm(total=len(todo), desc="boxes", unit="box", disable=not progress) as bar:
            if workers == 1 or len(todo) <= 1:
                for name in todo:
                    build_box(config, config.box(name))
                    bar.update()
            else:
                _run_pool(config, todo, min(workers, len(todo)), bar)
    if _pending(config, [b.name for b in config.boxes]):
        return None
    return _write_suite_manifest(config)


# -- command line --------------------------------------------------------------------------------
def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("config", help="suite YAML (see training/configs/suite_v2.yaml)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes, one box each")
    p.add_argument("--mpi", action="store_true", help="deal the boxes over MPI ranks (mpirun -n N ...)")
    p.add_argument("--only", nargs="+", metavar="BOX", help="build only these boxes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(args) -> int:
    from ..config_checks import check_int
    from ..errors import ConfigError

    workers = check_int(args.workers, "--workers", minimum=1)
    if workers > (os.cpu_count() or 1):
        raise ConfigError(f"--workers = {workers}: this machine has {os.cpu_count()} CPUs")
    config = load_suite_config(args.config)
    if args.only:
        for name in args.only:
            config.box(name)
    path = build_suite(config, workers=workers, use_mpi=args.mpi, only=args.only,
                       progress=not args.no_progress)
    if path is not None:
        logger.info("suite finished: %s", path)
    return 0
