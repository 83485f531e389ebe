"""Painter training on a tiny synthetic box: loss, crops, checkpoint/resume, export and loading."""
import json
import shutil

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from iaemu_likelihood.field.network import build_network, count_nll  # noqa: E402

N = 16


def test_network_shapes_and_loss_gradients():
    config = {"n_params": 5, "channels": [2, 4], "strides": [2], "num_res_units": 1}
    torch.manual_seed(0)
    net = build_network(config)
    x = torch.randn(2, 1, 8, 8, 8)
    params = torch.zeros(2, 5)
    out = net(x, params)
    assert out.shape == (2, 3, 8, 8, 8)
    # the parameters reach the output (parameter channels, no normalisation layer to erase them)
    assert not torch.allclose(out, net(x, params + 0.5))
    counts = torch.zeros(2, 8, 8, 8)
    counts[0, 1, 2, 3], counts[1, 4, 4, 4] = 1, 3
    cls, cnt = count_nll(out, counts, pos_weight=10.0)
    assert torch.isfinite(cls) and torch.isfinite(cnt) and cnt > 0
    (cls + cnt).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    assert count_nll(out.detach(), torch.zeros(2, 8, 8, 8), 10.0)[1] == 0


def _write_box(folder, seed):
    """density_n16.npz and galaxies_train.npz as field_data writes them (synthetic values)."""
    from iaemu_likelihood.training.field_data import _write_npz, hod_design

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rho = rng.lognormal(0, 1, (N,) * 3).astype(np.float32)
    _write_npz(folder / f"density_n{N}.npz", {"density": rho / rho.mean()},
               {"box_size": 16.0, "n_mesh": N, "simulation": {"seed": seed}, "snapshot_sha256": f"{seed:064d}",
                "seconds": 0.0})
    hod = hod_design(3, seed)
    chunks = [rng.uniform(0, 16.0, (int(rng.integers(5, 40)), 3)).astype(np.float32) for _ in range(6)]
    _write_npz(folder / "galaxies_train.npz",
               {"hod": hod, "seeds": np.arange(6).reshape(3, 2), "positions": np.concatenate(chunks),
                "offsets": np.r_[0, np.cumsum([len(c) for c in chunks])], "populate_seconds": np.zeros(6)},
               {"box_size": 16.0, "catalog_sha256": "0" * 64, "design_seed": seed})


@pytest.fixture()
def config_file(tmp_path):
    for i in range(2):
        _write_box(tmp_path / f"box_{i}", i)
    cfg = {"boxes": ["box_0", "box_1"], "output": "painter", "workdir": "run", "n_mesh": N,
           "channels": [2, 4], "strides": [2], "context": 4, "crop": 8, "batch_size": 2, "steps": 4,
           "checkpoint_every": 2, "threads": 1, "seed": 5}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_crops_are_deterministic_and_match_the_galaxies(config_file):
    from iaemu_likelihood.training.field_data import HOD_NAMES
    from iaemu_likelihood.training.field_train import _CropSampler, load_config

    config = load_config(config_file, {"dense_fraction": 0.0})
    bounds = {k: (0.0, 20.0) for k in HOD_NAMES}
    sampler = _CropSampler(config, bounds)
    x, p, y = sampler.batch(7)
    assert x.shape == (2, 1, 16, 16, 16) and p.shape == (2, 5) and y.shape == (2, 8, 8, 8)
    x2, _, y2 = sampler.batch(7)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    # over many crops the mean count per voxel is the galaxies' mean density (no galaxy lost or doubled)
    total = sum(sampler.batch(s)[2].sum() for s in range(200))
    expected = np.mean([len(s.positions(i, r)) for s in sampler.sets for i in range(3) for r in range(2)])
    assert total / (200 * 2 * 8 ** 3) == pytest.approx(expected / N ** 3, rel=0.15)


def test_train_resume_and_export(config_file, tmp_path):
    from iaemu_likelihood.field import GalaxyPainter
    from iaemu_likelihood.training.field_train import load_config, train

    folder = train(load_config(config_file))
    full = GalaxyPainter.load(folder)
    meta = json.loads((folder / "painter.json").read_text())
    assert meta["mesh"] == {**meta["mesh"], "n_mesh": N, "box_size": 16.0, "voxel_size": 1.0}
    assert [b["name"] for b in meta["training"]["boxes"]] == ["box_0", "box_1"]
    # interrupted after step 2 (the checkpoint of that step kept), then resumed: same weights
    shutil.rmtree(folder)
    shutil.rmtree(tmp_path / "run")
    assert train(load_config(config_file), stop_at=2) is None
    assert np.loadtxt(tmp_path / "run" / "loss.txt").shape == (2, 3)
    resumed = GalaxyPainter.load(train(load_config(config_file)))
    for (k, a), b in zip(full.net.state_dict().items(), resumed.net.state_dict().values()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7, err_msg=k)
    rho = np.random.default_rng(0).lognormal(0, 1, (N,) * 3)
    from iaemu_likelihood.training.field_data import hod_design

    hod = dict(zip(meta["hod_names"], hod_design(1, 0)[0]))
    assert resumed.paint(rho, hod, seed=0).shape == (N,) * 3


def test_config_errors(config_file):
    from iaemu_likelihood.errors import ConfigError
    from iaemu_likelihood.training.field_train import load_config

    with pytest.raises(ConfigError, match="crop \\+ 2 context"):
        load_config(config_file, {"crop": 7})
    with pytest.raises(ConfigError, match="learning_rat"):
        load_config(config_file, {"learning_rat": 1.0})
