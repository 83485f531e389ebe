"""Cost of the N-body suite's boxes so far, and the projected cost of the whole suite.

Reads ``box.json`` of every finished box of a suite config (written by ``iaemu build-suite``: wall
seconds of the PySCo run and of each snapshot's FoF + halo properties, total wall and, for boxes built
by this version, total CPU seconds of the process), prints them and the mean, projects the suite's
total from its number of boxes, and saves the table as JSON. Times depend on the machine's load: say
how loaded it was when quoting them.

Usage::

    .venv/bin/python benchmarks/suite_cost.py training/configs/suite_v2.yaml \\
        [--json benchmarks/results/suite_v2_cost.json]
"""
import argparse
import json
import logging
from pathlib import Path

import numpy as np

from iaemu_likelihood._io import atomic_write_bytes
from iaemu_likelihood.training.suite_config import load_suite_config

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("suite_cost")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="suite YAML")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "suite_v2_cost.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_suite_config(args.config)
    rows = {}
    for box in config.boxes:
        path = config.output / box.name / "box.json"
        if path.is_file():
            manifest = json.loads(path.read_text())
            rows[box.name] = {**manifest["timings_s"],
                              "n_halos": {k: v["n_halos"] for k, v in manifest["catalogs"].items()},
                              "particle_mass": next(iter(manifest["catalogs"].values()))["particle_mass"]}
    if not rows:
        raise SystemExit(f"no finished box under {config.output}")
    for name, row in rows.items():
        logger.info("%-10s %s; halos %s; m_p %.3e Msun/h", name,
                    ", ".join(f"{k} {v:.0f}" for k, v in row.items() if k.endswith("_s")),
                    row["n_halos"], row["particle_mass"])
    total = np.mean([row["total_s"] for row in rows.values()])
    summary = {"n_boxes_finished": len(rows), "n_boxes_suite": len(config.boxes),
               "box": f"{config.n_particles_1d}^3 particles, {config.box_size:g} h^-1 Mpc, "
                      f"snapshots {list(config.snapshots)}, PySCo threads {config.n_threads}",
               "mean_wall_s_per_box": float(total), "projected_suite_wall_h": float(total * len(config.boxes) / 3600)}
    cpu = [row["total_cpu_s"] for row in rows.values() if "total_cpu_s" in row]
    if cpu:
        summary["mean_cpu_s_per_box"] = float(np.mean(cpu))
        summary["projected_suite_cpu_h"] = float(np.mean(cpu) * len(config.boxes) / 3600)
    logger.info("%s", json.dumps(summary, indent=1))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.json), json.dumps({"summary": summary, "boxes": rows}, indent=2).encode())
    logger.info("saved %s", args.json)


if __name__ == "__main__":
    main()
