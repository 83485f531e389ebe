#!/usr/bin/env python
"""NUTS warm-up length on yamls/ia_hod.yaml: the default 400 steps per chain against shorter ones.

Runs ``run_nuts`` (4 chains, seed 1, ESS >= ``--min-ess`` for every parameter) with each warm-up
length in turn, the whole sequence ``--rounds`` times (alternated, so that both see the same
machine load), and prints and saves per run: wall seconds, the stage timings (start, warm-up,
sampling, JAX compile) and the gradient evaluations after the warm-up. The first round may include
cold JAX compilation. Writes ``benchmarks/results/nuts_warmup.json``.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_nuts_warmup.py [--warmups 400 200] [--rounds 2]
"""
import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "nuts_warmup.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yaml", default=str(REPO / "yamls" / "ia_hod.yaml"))
    parser.add_argument("--warmups", type=int, nargs="+", default=[400, 200])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-ess", type=float, default=1000.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=str(RESULT))
    args = parser.parse_args(argv)

    from iaemu_likelihood._io import atomic_write_bytes
    from iaemu_likelihood.sampling.nuts import run_nuts
    from iaemu_likelihood.sampling.posterior import load_posterior

    yaml_path = Path(args.yaml).resolve()
    os.chdir(REPO)  # the yaml's relative paths are relative to the repository
    runs = []
    for round_ in range(args.rounds):
        for n_warmup in args.warmups:
            posterior = load_posterior(yaml_path)
            t0 = time.perf_counter()
            result = run_nuts(posterior, seed=args.seed, n_warmup=n_warmup, min_ess=args.min_ess,
                              progress=False)
            row = {"round": round_, "warmup": n_warmup, "wall_seconds": round(time.perf_counter() - t0, 1),
                   "timings": {k: round(v, 1) for k, v in result.timings.items()},
                   "gradient_evaluations": result.info.get("gradient_evaluations"),
                   "min_ess": round(float(result.min_ess), 1), "load_average_1min": os.getloadavg()[0]}
            runs.append(row)
            print(json.dumps(row), flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, (json.dumps({"yaml": str(yaml_path), "runs": runs}, indent=1) + "\n").encode())
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
