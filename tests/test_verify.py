"""``iaemu verify``: checksums and reference predictions."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from iaemu_likelihood import verify
from iaemu_likelihood.cli import main as cli_main
from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood._io import npz_bytes
from iaemu_likelihood.weights_io import REFERENCE_FILE, WEIGHTS_FILE, write_checksums


def _run(folder, capsys, *extra):
    status = verify.main(verify.build_parser("iaemu verify").parse_args(["--weights", str(folder), *extra]))
    return status, capsys.readouterr().out


#: a small reference-architecture network: the float32 torch path at a fraction of the cost
SMALL_PAPER = {"hidden_dim": 32, "latent_dim": 32, "conv_channels": [8, 8, 8, 8, 8, 8]}


@pytest.fixture(scope="module")
def small_paper_weights(tmp_path_factory):
    from iaemu_likelihood.testing import write_synthetic_weights

    return write_synthetic_weights(tmp_path_factory.mktemp("w") / "paper", architecture="paper",
                                   paper_config=SMALL_PAPER, reference_points=3)


@pytest.fixture
def folder(synthetic_weights, tmp_path):
    return Path(shutil.copytree(synthetic_weights, tmp_path / "w"))


def test_passes_on_intact_weights(synthetic_weights, capsys):
    status, out = _run(synthetic_weights, capsys)
    assert status == 0, out
    assert "PASS  SHA256SUMS" in out and "PASS  reference xi:" in out and "FAIL" not in out
    assert "all checks passed" in out


def test_cli_dispatches_to_verify(synthetic_weights, capsys):
    assert cli_main(["verify", "--weights", str(synthetic_weights)]) == 0
    assert "all checks passed" in capsys.readouterr().out


def test_changed_prediction_fails_with_its_name(folder, capsys):
    with np.load(folder / REFERENCE_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["omega"] = arrays["omega"] * (1 + 1e-4)
    (folder / REFERENCE_FILE).write_bytes(npz_bytes(arrays, compressed=False))
    write_checksums(folder)  # consistent checksums: only the numbers differ
    status, out = _run(folder, capsys)
    assert status == 1
    assert "FAIL  reference omega:" in out and "PASS  reference xi:" in out
    assert "some checks FAILED" in out
    # a looser tolerance accepts it
    assert _run(folder, capsys, "--rtol", "1e-3")[0] == 0


def test_tampered_weights_fail_checksum(folder, capsys):
    data = bytearray((folder / WEIGHTS_FILE).read_bytes())
    data[-100] ^= 0xFF
    (folder / WEIGHTS_FILE).write_bytes(bytes(data))
    status, out = _run(folder, capsys)
    assert status == 1 and "FAIL  SHA256SUMS" in out and WEIGHTS_FILE in out


def test_missing_reference_or_folder_fails(folder, tmp_path, capsys):
    (folder / REFERENCE_FILE).unlink()
    write_checksums(folder)
    status, out = _run(folder, capsys)
    assert status == 1 and "reference_predictions.npz is missing" in out
    status, out = _run(tmp_path / "nowhere", capsys)
    assert status == 1 and "FAIL  locate weights" in out


def test_write_and_check_reference_predictions(folder):
    emu = IAEmulator.load(folder)
    points = verify.default_reference_points(emu.bounds, n=3, seed=7)
    assert points.shape == (3, 7)
    np.testing.assert_allclose(points[0], emu.reference_point)
    path = verify.write_reference_predictions(folder, emu, points)
    emu = IAEmulator.load(folder)  # checksums were refreshed
    results = verify.check_reference_predictions(emu, path)
    assert {name for name, _, _ in results} >= {"xi", "omega_var", "eta_epi_var"}
    assert all(passed for _, passed, _ in results)
    assert max(rel for _, _, rel in results) <= verify.REFERENCE_RTOL


def test_single_thread_pins_and_restores_torch_and_blas(small_paper_weights):
    import torch
    from threadpoolctl import threadpool_info

    emu = IAEmulator.load(small_paper_weights)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with verify.single_thread(emu):
            assert torch.get_num_threads() == 1
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("threads", [1, 2])
def test_float32_reference_check_holds_on_1_and_2_threads(small_paper_weights, tmp_path, capsys,
                                                         threads):
    """A "paper" (torch float32) reference written with one thread verifies under 1 and 2 torch
    threads; float32 rounding (here 3e-6 relative, which fails the float64 tolerance 1e-6) passes,
    a real change (1e-3) still fails and is named."""
    import torch

    folder = Path(shutil.copytree(small_paper_weights, tmp_path / "p"))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        status, out = _run(folder, capsys)
        assert status == 0, out
        assert "float32" in out and "tolerance 0.0001" in out
        with np.load(folder / REFERENCE_FILE, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        for factor, expected in ((1 + 3e-6, 0), (1 + 1e-3, 1)):
            changed = dict(arrays, eta_var=arrays["eta_var"] * factor)
            (folder / REFERENCE_FILE).write_bytes(npz_bytes(changed, compressed=False))
            write_checksums(folder)
            status, out = _run(folder, capsys)
            assert status == expected, out
        assert "FAIL  reference eta_var:" in out and "PASS  reference xi:" in out
        assert _run(folder, capsys, "--rtol", "1e-6")[0] == 1
    finally:
        torch.set_num_threads(old)


def test_invalid_rtol_is_refused(synthetic_weights):
    args = verify.build_parser("iaemu verify").parse_args(["--weights", str(synthetic_weights),
                                                           "--rtol", "-1"])
    with pytest.raises(ValueError, match=r"--rtol = -1\.0; allowed: a finite number > 0"):
        verify.main(args)


@pytest.mark.parametrize("damage", ["drop points", "outside bounds", "not an npz"])
def test_damaged_reference_file_is_a_failed_check_not_a_crash(folder, capsys, damage):
    with np.load(folder / REFERENCE_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if damage == "drop points":
        del arrays["points"]
    elif damage == "outside bounds":
        arrays["points"] = arrays["points"] + 100.0
    content = b"junk" if damage == "not an npz" else npz_bytes(arrays, compressed=False)
    (folder / REFERENCE_FILE).write_bytes(content)
    write_checksums(folder)
    status, out = _run(folder, capsys)
    assert status == 1 and "FAIL  reference predictions:" in out and "reference_predictions.npz" in out


def _reference_arrays(folder):
    with np.load(folder / REFERENCE_FILE, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _object_points(arrays):
    import io

    arrays = dict(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in arrays.items() if k != "points"},
             points=np.array([None] * 7, dtype=object))
    return buffer.getvalue()


@pytest.mark.parametrize("damage, message", [
    (lambda a: _object_points(a), r"cannot be read as a \.npz without pickle"),
    (lambda a: dict(a, points=a["points"][0]), r"points = float64 \(7,\); allowed: a float array \(n, 7\)"),
    (lambda a: dict(a, points=a["points"][:0], xi=a["xi"][:0]), r"points = float64 \(0, 7\)"),
    (lambda a: dict(a, points=a["points"].astype(str)), r"points = <U\d+ .*allowed: a float array"),
    (lambda a: dict(a, xi=a["xi"][:, :5]), r"xi = float64 \(\d+, 5\); allowed: float \(\d+, 20\)"),
    (lambda a: dict(a, eta=np.where(np.arange(20) == 3, np.nan, a["eta"])), r"eta holds non-finite values"),
    (lambda a: dict(a, zeta=a["xi"]), r"arrays \['zeta'\] are not predictions"),
])
def test_reference_file_of_the_wrong_kind_is_named_by_verify_and_by_reseal(folder, capsys, damage, message):
    """Shapes, dtypes, non-finite and unknown arrays of reference_predictions.npz: a FAIL line of
    `iaemu verify` naming the file and the array (never a comparison of mismatched shapes), and
    `iaemu reseal` refuses to seal such a folder (with or without --update-reference)."""
    from iaemu_likelihood.errors import IAEmuError

    content = damage(_reference_arrays(folder))
    (folder / REFERENCE_FILE).write_bytes(content if isinstance(content, bytes)
                                          else npz_bytes(content, compressed=False))
    if "zeta" not in message:  # a foreign array is only refused when comparing
        for extra in ([], ["--update-reference"]):
            assert cli_main(["reseal", str(folder), *extra]) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "reference_predictions.npz" in err, err
    write_checksums(folder)
    status, out = _run(folder, capsys)
    assert status == 1 and "FAIL  reference predictions:" in out
    line = [x for x in out.splitlines() if x.startswith("FAIL")][0]
    assert "reference_predictions.npz" in line
    with pytest.raises(IAEmuError, match=message):
        verify.check_reference_predictions(IAEmulator.load(folder), folder / REFERENCE_FILE)


def test_rtol_is_checked_before_anything_is_loaded(tmp_path):
    args = verify.build_parser("iaemu verify").parse_args(["--weights", str(tmp_path / "none"),
                                                           "--rtol", "nan"])
    with pytest.raises(ValueError, match=r"--rtol = nan; allowed"):
        verify.main(args)


def test_reference_file_declaring_gigabytes_is_refused_before_reading(folder, monkeypatch):
    import iaemu_likelihood.weights_io as weights_io
    from iaemu_likelihood.errors import IAEmuError

    monkeypatch.setattr(weights_io, "MAX_DECLARED_BYTES", 1024 ** 2)
    arrays = _reference_arrays(folder)
    arrays["xi_big"] = np.zeros(10 ** 6)  # 8 MB declared, a few kB compressed
    (folder / REFERENCE_FILE).write_bytes(npz_bytes(arrays, compressed=True))
    with pytest.raises(IAEmuError, match=r"reference_predictions\.npz: its arrays declare 7\.\d MiB"):
        verify.read_reference_file(folder / REFERENCE_FILE)
