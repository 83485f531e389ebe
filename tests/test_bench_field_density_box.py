"""benchmarks/bench_field.py --density-box: a cheaper run is accepted only when it shares the test box's
initial conditions (seed, box, particles, starting redshift, cosmology); its time stepping may differ."""
import json

import pytest
from repo_files import load_module


def _box(root, name, **changes):
    from iaemu_likelihood.training.nbody import SimulationConfig

    folder = root / name / "nbody"
    folder.mkdir(parents=True)
    config = SimulationConfig(**{"box_size": 125.0, "n_particles_1d": 256, "seed": 1002, **changes}).to_dict()
    (folder / "simulation_config.json").write_text(json.dumps(config))
    return root / name


def test_density_box_must_share_the_initial_conditions(tmp_path):
    pytest.importorskip("torch")
    bench = load_module("benchmarks/bench_field.py")
    test = _box(tmp_path, "box_1002")
    cheap = _box(tmp_path, "box_1002_cheap", courant_factor=3.2, max_aexp_step_percent=20.0)
    assert bench.same_initial_conditions(test, cheap) == cheap
    other = _box(tmp_path, "box_1004", seed=1004)
    with pytest.raises(SystemExit, match=r"box_1004: its run differs from box_1002's in \['seed'\]"):
        bench.same_initial_conditions(test, other)
