"""Mock pipeline end to end on a tiny simulation: catalog builder, forward model, generation.

One 64^3-particle PySCo run in a 100 h^-1 Mpc box (about a minute, most of it numba compiling
PySCo) feeds every test in this module.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from iaemu_likelihood.conventions import PARAM_NAMES, STATISTICS

pytestmark = pytest.mark.slow

IAEMU = str(Path(sys.executable).with_name("iaemu"))
BOX = 100.0
N1D = 64
#: parameter rows of the test generations: logMmin low enough that every resolved halo hosts galaxies
POINTS = [[0.9, 0.6, 12.0, 0.25, 11.8, 13.0, 1.0], [-0.5, 0.2, 12.3, 0.3, 12.0, 13.2, 1.1],
          [0.3, -0.8, 11.9, 0.2, 11.5, 12.9, 0.9], [0.0, 0.9, 12.1, 0.4, 12.2, 13.1, 1.2],
          [0.7, -0.3, 12.2, 0.3, 11.9, 13.3, 1.0], [-0.9, 0.5, 12.0, 0.35, 11.7, 13.0, 1.05],
          [0.5, 0.5, 12.4, 0.25, 12.1, 13.4, 0.95], [-0.2, -0.6, 12.1, 0.3, 11.6, 13.1, 1.1],
          [0.8, 0.1, 11.95, 0.22, 11.8, 12.95, 1.0], [-0.6, 0.7, 12.25, 0.28, 12.0, 13.25, 1.08]]
TEST_RBINS = np.logspace(0.0, 1.2, 6).tolist()
ENV = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory):
    from iaemu_likelihood.training.catalog_builder import build_offline_catalog
    from iaemu_likelihood.training.nbody import SimulationConfig

    root = tmp_path_factory.mktemp("tinysim")
    config = SimulationConfig(box_size=BOX, n_particles_1d=N1D, seed=7, n_threads=2)
    return build_offline_catalog(config, root / "pm", root / "catalog.npz")


def _write_config(folder: Path, catalog: Path, name: str, n_real: int = 3, points=POINTS) -> Path:
    cfg = {"name": name, "seed": 11, "n_realizations": n_real, "max_retries": 1,
           "output": f"{name}.npz", "points": points, "rbins": TEST_RBINS,
           "catalog": {"source": "offline", "path": str(catalog), "min_particles": 20}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _arrays(path):
    from iaemu_likelihood.training.dataset_io import load_dataset

    ds = load_dataset(path)
    return ds, {k: getattr(ds, k) for k in ("params", *STATISTICS, "n_gal", "n_cen", "n_sat", "seeds", "retries")}


def _assert_same_dataset(a, b):
    ds_a, arr_a = _arrays(a)
    ds_b, arr_b = _arrays(b)
    for key in arr_a:
        np.testing.assert_array_equal(arr_a[key], arr_b[key], err_msg=key)
    strip = lambda p: {k: v for k, v in p.items() if k not in ("config", "name")}  # noqa: E731
    assert strip(ds_a.provenance) == strip(ds_b.provenance)


def test_catalog_builder_properties(catalog_path):
    from iaemu_likelihood.training.catalogs import OfflineHaloCatalog
    from iaemu_likelihood.training.halos import virial_radius
    from iaemu_likelihood.training.nbody import particle_mass, SimulationConfig

    cat = OfflineHaloCatalog(catalog_path)
    c = cat.columns
    mp = particle_mass(SimulationConfig(box_size=BOX, n_particles_1d=N1D))
    assert c["mass"].size > 100
    assert c["n_particles"].min() >= 20
    np.testing.assert_allclose(c["mass"], c["n_particles"] * mp, rtol=1e-12)
    np.testing.assert_allclose(c["rvir"], virial_radius(c["mass"], 0.307), rtol=1e-6)
    assert np.all((c["centre"] >= 0) & (c["centre"] < BOX))
    np.testing.assert_allclose(np.linalg.norm(c["axis_a"], axis=1), 1.0, rtol=1e-5)
    assert np.all(np.abs(np.sum(c["axis_a"] * c["axis_c"], axis=1)) < 1e-5)
    assert np.all((c["c_to_a"] <= c["b_to_a"] + 1e-6) & (c["b_to_a"] <= 1 + 1e-6))
    prov = cat.provenance
    assert prov["simulation"]["seed"] == 7 and prov["code_versions"]["pysco-nbody"]
    assert len(prov["content_sha256"]) == 64
    # halotools view: the columns the IA models need
    halocat = cat.to_halotools()
    for col in ("halo_axisA_x", "halo_axisA_y", "halo_axisA_z", "halo_rvir", "halo_upid", "halo_mvir"):
        assert col in halocat.halo_table.colnames
    assert np.all(halocat.halo_table["halo_upid"] == -1)
    mf = cat.mass_function()
    # halotools populates halos with more than min_particles particles (a strict cut)
    assert mf["counts"].sum() == np.count_nonzero(c["n_particles"] > cat.min_particles)


def test_catalog_hash_identifies_content(catalog_path, tmp_path):
    from iaemu_likelihood.training.catalogs import OfflineHaloCatalog, save_halo_catalog

    cat = OfflineHaloCatalog(catalog_path)
    halos = {k: v.copy() for k, v in cat.columns.items()}
    same = save_halo_catalog(tmp_path / "same.npz", halos, {"box_size": BOX, "particle_mass": 1.0})
    halos["centre"][0, 0] += 1e-3
    other = save_halo_catalog(tmp_path / "other.npz", halos, {"box_size": BOX, "particle_mass": 1.0})
    h_same = OfflineHaloCatalog(same).provenance["content_sha256"]
    assert h_same == cat.provenance["content_sha256"]
    assert OfflineHaloCatalog(other).provenance["content_sha256"] != h_same


def test_forward_model_is_reproducible_and_seed_dependent(catalog_path):
    from iaemu_likelihood.training.catalogs import OfflineHaloCatalog
    from iaemu_likelihood.training.forward_model import MockSimulator

    sim = MockSimulator(OfflineHaloCatalog(catalog_path), TEST_RBINS)
    theta = dict(zip(PARAM_NAMES, POINTS[0]))
    first = sim.realization(theta, seed=5)
    sim.realization(dict(zip(PARAM_NAMES, POINTS[1])), seed=9)  # other work in between
    again = sim.realization(theta, seed=5)
    other = sim.realization(theta, seed=6)
    for s in STATISTICS:
        np.testing.assert_array_equal(first[s], again[s])
    assert first["n_gal"] == again["n_gal"] > 0
    assert first["n_sat"] > 0
    assert any(not np.array_equal(first[s], other[s]) for s in STATISTICS)


def test_alignment_strength_sets_sign_of_omega(catalog_path):
    from iaemu_likelihood.training.catalogs import OfflineHaloCatalog
    from iaemu_likelihood.training.forward_model import MockSimulator

    sim = MockSimulator(OfflineHaloCatalog(catalog_path), TEST_RBINS)
    base = dict(zip(PARAM_NAMES, POINTS[0]))
    aligned = np.mean([sim.realization({**base, "mu_cen": 1.0, "mu_sat": 1.0}, s)["omega"][0] for s in range(3)])
    anti = np.mean([sim.realization({**base, "mu_cen": -1.0, "mu_sat": -1.0}, s)["omega"][0] for s in range(3)])
    assert aligned > 0.02 and anti < -0.02


def test_generation_one_vs_two_workers_identical(catalog_path, tmp_path):
    from iaemu_likelihood.training.generate import generate, load_config

    one = load_config(_write_config(tmp_path, catalog_path, "one", points=POINTS[:4]))
    two = load_config(_write_config(tmp_path, catalog_path, "two", points=POINTS[:4]))
    generate(one, workers=1)
    generate(two, workers=2)
    _assert_same_dataset(one.output, two.output)
    assert not one.parts_dir.exists(), "parts are removed once the dataset is assembled"
    stamp = one.output.stat().st_mtime_ns
    assert generate(one, workers=1) == one.output  # finished: nothing to redo
    assert one.output.stat().st_mtime_ns == stamp
    ds, arr = _arrays(one.output)
    assert ds.n_points == 4 and ds.n_realizations == 3
    assert np.unique(arr["seeds"]).size == arr["seeds"].size
    assert ds.provenance["halo_catalog"]["sha256"]
    assert set(ds.provenance["halo_mass_function"]) >= {"log10_mass_edges", "counts", "volume"}


def test_generation_resumes_after_kill(catalog_path, tmp_path):
    cfg_killed = _write_config(tmp_path, catalog_path, "killed", n_real=4)
    cfg_clean = _write_config(tmp_path, catalog_path, "clean", n_real=4)
    parts = tmp_path / "killed.npz.parts"
    proc = subprocess.Popen([IAEMU, "generate", str(cfg_killed), "--workers", "1"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(parts.glob("point_*.npz"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts.glob("point_*.npz")))
    assert 3 <= done_before < len(POINTS), "the run was not interrupted part-way"
    assert not (tmp_path / "killed.npz").exists()
    subprocess.run([IAEMU, "generate", str(cfg_killed), "--workers", "1"], env=ENV, check=True,
                   capture_output=True)
    subprocess.run([IAEMU, "generate", str(cfg_clean), "--workers", "2"], env=ENV, check=True,
                   capture_output=True)
    _assert_same_dataset(tmp_path / "killed.npz", tmp_path / "clean.npz")


@pytest.mark.mpi
def test_generation_mpi_two_ranks_identical(catalog_path, tmp_path):
    from iaemu_likelihood.training.generate import generate, load_config

    mpirun = shutil.which("mpirun")
    assert mpirun, "OpenMPI is installed by the test command (scripts/system-packages.sh)"
    serial = load_config(_write_config(tmp_path, catalog_path, "serial", points=POINTS[:4]))
    generate(serial, workers=1)
    cfg_mpi = _write_config(tmp_path, catalog_path, "mpi", points=POINTS[:4])
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-n", "2", IAEMU, "generate", str(cfg_mpi), "--mpi"]
    env = {**ENV, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_dataset(serial.output, tmp_path / "mpi.npz")


def test_generation_config_errors(tmp_path, catalog_path):
    from iaemu_likelihood.errors import ConfigError
    from iaemu_likelihood.training.generate import GenerationConfig

    with pytest.raises(ConfigError, match="required key 'seed' is missing"):
        GenerationConfig({"name": "x", "catalog": {}, "output": "o.npz"})
    with pytest.raises(ConfigError, match="n_realizations = 1: must be an integer >= 2"):
        GenerationConfig({"name": "x", "seed": 1, "catalog": {"path": str(catalog_path)},
                          "output": "o.npz", "points": POINTS[:1], "n_realizations": 1})


def test_generation_redoes_a_part_copied_from_another_point(catalog_path, tmp_path, caplog):
    """End to end: a part copied from another point is logged, redone, and the dataset equals
    an uninterrupted run's."""
    from iaemu_likelihood.training.generate import generate, load_config

    clean = load_config(_write_config(tmp_path, catalog_path, "clean3", n_real=2, points=POINTS[:3]))
    generate(clean, workers=1, progress=False)
    mixed = load_config(_write_config(tmp_path, catalog_path, "mixed", n_real=2, points=POINTS[:3]))
    assert generate(mixed, workers=1, max_points=2, progress=False) is None
    shutil.copyfile(mixed.part_path(0), mixed.part_path(1))  # another point's part
    with caplog.at_level("WARNING"):
        assert generate(mixed, workers=1, progress=False) == mixed.output
    assert str(mixed.part_path(1)) in caplog.text
    _assert_same_dataset(clean.output, mixed.output)
