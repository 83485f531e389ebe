#!/usr/bin/env python
"""NUTS settings on yamls/ia_hod.yaml: warm-up length and target acceptance, over seeds.

Runs ``run_nuts`` (4 chains, ESS >= ``--min-ess`` for every parameter) for every warm-up length,
target acceptance probability and seed in turn, the whole sequence ``--rounds`` times (alternated,
so that all settings see the same machine load), and prints and saves per run: wall seconds (set-up
excluded), the stage timings (start, warm-up, sampling, JAX compile), the gradient evaluations
during and after the warm-up, draws per chain, min ESS, the adapted step size and the divergences
of the last block; then per setting the means over its runs. The time to a fixed ESS varies by
~30% from seed to seed, so compare settings over several seeds. The first run of a setting may
include cold JAX compilation. Writes ``--json`` (default ``benchmarks/results/nuts_warmup.json``).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_nuts_warmup.py [--warmups 400 200] \
        [--target-accepts 0.8 0.7] [--seeds 1 2 3] [--rounds 2] [--json PATH]
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
    parser.add_argument("--target-accepts", type=float, nargs="+", default=None,
                        help="target acceptance probabilities (default: the sampler's)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-ess", type=float, default=1000.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--processes", type=int, default=None,
                        help="processes sharing the chains (default: iaemu sample's, one per "
                             "core; the results on main before this option ran one process)")
    parser.add_argument("--json", default=str(RESULT))
    args = parser.parse_args(argv)

    from iaemu_likelihood._io import atomic_write_bytes
    from iaemu_likelihood.sampling.defaults import DEFAULT_TARGET_ACCEPT
    from iaemu_likelihood.sampling.nuts import run_nuts
    from iaemu_likelihood.sampling.posterior import load_posterior

    yaml_path = Path(args.yaml).resolve()
    os.chdir(REPO)  # the yaml's relative paths are relative to the repository
    accepts = args.target_accepts or [DEFAULT_TARGET_ACCEPT]
    runs = []
    for round_ in range(args.rounds):
        for n_warmup in args.warmups:
            for accept in accepts:
                for seed in args.seeds:
                    posterior = load_posterior(yaml_path)
                    t0 = time.perf_counter()
                    result = run_nuts(posterior, seed=seed, n_warmup=n_warmup, min_ess=args.min_ess,
                                      progress=False, target_accept=accept,
                                      processes=args.processes)
                    info = result.info
                    row = {"round": round_, "warmup": n_warmup, "target_accept": accept, "seed": seed,
                           "processes": info.get("processes"),
                           "wall_seconds": round(time.perf_counter() - t0, 1),
                           "timings": {k: round(v, 1) for k, v in result.timings.items()},
                           "gradient_evaluations": info.get("gradient_evaluations"),
                           "warmup_gradient_evaluations": info.get("warmup_gradient_evaluations"),
                           "samples_per_chain": info.get("samples_per_chain"),
                           "step_size": round(info.get("step_size"), 3),
                           "divergences_last_block": info.get("divergences_last_block"),
                           "min_ess": round(float(result.min_ess), 1),
                           "load_average_1min": os.getloadavg()[0]}
                    runs.append(row)
                    print(json.dumps(row), flush=True)
    means = []
    for n_warmup in args.warmups:
        for accept in accepts:
            rows = [r for r in runs if r["warmup"] == n_warmup and r["target_accept"] == accept]
            means.append({"warmup": n_warmup, "target_accept": accept, "runs": len(rows),
                          **{f"mean_{k}": round(sum(r[k] for r in rows) / len(rows), 1)
                             for k in ("wall_seconds", "gradient_evaluations",
                                       "warmup_gradient_evaluations", "samples_per_chain")},
                          "runs_with_divergences": sum(1 for r in rows if r["divergences_last_block"])})
            print(json.dumps(means[-1]), flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, (json.dumps({"yaml": str(yaml_path), "runs": runs, "means": means},
                                        indent=1) + "\n").encode())
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
