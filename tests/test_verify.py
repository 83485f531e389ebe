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
