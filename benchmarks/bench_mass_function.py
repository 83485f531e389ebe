"""Leave-one-box-out accuracy of the suite's interpolated host mass function (issue 15, v2 derived n_gal, f_sat).

Tabulates n(>M) of every finished box of a generation config's suite selection
(:func:`iaemu_likelihood.training.mass_function.tabulate_suite`, the same boxes, redshifts and
mass cut as the mocks), then for each box: interpolates the other boxes to its (Omega_m, sigma_8)
and compares, at every tabulated z,

* n(>M) at log10 M = 11.5 ... 14 with the box's own count, beside the count's Poisson error;
* n_gal and f_sat of the Zheng07 luminosity-threshold HODs with logMmin >= 11.6 (the v2 prior)
  from the interpolated and the box's own binned mass function.

A left-out box outside the convex hull of the others is extrapolated: it is flagged. The table
is saved next to the results (``--table``) for the emulator-v2 weights. Prints the figures and
saves them as JSON.

Usage::

    .venv/bin/python benchmarks/bench_mass_function.py training/configs/generate_v2.yaml \\
        [--json benchmarks/results/mass_function_v2_lobo.json] [--table work_data/mocks_v2/mass_function_v2.npz]
"""
import argparse
import json
import logging
from pathlib import Path

import numpy as np

from iaemu_likelihood._io import atomic_write_bytes
from iaemu_likelihood.conventions import ZHENG07_TABLE
from iaemu_likelihood.hod import occupation_summary
from iaemu_likelihood.training.generation_config import load_config
from iaemu_likelihood.training.mass_function import (MassFunctionInterpolator, MassFunctionTable, save_table,
                                                      tabulate_suite)

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("bench_mass_function")
#: masses (log10 Msun/h) at which n(>M) is compared
LOG_MASSES = (11.5, 12.0, 12.5, 13.0, 13.5, 14.0)
#: the HOD points: Zheng07 thresholds inside the v2 prior's logMmin range
HODS = {f"Mr<{mag:g}": dict(zip(("logMmin", "sigma_logM", "logM0", "logM1", "alpha"), row))
        for mag, row in ZHENG07_TABLE.items() if row[0] >= 11.6}


def _by_mass(values) -> dict:
    """``{log10 M: value}`` of one value per :data:`LOG_MASSES` entry."""
    return dict(zip(map(str, LOG_MASSES), np.asarray(values).tolist()))


def _without(table, i):
    keep = np.arange(table["omega_m"].size) != i
    return MassFunctionTable(table, omega_m=table["omega_m"][keep], sigma8=table["sigma8"][keep],
                             log10_n_above=table["log10_n_above"][keep])


def _inside_hull(points, x) -> bool:
    from scipy.spatial import Delaunay

    return bool(Delaunay(points).find_simplex(x) >= 0)


def _own_mass_function(table, i, j):
    """The box's own binned mass function on the table's grid (exactly what it tabulates)."""
    grid, volume = table["log10_mass"], table["volume"]
    n_above = 10.0 ** table["log10_n_above"][i, j] - 0.5 / volume
    counts = volume * (n_above[:-1] - n_above[1:])
    return {"log10_mass_edges": grid, "counts": counts, "mean_log10_mass": 0.5 * (grid[1:] + grid[:-1]),
            "volume": np.float64(volume)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="generation config YAML with a 'suite' section")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "mass_function_v2_lobo.json"))
    parser.add_argument("--table", default=None, help="also save the full table here (.npz)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config(args.config)
    table = tabulate_suite(config.suite)
    if args.table:
        save_table(args.table, table)
    names, grid, volume = table["provenance"]["boxes"], table["log10_mass"], table["volume"]
    if len(names) < 5:
        raise SystemExit(f"only {len(names)} finished boxes; the leave-one-out test needs >= 5")
    idx = [int(np.argmin(np.abs(grid - m))) for m in LOG_MASSES]
    theta = {k: np.array([h[k] for h in HODS.values()]) for k in next(iter(HODS.values()))}
    rows = []
    for i, name in enumerate(names):
        rest = _without(table, i)
        points = np.column_stack([rest["omega_m"], rest["sigma8"]])
        cosmo = (float(table["omega_m"][i]), float(table["sigma8"][i]))
        inside = _inside_hull(points, np.array(cosmo))
        interp = MassFunctionInterpolator(rest)
        for j, z in enumerate(table["z"]):
            predicted = 10.0 ** interp.log10_n_above(*cosmo, z)
            measured = 10.0 ** table["log10_n_above"][i, j]
            count = measured[idx] * volume
            n_gal_p, f_sat_p = occupation_summary(theta, interp.mass_function(*cosmo, z))
            n_gal_m, f_sat_m = occupation_summary(theta, _own_mass_function(table, i, j))
            rows.append({"box": name, "omega_m": cosmo[0], "sigma8": cosmo[1], "z": float(z), "inside_hull": inside,
                         "n_above_frac_err": (predicted[idx] / measured[idx] - 1).tolist(),
                         "n_above_poisson": (1 / np.sqrt(np.maximum(count, 1))).tolist(),
                         "n_gal_frac_err": (n_gal_p / n_gal_m - 1).tolist(),
                         "f_sat_abs_err": (f_sat_p - f_sat_m).tolist()})
    summary = {}
    for label, sel in (("inside_hull", [r for r in rows if r["inside_hull"]]), ("all", rows)):
        if not sel:
            continue
        err = np.abs([r["n_above_frac_err"] for r in sel])
        summary[label] = {"n_rows": len(sel),
                          "n_above_rms_frac_err": _by_mass(np.sqrt(np.mean(err ** 2, 0))),
                          "n_above_max_frac_err": _by_mass(err.max(0)),
                          "n_above_median_poisson": _by_mass(np.median([r["n_above_poisson"] for r in sel], 0)),
                          "n_gal_rms_frac_err": float(np.sqrt(np.mean(np.square([r["n_gal_frac_err"] for r in sel])))),
                          "n_gal_max_frac_err": float(np.max(np.abs([r["n_gal_frac_err"] for r in sel]))),
                          "f_sat_max_abs_err": float(np.max(np.abs([r["f_sat_abs_err"] for r in sel])))}
    logger.info("%d boxes (%s), z = %s; HODs %s", len(names), ", ".join(names), table["z"].tolist(), list(HODS))
    logger.info("%-8s %5s %6s %5s %4s  %s  | n_gal err (%%)", "box", "Om", "s8", "z", "hull",
                "  ".join(f"n(>1e{m:g})" for m in LOG_MASSES))
    for r in rows:
        logger.info("%-8s %5.3f %6.4f %5.2f %4s  %s  | %s", r["box"], r["omega_m"], r["sigma8"], r["z"],
                    "in" if r["inside_hull"] else "out",
                    "  ".join(f"{100 * e:+7.1f}%" for e in r["n_above_frac_err"]),
                    " ".join(f"{100 * e:+.1f}" for e in r["n_gal_frac_err"]))
    for label, s in summary.items():
        logger.info("%s (%d rows): rms n(>M) error %s; median Poisson %s; n_gal rms %.2f%%, max %.2f%%; "
                    "f_sat max abs %.4f", label, s["n_rows"],
                    {k: f"{100 * v:.1f}%" for k, v in s["n_above_rms_frac_err"].items()},
                    {k: f"{100 * v:.1f}%" for k, v in s["n_above_median_poisson"].items()},
                    100 * s["n_gal_rms_frac_err"], 100 * s["n_gal_max_frac_err"], s["f_sat_max_abs_err"])
    out = {"config": str(Path(args.config)), "boxes": names, "z": table["z"].tolist(), "hods": HODS,
           "log_masses": list(LOG_MASSES), "min_mass": table["provenance"]["min_mass"],
           "method": "log10 n(>M) on a 0.02 dex grid; thin-plate RBF + linear term in scaled (Omega_m, sigma_8) "
                     "per z; linear in z", "summary": summary, "rows": rows}
    atomic_write_bytes(Path(args.json), json.dumps(out, indent=1).encode())
    logger.info("saved %s", args.json)


if __name__ == "__main__":
    main()
