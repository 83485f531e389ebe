"""Painter runtime on a tiny synthetic painter (random weights): shapes, conditioning, seeds,
weights integrity, every bad input, and the ``iaemu paint`` command."""
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")

from iaemu_likelihood.errors import InputShapeError, OutOfRangeError, WeightsIntegrityError, WeightsNotFoundError  # noqa: E402
from iaemu_likelihood.field import GalaxyPainter, InvalidDensityError, MeshShapeError, paint  # noqa: E402
from iaemu_likelihood.field.testing import write_synthetic_painter  # noqa: E402

N, BOX = 16, 16.0
HOD = {"logMmin": 12.0, "sigma_logM": 0.3, "logM0": 12.0, "logM1": 13.3, "alpha": 1.0}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_synthetic_painter(tmp_path_factory.mktemp("painter") / "synthetic", n_mesh=N, box_size=BOX)


@pytest.fixture(scope="module")
def painter(folder):
    return GalaxyPainter.load(folder)


@pytest.fixture(scope="module")
def density():
    return np.random.default_rng(0).lognormal(0.0, 1.0, (N, N, N)).astype(np.float32)


def test_shapes_modes_and_seeds(painter, density):
    pred = painter.predict(density, HOD)
    assert {k: v.shape for k, v in pred.items()} == {k: (N,) * 3 for k in ("p", "mu", "r")}
    assert np.all((pred["p"] > 0) & (pred["p"] < 1)) and np.all(pred["mu"] > 0) and np.all(pred["r"] > 0)
    mean = painter.paint(density, HOD, mode="mean")
    np.testing.assert_allclose(mean, pred["p"] * (1 + pred["mu"]), rtol=1e-6)
    a = painter.paint(density, HOD, seed=3)
    assert a.dtype == np.int32 and a.shape == (N,) * 3 and a.min() >= 0
    np.testing.assert_array_equal(a, painter.paint(density, HOD, seed=3))
    assert not np.array_equal(a, painter.paint(density, HOD, seed=4))
    # a mapping and the same values as a sequence in hod_names order are one input
    np.testing.assert_array_equal(mean, painter.paint(density, [HOD[k] for k in painter.hod_names], mode="mean"))
    # the mesh is divided by its mean: units of the input do not matter
    np.testing.assert_allclose(mean, painter.paint(density * 8.0, HOD, mode="mean"), rtol=1e-5)


def test_sample_mean_and_variance_match_the_distribution(painter, density):
    from iaemu_likelihood.field.sampling import sample_counts

    pred = painter.predict(density, HOD)
    rng = np.random.default_rng(0)
    draws = np.array([sample_counts(pred["p"], pred["mu"], pred["r"], rng) for _ in range(400)])
    mean = painter.paint(density, HOD, mode="mean")
    assert draws.mean(0).sum() == pytest.approx(mean.sum(), rel=0.02)
    occupied = (draws >= 1).mean(0)
    np.testing.assert_allclose(occupied.mean(), pred["p"].mean(), rtol=0.02)
    # among occupied voxels N - 1 is negative binomial: mean mu, variance mu + mu^2 / r
    k = np.where(draws >= 1, draws - 1, np.nan)
    expected_var = pred["mu"] + pred["mu"] ** 2 / pred["r"]
    assert np.nanmean(k) == pytest.approx(np.average(pred["mu"], weights=pred["p"]), rel=0.05)
    assert np.nanmean(np.nanvar(k, axis=0)) == pytest.approx(np.mean(expected_var), rel=0.3)


def test_conditioning_on_hod_changes_the_field(painter, density):
    other = dict(HOD, logMmin=12.8, logM1=13.9)
    assert np.max(np.abs(painter.paint(density, HOD, mode="mean") - painter.paint(density, other, mode="mean"))) > 1e-4


def test_positions_lie_in_their_voxels_and_larger_boxes_work(painter, density):
    counts, pos = painter.paint(density, HOD, seed=1, positions=True)
    assert pos.shape == (counts.sum(), 3)
    voxel = np.floor(pos / (BOX / N)).astype(int)
    rebuilt = np.zeros_like(counts)
    np.add.at(rebuilt, tuple(voxel.T), 1)
    np.testing.assert_array_equal(rebuilt, counts)
    big = np.tile(density, (2, 2, 2))
    assert painter.paint(big, HOD, mode="mean", box_size=2 * BOX).shape == (2 * N,) * 3


@pytest.mark.parametrize("hod, match", [
    (dict(HOD, logMmin=14.5), "'logMmin' = 14.5 is outside"),
    (dict(HOD, alpha=float("nan")), "'alpha' = nan"),
    (dict(HOD, sigma_logM=-1.0), "'sigma_logM'"),
])
def test_out_of_range_hod_is_named(painter, density, hod, match):
    with pytest.raises(OutOfRangeError, match=match):
        painter.paint(density, hod)


def test_hod_names_and_shape_are_checked(painter, density):
    with pytest.raises(InputShapeError, match="missing: \\['alpha'\\]"):
        painter.paint(density, {k: v for k, v in HOD.items() if k != "alpha"})
    with pytest.raises(InputShapeError, match="unknown: \\['mu_cen'\\]"):
        painter.paint(density, dict(HOD, mu_cen=0.1))
    with pytest.raises(InputShapeError, match="shape \\(4,\\)"):
        painter.paint(density, [12.0, 0.3, 12.0, 13.3])


def test_band_support_is_checked(tmp_path, density):
    support = {"type": "linear_band", "pivot": "logMmin",
               "bands": {"logM1": {"slope": 1.0, "low_intercept": 1.0, "high_intercept": 1.5, "floor": None}}}
    painter = GalaxyPainter.load(write_synthetic_painter(tmp_path / "band", n_mesh=N, box_size=BOX, support=support))
    painter.paint(density, HOD, mode="mean")  # logM1 = 13.3 in [13.0, 13.5]
    with pytest.raises(OutOfRangeError, match="'logM1' = 13.8 is outside the painter's training support"):
        painter.paint(density, dict(HOD, logM1=13.8))


@pytest.mark.parametrize("make, error, match", [
    (lambda d: d[:, :, :8], MeshShapeError, "cubic"),
    (lambda d: d[0], MeshShapeError, "cubic"),
    (lambda d: d[:8, :8, :8], MeshShapeError, "8\\^3; this painter needs 16\\^3"),
    (lambda d: np.where(d > 2, np.nan, d), InvalidDensityError, "NaN or inf"),
    (lambda d: np.where(d > 2, np.inf, d), InvalidDensityError, "NaN or inf"),
    (lambda d: d - 1.0, InvalidDensityError, "negative"),
    (lambda d: np.zeros_like(d), InvalidDensityError, "positive mean"),
    (lambda d: d + 1j, InvalidDensityError, "dtype complex[0-9]*; expected real numbers"),
    (lambda d: d > 1, InvalidDensityError, "dtype bool; expected real numbers"),
])
def test_bad_density_is_named(painter, density, make, error, match):
    with pytest.raises(error, match=match):
        painter.paint(make(density), HOD)


def test_wrong_voxel_size_and_mode(painter, density):
    with pytest.raises(MeshShapeError, match="voxel size"):
        painter.paint(density, HOD, box_size=2 * BOX)
    with pytest.raises(ValueError, match="mode='median'"):
        painter.paint(density, HOD, mode="median")


def test_a_painter_reading_a_finer_density_mesh(tmp_path, density):
    """input_factor 2: the density is (2n)^3, the galaxies n^3; meshes that do not fit are named."""
    fine = GalaxyPainter.load(write_synthetic_painter(tmp_path / "fine", n_mesh=N // 2, box_size=BOX,
                                                      input_factor=2))
    assert fine.density_n_mesh == N
    assert fine.paint(density, HOD, seed=1).shape == (N // 2,) * 3
    assert fine.paint(np.tile(density, (2, 2, 2)), HOD, mode="mean", box_size=2 * BOX).shape == (N,) * 3
    with pytest.raises(MeshShapeError, match="needs a multiple of 2 cells per side"):
        fine.paint(density[:15, :15, :15], HOD, box_size=15.0)
    with pytest.raises(MeshShapeError, match=rf"needs {N}\^3"):
        fine.paint(density[:8, :8, :8], HOD)
    with pytest.raises(MeshShapeError, match=r"trained on 1 h\^-1 Mpc density voxels"):
        fine.paint(density, HOD, box_size=2 * BOX)


def test_an_encoder_head_painter_encodes_once_for_many_hod_points(tmp_path, density):
    """predictions() over several points equals predict() point by point, for both network kinds;
    every point is checked before any painting."""
    for kind in ("encoder_head", "unet"):
        painter = GalaxyPainter.load(write_synthetic_painter(tmp_path / kind, n_mesh=N // 2, box_size=BOX,
                                                             input_factor=2, kind=kind))
        hods = [HOD, {**HOD, "logMmin": 12.8, "logM1": 14.0}, {**HOD, "alpha": 0.7}]
        for pred, hod in zip(painter.predictions(density, hods), hods):
            for key, value in painter.predict(density, hod).items():
                np.testing.assert_allclose(pred[key], value, rtol=1e-5, atol=1e-7, err_msg=f"{kind} {key}")
        assert not np.allclose(painter.predict(density, hods[0])["p"], painter.predict(density, hods[1])["p"])
        with pytest.raises(OutOfRangeError, match="'logMmin' = 14.0"):
            next(painter.predictions(density, [HOD, {**HOD, "logMmin": 14.0}]))
        assert painter.paint(density, HOD, seed=2).shape == (N // 2,) * 3


def test_painted_galaxy_number_follows_the_hod_and_the_mass_function(tmp_path, density):
    """With a mass function in the calibration, the expected count of a painted box is n_gal(HOD) x volume."""
    import json

    from iaemu_likelihood.hod import number_density
    from iaemu_likelihood.weights_io import write_checksums

    folder = write_synthetic_painter(tmp_path / "numbered", n_mesh=N, box_size=BOX)
    meta = json.loads((folder / "painter.json").read_text())
    edges = np.arange(11.0, 15.01, 0.05)
    counts = np.round(2000 * 10 ** (-(edges[:-1] - 11.0))).astype(int)
    mass_function = {"log10_mass_edges": edges.tolist(), "counts": counts.tolist(),
                     "mean_log10_mass": (edges[:-1] + 0.025).tolist(), "volume": 1e5}
    meta["calibration"] = {"logit_offset": [0.0] * 6, "log_mu_scale": [0.0] * 6, "mass_function": mass_function}
    (folder / "painter.json").write_text(json.dumps(meta))
    write_checksums(folder)
    numbered = GalaxyPainter.load(folder)
    for hod in (HOD, {**HOD, "logMmin": 12.6, "logM1": 13.9}):
        want = number_density(hod, mass_function) * BOX ** 3
        assert numbered.expected_galaxies(list(hod.values()), BOX ** 3) == pytest.approx(want)
        assert numbered.paint(density, hod, mode="mean").sum(dtype=np.float64) == pytest.approx(want, rel=1e-5)
        # a box twice as large holds eight times as many
        big = numbered.paint(np.tile(density, (2, 2, 2)), hod, mode="mean", box_size=2 * BOX)
        assert big.sum(dtype=np.float64) == pytest.approx(8 * want, rel=1e-5)
    # a damaged mass function is refused at load, naming it
    meta["calibration"]["mass_function"]["counts"] = [-1] * len(counts)
    (folder / "painter.json").write_text(json.dumps(meta))
    write_checksums(folder)
    with pytest.raises(WeightsIntegrityError, match="calibration.*counts"):
        GalaxyPainter.load(folder)


def test_weights_integrity(folder, tmp_path):
    bad = shutil.copytree(folder, tmp_path / "bad")
    with open(bad / "weights.npz", "r+b") as f:
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(WeightsIntegrityError, match="weights.npz .* does not match"):
        GalaxyPainter.load(bad)
    (bad / "SHA256SUMS").unlink()
    with pytest.raises(WeightsIntegrityError, match="SHA256SUMS is missing"):
        GalaxyPainter.load(bad)
    # a painter.json edited after the fact (and resealed) is still validated
    import json

    from iaemu_likelihood.weights_io import write_checksums

    edited = shutil.copytree(folder, tmp_path / "edited")
    meta = json.loads((edited / "painter.json").read_text())
    del meta["mesh"]
    (edited / "painter.json").write_text(json.dumps(meta))
    write_checksums(edited)
    with pytest.raises(WeightsIntegrityError, match="lacks keys \\['mesh'\\]"):
        GalaxyPainter.load(edited)
    with pytest.raises(WeightsNotFoundError, match="not found"):
        GalaxyPainter.load(tmp_path / "nowhere")


@pytest.mark.parametrize("kind", ["unet", "encoder_head"])
def test_tiled_painting_matches_the_whole_box(tmp_path, density, kind):
    """One tile with the periodic context is the whole-box painting; smaller tiles are assembled into
    every voxel and differ only near tile faces; a memory-mapped mesh paints as an array does."""
    painter = GalaxyPainter.load(write_synthetic_painter(tmp_path / kind, n_mesh=N, box_size=BOX, kind=kind))
    hods = [HOD, dict(HOD, logMmin=12.6)]
    whole = list(painter.predictions(density, hods))
    import torch

    hod_values = [painter.validate_hod(h) for h in hods]
    params = [painter._normalised_hod(h) for h in hod_values]
    raw = painter._tiled_outputs(density, np.float32(painter._density_mean(density)), params, N)  # one tile
    one = [painter._distribution(torch.from_numpy(o), h, par, BOX) for o, h, par in zip(raw, hod_values, params)]
    for w, o in zip(whole, one):
        for key in ("p", "mu", "r"):
            np.testing.assert_allclose(o[key], w[key], rtol=1e-4, atol=1e-6)
    tiled = list(painter.predictions(density, hods, tile=N // 2))  # 8 tiles
    for w, t in zip(whole, tiled):
        assert all(np.isfinite(t[key]).all() and t[key].shape == (N,) * 3 for key in ("p", "mu", "r"))
        assert np.corrcoef(w["p"].ravel(), t["p"].ravel())[0, 1] > 0.9
        assert t["p"].sum() == pytest.approx(w["p"].sum(), rel=0.1)
    np.save(tmp_path / "rho.npy", density)
    mapped = np.load(tmp_path / "rho.npy", mmap_mode="r")
    np.testing.assert_array_equal(painter.paint(mapped, HOD, seed=5, tile=N // 2),
                                  painter.paint(density, HOD, seed=5, tile=N // 2))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=f"tile={bad!r}"):
            painter.paint(density, HOD, seed=1, tile=bad)


def test_symmetry_views_invert():
    from iaemu_likelihood.field.painter import SYMMETRIES, apply_symmetry, undo_symmetry

    mesh = np.arange(2 * 3 * 4 * 5 * 6).reshape(2, 3, 4, 5, 6)
    seen = set()
    for symmetry in SYMMETRIES:
        turned = apply_symmetry(mesh, symmetry)
        assert turned.shape[:2] == (2, 3) and sorted(turned.shape[2:]) == [4, 5, 6]
        np.testing.assert_array_equal(undo_symmetry(turned, symmetry), mesh)
        seen.add(turned.tobytes() + bytes(turned.shape))
    assert len(seen) == len(SYMMETRIES)  # eight different symmetries
    # the inversion sends voxel (i, j, k) to (n-1-i, n-1-j, n-1-k)
    cube = np.arange(27).reshape(3, 3, 3)
    assert apply_symmetry(cube, SYMMETRIES[1])[0, 0, 1] == cube[2, 2, 1]


@pytest.mark.parametrize("kind", ["unet", "encoder_head"])
def test_symmetry_averaging_makes_the_painting_equivariant(tmp_path, density, kind):
    """Averaged over {identity, inversion}, the painting of the inverted density is the inverted
    painting (a network with random weights alone is not); tiles and a fine density mesh agree."""
    from iaemu_likelihood.field.painter import SYMMETRIES, apply_symmetry

    painter = GalaxyPainter.load(write_synthetic_painter(tmp_path / kind, n_mesh=N, box_size=BOX, kind=kind,
                                                         input_factor=2))
    fine = np.random.default_rng(4).lognormal(0.0, 1.0, (2 * N,) * 3).astype(np.float32)
    inverted = np.ascontiguousarray(apply_symmetry(fine, SYMMETRIES[1]))
    hods = [HOD, dict(HOD, logMmin=12.6)]
    plain = painter.predict(fine, HOD)
    plain_inv = painter.predict(inverted, HOD)
    assert not np.allclose(apply_symmetry(plain["p"], SYMMETRIES[1]), plain_inv["p"], rtol=1e-3)
    both = list(painter.predictions(fine, hods, symmetries=2))
    both_inv = list(painter.predictions(inverted, hods, symmetries=2))
    for a, b in zip(both, both_inv):
        for key in ("p", "mu", "r"):
            np.testing.assert_allclose(apply_symmetry(a[key], SYMMETRIES[1]), b[key], rtol=2e-4, atol=1e-6)
    assert not np.allclose(both[0]["p"], plain["p"], rtol=1e-3)  # the average is not one frame's painting
    # one tile covering the box is the whole-box average; eight symmetries on tiles of half the box
    for a, b in zip(both, painter.predictions(fine, hods, symmetries=2, tile=N)):
        np.testing.assert_allclose(b["p"], a["p"], rtol=1e-4, atol=1e-6)
    eight = painter.predict(fine, HOD, tile=N // 2, symmetries=8)
    assert np.isfinite(eight["p"]).all() and eight["p"].sum() == pytest.approx(plain["p"].sum(), rel=0.1)
    assert painter.paint(fine, HOD, seed=3, symmetries=2).shape == (N,) * 3
    # raw_outputs: the averaged raw network outputs, the mean of each frame's turned back
    (raw,) = painter.raw_outputs(fine, [HOD], symmetries=2)
    (one,), (inv,) = painter.raw_outputs(fine, [HOD]), painter.raw_outputs(inverted, [HOD])
    expected = 0.5 * (one.numpy() + np.flip(inv.numpy(), (2, 3, 4)))
    assert raw.shape == (1, 3, N, N, N)
    np.testing.assert_allclose(raw.numpy(), expected, rtol=1e-5, atol=1e-6)
    for bad in (0, 9, 1.5, True):
        with pytest.raises(ValueError, match=f"symmetries={bad!r}: must be an integer from 1 to 8"):
            painter.paint(fine, HOD, seed=1, symmetries=bad)


def test_module_level_paint_and_cli(folder, density, tmp_path):
    import json

    from iaemu_likelihood.cli import main

    np.testing.assert_array_equal(paint(density, HOD, seed=2, weights=folder),
                                  GalaxyPainter.load(folder).paint(density, HOD, seed=2))
    np.savez(tmp_path / "rho.npz", density=density)
    out = tmp_path / "cat.npz"
    args = ["paint", "--density", str(tmp_path / "rho.npz"), "--output", str(out), "--weights", str(folder),
            "--seed", "2", "--hod", *[f"{k}={v}" for k, v in HOD.items()]]
    assert main(args) == 0
    with np.load(out, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["counts"], paint(density, HOD, seed=2, weights=folder))
        assert f["positions"].shape == (f["counts"].sum(), 3)
        assert json.loads(str(f["metadata"]))["occupancy"] == "peak_groups"
    np.save(tmp_path / "rho.npy", density)
    tiled = ["paint", "--density", str(tmp_path / "rho.npy"), "--output", str(out), "--weights", str(folder),
             "--seed", "2", "--tile", "8", "--symmetries", "2", "--hod", *[f"{k}={v}" for k, v in HOD.items()]]
    assert main(tiled) == 0
    with np.load(out, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["counts"], paint(density, HOD, seed=2, weights=folder, tile=8, symmetries=2))
        assert json.loads(str(f["metadata"]))["tile"] == 8
        assert json.loads(str(f["metadata"]))["symmetries"] == 2
    assert main([*args, "--occupancy", "independent"]) == 0
    with np.load(out, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["counts"], paint(density, HOD, seed=2, weights=folder,
                                                         occupancy="independent"))
        assert json.loads(str(f["metadata"]))["occupancy"] == "independent"
    with pytest.raises(ValueError, match="occupancy='halos'"):
        paint(density, HOD, seed=2, weights=folder, occupancy="halos")
    from iaemu_likelihood.field.cli import _parse_hod

    with pytest.raises(InputShapeError, match="'logMmin:12' is not NAME=NUMBER"):
        _parse_hod(["logMmin:12"])


def test_cli_bad_options_are_named_before_painting(folder, density, tmp_path, capsys):
    """Duplicate --hod names, a negative seed and an --output folder are one named line, and
    nothing is painted or written."""
    from iaemu_likelihood.cli import main

    np.savez(tmp_path / "rho.npz", density=density)
    base = ["paint", "--density", str(tmp_path / "rho.npz"), "--weights", str(folder)]
    hod = [f"{k}={v}" for k, v in HOD.items()]
    cases = [
        ([*base, "--output", str(tmp_path / "a.npz"), "--hod", *hod, "logMmin=12.5"], "--hod logMmin is given twice"),
        ([*base, "--output", str(tmp_path / "b.npz"), "--seed", "-1", "--hod", *hod],
         "--seed -1: must be a non-negative"),
        ([*base, "--output", str(tmp_path), "--hod", *hod], "is a folder"),
        ([*base, "--output", str(tmp_path / "c.npz"), "--tile", "0", "--hod", *hod], "--tile 0: must be a positive"),
        ([*base, "--output", str(tmp_path / "d.npz"), "--symmetries", "9", "--hod", *hod],
         "--symmetries 9: must be from 1 to 8"),
    ]
    for argv, match in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rho.npz"]
    with pytest.raises(ValueError, match="seed=-3"):
        GalaxyPainter.load(folder).paint(density, HOD, seed=-3)


def test_shipped_default_painter_loads_and_was_not_trained_on_its_benchmark_box():
    import json
    from pathlib import Path

    from iaemu_likelihood.field.weights import DEFAULT_PAINTER

    shipped = GalaxyPainter.load()
    assert shipped.metadata["version"] == DEFAULT_PAINTER
    assert shipped.density_n_mesh == shipped.n_mesh * shipped.input_factor
    assert shipped.metadata["calibration"]["mass_function"]["volume"] > 0
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "field_painter.json"
    result = json.loads(bench.read_text())
    assert result["painter"] == DEFAULT_PAINTER
    trained_on = {b["snapshot_sha256"] for b in shipped.metadata["training"]["boxes"]}
    assert result["test_snapshot_sha256"] not in trained_on
