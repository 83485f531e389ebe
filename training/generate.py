"""``iaemu generate``: a training set of halotools-IA mocks, resumable and worker-count independent.

For each design point, ``n_realizations`` mocks are populated and xi, omega, eta measured. Every
realization's seed is a pure function of (config seed, point index, realization index, attempt),
so the dataset does not depend on how the work was split.

Resume. Each finished point is written at once to ``<output>.parts/point_XXXXXX.npz``
(temporary file + rename) together with what produced it: point index, parameters, seed, a hash
of the result-changing config and the halo catalog hash (:mod:`.generation_parts`). On restart
a part counts only if it reads back completely and its binding matches the current config;
anything else (another seed or design, a part copied from another point, a damaged file) is
logged with its reason and redone.

Assembly. When every point is done the parts are read and checked once more, assembled in point
order into ``<output>`` (written atomically and flushed to disk, after ``<stem>.timings.json``),
and only then deleted with their folder. An interrupted assembly leaves either the parts (the
next run assembles again) or the finished dataset plus leftover parts (the next run sees the
finished dataset and deletes them); temporary files of interrupted writes are deleted when the
next run starts. A rerun on a finished dataset does nothing; an existing ``<output>`` made by
another configuration is refused, never overwritten.

Workers: a local process pool (``--workers N``, default 1) or MPI (``mpirun -n N iaemu generate
--mpi ...``; mpi4py). Pair counting runs single-threaded inside each worker so results are
bit-identical whatever the number of workers. Inputs (config, halo catalog) are checked before
any worker starts; a worker that fails (in its set-up or on a point) or dies stops the run with
its error, keeping every finished point.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes
from ..conventions import PARAM_NAMES, STATISTICS
from ..errors import IAEmuError
from .generation_config import GenerationConfig, load_config
from .generation_parts import (COUNT_ARRAYS, realization_seed, remove_stale_temporaries, rounded,
                               scan_parts, write_part)

__all__ = ["GenerationConfig", "GenerationError", "load_config", "realization_seed", "run_point",
           "generate", "assemble", "build_parser", "main"]

logger = logging.getLogger(__name__)


class GenerationError(IAEmuError, RuntimeError):
    """A generation run cannot go on: a worker failed or died, or the output belongs to another run."""


def run_point(simulator, config: GenerationConfig, i: int) -> dict:
    """All realizations of design point ``i``; retries realizations with non-finite statistics."""
    theta = dict(zip(PARAM_NAMES, config.params[i].tolist()))
    n_bins = simulator.rbins.size - 1
    out = {name: np.full((config.n_realizations, n_bins), np.nan) for name in STATISTICS}
    for name in ("n_gal", "n_cen", "n_sat", "seeds", "retries"):
        out[name] = np.zeros(config.n_realizations, dtype=np.int64)
    t0 = time.perf_counter()
    for j in range(config.n_realizations):
        for attempt in range(config.max_retries + 1):
            seed = realization_seed(config.seed, i, j, attempt)
            res = simulator.realization(theta, seed)
            finite = all(np.all(np.isfinite(res[s])) for s in STATISTICS)
            if finite:
                break
            logger.warning("point %d realization %d attempt %d: non-finite statistics (n_gal=%d); retrying",
                           i, j, attempt, res["n_gal"])
        for name in STATISTICS:
            out[name][j] = res[name]
        for name in ("n_gal", "n_cen", "n_sat"):
            out[name][j] = res[name]
        out["seeds"][j] = seed
        out["retries"][j] = attempt if finite else config.max_retries + 1
    out["wall_s"] = np.array(time.perf_counter() - t0)
    return out


# -- workers -----------------------------------------------------------------------------------
_WORKER = {}


def _simulator(config: GenerationConfig, i: int, cache: dict):
    """The mock simulator of point ``i``'s catalog, one per catalog, kept in ``cache``."""
    from .forward_model import MockSimulator

    key = None if config.point_snapshot is None else int(config.point_snapshot[i])
    if key not in cache:
        cache[key] = MockSimulator(config.point_catalog(i), config.rbins, num_threads=1)
    return cache[key]


def _one_line(exc: BaseException) -> str:
    """``"Type: message"`` on one line, for errors carried from a worker to the parent."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _worker_init(config_raw, base_dir, source):
    """Set up a worker (config, halo catalog, simulator). Never raises: a failure is kept and
    raised by every task, so the parent sees the worker's own message instead of a pool that
    respawns failing workers forever."""
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    _WORKER.clear()
    try:
        config = GenerationConfig(config_raw, base_dir, source)
        _WORKER["sims"] = {}
        if config.suite is None:  # one catalog: load it now, so a bad one stops every worker at once
            _simulator(config, 0, _WORKER["sims"])
        _WORKER["config"] = config
    except Exception as exc:  # reported by the tasks, see _worker_task
        _WORKER["error"] = _one_line(exc)


def _worker_task(i: int) -> tuple[int, float]:
    if "error" in _WORKER:
        raise GenerationError(f"worker process {os.getpid()} could not start: {_WORKER['error']}")
    config = _WORKER["config"]
    try:
        result = run_point(_simulator(config, i, _WORKER["sims"]), config, i)
        write_part(config, i, result)
    except Exception as exc:  # re-raised in the parent with the point named
        raise GenerationError(f"point {i} failed in worker process {os.getpid()}: "
                              f"{_one_line(exc)}") from None
    return i, float(result["wall_s"])


def _run_serial(config: GenerationConfig, todo: list[int], bar) -> None:
    """Every point in this process, numba on one thread as in a worker. (Not through the
    NUMBA_NUM_THREADS variable: once numba's threads run, changing it fails the next compilation.)"""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        sims = {}
        for i in todo:
            write_part(config, i, run_point(_simulator(config, i, sims), config, i))
            bar.update()
    finally:
        numba.set_num_threads(previous)


def _run_pool(config: GenerationConfig, todo: list[int], workers: int, bar,
              initializer=_worker_init) -> None:
    """Run ``todo`` on ``workers`` spawned processes; the first failure stops the run.

    ``initializer`` (called with the config's raw mapping, folder and source in each worker) is
    :func:`_worker_init`; tests pass others to check that a set-up failure cannot hang the run.

    A worker that dies (killed, out of memory, a crash in compiled code) breaks the pool and
    raises :class:`GenerationError` instead of hanging; points already running in other workers
    finish first (their parts are kept).
    """
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    executor = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=initializer,
                                   initargs=(config.raw, config.base_dir, config.source))
    try:
        pending = {executor.submit(_worker_task, i) for i in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in finished:
                future.result()  # the worker's error, if any
                bar.update()
    except BrokenProcessPool:
        raise GenerationError(f"a worker process of `iaemu generate {config.source}` died (killed, out "
                              "of memory, crashed, or its initializer raised: see its traceback "
                              "above); finished points are kept, run again to resume") from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _run_mpi(config: GenerationConfig, max_points: int | None, progress: bool) -> bool:
    """Static round-robin over ranks; rank 0 assembles. Returns True on rank 0.

    Every rank checks its own set-up; if one fails, all stop with its message. A rank that fails
    on a point logs the error and aborts every rank (``MPI_Abort``) rather than leaving the
    others waiting forever.
    """
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    todo, error = None, None
    if rank == 0:
        try:
            remove_stale_temporaries(config)
            todo = _ready(config, scan_parts(config)[1])
        except Exception as exc:  # shared with every rank below, then raised everywhere
            error = f"rank 0: {_one_line(exc)}"
    todo, error = comm.bcast((todo, error), root=0)
    if error:
        raise GenerationError(error)
    if max_points is not None:
        todo = todo[:max_points]
    mine = todo[rank::size]
    if mine:
        _worker_init(config.raw, config.base_dir, config.source)
    errors = [e for e in comm.allgather(_WORKER.get("error")) if e]
    if errors:
        raise GenerationError(f"{len(errors)} MPI rank(s) could not start; first: {errors[0]}")
    from tqdm import tqdm

    for i in tqdm(mine, desc=f"rank {rank}", disable=rank != 0 or not progress, unit="point"):
        try:
            _worker_task(i)
        except GenerationError as exc:
            logger.error("rank %d: %s; aborting every rank", rank, exc)
            comm.Abort(1)
    comm.Barrier()
    return rank == 0


# -- assembly ----------------------------------------------------------------------------------
def assemble(config: GenerationConfig, parts: dict | None = None) -> Path:
    """Combine the part files, in point order, into the dataset file.

    Parameters
    ----------
    config : GenerationConfig
    parts : dict, optional
        point -> arrays already read and checked by :func:`.generation_parts.scan_parts`
        (default: read and check them here).

    The dataset is written atomically and flushed to disk after the timings file; the parts
    and their folder are deleted only then.

    Raises
    ------
    GenerationError
        If some point has no part that counts.
    """
    from .catalog_builder import code_versions
    from .dataset_io import IADataset, save_dataset

    if parts is None:
        parts, missing = scan_parts(config)
        if missing:
            raise GenerationError(f"{config.output}: {len(missing)} design points are not done "
                                  f"(first: {missing[:5]}); run `iaemu generate {config.source}` again")
    parts = [parts[i] for i in range(config.n_points)]
    stack = {name: np.stack([p[name] for p in parts]) for name in (*STATISTICS, *COUNT_ARRAYS)}
    wall = np.array([float(p["wall_s"]) for p in parts])
    provenance = {
        "name": config.name, "config": config.raw, "seed": config.seed,
        "design_rule": config.rule.to_dict(), "param_names": list(PARAM_NAMES),
        "unit_cube": None if config.unit_cube is None else config.unit_cube.tolist(),
        **_catalog_provenance(config),
        "code_versions": code_versions(), "generation_binding": config.binding(),
        # wall times depend on the machine; they are summarised, not stored per point, so the
        # dataset is identical whatever ran it
        "n_failed_realizations": int(np.sum(stack["retries"] > config.max_retries)),
    }
    dataset = IADataset(params=config.params.copy(), r_edges=config.rbins.copy(),
                        provenance=provenance, **stack)
    timing = {"mean_s_per_point": float(wall.mean()),
              "mean_s_per_realization": float(wall.mean() / config.n_realizations),
              "total_cpu_s": float(wall.sum())}
    atomic_write_bytes(config.timings_path, json.dumps(timing, indent=2).encode())
    # the dataset is the commit point: once it is on disk the parts are redundant
    path = save_dataset(config.output, dataset, durable=True)
    _remove_parts(config)
    logger.info("assembled %d points into %s; timings %s", config.n_points, path, timing)
    return path


def _catalog_provenance(config: GenerationConfig) -> dict:
    """The dataset's catalog entries: the catalog and its mass function, or, over a suite, the
    suite, its mass cut and every point's box, Omega_m, sigma_8, z and catalog hash
    (``point_inputs``; the host mass functions are tabulated by ``training/mass_function.py``)."""
    if config.suite is None:
        catalog = config.catalog()
        return {"halo_catalog": catalog.describe(), "halo_mass_function": {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in catalog.mass_function().items()}}
    snaps = [config.suite.snapshots[k] for k in config.point_snapshot]
    bindings = [config.point_catalog_binding(i) for i in range(config.n_points)]
    return {"halo_catalog": {**config.suite.binding(), "suite_config": config.suite.config_path.name},
            "halo_mass_function": None,
            "point_inputs": {"box": [s.box for s in snaps], "omega_m": [s.omega_m for s in snaps],
                             "sigma8": [s.sigma8 for s in snaps], "z": [s.z for s in snaps],
                             "catalog_sha256": [b["sha256"] for b in bindings],
                             "min_particles": [b["min_particles"] for b in bindings]}}


def _ready(config: GenerationConfig, todo: list[int]) -> list[int]:
    """The points of ``todo`` whose catalog exists; logs how many wait for unfinished suite boxes."""
    ready, waiting = config.ready(todo)
    if waiting:
        boxes = sorted({config.suite.snapshots[config.point_snapshot[i]].box for i in waiting})
        logger.info("%d points wait for suite boxes not built yet (%s); run again once they are",
                    len(waiting), ", ".join(boxes[:8]) + (", ..." if len(boxes) > 8 else ""))
    return ready


def _remove_parts(config: GenerationConfig) -> None:
    """Delete the part files and temporaries of a finished dataset, then their folder if empty."""
    folder = config.parts_dir
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.name.startswith(("point_", ".point_")) and p.suffix in (".npz", ".tmp"):
            p.unlink(missing_ok=True)
    left = sorted(p.name for p in folder.iterdir())
    if left:
        logger.warning("%s kept: it holds files iaemu did not write (%s)", folder, left[:5])
    else:
        folder.rmdir()


def _dataset_mismatch(config: GenerationConfig, dataset) -> str | None:
    """How an existing dataset differs from what ``config`` would make (None: it is that dataset)."""
    prov = dataset.provenance
    expected = config.binding()
    found = {"seed": prov.get("seed"), "n_realizations": dataset.n_realizations,
             "max_retries": (prov.get("config") or {}).get("max_retries", 5),
             "rbins": rounded(dataset.r_edges),
             "catalog": {k: (prov.get("halo_catalog") or {}).get(k) for k in expected["catalog"]}}
    diff = [f"{k} {json.dumps(found[k])[:60]} != {json.dumps(expected[k])[:60]}"
            for k in expected if found[k] != expected[k]]
    if dataset.params.shape != config.params.shape or rounded(dataset.params) != rounded(config.params):
        diff.append(f"design points differ ({dataset.n_points} points in the file, "
                    f"{config.n_points} in the config)")
    elif config.suite is not None:
        inputs = prov.get("point_inputs") or {}
        expected_sha = [config.point_catalog_binding(i)["sha256"] for i in range(config.n_points)]
        if inputs.get("catalog_sha256") != expected_sha:
            diff.append("the points' suite catalogs differ (boxes rebuilt since?)")
    return "; ".join(diff) or None


def _is_complete(config: GenerationConfig) -> bool:
    """Whether ``config.output`` is the finished dataset of ``config``.

    Raises
    ------
    GenerationError
        If the file exists, reads, but was made by another configuration.
    """
    if not config.output.is_file():
        return False
    from .dataset_io import load_dataset

    try:
        ds = load_dataset(config.output)
    except (OSError, ValueError) as exc:
        logger.warning("%s exists but cannot be read (%s); it is replaced when this run finishes",
                       config.output, exc)
        return False
    mismatch = _dataset_mismatch(config, ds)
    if mismatch:
        raise GenerationError(f"{config.output} exists but was made by another configuration "
                              f"({mismatch}); move it away or set another 'output' in {config.source}")
    return True


def generate(config: GenerationConfig, workers: int = 1, use_mpi: bool = False,
             max_points: int | None = None, progress: bool = True) -> Path | None:
    """Run (or resume) a generation; returns the dataset path once every point is done.

    Parameters
    ----------
    config : GenerationConfig
    workers : int
        Local worker processes (>= 1); ignored with ``use_mpi``.
    use_mpi : bool
        Distribute over MPI ranks.
    max_points : int, optional
        Stop after this many new points (>= 1); run again to resume.
    progress : bool
        tqdm progress bar.

    Returns
    -------
    Path or None
        The dataset, or None while points are left (or on MPI ranks other than 0).

    Raises
    ------
    GenerationError
        A worker failed or died, or ``config.output`` was made by another configuration.
    """
    from ..config_checks import check_int

    workers = check_int(workers, "--workers", minimum=1)
    if not use_mpi and workers > (os.cpu_count() or 1):
        logger.warning("--workers %d is more than the %d CPU cores here; each worker holds the halo "
                       "catalog in memory", workers, os.cpu_count() or 1)
    if max_points is not None:
        max_points = check_int(max_points, "--max-points", minimum=1)
    if _is_complete(config):
        _remove_parts(config)  # left if an earlier assembly was interrupted after the write
        logger.info("%s is already complete (%d points); nothing to do", config.output, config.n_points)
        return config.output
    if use_mpi:
        if not _run_mpi(config, max_points, progress):
            return None
    else:
        config.binding()  # loads and checks the halo catalog (suite: the suite) before any worker starts
        remove_stale_temporaries(config)
        todo = _ready(config, scan_parts(config)[1])
        if max_points is not None:
            todo = todo[:max_points]
        if todo:
            from tqdm import tqdm

            with tqdm(total=len(todo), desc=f"generate {config.name}", unit="point", smoothing=0.05,
                      disable=not progress) as bar:
                if workers == 1:
                    _run_serial(config, todo, bar)
                else:
                    _run_pool(config, todo, min(workers, len(todo)), bar)
    parts, missing = scan_parts(config)
    if missing:
        logger.info("stopped with %d points left; run again to resume", len(missing))
        return None
    return assemble(config, parts)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="generation config YAML")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--mpi", action="store_true", help="distribute over MPI ranks (mpirun -n N ...)")
    p.add_argument("--max-points", type=int, default=None,
                   help="stop after this many new points (resume later)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(args) -> int:
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    config = load_config(args.config)
    path = generate(config, workers=args.workers, use_mpi=args.mpi, max_points=args.max_points,
                    progress=not args.no_progress)
    if path is not None:
        logger.info("dataset: %s", path)
    return 0
