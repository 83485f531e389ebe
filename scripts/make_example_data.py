#!/usr/bin/env python
"""Make the example "measurement" bundled with iaemu (``iaemu_likelihood/data/example_measurement.npz``).

The fiducial point is the Zheng et al. (2007) SDSS Mr < -20 HOD (logMmin = 12.02, sigma_logM = 0.26,
logM0 = 11.38, logM1 = 13.31, alpha = 1.06; masses log10 Msun/h) with central and satellite
alignment strengths mu_cen = 0.8 and mu_sat = 0.5: a strongly aligned red-galaxy-like sample inside
the training prior. It is held out of training: the training points are a random Latin hypercube,
and the realization seeds used here (``--seed`` and up, above 2**31) cannot coincide with the
31-bit seeds of the training set.

What is written, with the same halotools-IA mock pipeline as the training set
(:class:`iaemu_likelihood.training.forward_model.MockSimulator` on the same halo catalog):

* data vector: xi, omega, eta of ONE mock realization (seed ``--seed``);
* covariance: the sample covariance of ``--n-realizations`` further, independent realizations
  (seeds ``--seed + 1 ...``), multiplied by the Hartlap et al. (2007) factor ``(n - 1) / (n - p - 2)``
  (p = 60 values) so that its inverse is unbiased;
* metadata: ``truth`` (the seven parameters), the realization mean, galaxy counts, catalog
  description and hash, seeds, the command line, code versions and timings.

Run once the halo catalog exists (a few minutes on 2 cores for 400 realizations)::

    python scripts/make_example_data.py --config training/configs/train.yaml --workers 2

The example of the cosmology-dependent weights (``example_cosmology``: the same HOD and alignment
point in a held-out box of the N-body suite, at one of its snapshots) comes from a generation config
with a ``suite`` section, naming the box and the redshift; its truth adds ``omegam`` and ``sigma8``
(Cobaya's names) and its metadata the ``redshift``::

    python scripts/make_example_data.py --config training/configs/generate_v2_test.yaml \
        --box test_03 --redshift 0.5 --workers 2
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

from iaemu_likelihood.conventions import PARAM_NAMES, STATISTICS, ZHENG07_TABLE, r_centres
from iaemu_likelihood.data import EXAMPLES, save_measurement
from iaemu_likelihood.training.variant_generation import hartlap_factor

log = logging.getLogger("make_example_data")

REPO = Path(__file__).resolve().parents[1]
#: Zheng07 Mr < -20 HOD with the chosen alignment strengths (the documented fiducial point)
FIDUCIAL = dict(zip(PARAM_NAMES, (0.8, 0.5, *ZHENG07_TABLE[-20.0])))
DEFAULT_OUTPUT = REPO / "iaemu_likelihood" / "data" / "example_measurement.npz"
DEFAULT_CONFIG = REPO / "training" / "configs" / "train.yaml"
#: training realization seeds are 31-bit (< 2**31, see training.generate.realization_seed): start
#: above them, so no example realization can repeat a training one (seeds must stay < 2**32)
DEFAULT_SEED = 2**31 + 20250407

_WORKER = {}


def load_catalog(config_path, box=None, redshift=None):
    """The halo catalog of a generation config: its ``catalog`` block, or with a ``suite`` section
    the catalog of ``box`` at ``redshift`` (verified against the box's manifest)."""
    import yaml

    config_path = Path(config_path)
    raw = yaml.safe_load(config_path.read_text())
    base_dir = config_path.resolve().parent
    if "suite" not in raw:
        if box is not None or redshift is not None:
            raise SystemExit(f"--box/--redshift: {config_path} has no 'suite' section")
        from iaemu_likelihood.training.catalogs import load_catalog_source

        return load_catalog_source(dict(raw["catalog"]), base_dir)
    from iaemu_likelihood.training.generation_snapshots import SuiteSelection

    selection = SuiteSelection(raw["suite"], base_dir, f"{config_path.name}: suite")
    for k, snap in enumerate(selection.snapshots):
        if snap.box == box and snap.z == redshift:
            return selection.load_catalog(k)
    choices = sorted({(s.box, s.z) for s in selection.snapshots})
    raise SystemExit(f"--box {box!r} --redshift {redshift!r}: not a snapshot of {config_path.name}; "
                     f"allowed: {choices}")


def _init_worker(config_path, box, redshift):
    from iaemu_likelihood.training.forward_model import MockSimulator

    _WORKER["sim"] = MockSimulator(load_catalog(config_path, box, redshift), num_threads=1)


def _realization(seed):
    out = _WORKER["sim"].realization(FIDUCIAL, seed)
    return seed, np.concatenate([out[s] for s in STATISTICS]), int(out["n_gal"]), int(out["n_sat"])


def simulate(catalog_args, seeds, workers):
    """Vectors (n, 60) and galaxy counts of the realizations with the given seeds
    (``catalog_args``: the arguments of :func:`load_catalog`)."""
    results = {}
    if workers <= 1:
        _init_worker(*catalog_args)
        iterator = map(_realization, seeds)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, catalog_args)
        iterator = pool.imap_unordered(_realization, seeds)
    try:
        for k, (seed, vec, n_gal, n_sat) in enumerate(iterator, 1):
            results[seed] = (vec, n_gal, n_sat)
            if k % 20 == 0 or k == len(seeds):
                log.info("%d/%d realizations", k, len(seeds))
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    ordered = [results[s] for s in seeds]
    return (np.array([o[0] for o in ordered]), np.array([o[1] for o in ordered]),
            np.array([o[2] for o in ordered]))


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(DEFAULT_CONFIG),
                   help="generation config whose 'catalog' block names the halo catalog "
                        "(default: the training config, so the catalog is the training one)")
    p.add_argument("--n-realizations", type=int, default=400,
                   help="realizations for the covariance (default 400; > 62 required)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the data realization")
    p.add_argument("--workers", type=int, default=1, help="processes")
    p.add_argument("--box", default=None, help="suite box (a config with a 'suite' section)")
    p.add_argument("--redshift", type=float, default=None, help="its snapshot redshift")
    p.add_argument("--output", default=None,
                   help="default: the bundled example_measurement.npz, or with --box "
                        "example_measurement_cosmology.npz")
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    catalog_args = (str(Path(args.config).resolve()), args.box, args.redshift)
    suite = args.box is not None
    output = args.output or (DEFAULT_OUTPUT.with_name(EXAMPLES["example_cosmology"]) if suite
                             else DEFAULT_OUTPUT)
    n_values = len(STATISTICS) * r_centres().size
    factor = hartlap_factor(args.n_realizations, n_values)
    seeds = [args.seed + i for i in range(args.n_realizations + 1)]
    if seeds[-1] >= 2**32:
        raise SystemExit(f"seeds up to {seeds[-1]} exceed 2**32 - 1; lower --seed")
    t0 = time.time()
    vectors, n_gal, n_sat = simulate(catalog_args, seeds, args.workers)
    elapsed = time.time() - t0
    if not np.isfinite(vectors).all():
        raise SystemExit("non-finite statistics in some realization; not writing the example")
    data, scatter = vectors[0], vectors[1:]
    cov = np.cov(scatter, rowvar=False, ddof=1) * factor
    catalog = load_catalog(*catalog_args)
    from iaemu_likelihood import __version__

    truth = dict(FIDUCIAL)
    where = ""
    if suite:
        cosmology = catalog.provenance["cosmology"]
        truth.update(omegam=float(cosmology["omega_m"]), sigma8=float(cosmology["sigma8"]))
        where = f" in suite box {args.box} at z = {args.redshift:g}"
    metadata = {
        "description": "one halotools-IA mock realization at the Zheng07 Mr<-20 HOD with mu_cen=0.8, "
                       f"mu_sat=0.5{where}; covariance from the scatter of independent realizations",
        "truth": truth,
        "fiducial_source": "Zheng et al. (2007) Mr < -20 threshold sample (halotools Zheng07 table)",
        "data_seed": seeds[0],
        "covariance_seeds": [seeds[1], seeds[-1]],
        "n_realizations_covariance": args.n_realizations,
        "hartlap_factor": factor,
        "realization_mean": scatter.mean(axis=0).tolist(),
        "n_gal_data": int(n_gal[0]), "n_sat_data": int(n_sat[0]),
        "n_gal_mean": float(n_gal[1:].mean()),
        "halo_catalog": catalog.describe(),
        **({"redshift": float(args.redshift), "suite_box": args.box} if suite else {}),
        "r_units": "comoving h^-1 Mpc",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "iaemu_version": __version__,
        "seconds": round(elapsed, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    n = r_centres().size
    values = {s: data[i * n:(i + 1) * n] for i, s in enumerate(STATISTICS)}
    path = save_measurement(output, r_centres(), values, cov, json.loads(json.dumps(metadata)))
    log.info("wrote %s (%d realizations in %.0f s)", path, len(seeds), elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
