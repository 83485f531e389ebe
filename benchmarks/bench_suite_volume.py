"""Noise of the halo correlation function at ~16 h^-1 Mpc: a suite box (125 h^-1 Mpc) vs the shipped 250 h^-1 Mpc box.

Measures, on the shipped catalog ``training/data/halo_catalog_pm512_L250.npz``, the correlation
function xi_hh of host halos above a mass cut in the emulator's three outermost bins (edges
``np.logspace(-1, 1.2, 21)``, up to 15.85 h^-1 Mpc), fits a linear bias b^2 = xi_hh / xi_lin there
(CAMB linear P(k), Bolshoi-Planck), and gives the Gaussian (sample variance + Poisson) standard
deviation of xi in each bin for a periodic box of volume V,

    Var[xi] = (2 / V) int dk k^2 / (2 pi^2) [b^2 P(k) + 1/n]^2 W(k)^2,

with W the shell average of j0(kr) over the bin, for V = 250^3 and 125^3 (h^-1 Mpc)^3. If suite
catalogs of the fiducial cosmology exist (``--boxes``: halos_z0.00.npz files, or painter
``halos.npz`` boxes of the same cosmology and size), their measured xi_hh is listed beside it: the
spread between equal-cosmology boxes with different phases is the cosmic variance the estimate
predicts. Prints a table and saves JSON.

Usage::

    NUMBA_THREADING_LAYER=workqueue .venv/bin/python benchmarks/bench_suite_volume.py \\
        [--log-mass-min 12.0] [--boxes work_data/field/box_1001/halos.npz ...] \\
        [--json benchmarks/results/suite_volume.json]
"""
import argparse
import json
import logging
import os
from pathlib import Path

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

import numpy as np  # noqa: E402

from iaemu_likelihood._io import atomic_write_bytes  # noqa: E402
from iaemu_likelihood.conventions import R_EDGES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "training" / "data" / "halo_catalog_pm512_L250.npz"
N_OUTER_BINS = 3
logger = logging.getLogger("bench_suite_volume")


def shell_window(k: np.ndarray, r1: float, r2: float) -> np.ndarray:
    """Volume average of j0(kr) over the shell r1 < r < r2 (comoving h^-1 Mpc), k in h/Mpc."""
    def primitive(r):
        return np.sin(k * r) - k * r * np.cos(k * r)

    return 3.0 * (primitive(r2) - primitive(r1)) / (k ** 3 * (r2 ** 3 - r1 ** 3))


def halo_xi(path: Path, log_mass_min: float, edges: np.ndarray) -> tuple[np.ndarray, float, int]:
    """xi_hh in ``edges`` of the halos above ``log_mass_min`` of a catalog; also box side and count."""
    from halotools.mock_observables import tpcf

    from iaemu_likelihood.training.catalogs import OfflineHaloCatalog

    cat = OfflineHaloCatalog(path)
    keep = np.log10(cat.columns["mass"]) >= log_mass_min
    pos = np.mod(cat.columns["centre"][keep].astype(np.float64), cat.box_size)
    xi = tpcf(pos, edges, period=cat.box_size, num_threads=1)
    return np.asarray(xi), cat.box_size, int(keep.sum())


def gaussian_sigma(k, pk_h, n, volume, edges) -> np.ndarray:
    """Gaussian standard deviation of xi in each bin of ``edges`` for a box of ``volume``."""
    out = []
    for r1, r2 in zip(edges[:-1], edges[1:]):
        integrand = k ** 2 / (2 * np.pi ** 2) * (pk_h + 1.0 / n) ** 2 * shell_window(k, r1, r2) ** 2
        out.append(np.sqrt(2.0 / volume * np.trapezoid(integrand, k)))
    return np.array(out)


def linear_xi(k, pk, edges) -> np.ndarray:
    """Shell-averaged linear xi in each bin."""
    return np.array([np.trapezoid(k ** 2 / (2 * np.pi ** 2) * pk * shell_window(k, r1, r2), k)
                     for r1, r2 in zip(edges[:-1], edges[1:])])


def main() -> None:
    from iaemu_likelihood.training.nbody import BOLSHOI_PLANCK, linear_power_spectrum

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-mass-min", type=float, default=12.0, help="log10 host mass cut, Msun/h")
    parser.add_argument("--boxes", nargs="*", default=[], help="catalogs of 125 h^-1 Mpc fiducial boxes")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "suite_volume.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    edges = np.asarray(R_EDGES, dtype=float)[-N_OUTER_BINS - 1:]
    xi_250, box_250, n_halos = halo_xi(SHIPPED, args.log_mass_min, edges)
    number_density = n_halos / box_250 ** 3
    # fine k grid for the oscillating windows; CAMB's table is log-spaced
    k_camb, pk_camb = linear_power_spectrum(BOLSHOI_PLANCK, kmin=1e-4, kmax=20.0, n_k=2000)
    k = np.linspace(1e-4, 20.0, 400_000)
    pk = np.exp(np.interp(np.log(k), np.log(k_camb), np.log(pk_camb)))
    xi_lin = linear_xi(k, pk, edges)
    bias2 = float(np.mean(xi_250 / xi_lin))
    result = {"log_mass_min": args.log_mass_min, "n_halos_250": n_halos, "number_density": number_density,
              "bias": bias2 ** 0.5, "r_edges": edges.tolist(), "xi_hh_250": xi_250.tolist(),
              "xi_lin": xi_lin.tolist(), "boxes": {}}
    for side in (250.0, 125.0):
        sigma = gaussian_sigma(k, bias2 * pk, number_density, side ** 3, edges)
        result["boxes"][f"L{side:g}"] = {"sigma_xi": sigma.tolist(), "sigma_over_xi": (sigma / xi_250).tolist()}
    measured = {}
    for path in args.boxes:
        xi, side, n = halo_xi(Path(path), args.log_mass_min, edges)
        measured[str(path)] = {"box_size": side, "n_halos": n, "xi_hh": xi.tolist()}
    result["measured_boxes"] = measured

    logger.info("halos log10 M >= %.2f: n = %.2e (h/Mpc)^3, linear bias %.2f (from the 250 h^-1 Mpc box)",
                args.log_mass_min, number_density, bias2 ** 0.5)
    logger.info("%-14s %9s %9s %12s %12s %7s", "bin (h^-1 Mpc)", "xi_hh", "xi_lin b^2", "sigma L250",
                "sigma L125", "ratio")
    s250, s125 = (np.array(result["boxes"][key]["sigma_xi"]) for key in ("L250", "L125"))
    for i in range(N_OUTER_BINS):
        logger.info("%5.2f-%-8.2f %9.4f %9.4f %6.4f (%2.0f%%) %6.4f (%2.0f%%) %7.2f", edges[i], edges[i + 1],
                    xi_250[i], bias2 * xi_lin[i], s250[i], 100 * s250[i] / xi_250[i], s125[i],
                    100 * s125[i] / xi_250[i], s125[i] / s250[i])
    for path, m in measured.items():
        logger.info("measured %s (%g h^-1 Mpc, %d halos): xi_hh = %s", path, m["box_size"], m["n_halos"],
                    np.round(m["xi_hh"], 4).tolist())
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.json), json.dumps(result, indent=2).encode())
    logger.info("saved %s", args.json)


if __name__ == "__main__":
    main()
