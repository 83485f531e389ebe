"""``iaemu generate`` never trusts a part it should not, never bricks an assembly, never hangs.

Parts are written here from fabricated results with the right seeds (no mocks are populated), on
a tiny synthetic halo catalog, so every test runs in about a second.
"""
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from iaemu_likelihood.conventions import STATISTICS
from iaemu_likelihood.training import generate as gen
from iaemu_likelihood.training.catalogs import save_halo_catalog
from iaemu_likelihood.training.generation_parts import (realization_seed, scan_parts, write_part)

IAEMU = str(Path(sys.executable).with_name("iaemu"))
REPO = Path(__file__).resolve().parents[1]
BOX = 40.0
PARTICLE_MASS = 1e9
RBINS = [1.0, 2.0, 4.0, 8.0]
N_REAL = 3
POINTS = [[0.9, 0.6, 12.0, 0.25, 11.8, 13.0, 1.0], [-0.5, 0.2, 12.3, 0.3, 12.0, 13.2, 1.1],
          [0.3, -0.8, 11.9, 0.2, 11.5, 12.9, 0.9], [0.0, 0.9, 12.1, 0.4, 12.2, 13.1, 1.2]]
#: seconds a subprocess may take before the test calls it a hang
HANG_TIMEOUT_S = 120


def tiny_catalog(path: Path, n_halos: int = 300, seed: int = 0, **provenance) -> Path:
    """A synthetic offline halo catalog (random positions and axes, masses 10^11.5-10^14);
    ``provenance`` adds entries (e.g. ``redshift``, ``cosmology``)."""
    from iaemu_likelihood.training.halos import virial_radius

    rng = np.random.default_rng(seed)
    n_particles = np.round(10 ** rng.uniform(2.5, 5.0, n_halos)).astype(np.int32)
    mass = n_particles * PARTICLE_MASS
    axis_a = rng.normal(size=(n_halos, 3))
    axis_a /= np.linalg.norm(axis_a, axis=1, keepdims=True)
    axis_c = np.cross(axis_a, rng.normal(size=(n_halos, 3)))
    axis_c /= np.linalg.norm(axis_c, axis=1, keepdims=True)
    halos = {"mass": mass, "rvir": virial_radius(mass, 0.307), "centre": rng.uniform(0, BOX, (n_halos, 3)),
             "velocity": np.zeros((n_halos, 3)), "axis_a": axis_a, "axis_c": axis_c,
             "b_to_a": np.full(n_halos, 0.8), "c_to_a": np.full(n_halos, 0.6),
             "n_particles": n_particles, "n_shape": n_particles}
    return save_halo_catalog(path, halos, {"box_size": BOX, "particle_mass": PARTICLE_MASS,
                                           "min_particles_trusted": 20, **provenance})


@pytest.fixture()
def catalog(tmp_path):
    return tiny_catalog(tmp_path / "catalog.npz")


def write_config(folder: Path, catalog: Path, name: str = "set", **changes) -> Path:
    cfg = {"name": name, "seed": 11, "n_realizations": N_REAL, "max_retries": 1,
           "output": f"{name}.npz", "points": POINTS, "rbins": RBINS,
           "catalog": {"source": "offline", "path": str(catalog), "min_particles": 20}}
    cfg.update(changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def fake_result(config, i: int, value: float = 0.0) -> dict:
    """What run_point would return for point ``i`` if every realization succeeded at once."""
    n_bins = len(config.rbins) - 1
    rng = np.random.default_rng(i)
    out = {s: value + rng.normal(size=(config.n_realizations, n_bins)) for s in STATISTICS}
    out["n_cen"] = np.full(config.n_realizations, 10, dtype=np.int64)
    out["n_sat"] = np.full(config.n_realizations, 5, dtype=np.int64)
    out["n_gal"] = out["n_cen"] + out["n_sat"]
    out["retries"] = np.zeros(config.n_realizations, dtype=np.int64)
    out["seeds"] = np.array([realization_seed(config.seed, i, j) for j in range(config.n_realizations)])
    out["wall_s"] = np.array(0.5)
    return out


def write_all_parts(config):
    for i in range(config.n_points):
        write_part(config, i, fake_result(config, i))


def corrupt_member(path: Path, member: str) -> None:
    """Flip one byte in the middle of one array member of an (uncompressed) npz."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
        offset = info.header_offset + 30 + int(name_len) + int(extra_len) + info.compress_size // 2
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


# -- parts are bound to what produced them --------------------------------------------------
def test_valid_parts_count(tmp_path, catalog):
    config = gen.load_config(write_config(tmp_path, catalog))
    write_all_parts(config)
    done, todo = scan_parts(config)
    assert todo == [] and sorted(done) == list(range(len(POINTS)))


def test_part_copied_from_another_point_is_redone_and_logged(tmp_path, catalog, caplog):
    config = gen.load_config(write_config(tmp_path, catalog))
    write_all_parts(config)
    shutil.copyfile(config.part_path(1), config.part_path(2))
    with caplog.at_level(logging.WARNING):
        done, todo = scan_parts(config)
    assert todo == [2]
    assert str(config.part_path(2)) in caplog.text and "point" in caplog.text
    assert not config.part_path(2).exists()


@pytest.mark.parametrize("change, reason", [
    ({"seed": 12}, "seed"),
    ({"max_retries": 3}, "config_sha256"),
    ({"n_realizations": N_REAL + 1}, "config_sha256"),
    ({"rbins": [1.0, 2.0, 4.0, 7.0]}, "config_sha256"),
    ({"points": [POINTS[0], POINTS[2], POINTS[1], POINTS[3]]}, "params"),
])
def test_part_left_by_another_run_is_redone(tmp_path, catalog, caplog, change, reason):
    old = gen.load_config(write_config(tmp_path, catalog))
    write_all_parts(old)
    new = gen.load_config(write_config(tmp_path, catalog, **change))
    with caplog.at_level(logging.WARNING):
        done, todo = scan_parts(new)
    expected = [1, 2] if "points" in change else list(range(len(POINTS)))
    assert todo == expected
    assert reason in caplog.text and str(new.part_path(expected[0])) in caplog.text


def test_part_made_on_another_catalog_is_redone(tmp_path, catalog, caplog):
    old = gen.load_config(write_config(tmp_path, catalog))
    write_all_parts(old)
    other = tiny_catalog(tmp_path / "other.npz", seed=1)
    new = gen.load_config(write_config(tmp_path, other))
    with caplog.at_level(logging.WARNING):
        assert scan_parts(new)[1] == list(range(len(POINTS)))
    assert "catalog_sha256" in caplog.text


@pytest.mark.parametrize("member", ["eta.npy", "seeds.npy", "binding.npy"])
def test_part_damaged_inside_one_member_is_redone(tmp_path, catalog, caplog, member):
    config = gen.load_config(write_config(tmp_path, catalog))
    write_all_parts(config)
    corrupt_member(config.part_path(3), member)
    with caplog.at_level(logging.WARNING):
        done, todo = scan_parts(config)
    assert todo == [3]
    assert str(config.part_path(3)) in caplog.text and "unreadable" in caplog.text


def test_truncated_foreign_and_non_finite_parts_are_redone(tmp_path, catalog, caplog):
    config = gen.load_config(write_config(tmp_path, catalog))
    write_all_parts(config)
    config.part_path(0).write_bytes(config.part_path(0).read_bytes()[:200])
    config.part_path(1).write_text("not a part")
    bad = fake_result(config, 2)
    bad["omega"][1, 0] = np.nan  # a realization recorded as successful
    write_part(config, 2, bad)
    with caplog.at_level(logging.WARNING):
        assert scan_parts(config)[1] == [0, 1, 2]
    assert "not finite" in caplog.text


def test_failed_realization_may_be_non_finite(tmp_path, catalog):
    config = gen.load_config(write_config(tmp_path, catalog))
    write_all_parts(config)
    result = fake_result(config, 0)
    result["xi"][1] = np.nan
    result["retries"][1] = config.max_retries + 1
    result["seeds"][1] = realization_seed(config.seed, 0, 1, config.max_retries)
    write_part(config, 0, result)
    assert scan_parts(config)[1] == []


def test_last_bit_differences_of_bins_do_not_void_parts(tmp_path, catalog):
    """numpy versions differ in the last bit of np.logspace; a resume must not redo everything."""
    write_all_parts(gen.load_config(write_config(tmp_path, catalog)))
    nudged = np.nextafter(np.array(RBINS), np.inf).tolist()
    assert scan_parts(gen.load_config(write_config(tmp_path, catalog, rbins=nudged)))[1] == []


def test_shipped_dataset_is_complete_for_its_config():
    config = gen.load_config(REPO / "training" / "configs" / "train_b.yaml")
    assert gen._is_complete(config)


# -- assembly -------------------------------------------------------------------------------
def test_assembly_binds_the_dataset_and_leaves_nothing_behind(tmp_path, catalog):
    from iaemu_likelihood.training.dataset_io import load_dataset

    config = gen.load_config(write_config(tmp_path, catalog))
    write_all_parts(config)
    assert gen.generate(config, progress=False) == config.output
    ds = load_dataset(config.output)
    np.testing.assert_array_equal(ds.xi[2], fake_result(config, 2)["xi"])
    assert ds.provenance["generation_binding"]["seed"] == 11
    assert not config.parts_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.npz", "set.npz", "set.timings.json",
                                                         "set.yaml"]


def test_interrupted_assembly_keeps_parts_and_next_run_finishes(tmp_path, catalog, monkeypatch):
    import iaemu_likelihood.training.dataset_io as dio

    config = gen.load_config(write_config(tmp_path, catalog))
    write_all_parts(config)
    real_write = dio.atomic_write_bytes

    def killed(path, data, durable=False):  # dies half-way through the temporary file
        (Path(path).parent / f".{Path(path).name}.x1y2.tmp").write_bytes(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(dio, "atomic_write_bytes", killed)
    with pytest.raises(KeyboardInterrupt):
        gen.generate(config, progress=False)
    assert not config.output.exists()
    assert len(list(config.parts_dir.glob("point_*.npz"))) == len(POINTS)
    monkeypatch.setattr(dio, "atomic_write_bytes", real_write)
    (config.parts_dir / ".point_000001.npz.abcd.tmp").write_bytes(b"half")
    (config.parts_dir / "point_000002.npz.tmp").write_bytes(b"half")  # older versions' name
    assert gen.generate(gen.load_config(write_config(tmp_path, catalog)), progress=False) == config.output
    assert not config.parts_dir.exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_parts_left_after_the_dataset_was_written_are_removed(tmp_path, catalog):
    config = gen.load_config(write_config(tmp_path, catalog))
    write_all_parts(config)
    gen.generate(config, progress=False)
    write_all_parts(config)  # as if killed between writing the dataset and deleting the parts
    stamp = config.output.stat().st_mtime_ns
    assert gen.generate(gen.load_config(write_config(tmp_path, catalog)), progress=False) == config.output
    assert not config.parts_dir.exists()
    assert config.output.stat().st_mtime_ns == stamp


def test_existing_dataset_of_another_config_is_refused_not_overwritten(tmp_path, catalog):
    config = gen.load_config(write_config(tmp_path, catalog))
    write_all_parts(config)
    gen.generate(config, progress=False)
    before = config.output.read_bytes()
    other = gen.load_config(write_config(tmp_path, catalog, seed=99))
    with pytest.raises(gen.GenerationError, match="made by another configuration.*seed 11 != 99"):
        gen.generate(other, progress=False)
    assert config.output.read_bytes() == before


# -- workers --------------------------------------------------------------------------------
def test_missing_catalog_stops_before_any_worker(tmp_path):
    config = gen.load_config(write_config(tmp_path, tmp_path / "absent.npz"))
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        gen.generate(config, workers=2, progress=False)
    assert not config.parts_dir.exists()


class _Bar:
    def update(self, n=1):
        pass


def test_worker_set_up_failure_stops_the_pool_with_its_message(tmp_path):
    config = gen.load_config(write_config(tmp_path, tmp_path / "absent.npz"))
    with pytest.raises(gen.GenerationError, match="could not start: FileNotFoundError: halo catalog "
                                                  ".*absent.npz does not exist"):
        gen._run_pool(config, [0, 1, 2], 2, _Bar())


def test_worker_initializer_that_raises_breaks_the_pool_instead_of_respawning(tmp_path, catalog):
    config = gen.load_config(write_config(tmp_path, catalog))
    # os.abort called with three arguments raises TypeError inside each worker's initializer
    with pytest.raises(gen.GenerationError, match="worker process .* died"):
        gen._run_pool(config, [0, 1], 2, _Bar(), initializer=os.abort)


def test_cli_missing_catalog_with_two_workers_is_one_line_and_does_not_hang(tmp_path):
    cfg = write_config(tmp_path, tmp_path / "absent.npz")
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    result = subprocess.run([IAEMU, "generate", str(cfg), "--workers", "2", "--no-progress"], env=env,
                            capture_output=True, text=True, timeout=HANG_TIMEOUT_S)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "absent.npz" in lines[0], result.stderr


@pytest.mark.parametrize("workers, max_points, match", [(0, None, "--workers = 0"),
                                                        (-2, None, "--workers = -2"),
                                                        (1, -1, "--max-points = -1")])
def test_worker_and_max_points_options_are_checked(tmp_path, catalog, workers, max_points, match):
    from iaemu_likelihood.errors import ConfigError

    config = gen.load_config(write_config(tmp_path, catalog))
    with pytest.raises(ConfigError, match=match):
        gen.generate(config, workers=workers, max_points=max_points, progress=False)


def test_binding_records_what_changes_results_not_names(tmp_path, catalog):
    a = gen.load_config(write_config(tmp_path, catalog, name="a"))
    b = gen.load_config(write_config(tmp_path, catalog, name="b"))
    assert a.binding() == b.binding()
    assert json.dumps(a.binding(), sort_keys=True)  # JSON-ready
    assert a.binding()["catalog"]["sha256"] == a.catalog().provenance["content_sha256"]
