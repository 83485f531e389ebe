"""``iaemu generate``: a training set of halotools-IA mocks, resumable and worker-count independent.

For each design point, ``n_realizations`` mocks are populated and xi, omega, eta measured. Every
realization's seed is a pure function of (config seed, point index, realization index, attempt),
so the dataset does not depend on how the work was split. Each finished point is written at once
to ``<output>.parts/point_XXXXXX.npz`` (temporary file + rename); a killed run skips those on
restart. When every point is done the parts are assembled, in point order, into ``<output>`` and
removed; a rerun on a finished dataset does nothing.

Workers: a local process pool (``--workers N``, default) or MPI (``mpirun -n N iaemu generate
--mpi ...``; mpi4py). Pair counting runs single-threaded inside each worker so results are
bit-identical whatever the number of workers.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..conventions import PARAM_NAMES, R_EDGES, STATISTICS

__all__ = ["GenerationConfig", "load_config", "realization_seed", "run_point", "generate",
           "assemble", "build_parser", "main"]

logger = logging.getLogger(__name__)


class GenerationConfig:
    """A generation run, read from YAML (see ``training/configs/*.yaml``).

    Keys: ``name``, ``seed``, ``n_points``, ``n_realizations``, ``max_retries``, ``output``,
    ``catalog`` (see :func:`.catalogs.load_catalog_source`), ``design`` (fields of
    :class:`.design.DesignRule`), optional ``points`` (explicit parameter rows instead of a design)
    and ``rbins`` (bin edges in h^-1 Mpc; default the emulator's 20 bins).
    Relative paths are resolved against the config file's folder.
    """

    def __init__(self, raw: dict, base_dir: str | os.PathLike = "."):
        self.raw = dict(raw)
        self.base_dir = Path(base_dir).resolve()
        try:
            self.name = str(raw["name"])
            self.seed = int(raw["seed"])
            self.n_realizations = int(raw.get("n_realizations", 10))
            self.max_retries = int(raw.get("max_retries", 5))
            self.catalog_spec = dict(raw["catalog"])
            output = Path(raw["output"])
            self.rbins = np.asarray(raw.get("rbins", R_EDGES), dtype=float)
        except KeyError as exc:
            raise ValueError(f"generation config lacks key {exc}") from None
        self.output = output if output.is_absolute() else self.base_dir / output
        from .design import DesignRule

        design = dict(raw.get("design", {}))
        self.rule = DesignRule(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in design.items()
                                  if k != "floors"},
                               **({"floors": tuple(sorted(design["floors"].items()))}
                                  if "floors" in design else {}))
        if "points" in raw:
            self.params = np.atleast_2d(np.asarray(raw["points"], dtype=float))
            self.unit_cube = None
        else:
            from .design import make_design

            self.unit_cube, self.params = make_design(int(raw["n_points"]), self.seed, self.rule)
        if self.params.shape[1] != len(PARAM_NAMES):
            raise ValueError(f"design points must have {len(PARAM_NAMES)} columns {PARAM_NAMES}")
        if self.n_realizations < 2:
            raise ValueError(f"n_realizations={self.n_realizations} must be >= 2 (the scatter is a target)")

    @property
    def n_points(self) -> int:
        return self.params.shape[0]

    @property
    def parts_dir(self) -> Path:
        return self.output.with_name(self.output.name + ".parts")

    def part_path(self, i: int) -> Path:
        return self.parts_dir / f"point_{i:06d}.npz"

    def catalog(self):
        from .catalogs import load_catalog_source

        return load_catalog_source(self.catalog_spec, self.base_dir)


def load_config(path: str | os.PathLike) -> GenerationConfig:
    """Read a generation config YAML file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"generation config {path} does not exist")
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    return GenerationConfig(raw, path.parent)


def realization_seed(base_seed: int, point: int, realization: int, attempt: int = 0) -> int:
    """The seed of one realization, independent of scheduling (a 31-bit int)."""
    state = np.random.SeedSequence([int(base_seed), int(point), int(realization), int(attempt)])
    return int(state.generate_state(1, dtype=np.uint32)[0] >> 1)


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


def _write_part(path: Path, i: int, result: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, point=np.array(i), **result)
    os.replace(tmp, path)


def _part_is_valid(path: Path, config: GenerationConfig) -> bool:
    try:
        with np.load(path, allow_pickle=False) as d:
            return d["xi"].shape[0] == config.n_realizations and int(d["point"]) >= 0
    except Exception:  # a truncated or foreign file is simply redone
        return False


def pending_points(config: GenerationConfig) -> list[int]:
    """Design points without a valid part file."""
    config.parts_dir.mkdir(parents=True, exist_ok=True)
    return [i for i in range(config.n_points) if not _part_is_valid(config.part_path(i), config)]


# -- workers -----------------------------------------------------------------------------------
_WORKER = {}


def _worker_init(config_raw, base_dir):
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from .forward_model import MockSimulator

    config = GenerationConfig(config_raw, base_dir)
    _WORKER["config"] = config
    _WORKER["sim"] = MockSimulator(config.catalog(), config.rbins, num_threads=1)


def _worker_task(i: int) -> tuple[int, float]:
    config = _WORKER["config"]
    result = run_point(_WORKER["sim"], config, i)
    _write_part(config.part_path(i), i, result)
    return i, float(result["wall_s"])


def _run_pool(config: GenerationConfig, todo: list[int], workers: int, max_points: int | None) -> None:
    from tqdm import tqdm

    if max_points is not None:
        todo = todo[:max_points]
    if not todo:
        return
    bar = tqdm(total=len(todo), desc=f"generate {config.name}", unit="point", smoothing=0.05)
    if workers <= 1:
        _worker_init(config.raw, config.base_dir)
        for i in todo:
            _worker_task(i)
            bar.update()
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_worker_init, initargs=(config.raw, config.base_dir)) as pool:
            for _ in pool.imap_unordered(_worker_task, todo, chunksize=1):
                bar.update()
    bar.close()


def _run_mpi(config: GenerationConfig, max_points: int | None) -> bool:
    """Static round-robin over ranks; rank 0 assembles. Returns True on rank 0."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    todo = pending_points(config) if rank == 0 else None
    todo = comm.bcast(todo, root=0)
    if max_points is not None:
        todo = todo[:max_points]
    mine = todo[rank::size]
    if mine:
        _worker_init(config.raw, config.base_dir)
        from tqdm import tqdm

        for i in tqdm(mine, desc=f"rank {rank}", disable=rank != 0, unit="point"):
            _worker_task(i)
    comm.Barrier()
    return rank == 0


# -- assembly ----------------------------------------------------------------------------------
def assemble(config: GenerationConfig) -> Path:
    """Combine the part files, in point order, into the dataset file."""
    from .catalog_builder import code_versions
    from .dataset_io import IADataset, save_dataset

    missing = pending_points(config)
    if missing:
        raise RuntimeError(f"{len(missing)} design points are not done (first: {missing[:5]}); run again")
    parts = []
    for i in range(config.n_points):
        with np.load(config.part_path(i), allow_pickle=False) as d:
            parts.append({k: d[k] for k in d.files})
    stack = {name: np.stack([p[name] for p in parts]) for name in
             (*STATISTICS, "n_gal", "n_cen", "n_sat", "seeds", "retries")}
    wall = np.array([float(p["wall_s"]) for p in parts])
    catalog = config.catalog()
    provenance = {
        "name": config.name, "config": config.raw, "seed": config.seed,
        "design_rule": config.rule.to_dict(), "param_names": list(PARAM_NAMES),
        "unit_cube": None if config.unit_cube is None else config.unit_cube.tolist(),
        "halo_catalog": catalog.describe(), "halo_mass_function": {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in catalog.mass_function().items()},
        "code_versions": code_versions(),
        # wall times depend on the machine; they are summarised, not stored per point, so the
        # dataset is identical whatever ran it
        "n_failed_realizations": int(np.sum(stack["retries"] > config.max_retries)),
    }
    dataset = IADataset(params=config.params.copy(), r_edges=config.rbins.copy(),
                        provenance=provenance, **stack)
    path = save_dataset(config.output, dataset)
    timing = {"mean_s_per_point": float(wall.mean()),
              "mean_s_per_realization": float(wall.mean() / config.n_realizations),
              "total_cpu_s": float(wall.sum())}
    timing_path = config.output.with_name(config.output.stem + ".timings.json")
    timing_path.write_text(json.dumps(timing, indent=2))
    # the parts are now redundant (a rerun sees the finished dataset and stops)
    for i in range(config.n_points):
        config.part_path(i).unlink()
    for leftover in config.parts_dir.glob("*.tmp"):
        leftover.unlink()
    config.parts_dir.rmdir()
    logger.info("assembled %d points into %s; timings %s", config.n_points, path, timing)
    return path


def _is_complete(config: GenerationConfig) -> bool:
    if not config.output.is_file():
        return False
    from .dataset_io import load_dataset

    try:
        ds = load_dataset(config.output)
    except (OSError, ValueError):
        return False
    return (ds.n_points == config.n_points and ds.n_realizations == config.n_realizations
            and np.array_equal(ds.params, config.params))


def generate(config: GenerationConfig, workers: int = 1, use_mpi: bool = False,
             max_points: int | None = None) -> Path | None:
    """Run (or resume) a generation; returns the dataset path once every point is done.

    A finished dataset (``config.output`` with the configured design points) is left alone.
    """
    if _is_complete(config):
        logger.info("%s is already complete (%d points); nothing to do", config.output, config.n_points)
        return config.output
    if use_mpi:
        if not _run_mpi(config, max_points):
            return None
    else:
        _run_pool(config, pending_points(config), workers, max_points)
    if pending_points(config):
        logger.info("stopped with %d points left; run again to resume", len(pending_points(config)))
        return None
    return assemble(config)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="generation config YAML")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--mpi", action="store_true", help="distribute over MPI ranks (mpirun -n N ...)")
    p.add_argument("--max-points", type=int, default=None,
                   help="stop after this many new points (resume later)")
    return p


def main(args) -> int:
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    config = load_config(args.config)
    path = generate(config, workers=args.workers, use_mpi=args.mpi, max_points=args.max_points)
    if path is not None:
        logger.info("dataset written: %s", path)
    return 0
