"""``iaemu sample YAML --sampler {nuts,ensemble}``: sample a Cobaya yaml's posterior without Cobaya.

Examples
--------
``iaemu sample yamls/ia_hod.yaml`` (ensemble) writes ``chains/ia_hod.1.txt`` and its yamls (the
yaml's ``output``); ``--sampler nuts -o chains/ia_hod_nuts`` writes one file per NUTS chain
elsewhere; ``iaemu plot chains/ia_hod_nuts`` draws it. An existing output is refused unless
``--force`` (start over) or ``--resume`` (continue from ``PREFIX.state.npz``, which the samplers
save after the NUTS warm-up and after every block: an interrupted run goes on from its last
block and, with the same options, ends with the chain the uninterrupted run would have given).
"""
from __future__ import annotations

import argparse
import logging
import sys

from .defaults import (BACKENDS, DEFAULT_CHAINS, DEFAULT_MAX_SAMPLES, DEFAULT_MAX_STEPS,
                       DEFAULT_MIN_ESS, DEFAULT_TARGET_ACCEPT, DEFAULT_WALKERS)

__all__ = ["build_parser", "main", "SAMPLERS", "DEFAULT_SEED"]

log = logging.getLogger(__name__)

SAMPLERS = ("nuts", "ensemble")
#: Seed when neither --seed nor the yaml's sampler block gives one.
DEFAULT_SEED = 0


def build_parser(prog: str = "iaemu sample") -> argparse.ArgumentParser:
    """Command-line options of ``iaemu sample``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Sample the posterior of a Cobaya input yaml (IAEmuTheory + "
                               "IAEmuLikelihood) with NUTS or a vectorised ensemble; writes a "
                               "Cobaya-style chain at the yaml's output prefix.")
    parser.add_argument("yaml", help="Cobaya input file, as given to cobaya-run")
    parser.add_argument("--sampler", choices=SAMPLERS, default="ensemble",
                        help="ensemble (emcee DEMove over the batched emulator, see --backend; default, "
                             "the faster on ia_hod.yaml: benchmarks/results/samplers.json) or nuts "
                             "(NumPyro, gradients through the JAX mirror of the emulator)")
    parser.add_argument("-o", "--output", default=None,
                        help="output prefix (overrides the yaml's 'output', as cobaya-run -o)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("-f", "--force", action="store_true",
                       help="overwrite an existing output with this prefix")
    again.add_argument("-r", "--resume", action="store_true",
                       help="continue an interrupted run from its saved state (PREFIX.state.npz, "
                            "saved after every block) with the same seed, chains or walkers and "
                            "yaml; starts a new run if the output does not exist")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: the yaml sampler's 'seed', else "
                             f"{DEFAULT_SEED})")
    parser.add_argument("--min-ess", type=float, default=float(DEFAULT_MIN_ESS),
                        help="stop once every parameter has this effective sample size (default "
                             f"{DEFAULT_MIN_ESS})")
    parser.add_argument("--max-samples", type=int, default=None,
                        help="cap on post-warm-up samples per NUTS chain (default "
                             f"{DEFAULT_MAX_SAMPLES}) or steps per ensemble walker (default "
                             f"{DEFAULT_MAX_STEPS}), reached before --min-ess")
    parser.add_argument("--chains", type=int, default=None,
                        help=f"NUTS chains (default {DEFAULT_CHAINS})")
    parser.add_argument("--target-accept", type=float, default=DEFAULT_TARGET_ACCEPT,
                        help=f"NUTS target acceptance probability, in (0, 1) (default "
                             f"{DEFAULT_TARGET_ACCEPT}); raise it (e.g. 0.9) when the run reports "
                             "divergent transitions")
    parser.add_argument("--processes", type=int, default=None,
                        help="NUTS processes sharing the chains (default: one per available core, "
                             "at most one per chain); the draws are the same whatever the number")
    parser.add_argument("--walkers", type=int, default=None,
                        help=f"ensemble walkers (default {DEFAULT_WALKERS})")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="how the ensemble evaluates the log-posterior: compiled JAX (auto: "
                             "where the weights have a JAX mirror; 1.3-2.7x faster per point) or the "
                             "batched numpy emulator")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _yaml_seed(info) -> int | None:
    for options in (info.get("sampler") or {}).values():
        if isinstance(options, dict) and options.get("seed") is not None:
            return int(options["seed"])
    return None


def _check_counts(args):
    for name in ("chains", "walkers", "max_samples", "processes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} = {value} must be a positive integer")
    if not args.min_ess > 0:
        raise ValueError(f"--min-ess = {args.min_ess} must be > 0")
    if not 0.0 < args.target_accept < 1.0:
        raise ValueError(f"--target-accept = {args.target_accept} must lie strictly between 0 "
                         "and 1")


def main(args) -> int:
    """Run ``iaemu sample``; returns the exit status."""
    from .checkpoint import state_path
    from .output import prepare_output, write_chains
    from .posterior import load_posterior, read_input

    _check_counts(args)
    info = read_input(args.yaml)
    prefix = args.output or info.get("output")
    if not prefix:
        raise ValueError(f"{args.yaml} has no 'output' prefix; give one with -o PREFIX")
    prefix = prepare_output(prefix, args.force, args.resume)  # refuse early, before any work
    state = {"state_file": state_path(prefix), "resume": args.resume}
    seed = args.seed if args.seed is not None else _yaml_seed(info)
    seed = DEFAULT_SEED if seed is None else seed
    progress = not args.no_progress
    if args.sampler == "nuts":
        from .chain_workers import spawn_for, stop_processes
        from .nuts import run_nuts

        n_chains = args.chains or DEFAULT_CHAINS
        # NUTS's worker processes import their libraries while this one builds the posterior
        spawned = spawn_for(n_chains, args.processes)
        try:
            posterior = load_posterior(info)
        except BaseException:
            stop_processes(spawned)
            raise
        result = run_nuts(posterior, seed=seed, n_chains=n_chains, min_ess=args.min_ess,
                          progress=progress, **state, target_accept=args.target_accept,
                          processes=args.processes, spawned=spawned,
                          **({"max_samples": args.max_samples} if args.max_samples else {}))
    else:
        from .ensemble import run_ensemble

        posterior = load_posterior(info)
        result = run_ensemble(posterior, seed=seed, n_walkers=args.walkers or DEFAULT_WALKERS,
                              min_ess=args.min_ess, progress=progress, backend=args.backend,
                              **state,
                              **({"max_steps": args.max_samples} if args.max_samples else {}))
    sampler_info = {f"iaemu.{args.sampler}": {
        **result.info, "min_ess": round(result.min_ess, 1),
        "ess": {k: round(v, 1) for k, v in result.ess.items()},
        "rhat_minus_1": {k: float(f"{v - 1:.3g}") for k, v in result.rhat.items()},
        "wall_seconds": round(result.wall_seconds, 3)}}
    paths = write_chains(prefix, posterior, result.chains, sampler_info, result.logpost)
    log.info("%s: %.1f s, min ESS %.0f, max R-hat %.4f", args.sampler, result.wall_seconds,
             result.min_ess, max(result.rhat.values()))
    sys.stdout.write(f"{prefix}: {len(paths)} chain file(s), min ESS {result.min_ess:.0f}, "
                     f"{result.wall_seconds:.1f} s\n")
    return 0
