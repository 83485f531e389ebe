"""``iaemu generate`` over the (box, z) catalogs of an N-body suite (issue 15, v2 training sets).

Tiny synthetic catalogs stand in for the boxes' FoF catalogs; ``build_box`` then finds them
complete (their provenance carries the box's binding) and writes each ``box.json`` itself, so
the suite on disk is exactly what ``iaemu build-suite`` leaves.
"""
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from iaemu_likelihood.errors import ConfigError
from iaemu_likelihood.training import generate as gen
from iaemu_likelihood.training.dataset_io import load_dataset
from iaemu_likelihood.training.generation_parts import read_part
from iaemu_likelihood.training.suite import build_box, catalog_name
from iaemu_likelihood.training.suite_config import load_suite_config
from test_generate_hardening import PARTICLE_MASS, tiny_catalog

BOXES = [{"name": "a", "omega_m": 0.28, "sigma8": 0.8, "role": "train"},
         {"name": "b", "omega_m": 0.33, "sigma8": 0.86, "role": "train"},
         {"name": "c", "omega_m": 0.30, "sigma8": 0.75, "role": "test"}]
SNAPSHOTS = [0.0, 1.0]
#: 20.5 particles of the tiny catalogs: halos with M > MIN_MASS are those with >= 21 particles
MIN_MASS = 20.5 * PARTICLE_MASS
N_PER_SNAPSHOT = 2


def _suite(folder):
    raw = {"name": "tiny", "output": "boxes", "box_size": 40.0, "n_particles_1d": 32, "seed": 3,
           "snapshots": SNAPSHOTS, "fixed": {"h": 0.678, "omega_b": 0.048, "n_s": 0.96}, "boxes": BOXES}
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _build(suite_path, name):
    """Box ``name`` as build-suite leaves it: a catalog per snapshot, then box.json."""
    config = load_suite_config(suite_path)
    box = config.box(name)
    for k, z in enumerate(config.snapshots):
        tiny_catalog(config.output / name / catalog_name(z), n_halos=400, seed=10 * len(name) + k,
                     redshift=z, simulation=config.simulation(box).to_dict(),
                     suite_binding=config.binding(box))
    assert build_box(config, box)["box"]["name"] == name


def _config(folder, suite_path, **suite):
    raw = {"name": "v2", "seed": 7, "n_points": N_PER_SNAPSHOT, "n_realizations": 2, "max_retries": 1,
           "output": "v2.npz", "rbins": [1.0, 2.0, 4.0, 8.0],
           "suite": {"config": suite_path.name, "min_mass": MIN_MASS, **suite}}
    path = folder / "generate.yaml"
    path.write_text(yaml.safe_dump(raw))
    return gen.load_config(path)


def test_design_per_snapshot_is_stable_and_the_cut_is_one_mass(tmp_path):
    suite = _suite(tmp_path)
    _build(suite, "a")
    both = _config(tmp_path, suite)
    assert [s.label for s in both.suite.snapshots] == ["a z=0.00", "a z=1.00", "b z=0.00", "b z=1.00"]
    assert both.n_points == 4 * N_PER_SNAPSHOT and both.point_snapshot.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # each (box, z) has its own draws; listing fewer boxes changes none of box a's points
    only_a = _config(tmp_path, suite, boxes=["a"])
    np.testing.assert_array_equal(only_a.params, both.params[:4])
    assert not np.allclose(both.params[:2], both.params[2:4])
    assert both.rule.contains(both.params).all()
    assert both.point_catalog_binding(0)["min_particles"] == 20  # M > 20.5 m_p  <=>  n >= 21
    assert both.ready(range(8)) == ([0, 1, 2, 3], [4, 5, 6, 7])  # box b is not built
    catalog = both.point_catalog(3)
    assert catalog.redshift == 1.0 and catalog.cosmology()["omega_m"] == 0.28
    assert catalog.host_log10_mass().min() > np.log10(MIN_MASS)


def test_suite_section_errors_name_the_key(tmp_path):
    suite = _suite(tmp_path)
    with pytest.raises(ConfigError, match=r"suite: redshifts = \[0.5\]"):
        _config(tmp_path, suite, redshifts=[0.5])
    with pytest.raises(ConfigError, match=r"no box 'd'"):
        _config(tmp_path, suite, boxes=["a", "d"])
    with pytest.raises(ConfigError, match=r"suite: boxes = 'some'"):
        _config(tmp_path, suite, boxes="some")


def test_generation_waits_for_boxes_then_records_every_point(tmp_path, caplog):
    suite = _suite(tmp_path)
    _build(suite, "a")
    config = _config(tmp_path, suite)
    with caplog.at_level(logging.INFO):
        assert gen.generate(config, progress=False) is None  # box b is still being built
    assert "4 points wait for suite boxes not built yet (b)" in caplog.text
    first = read_part(config, 2)
    assert json.loads(str(np.load(config.part_path(2))["binding"]))["snapshot"] == \
        {"box": "a", "z": 1.0, "min_particles": 20}
    _build(suite, "b")
    config = _config(tmp_path, suite)
    path = gen.generate(config, progress=False)
    ds = load_dataset(path)
    inputs = ds.provenance["point_inputs"]
    assert inputs["box"] == ["a"] * 4 + ["b"] * 4 and inputs["z"] == [0.0, 0.0, 1.0, 1.0] * 2
    assert inputs["omega_m"] == [0.28] * 4 + [0.33] * 4 and inputs["sigma8"] == [0.8] * 4 + [0.86] * 4
    manifest = json.loads((tmp_path / "boxes" / "b" / "box.json").read_text())
    assert inputs["catalog_sha256"][7] == manifest["catalogs"]["halos_z1.00.npz"]["content_sha256"]
    assert ds.provenance["halo_catalog"]["min_mass"] == MIN_MASS
    np.testing.assert_array_equal(ds.xi[2], first["xi"])  # box a's points were not redone
    assert np.isfinite(ds.xi).all() and (ds.n_gal > 0).all()
    assert gen.generate(_config(tmp_path, suite), progress=False) == path  # complete: nothing to do


def _serial_run_and_fresh_config(tmp_path):
    """Boxes a and b built, the serial run's dataset, and the same config with its output moved aside."""
    suite = _suite(tmp_path)
    for name in ("a", "b"):
        _build(suite, name)
    serial = load_dataset(gen.generate(_config(tmp_path, suite), progress=False))
    config = _config(tmp_path, suite)
    config.output.rename(tmp_path / "serial.npz")
    return serial, config


def _assert_same_dataset(got, serial):
    for name in ("xi", "omega", "eta", "n_gal", "seeds"):
        np.testing.assert_array_equal(getattr(got, name), getattr(serial, name))
    assert got.provenance["point_inputs"] == serial.provenance["point_inputs"]


@pytest.mark.slow
def test_pool_gives_the_serial_dataset(tmp_path):
    """Two spawned workers, each loading the catalogs of the points it is given, write the dataset a
    serial run writes (every seed is a function of the point, not of the worker)."""
    serial, config = _serial_run_and_fresh_config(tmp_path)
    pooled = load_dataset(gen.generate(config, workers=2, progress=False))
    _assert_same_dataset(pooled, serial)


@pytest.mark.mpi
@pytest.mark.slow
def test_two_mpi_ranks_give_the_serial_dataset(tmp_path):
    """``mpirun -n 2 iaemu generate --mpi`` over the suite writes the serial run's dataset."""
    mpirun = shutil.which("mpirun")
    assert mpirun, "OpenMPI is installed by the test command (scripts/system-packages.sh)"
    serial, config = _serial_run_and_fresh_config(tmp_path)
    iaemu = str(Path(sys.executable).with_name("iaemu"))
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue", "OMPI_ALLOW_RUN_AS_ROOT": "1",
           "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-n", "2", iaemu, "generate",
           str(tmp_path / "generate.yaml"), "--mpi", "--no-progress"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranked = load_dataset(config.output)
    _assert_same_dataset(ranked, serial)
