"""``iaemu build-suite``: tiny boxes (32^3 particles, 2 cosmologies, 2 snapshots) built serially, on a
process pool and on 2 MPI ranks give identical catalogs; an interrupted box resumes from its last
durable step; bad configs are one-line errors naming the key."""
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("pysco")
pytest.importorskip("camb")
pytest.importorskip("kdcount")

IAEMU = str(Path(sys.executable).with_name("iaemu"))
ENV = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue", "PYTHONUNBUFFERED": "1", "NUMBA_NUM_THREADS": "1",
       "OMP_NUM_THREADS": "1"}
SNAPSHOTS = [0.0, 1.0]
TINY = {
    "name": "tiny", "output": "out", "box_size": 32.0, "n_particles_1d": 32, "z_start": 19.0, "seed": 7,
    "snapshots": SNAPSHOTS, "min_particles": 10, "min_particles_trusted": 10,
    "fixed": {"h": 0.678, "omega_b": 0.048, "n_s": 0.96},
    "boxes": [{"name": "a", "omega_m": 0.307, "sigma8": 0.823, "role": "train"},
              {"name": "b", "omega_m": 0.35, "sigma8": 0.75, "role": "test", "seed": 8}],
}


def _write(folder: Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def _columns(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files if k != "provenance"}


def _assert_same_catalogs(out_a: Path, out_b: Path, boxes=("a", "b")) -> None:
    """Every catalog of ``boxes`` has identical arrays (bit for bit) and content hash."""
    from iaemu_likelihood.training.suite import catalog_name

    for box in boxes:
        for z in SNAPSHOTS:
            ref, other = _columns(out_a / box / catalog_name(z)), _columns(out_b / box / catalog_name(z))
            assert ref.keys() == other.keys()
            for key in ref:
                np.testing.assert_array_equal(ref[key], other[key], err_msg=f"{box} z={z} {key}")
        manifests = [json.loads((o / box / "box.json").read_text()) for o in (out_a, out_b)]
        assert ({k: v["content_sha256"] for k, v in manifests[0]["catalogs"].items()}
                == {k: v["content_sha256"] for k, v in manifests[1]["catalogs"].items()})


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The reference: both tiny boxes built in this process."""
    from iaemu_likelihood.training.suite import build_suite, load_suite_config

    config = load_suite_config(_write(tmp_path_factory.mktemp("serial")))
    assert build_suite(config, workers=1, progress=False) == config.output / "suite.json"
    return config.output


@pytest.fixture(scope="module")
def serial_fresh(tmp_path_factory):
    """The reference for the pool and MPI runs: both boxes built serially in a fresh process, as their
    workers and ranks are. (Inside a pytest process that has already run hundreds of other tests, a
    build was seen to differ from fresh processes by one float32 ulp in a few halo properties, while two
    in-process builds agree bit for bit; the cause, some process-wide state left by an earlier test, is
    not identified yet.)"""
    path = _write(tmp_path_factory.mktemp("serial_fresh"))
    result = subprocess.run([IAEMU, "build-suite", str(path), "--workers", "1", "--no-progress"], env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return path.parent / "out"


def test_serial_suite_catalogs_and_provenance(serial):
    from iaemu_likelihood.training.catalogs import OfflineHaloCatalog
    from iaemu_likelihood.training.nbody import RHO_CRIT_H2
    from iaemu_likelihood.training.suite import catalog_name

    suite = json.loads((serial / "suite.json").read_text())
    assert [b["name"] for b in suite["boxes"]] == ["a", "b"]
    for box, omega_m, seed in (("a", 0.307, 7), ("b", 0.35, 8)):
        for z in SNAPSHOTS:
            cat = OfflineHaloCatalog(serial / box / catalog_name(z))
            prov = cat.provenance
            assert prov["redshift"] == z and prov["seed"] == seed
            assert prov["cosmology"]["omega_m"] == omega_m
            # particle mass follows Omega_m at fixed box and particle number
            assert prov["particle_mass"] == pytest.approx(omega_m * RHO_CRIT_H2 * 32.0 ** 3 / 32 ** 3, rel=1e-12)
            assert prov["code_versions"]["pysco-nbody"] and "FoF" in prov["mass_definition"]
            assert cat.columns["mass"].size > 20 and cat.columns["n_particles"].min() >= 10
        # particle snapshots are deleted once the catalogs exist (keep_snapshots: [])
        assert not list((serial / box / "nbody").glob("output_0000[012]/*.h5"))
    z0, z1 = (OfflineHaloCatalog(serial / "a" / catalog_name(z)) for z in (0.0, 1.0))
    assert z0.columns["mass"].sum() > z1.columns["mass"].sum()  # structure grows


def test_pool_equals_serial(serial_fresh, tmp_path):
    from iaemu_likelihood.training.suite import build_suite, load_suite_config

    config = load_suite_config(_write(tmp_path))
    build_suite(config, workers=2, progress=False)
    _assert_same_catalogs(serial_fresh, config.output)


@pytest.mark.mpi
def test_mpi_two_ranks_equal_serial(serial_fresh, tmp_path):
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun is not installed (scripts/system-packages.sh installs it for CI)")
    pytest.importorskip("mpi4py")
    path = _write(tmp_path)
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-n", "2", IAEMU, "build-suite", str(path), "--mpi",
           "--no-progress"]
    env = {**ENV, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "suite.json").is_file()
    _assert_same_catalogs(serial_fresh, tmp_path / "out")


def test_resume_after_interrupted_box(serial, tmp_path, monkeypatch):
    """Killed after box a's N-body run and first catalog: the rerun keeps both, builds the other
    catalog from the kept snapshot, and every catalog equals an uninterrupted run's. (Box a only,
    to keep the test short; a kill is a KeyboardInterrupt raised where the process would die.)"""
    from iaemu_likelihood.training import catalog_builder, nbody, suite

    config = suite.load_suite_config(_write(tmp_path, keep_snapshots=[0.0]))
    real_catalog, calls = catalog_builder.catalog_from_snapshot, []

    def dies_on_second(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill: nothing after this point runs
        return real_catalog(*args, **kwargs)

    monkeypatch.setattr(catalog_builder, "catalog_from_snapshot", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        suite.build_suite(config, only=["a"], progress=False)
    folder = config.output / "a"
    assert (folder / "nbody.json").is_file() and not (folder / "box.json").exists()
    assert suite.box_status(config, config.box("a")) == "partial"
    assert suite.box_status(config, config.box("b")) == "new"
    build = functools.partial(suite.build_suite, config, only=["a"], progress=False)

    monkeypatch.setattr(catalog_builder, "catalog_from_snapshot", real_catalog)
    real_run = nbody.run_simulation
    ran = []
    monkeypatch.setattr(nbody, "run_simulation", lambda cfg, wd: ran.append(Path(wd).parent.name) or real_run(cfg, wd))
    assert build() is None  # box b is not built: no suite.json
    assert ran == []  # box a's N-body run was kept
    _assert_same_catalogs(serial, config.output, boxes=["a"])
    # kept snapshot (z = 0) still there, the other deleted
    assert len(list((folder / "nbody").glob("output_00002/*.h5"))) == 1
    assert not list((folder / "nbody").glob("output_00001/*.h5"))

    # a finished box whose catalog was damaged afterwards is redone from its kept snapshot
    target = folder / suite.catalog_name(0.0)
    target.write_bytes(target.read_bytes()[:100])
    build()
    assert ran == []
    _assert_same_catalogs(serial, config.output, boxes=["a"])

    # the z = 1 snapshot is gone: damaging its catalog means running the N-body again; a kill
    # during that run leaves a half-written snapshot and no nbody.json, so the run starts over
    target = folder / suite.catalog_name(1.0)
    target.write_bytes(b"not a catalog")
    (folder / "box.json").unlink()
    (folder / "nbody.json").unlink()
    half = next((folder / "nbody" / "output_00002").glob("*.h5"))
    (folder / "nbody" / "output_00001" / half.name).write_bytes(half.read_bytes()[:5000])
    build()
    assert ran == ["a"]
    _assert_same_catalogs(serial, config.output, boxes=["a"])


def test_box_being_built_elsewhere_is_skipped(tmp_path):
    from iaemu_likelihood.training import suite

    config = suite.load_suite_config(_write(tmp_path))
    with suite._box_lock(config.output / "a") as locked:
        assert locked
        assert suite.build_box(config, config.box("a")) is None
    assert suite.box_status(config, config.box("a")) == "partial"


def test_finished_box_from_another_config_is_refused(serial, tmp_path):
    from iaemu_likelihood.training.suite import SuiteError, build_suite, load_suite_config

    shutil.copytree(serial, tmp_path / "out")
    boxes = [dict(TINY["boxes"][0], sigma8=0.9), TINY["boxes"][1]]
    config = load_suite_config(_write(tmp_path, boxes=boxes))
    with pytest.raises(SuiteError, match=r"box.json was made by another configuration"):
        build_suite(config, progress=False)


@pytest.mark.parametrize("change, message", [
    ({"boxes": []}, r"boxes = \[\]: must be a non-empty list"),
    ({"n_particles_1d": 48}, r"n_particles_1d = 48: must be a power of two"),
    ({"snapshots": [0.0, 0.0]}, r"snapshots = \[0.0, 0.0\]: must be distinct redshifts"),
    ({"snapshots": [0.0, 30.0]}, r"below z_start = 19.0"),
    ({"keep_snapshots": [0.5]}, r"keep_snapshots = \[0.5\]: 0.5 is not one of snapshots"),
    ({"box_sise": 10.0}, r"unknown key 'box_sise'; did you mean 'box_size'"),
    ({"fixed": {"h": 0.7, "omega_b": 0.05}}, r"fixed: required key 'n_s' is missing"),
    ({"boxes": [{"name": "a", "omega_m": 1.5, "sigma8": 0.8, "role": "train"}]},
     r"boxes\[0\] \(a\): omega_m = 1.5: must be a finite number > 0.048 and <= 1.0"),
    ({"boxes": [{"name": "a", "omega_m": 0.3, "sigma8": 0.8, "role": "training"}]},
     r"role = 'training'; did you mean 'train'"),
    ({"boxes": [{"name": "a/b", "omega_m": 0.3, "sigma8": 0.8, "role": "train"}]},
     r"name = 'a/b': must be 1-64 letters"),
    ({"boxes": [{"name": "a", "omega_m": 0.3, "sigma8": 0.8, "role": "train"}] * 2},
     r"boxes\[1\]: name = 'a' is used by an earlier box"),
    ({"boxes": [{"name": "a", "omega_m": 0.3, "sigma8": 0.8, "role": "train", "seed": -1}]},
     r"seed = -1: must be an integer >= 0"),
])
def test_bad_configs_are_one_line_errors(tmp_path, change, message):
    from iaemu_likelihood.errors import ConfigError
    from iaemu_likelihood.training.suite import load_suite_config

    with pytest.raises(ConfigError, match=message) as info:
        load_suite_config(_write(tmp_path, **change))
    assert "\n" not in str(info.value) and "suite.yaml" in str(info.value)


def test_cli_unknown_box_is_one_line(tmp_path):
    from iaemu_likelihood.cli import main

    path = _write(tmp_path)
    assert main(["build-suite", str(path), "--only", "c", "--no-progress"]) == 1
    assert not (tmp_path / "out").exists()


def test_shipped_suite_v2_config():
    """The shipped suite: >= 20 Latin-hypercube training cosmologies drawn as its header says, the
    fiducial, >= 3 held-out cosmologies inside the range and a fiducial with other phases."""
    from importlib.resources import files

    from iaemu_likelihood.training.suite_config import latin_hypercube_cosmologies, load_suite_config

    path = Path(str(files("iaemu_likelihood.training") / "configs" / "suite_v2.yaml"))
    config = load_suite_config(path)
    design = config.raw["design"]
    train = [b for b in config.boxes if b.name.startswith("lhs_")]
    held_out = [b for b in config.boxes if b.name.startswith("test_")]
    d = design["train"]
    assert len(train) == d["n"] >= 20
    np.testing.assert_array_equal([[b.omega_m, b.sigma8] for b in train],
                                  latin_hypercube_cosmologies(d["n"], d["seed"], d["omega_m"], d["sigma8"]))
    h = design["held_out"]
    assert len(held_out) == h["n"] >= 3 and all(b.role == "test" for b in held_out)
    np.testing.assert_array_equal([[b.omega_m, b.sigma8] for b in held_out],
                                  latin_hypercube_cosmologies(h["n"], h["seed"], h["omega_m"], h["sigma8"],
                                                              inner=h["inner"]))
    fiducial = [b for b in config.boxes if (b.omega_m, b.sigma8) == (0.307, 0.823)]
    assert sorted((b.role, b.seed != config.seed) for b in fiducial) == [("test", True), ("train", False)]
    assert sum(b.seed != config.seed for b in config.boxes) == 1
    assert config.snapshots == (1.0, 0.5, 0.0)
