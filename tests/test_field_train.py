"""Painter training on a tiny synthetic box: loss, crops, checkpoint/resume, export and loading."""
import json
import shutil

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from iaemu_likelihood.field.network import block_count_nll, build_network, count_nll, space_to_depth  # noqa: E402

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


def test_space_to_depth_puts_each_voxels_fine_cells_in_its_channels():
    fine = torch.arange(2 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 1, 4, 6, 8)
    coarse = space_to_depth(fine, 2)
    assert coarse.shape == (2, 8, 2, 3, 4)
    # voxel (1, 2, 3) of item 1 holds the fine cells [2:4, 4:6, 6:8] in C order as channels
    np.testing.assert_array_equal(coarse[1, :, 1, 2, 3].numpy(), fine[1, 0, 2:4, 4:6, 6:8].reshape(-1).numpy())
    assert space_to_depth(fine, 1) is fine


def test_periodic_space_to_depth_is_pad_then_space_to_depth():
    """One copy gives the values and the channels-last layout of a circular pad followed by space_to_depth."""
    from iaemu_likelihood.field.network import periodic_space_to_depth

    x = torch.randn(24, 24, 24)
    for before, after in ((2, 2), (2, 4), (0, 3), (3, 0)):
        fused = periodic_space_to_depth(x, 4, before, after)
        padded = torch.nn.functional.pad(x[None, None], (4 * before, 4 * after) * 3, mode="circular")
        reference = space_to_depth(padded, 4)
        assert torch.equal(fused, reference) and fused.stride() == reference.stride()
    with pytest.raises(ValueError, match="periodic context 7"):
        periodic_space_to_depth(x, 4, 7, 0)


def test_network_with_a_finer_density_mesh():
    config = {"n_params": 5, "channels": [2, 4], "strides": [2], "num_res_units": 1, "input_factor": 2}
    net = build_network(config)
    out = net(torch.randn(1, 1, 16, 16, 16), torch.zeros(1, 5))
    assert out.shape == (1, 3, 8, 8, 8)


def test_encoder_head_network_scores_several_hod_targets_from_one_encoding():
    """The encoder reads the density alone; the head alone sees the HOD, so forward_targets over K
    parameter sets equals K forward calls, and the parameters still reach the output."""
    config = {"kind": "encoder_head", "n_params": 5, "channels": [4, 8], "strides": [2], "num_res_units": 1,
              "input_factor": 2, "features": 4, "head_width": 6}
    torch.manual_seed(0)
    net = build_network(config)
    x = torch.randn(2, 1, 16, 16, 16)
    params = torch.randn(2, 3, 5)
    out = net.forward_targets(x, params)
    assert out.shape == (2, 3, 3, 8, 8, 8)
    for k in range(3):
        torch.testing.assert_close(net(x, params[:, k]), out[:, k], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out[:, 0], out[:, 1])
    assert net.encode(x).shape == (2, 4, 8, 8, 8)
    # the U-Net kind gives the same API (each target runs the whole network)
    unet = build_network({**config, "kind": "unet"})
    torch.testing.assert_close(unet.forward_targets(x, params)[:, 2], unet(x, params[:, 2]))
    with pytest.raises(ValueError, match="kind='mlp'"):
        build_network({**config, "kind": "mlp"})


def test_block_count_nll_is_smallest_at_the_true_block_means():
    """A mean field off by a constant factor scores worse than the right one on block counts."""
    torch.manual_seed(1)
    counts = torch.poisson(torch.full((4, 8, 8, 8), 0.05))
    # out such that p (1 + mu) = 0.05 everywhere: logit offset log(10) -> p = sigmoid(l - log 10)
    def field(scale):
        out = torch.zeros(4, 3, 8, 8, 8)
        mu = 1e-3
        p = 0.05 * scale / (1 + mu)
        out[:, 0] = float(np.log(p / (1 - p)) + np.log(10.0))
        out[:, 1] = float(np.log(np.expm1(mu - 1e-4)))
        return out
    losses = [float(block_count_nll(field(s), counts, 10.0, sizes=(4, 8))) for s in (0.5, 1.0, 2.0)]
    assert losses[1] < losses[0] and losses[1] < losses[2]


def _write_box(folder, seed, clustered: bool = False):
    """density_n16.npz and galaxies_train.npz as field_data writes them (synthetic values);
    ``clustered``: a fifth of the galaxies get 8 others at their position (counts per voxel more
    dispersed than Poisson)."""
    from iaemu_likelihood.training.field_data import _write_npz, hod_design

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rho = rng.lognormal(0, 1, (N,) * 3).astype(np.float32)
    _write_npz(folder / f"density_n{N}.npz", {"density": rho / rho.mean()},
               {"box_size": 16.0, "n_mesh": N, "simulation": {"seed": seed}, "snapshot_sha256": f"{seed:064d}",
                "seconds": 0.0})
    hod = hod_design(3, seed)
    chunks = [rng.uniform(0, 16.0, (int(rng.integers(5, 40)), 3)).astype(np.float32) for _ in range(6)]
    if clustered:
        chunks = [np.repeat(c, np.where(rng.random(len(c)) < 0.2, 9, 1), axis=0) for c in chunks]
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
    assert x.shape == (2, 1, 16, 16, 16) and p.shape == (2, 1, 5) and y.shape == (2, 1, 8, 8, 8)
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
    assert np.loadtxt(tmp_path / "run" / "loss.txt").shape == (2, 4)  # step, cls, count, distill (0)
    resumed = GalaxyPainter.load(train(load_config(config_file)))
    for (k, a), b in zip(full.net.state_dict().items(), resumed.net.state_dict().values()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7, err_msg=k)
    rho = np.random.default_rng(0).lognormal(0, 1, (N,) * 3)
    from iaemu_likelihood.training.field_data import hod_design

    hod = dict(zip(meta["hod_names"], hod_design(1, 0)[0]))
    assert resumed.paint(rho, hod, seed=0).shape == (N,) * 3


def test_loader_workers_give_the_same_batches_and_weights(config_file, tmp_path):
    """Crops cut by forked DataLoader processes are the in-process ones, so training is unchanged."""
    import torch

    from iaemu_likelihood.field import GalaxyPainter
    from iaemu_likelihood.training.field_data import HOD_NAMES
    from iaemu_likelihood.training.field_train import _batches, _CropSampler, load_config, train

    config = load_config(config_file, {"loader_workers": 2})
    sampler = _CropSampler(config, {k: (0.0, 20.0) for k in HOD_NAMES})
    for step, batch in zip(range(3, 8), _batches(torch, sampler, 3, 8, workers=2)):
        for got, expected in zip(batch, sampler.batch(step)):
            np.testing.assert_array_equal(got.numpy(), expected)
    inline = GalaxyPainter.load(train(load_config(config_file, {"output": "a", "workdir": "ra"})))
    forked = GalaxyPainter.load(train(config))
    for (k, a), b in zip(inline.net.state_dict().items(), forked.net.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


def test_fine_tune_from_a_painter_with_a_weight_average(config_file, tmp_path):
    """init_weights starts from another painter's weights and input normalisation; with ema_decay
    the export holds the weight average (here so slow that it stays at the starting weights), and a
    resumed run gives the uninterrupted run's average. A painter of another architecture is refused."""
    from iaemu_likelihood.errors import ConfigError
    from iaemu_likelihood.field import GalaxyPainter
    from iaemu_likelihood.training.field_train import load_config, train

    start = GalaxyPainter.load(train(load_config(config_file, {"output": "start", "workdir": "run_start"})))
    tuned_cfg = {"init_weights": "start", "ema_decay": 0.999999, "learning_rate": 0.05, "seed": 9,
                 "output": "tuned", "workdir": "run_tuned"}
    folder = train(load_config(config_file, tuned_cfg))
    tuned = GalaxyPainter.load(folder)
    for (k, a), b in zip(start.net.state_dict().items(), tuned.net.state_dict().values()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)
    assert tuned.metadata["input"] == start.metadata["input"]
    origin = tuned.metadata["training"]["initialised_from"]
    assert origin["version"] == "start" and len(origin["weights_sha256"]) == 64
    assert tuned.metadata["training"]["config"]["init_weights"] == "start"
    # the raw weights did move (the optimiser ran): the average is not the last step's weights
    raw = torch.load(tmp_path / "run_tuned" / "checkpoint.pt", weights_only=True)
    assert any(not torch.allclose(raw["model"][k], raw["weight_average"][k]) for k in raw["model"])
    # interrupted and resumed: the same average
    shutil.rmtree(folder)
    shutil.rmtree(tmp_path / "run_tuned")
    assert train(load_config(config_file, tuned_cfg), stop_at=2) is None
    resumed = GalaxyPainter.load(train(load_config(config_file, tuned_cfg)))
    for (k, a), b in zip(tuned.net.state_dict().items(), resumed.net.state_dict().values()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-8, err_msg=k)
    with pytest.raises(ConfigError, match=r"init_weights = .*channels \(\[2, 4\] there, \[2, 8\] here\)"):
        train(load_config(config_file, {**tuned_cfg, "channels": [2, 8], "workdir": "run_other"}))
    with pytest.raises(ConfigError, match="ema_decay = 1.0"):
        load_config(config_file, {"ema_decay": 1.0})


def test_distillation_towards_a_symmetry_averaged_teacher(config_file, tmp_path):
    """With a teacher, each batch also holds the teacher's symmetry-averaged logits on the scored voxels
    (the crops themselves unchanged), the cached logits are the painter's raw outputs, the loss gains a
    distillation column, the export records the teacher, a resumed run gives the same weights, and a
    teacher of another mesh is refused by name."""
    from iaemu_likelihood.errors import ConfigError
    from iaemu_likelihood.field import GalaxyPainter
    from iaemu_likelihood.training.field_data import HOD_NAMES, load_density
    from iaemu_likelihood.training.field_train import _CropSampler, load_config, train

    teacher = GalaxyPainter.load(train(load_config(config_file, {"output": "teacher", "workdir": "run_teacher"})))
    cfg = {"teacher": "teacher", "teacher_symmetries": 2, "distill_weight": 0.5, "output": "student",
           "workdir": "run_student", "seed": 9}
    config = load_config(config_file, cfg)
    bounds = {k: (0.0, 20.0) for k in HOD_NAMES}
    plain, taught = _CropSampler(load_config(config_file, {"seed": 9}), bounds), _CropSampler(config, bounds)
    for step in (0, 3):
        *crops, logits = taught.batch(step)
        assert logits.shape == crops[2].shape == (2, 1, 8, 8, 8) and logits.dtype == np.float32
        for a, b in zip(crops, plain.batch(step)):
            np.testing.assert_array_equal(a, b)
    rho, _ = load_density(tmp_path / "box_1", N)
    hods = [dict(zip(HOD_NAMES, h.tolist())) for h in taught.sets[1].hod]
    expected = np.stack([o[0, 0].numpy() for o in teacher.raw_outputs(rho, hods, box_size=16.0, symmetries=2)])
    np.testing.assert_allclose(taught.teacher[1].astype(np.float32), expected, rtol=2e-3, atol=2e-3)
    # every value of a crop's logits is one of its point's teacher logits (the crop only moves voxels)
    x, p, y, logits = taught.batch(5)
    assert np.isin(logits[0, 0], taught.teacher[0].astype(np.float32)).all() or \
        np.isin(logits[0, 0], taught.teacher[1].astype(np.float32)).all()
    folder = train(config)
    student = GalaxyPainter.load(folder)
    record = student.metadata["training"]["teacher"]
    assert record["version"] == "teacher" and record["symmetries"] == 2 and len(record["weights_sha256"]) == 64
    assert student.metadata["training"]["config"]["teacher"] == "teacher"
    assert student.metadata["training"]["final_distill_loss"] > 0
    assert np.loadtxt(tmp_path / "run_student" / "loss.txt").shape == (4, 4)
    shutil.rmtree(folder)
    (tmp_path / "run_student" / "checkpoint.pt").unlink()
    assert train(config, stop_at=2) is None
    resumed = GalaxyPainter.load(train(config))
    for (k, a), b in zip(student.net.state_dict().items(), resumed.net.state_dict().values()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-7, err_msg=k)
    meta = json.loads((tmp_path / "teacher" / "painter.json").read_text())
    meta["mesh"]["n_mesh"] = 32
    other = tmp_path / "other_teacher"
    from iaemu_likelihood.field.weights import write_painter_folder

    write_painter_folder(other, meta, {k: v for k, v in teacher.net.state_dict().items()})
    with pytest.raises(ConfigError, match="teacher = .*other_teacher.*n_mesh is 32, the config's 16"):
        _CropSampler(load_config(config_file, {**cfg, "teacher": "other_teacher", "workdir": "run_x"}), bounds)
    with pytest.raises(ConfigError, match="teacher_symmetries"):
        load_config(config_file, {**cfg, "teacher_symmetries": 9})


def test_config_errors(config_file):
    from iaemu_likelihood.errors import ConfigError
    from iaemu_likelihood.training.field_train import load_config

    with pytest.raises(ConfigError, match="crop \\+ 2 context"):
        load_config(config_file, {"crop": 7})
    with pytest.raises(ConfigError, match="learning_rat"):
        load_config(config_file, {"learning_rat": 1.0})
    with pytest.raises(ConfigError, match="block_sizes entry 3 does not divide crop = 8"):
        load_config(config_file, {"block_sizes": [3], "block_weight": 1.0})
    with pytest.raises(ConfigError, match="input_factor"):
        load_config(config_file, {"input_factor": 0})
    with pytest.raises(ConfigError, match="loader_workers"):
        load_config(config_file, {"loader_workers": -1})
    with pytest.raises(ConfigError, match="kind = 'mlp'"):
        load_config(config_file, {"kind": "mlp"})
    with pytest.raises(ConfigError, match="targets_per_crop"):
        load_config(config_file, {"targets_per_crop": 0})


def test_train_on_a_finer_density_mesh_with_the_block_loss(config_file, tmp_path):
    """input_factor 2 reads density_n32.npz, crops it at twice the resolution and paints on n_mesh."""
    from iaemu_likelihood.field import GalaxyPainter
    from iaemu_likelihood.training.field_data import HOD_NAMES, _write_npz, hod_design
    from iaemu_likelihood.training.field_train import _CropSampler, load_config, train

    rng = np.random.default_rng(3)
    for i in range(2):
        rho = rng.lognormal(0, 1, (2 * N,) * 3).astype(np.float32)
        _write_npz(tmp_path / f"box_{i}" / f"density_n{2 * N}.npz", {"density": rho / rho.mean()},
                   {"box_size": 16.0, "n_mesh": 2 * N, "simulation": {"seed": i}, "snapshot_sha256": f"{i:064d}",
                    "seconds": 0.0})
    config = load_config(config_file, {"input_factor": 2, "block_weight": 1.0, "block_sizes": [4, 8],
                                       "output": "painter2", "workdir": "run2"})
    x, _, y = _CropSampler(config, {k: (0.0, 20.0) for k in HOD_NAMES}).batch(3)
    assert x.shape == (2, 1, 32, 32, 32) and y.shape == (2, 1, 8, 8, 8)
    painter = GalaxyPainter.load(train(config))
    assert painter.input_factor == 2 and painter.density_n_mesh == 2 * N
    hod = dict(zip(HOD_NAMES, hod_design(1, 0)[0]))
    assert painter.paint(rng.lognormal(0, 1, (2 * N,) * 3), hod, seed=0).shape == (N,) * 3


def test_several_targets_per_crop_train_an_encoder_head_painter(config_file, tmp_path):
    """targets_per_crop K: each crop carries K HOD targets of its box, each counted from its own
    (point, realization); an encoder_head painter trains on them, exports and paints."""
    from iaemu_likelihood.field import GalaxyPainter
    from iaemu_likelihood.training.field_data import HOD_NAMES, hod_design
    from iaemu_likelihood.training.field_train import _CropSampler, load_config, train

    config = load_config(config_file, {"kind": "encoder_head", "features": 3, "head_width": 5,
                                       "targets_per_crop": 4, "dense_fraction": 0.0, "crop": 16, "context": 0,
                                       "output": "painter_eh", "workdir": "run_eh"})
    sampler = _CropSampler(config, {k: (0.0, 20.0) for k in HOD_NAMES})
    x, p, y = sampler.batch(5)
    assert x.shape == (2, 1, 16, 16, 16) and p.shape == (2, 4, 5) and y.shape == (2, 4, 16, 16, 16)
    # a crop of the whole box (crop = N, no context) holds every galaxy of each target, and each
    # target's HOD row is that of the point whose galaxies were counted
    for b in range(2):
        for k in range(4):
            matches = [(i, s, r) for i, s in enumerate(sampler.sets) for r in range(s.n_realizations)
                       for pt in range(s.n_points)
                       if np.allclose(sampler.params[i][pt], p[b, k]) and len(s.positions(pt, r)) == y[b, k].sum()]
            assert matches, (b, k)
    painter = GalaxyPainter.load(train(config))
    meta = painter.metadata
    assert meta["architecture_config"]["kind"] == "encoder_head" and "encoder" in meta["architecture"]
    hod = dict(zip(HOD_NAMES, hod_design(1, 0)[0]))
    rho = np.random.default_rng(1).lognormal(0, 1, (N,) * 3)
    assert painter.paint(rho, hod, seed=0).shape == (N,) * 3


def test_transport_pack_keeps_the_counts_and_the_density_to_half_a_step(config_file, tmp_path):
    """scripts/field_transport.py (moving a training box to a GPU machine) loses no galaxy and
    changes the density by at most step / 2 in log1p."""
    from repo_files import load_module

    from iaemu_likelihood.training.field_data import load_density, load_galaxies

    transport = load_module("scripts/field_transport.py")
    box = tmp_path / "box_0"
    transport.pack(box, tmp_path / "box_0.npz", density_mesh=N, galaxy_mesh=N // 2, step=1e-3)
    transport.unpack(tmp_path / "box_0.npz", tmp_path / "copy")
    rho, prov = load_density(box, N)
    rho2, prov2 = load_density(tmp_path / "copy", N)
    assert prov2 == prov
    np.testing.assert_array_less(np.abs(np.log1p(rho2) - np.log1p(rho)), 0.5e-3 + 1e-6)
    a, b = load_galaxies(box, "train"), load_galaxies(tmp_path / "copy", "train")
    assert b.provenance == a.provenance
    np.testing.assert_array_equal(b.hod, a.hod)
    for p in range(a.n_points):
        for r in range(a.n_realizations):
            np.testing.assert_array_equal(b.counts(p, r, N // 2), a.counts(p, r, N // 2))


def test_logit_offset_for_total_matches_the_target_and_refuses_unreachable_ones():
    from iaemu_likelihood.field.network import logit_offset_for_total

    rng = np.random.default_rng(3)
    logit = rng.normal(-6.0, 2.5, 200_000)
    weight = 1.0 + rng.exponential(0.5, logit.size)
    total = lambda b: float(np.sum(weight / (1.0 + np.exp(-(logit + b)))))  # noqa: E731
    for target in (1.0, 350.0, 4e4, 0.9 * weight.sum()):
        b = logit_offset_for_total(logit, target, weight)
        assert total(b) == pytest.approx(target, rel=1e-10)
    b = logit_offset_for_total(logit, 500.0)
    assert float(np.sum(1.0 / (1.0 + np.exp(-(logit + b))))) == pytest.approx(500.0, rel=1e-10)
    assert logit_offset_for_total(logit, 1.01 * weight.sum(), weight) is None
    assert logit_offset_for_total(logit, 0.0, weight) is None
