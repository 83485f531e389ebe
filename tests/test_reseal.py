"""`iaemu reseal FOLDER`: re-seal a weights folder edited on purpose, only if its content is valid."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from iaemu_likelihood._io import npz_bytes
from iaemu_likelihood.cli import main as cli_main
from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.errors import IAEmuError, WeightsIntegrityError
from iaemu_likelihood.weights import weights_root
from iaemu_likelihood.weights_io import (CHECKSUM_FILE, METADATA_FILE, REFERENCE_FILE, WEIGHTS_FILE,
                                         reseal_folder)


@pytest.fixture
def folder(synthetic_weights, tmp_path):
    return Path(shutil.copytree(synthetic_weights, tmp_path / "w"))


def _reseal(folder, *extra):
    from iaemu_likelihood import cli_reseal

    return cli_reseal.main(cli_reseal.build_parser("iaemu reseal").parse_args([str(folder), *extra]))


def test_edited_metadata_is_resealed_and_loads(folder, capsys):
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["version"] = "my-edit"
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(WeightsIntegrityError, match="metadata.json .*does not match"):
        IAEmulator.load(folder)
    assert cli_main(["reseal", str(folder)]) == 0
    assert f"resealed {folder}: content valid" in capsys.readouterr().out
    assert IAEmulator.load(folder).version == "my-edit"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # atomic: no temporaries


def test_invalid_content_is_not_resealed(folder):
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["member0/out.bias"] = np.full_like(arrays["member0/out.bias"], np.nan)
    (folder / WEIGHTS_FILE).write_bytes(npz_bytes(arrays, compressed=False))
    sums = (folder / CHECKSUM_FILE).read_bytes()
    with pytest.raises(WeightsIntegrityError, match=r"weights\.npz: member0/out\.bias\[0\] = nan"):
        _reseal(folder)
    assert (folder / CHECKSUM_FILE).read_bytes() == sums  # the old seal stays: still refused at load
    with pytest.raises(WeightsIntegrityError):
        IAEmulator.load(folder)
    (folder / METADATA_FILE).unlink()
    with pytest.raises(WeightsIntegrityError, match=r"metadata\.json: missing"):
        reseal_folder(folder)


def test_update_reference_recomputes_the_reference_predictions(folder, capsys):
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["member1/out.bias"] = arrays["member1/out.bias"] + np.float32(0.01)
    (folder / WEIGHTS_FILE).write_bytes(npz_bytes(arrays, compressed=False))
    with np.load(folder / REFERENCE_FILE, allow_pickle=False) as npz:
        points = npz["points"]
    assert _reseal(folder) == 0
    assert cli_main(["verify", "--weights", str(folder)]) == 1  # the numbers changed
    assert _reseal(folder, "--update-reference") == 0
    assert "reference predictions recomputed at 4 points" in capsys.readouterr().out
    assert cli_main(["verify", "--weights", str(folder)]) == 0
    with np.load(folder / REFERENCE_FILE, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["points"], points)


def test_shipped_versions_and_missing_folders_are_refused(tmp_path):
    from iaemu_likelihood.weights import available_versions

    for version in available_versions():  # refused before anything is read or written
        before = (weights_root() / version / CHECKSUM_FILE).read_bytes()
        with pytest.raises(IAEmuError, match="is a shipped weights version inside the installed package"):
            _reseal(weights_root() / version)
        assert (weights_root() / version / CHECKSUM_FILE).read_bytes() == before
    with pytest.raises(IAEmuError, match="does not exist"):
        _reseal(tmp_path / "nowhere")
