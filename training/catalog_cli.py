"""``iaemu build-catalog``: the offline halo catalog (CAMB + PySCo + kdcount FoF)."""
from __future__ import annotations

import argparse
import logging

from ..cli import subcommand_parser
from .nbody import BOLSHOI_PLANCK, DEFAULT_STEPPING, SimulationConfig

logger = logging.getLogger(__name__)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = subcommand_parser(prog, __doc__, show_defaults=True)
    p.add_argument("--output", required=True, help="catalog .npz to write")
    p.add_argument("--workdir", required=True, help="folder for the N-body run (GBs; reused if present)")
    p.add_argument("--box-size", type=float, default=250.0, help="box side, h^-1 Mpc")
    p.add_argument("--n-particles-1d", type=int, default=512, help="particles per dimension (power of 2)")
    p.add_argument("--seed", type=int, default=SimulationConfig.seed, help="initial-conditions seed")
    p.add_argument("--z-start", type=float, default=49.0, help="starting redshift (2LPT)")
    p.add_argument("--threads", type=int, default=2, help="PySCo threads")
    p.add_argument("--courant-factor", type=float, default=DEFAULT_STEPPING["courant_factor"],
                   help="PySCo Courant factor of the time steps (larger: fewer steps, a cheaper run)")
    p.add_argument("--max-aexp-step", type=float, default=DEFAULT_STEPPING["max_aexp_step_percent"],
                   help="largest growth of the scale factor in one step, per cent (larger: fewer steps)")
    p.add_argument("--min-particles", type=int, default=20, help="smallest FoF group kept")
    p.add_argument("--min-particles-trusted", type=int, default=20,
                   help="smallest halo populated by default")
    return p


def check_args(args) -> None:
    """Range-check the options before any work (ConfigError naming the option and value)."""
    from ..config_checks import check_float, check_int
    from ..errors import ConfigError

    check_float(args.box_size, "--box-size", minimum=0.0, min_inclusive=False)
    n = check_int(args.n_particles_1d, "--n-particles-1d", minimum=16)
    if n & (n - 1):
        raise ConfigError(f"--n-particles-1d = {n}: must be a power of two >= 16")
    check_int(args.seed, "--seed", minimum=0)
    check_float(args.z_start, "--z-start", minimum=0.0, min_inclusive=False)
    check_int(args.threads, "--threads", minimum=1)
    check_float(args.courant_factor, "--courant-factor", minimum=0.0, min_inclusive=False, maximum=1e3)
    check_float(args.max_aexp_step, "--max-aexp-step", minimum=0.0, min_inclusive=False, maximum=1e3)
    check_int(args.min_particles, "--min-particles", minimum=2)
    check_int(args.min_particles_trusted, "--min-particles-trusted", minimum=args.min_particles)


def main(args) -> int:
    from .catalog_builder import build_offline_catalog

    check_args(args)
    config = SimulationConfig(box_size=args.box_size, n_particles_1d=args.n_particles_1d, seed=args.seed,
                              z_start=args.z_start, cosmology=BOLSHOI_PLANCK, n_threads=args.threads,
                              courant_factor=args.courant_factor, max_aexp_step_percent=args.max_aexp_step)
    build_offline_catalog(config, args.workdir, args.output, args.min_particles,
                          args.min_particles_trusted)
    return 0
