"""`iaemu convert-checkpoint`: a reference-format checkpoint gives the same predictions."""
import numpy as np
import pytest
import torch

from iaemu_likelihood.conventions import PARAM_NAMES
from iaemu_likelihood.networks import build_network
from iaemu_likelihood.training.convert import build_parser, fit_reference_scalers, main
from iaemu_likelihood.training.synthetic import (SYNTHETIC_BOUNDS, synthetic_mass_function,
                                                 synthetic_truth)

RTOL = 2e-5  # float32 forward passes, same operations


def _reference_files(tmp_path, n=300, seed=0):
    """A randomly initialised reference model saved as the reference code does, plus its data."""
    rng = np.random.default_rng(seed)
    low = np.array([SYNTHETIC_BOUNDS[k][0] for k in PARAM_NAMES])
    high = np.array([SYNTHETIC_BOUNDS[k][1] for k in PARAM_NAMES])
    x = low + (high - low) * rng.random((n, 7))
    mean, _ = synthetic_truth(x)
    y = np.stack([mean["xi"], mean["omega"], mean["eta"]], axis=1)
    y[0, 0, 3] = -0.5  # the reference code drops rows with a negative xi
    torch.manual_seed(seed)
    net = build_network("paper", {"var_floor": 0.0})
    net.train()
    with torch.no_grad():  # non-trivial batch-norm running statistics
        for _ in range(3):
            net(torch.randn(64, 7))
    net.eval()
    paths = {"state_dict": tmp_path / "best_model.pt", "x": tmp_path / "x_train.npy",
             "y": tmp_path / "y_train.npy", "hmf": tmp_path / "hmf.npz"}
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, paths["state_dict"])
    np.save(paths["x"], x)
    np.save(paths["y"], y)
    np.savez(paths["hmf"], **{k: np.asarray(v) for k, v in synthetic_mass_function().items()})
    return net, x, y, paths


def test_scalers_match_the_reference_recipe():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 7))
    y = np.abs(rng.normal(size=(50, 3, 20))) + 0.1
    y[4, 0, 0] = -1.0
    sc = fit_reference_scalers(x, y)
    assert sc.kept.sum() == 49 and not sc.kept[4]
    np.testing.assert_allclose(sc.input_mean, x[sc.kept].mean(0))
    np.testing.assert_allclose(sc.input_std, x[sc.kept].std(0))
    logxi = np.log(y[sc.kept, 0])
    np.testing.assert_allclose(sc.output_mean["xi"], np.full(20, logxi.mean()))
    np.testing.assert_allclose(sc.output_std["omega"], np.full(20, y[sc.kept, 1].std()))
    per_bin = fit_reference_scalers(x, y, "per-bin")
    np.testing.assert_allclose(per_bin.output_mean["eta"], y[sc.kept, 2].mean(0))
    with pytest.raises(ValueError, match="shape"):
        fit_reference_scalers(x, y[:, :2])


def test_converted_folder_reproduces_the_reference_model(tmp_path):
    from iaemu_likelihood.emulator import IAEmulator

    net, x, y, p = _reference_files(tmp_path)
    out = tmp_path / "converted"
    args = build_parser().parse_args([
        "--state-dict", str(p["state_dict"]), "--x-train", str(p["x"]), "--y-train", str(p["y"]),
        "--mass-function", str(p["hmf"]), "--output", str(out)])
    assert main(args) == 0
    emu = IAEmulator.load(out)
    assert emu.metadata["architecture"] == "paper" and emu.metadata["ensemble_size"] == 1
    # mean -/+ std of the inputs, not the box: the bounds (data min/max) lie outside it, which
    # the load-time check accepts only for "standard" scaling
    assert emu.metadata["normalisation"]["input"]["scaling"] == "standard"

    # expected: the reference recipe applied by hand
    kept = ~np.any(y[:, 0] < 0, axis=1)
    xk, yk = x[kept], y[kept].copy()
    yk[:, 0] = np.log(yk[:, 0])
    theta = xk[1:6]
    xs = (theta - xk.mean(0)) / xk.std(0)
    with torch.no_grad():
        m, v = net(torch.as_tensor(xs, dtype=torch.float32))
    m, v = m.double().numpy(), v.double().numpy()
    pred = emu.predict(theta)
    for i, stat in enumerate(("xi", "omega", "eta")):
        mu, sd = yk[:, i].mean(), yk[:, i].std()
        val = m[:, 20 * i:20 * (i + 1)] * sd + mu
        var = v[:, 20 * i:20 * (i + 1)] * sd ** 2
        if stat == "xi":
            val = np.exp(val)
            var = val ** 2 * var
        np.testing.assert_allclose(pred[stat], val, rtol=RTOL, atol=1e-7 * np.abs(val).max())
        np.testing.assert_allclose(pred[f"{stat}_var"], var, rtol=RTOL, atol=1e-7 * np.abs(var).max())


def test_mismatched_state_dict_is_refused(tmp_path):
    _, _, _, p = _reference_files(tmp_path, n=20)
    sd = torch.load(p["state_dict"], weights_only=True)
    sd.pop("module.decoder3.conv7.bias")
    torch.save(sd, p["state_dict"])
    args = build_parser().parse_args([
        "--state-dict", str(p["state_dict"]), "--x-train", str(p["x"]), "--y-train", str(p["y"]),
        "--mass-function", str(p["hmf"]), "--output", str(tmp_path / "out")])
    with pytest.raises(ValueError, match="decoder3.conv7.bias"):
        main(args)


def test_converted_weights_carry_a_support_band(tmp_path):
    from iaemu_likelihood.emulator import IAEmulator
    from iaemu_likelihood.errors import OutOfRangeError
    from iaemu_likelihood.training.design import DesignRule

    _, x, _, p = _reference_files(tmp_path, n=60)
    # training inputs along the reference prior's bands, as the published design has them
    rule = DesignRule()
    x = rule.from_unit_cube(np.random.default_rng(1).random((60, 7)))
    np.save(p["x"], x)
    common = ["--state-dict", str(p["state_dict"]), "--x-train", str(p["x"]), "--y-train",
              str(p["y"]), "--mass-function", str(p["hmf"])]
    assert main(build_parser().parse_args(common + ["--output", str(tmp_path / "inferred")])) == 0
    emu = IAEmulator.load(tmp_path / "inferred")
    assert emu.support["type"] == "linear_band"
    assert np.all(emu.in_support(x[1:]))  # row 0 is dropped (negative xi)
    far = x[1].copy()
    far[PARAM_NAMES.index("logM1")] = emu.bounds["logM1"][1]
    far[PARAM_NAMES.index("logMmin")] = emu.bounds["logMmin"][0]
    assert not emu.in_support(far)
    with pytest.raises(OutOfRangeError, match="'logM1'.*training support at logMmin"):
        emu.predict(far)
    assert main(build_parser().parse_args(common + ["--output", str(tmp_path / "box"),
                                                    "--support", "none"])) == 0
    box = IAEmulator.load(tmp_path / "box")
    assert box.support is None and box.in_support(far)


class _NotATensor:
    """A Python object torch.load(weights_only=True) refuses to build."""


def _damage(p, what, tmp_path):
    """Break one input of the conversion; returns (option overrides, extra arguments)."""
    bad = tmp_path / f"bad_{what}"
    if what == "empty state dict file":
        bad.write_bytes(b"")
        return {"--state-dict": bad}, []
    if what == "npz as state dict":
        np.savez(bad, a=np.zeros(3))
        return {"--state-dict": bad.with_suffix(".npz")}, []
    if what == "pickled object in state dict":
        torch.save({"w": _NotATensor()}, bad)
        return {"--state-dict": bad}, []
    if what == "object x":
        np.save(bad, np.array([None] * 7, dtype=object), allow_pickle=True)
        return {"--x-train": bad.with_suffix(".npy")}, []
    if what == "nan x":
        x = np.load(p["x"])
        x[3, 2] = np.nan
        np.save(bad, x)
        return {"--x-train": bad.with_suffix(".npy")}, []
    if what == "truncated mass function":
        bad.write_bytes(p["hmf"].read_bytes()[:40])
        return {"--mass-function": bad}, []
    if what == "bounds not json":
        return {}, ["--bounds", "mu_cen=0"]
    if what == "bounds missing a name":
        return {}, ["--bounds", '{"mu_cen": [-1, 1]}']
    if what == "architecture config not an object":
        return {}, ["--architecture-config", "[1, 2]"]
    raise AssertionError(what)


@pytest.mark.parametrize("what, named", [
    ("empty state dict file", "--state-dict"), ("npz as state dict", "--state-dict"),
    ("pickled object in state dict", "never unpickles"), ("object x", "--x-train"),
    ("nan x", "--x-train"), ("truncated mass function", "--mass-function"),
    ("bounds not json", "--bounds 'mu_cen=0': not valid JSON"),
    ("bounds missing a name", "--bounds: required key 'mu_sat' is missing"),
    ("architecture config not an object", "--architecture-config '[1, 2]': allowed: a JSON object"),
])
def test_bad_conversion_inputs_are_one_named_line(tmp_path, capsys, what, named):
    """torch.load's RuntimeError/EOFError/UnpicklingError, numpy's pickle refusal, JSON errors and a
    partial --bounds (a KeyError before) are one line naming the option; nothing is written, and the
    object in the state dict is never built."""
    from iaemu_likelihood.cli import main as cli_main

    _, _, _, p = _reference_files(tmp_path, n=20)
    options = {"--state-dict": p["state_dict"], "--x-train": p["x"], "--y-train": p["y"],
               "--mass-function": p["hmf"], "--output": tmp_path / "out"}
    overrides, extra = _damage(p, what, tmp_path)
    options.update(overrides)
    argv = ["convert-checkpoint", *[str(v) for kv in options.items() for v in kv], *extra]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1 and "unexpected" not in err, err
    assert not (tmp_path / "out" / "metadata.json").exists()
