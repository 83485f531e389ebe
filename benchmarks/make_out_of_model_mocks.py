#!/usr/bin/env python
"""Make the out-of-model data vectors of issue 13 part 6: mocks of alignment models the emulator
was not trained on, plus the training model as the control (resumable).

For each variant of :mod:`iaemu_likelihood.training.alignment_variants` (``in_model``,
``major_axis_satellites``, ``mass_dependent_centrals``) at the fiducial point (the Zheng07
Mr < -20 HOD with mu_cen = 0.8, mu_sat = 0.5, as the bundled example data), ``--n-parts`` x
``--per-part`` realizations on the training halo catalog with the training statistics and bins.
Every variant uses the same seeds, so the galaxy positions (and xi) are identical across variants
and only the orientations differ. Parts go to ``--workdir`` (resumable: rerun the same command),
and when a variant is complete its measurement file (data vector = realization 0, covariance of the
others with the Hartlap factor) and a provenance JSON are written to ``--output-dir``.

Run (CPU-heavy; on a shared machine nice and one thread)::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 NUMBA_THREADING_LAYER=workqueue \\
        nice -n 15 python benchmarks/make_out_of_model_mocks.py > work_data/out_of_model/log.txt 2>&1 &
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from iaemu_likelihood._io import atomic_write_bytes
from iaemu_likelihood.conventions import PARAM_NAMES, ZHENG07_TABLE

log = logging.getLogger("make_out_of_model_mocks")

REPO = Path(__file__).resolve().parents[1]
#: The documented fiducial point of the example data (scripts/make_example_data.py).
FIDUCIAL = dict(zip(PARAM_NAMES, (0.8, 0.5, *ZHENG07_TABLE[-20.0])))
CATALOG = {"source": "offline", "path": "training/data/halo_catalog_pm512_L250.npz", "min_particles": 20}
#: Base seed of every realization (any integer; not the training configs' seeds).
SEED = 20261130
DESCRIPTIONS = {
    "in_model": "the training model (control): CentralAlignment(mu_cen) about the host major axis, "
                "RadialSatelliteAlignment(mu_sat) about the direction to the host centre",
    "major_axis_satellites": "out of model: satellites aligned with the host halo's major axis "
                             "(halotools SatelliteAlignment = MajorAxisSatelliteAlignment of later "
                             "releases) at mu_sat; centrals as in training",
    "mass_dependent_centrals": "out of model: central strength mu(M) = clip(0.8 + 0.5 (log10 M - 13), "
                               "-0.99, 0.99) about the host major axis (mu_cen unused); satellites "
                               "as in training",
}


def build_parser() -> argparse.ArgumentParser:
    from iaemu_likelihood.training.alignment_variants import VARIANTS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--n-parts", type=int, default=20, help="part files per variant (default 20)")
    p.add_argument("--per-part", type=int, default=20, help="realizations per part (default 20)")
    p.add_argument("--seed", type=int, default=SEED, help=f"base seed (default {SEED})")
    p.add_argument("--workdir", default=str(REPO / "work_data" / "out_of_model"))
    p.add_argument("--output-dir", default=str(REPO / "benchmarks" / "data" / "out_of_model"))
    p.add_argument("--max-parts", type=int, default=None,
                   help="stop each variant after this many new parts (resume later)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _metadata(name, sim, catalog, args, argv) -> dict:
    from iaemu_likelihood import __version__
    from iaemu_likelihood.training.alignment_variants import effective_central_strength
    from iaemu_likelihood.training.catalog_builder import code_versions

    meta = {"description": DESCRIPTIONS[name], "alignment_model": sim.describe(), "truth": FIDUCIAL,
            "fiducial_source": "Zheng et al. (2007) Mr < -20 HOD (halotools Zheng07 table), "
                               "mu_cen = 0.8, mu_sat = 0.5",
            "seed": args.seed, "n_parts": args.n_parts, "per_part": args.per_part,
            "halo_catalog": {k: v for k, v in catalog.describe().items()
                             if k in ("source", "path", "sha256", "min_particles", "box_size",
                                      "particle_mass")},
            "r_units": "comoving h^-1 Mpc", "iaemu_version": __version__,
            "code_versions": code_versions(),
            "command": " ".join(["benchmarks/make_out_of_model_mocks.py", *argv]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if name == "mass_dependent_centrals":
        meta["truth_note"] = "mu_cen is not used by this model; see effective_mu_cen"
        meta["effective_mu_cen"] = effective_central_strength(
            sim.variant_params, FIDUCIAL["logMmin"], FIDUCIAL["sigma_logM"], catalog.host_log10_mass())
    return meta


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    from iaemu_likelihood.training.alignment_variants import VariantMockSimulator
    from iaemu_likelihood.training.catalogs import load_catalog_source
    from iaemu_likelihood.training.dataset_io import load_dataset
    from iaemu_likelihood.training.variant_generation import (generate_variant, variant_config,
                                                               write_measurement)

    workdir, out_dir = Path(args.workdir), Path(args.output_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    catalog = load_catalog_source(CATALOG, REPO)
    done = 0
    for name in args.variants:
        sim = VariantMockSimulator(catalog, name, num_threads=1)
        config = variant_config(sim.describe(), FIDUCIAL, CATALOG, workdir / f"{name}_mocks.npz",
                                args.seed, args.n_parts, args.per_part, base_dir=REPO)
        path = generate_variant(config, sim, max_parts=args.max_parts, progress=not args.no_progress)
        if path is None:
            continue
        meta = json.loads(json.dumps(_metadata(name, sim, catalog, args, argv)))
        target = write_measurement(out_dir / f"{name}.npz", load_dataset(path), meta)
        from iaemu_likelihood.data import load_measurement

        written = load_measurement(target).metadata
        provenance = {k: v for k, v in written.items() if k != "realization_mean"}
        atomic_write_bytes(out_dir / f"{name}.json", (json.dumps(provenance, indent=1, sort_keys=True)
                                                       + "\n").encode())
        log.info("%s: wrote %s (%d covariance realizations)", name, target, written["n_covariance"])
        done += 1
    log.info("%d of %d variants complete", done, len(args.variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
