"""Weights folder: round trip, checksums, metadata validation."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from iaemu_likelihood.errors import WeightsIntegrityError, WeightsNotFoundError
from iaemu_likelihood.weights_io import (CHECKSUM_FILE, CORRELATION_FILE, MASS_FUNCTION_FILE,
                                         METADATA_FILE, WEIGHTS_FILE, load_weights_folder,
                                         verify_checksums, write_checksums, write_weights_folder)


@pytest.fixture
def folder(synthetic_weights, tmp_path):
    """A private copy of the synthetic weights that a test may damage."""
    return Path(shutil.copytree(synthetic_weights, tmp_path / "w"))


def _contents(folder):
    meta, members, corr, mf = load_weights_folder(folder)
    return meta, members, corr, mf


def test_round_trip_preserves_everything(folder, tmp_path):
    meta, members, corr, mf = _contents(folder)
    assert all(v.dtype == np.float32 for v in members[0].values())
    out = write_weights_folder(tmp_path / "copy", meta, members, corr, mf,
                               extra_files={"report.json": b"{}", "figures/a.png": folder / METADATA_FILE,
                                            "README.md": b"# not checksummed\n"})
    meta2, members2, corr2, mf2 = _contents(out)
    assert meta2 == meta
    assert len(members2) == len(members) == meta["ensemble_size"]
    for a, b in zip(members, members2):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(corr2, corr)
    for key in mf:
        np.testing.assert_array_equal(mf2[key], mf[key])
    listed = verify_checksums(out)
    assert {"report.json", "figures/a.png", WEIGHTS_FILE, METADATA_FILE} <= set(listed)
    assert "README.md" not in listed and CHECKSUM_FILE not in listed


def test_npz_has_member_keys_and_no_pickled_objects(folder):
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as npz:
        assert all(k.startswith("member") and "/" in k for k in npz.files)
        assert {npz[k].dtype.kind for k in npz.files} <= {"f", "i"}


@pytest.mark.parametrize("name", [WEIGHTS_FILE, METADATA_FILE, CORRELATION_FILE, MASS_FUNCTION_FILE])
def test_tampered_file_is_detected_and_named(folder, name):
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match=name.replace(".", r"\.")):
        load_weights_folder(folder)


def test_missing_and_unlisted_files_are_named(folder):
    (folder / CORRELATION_FILE).unlink()
    with pytest.raises(WeightsIntegrityError, match="residual_correlation.npy is listed.*but missing"):
        verify_checksums(folder)
    sums = (folder / CHECKSUM_FILE).read_text().splitlines()
    (folder / CHECKSUM_FILE).write_text("\n".join(line for line in sums if CORRELATION_FILE not in line))
    with pytest.raises(WeightsIntegrityError, match="residual_correlation.npy is not listed"):
        verify_checksums(folder)
    (folder / CHECKSUM_FILE).unlink()
    with pytest.raises(WeightsIntegrityError, match="SHA256SUMS is missing"):
        verify_checksums(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_weights_folder(tmp_path / "nope")


def _rewrite_metadata(folder, **changes):
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta.update(changes)
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    write_checksums(folder)


@pytest.mark.parametrize("changes, message", [
    ({"schema_version": 2}, "schema_version = 2"),
    ({"architecture": "cnn"}, "architecture = 'cnn'"),
    ({"param_names": ["mu_sat", "mu_cen", "logMmin", "sigma_logM", "logM0", "logM1", "alpha"]},
     "param_names .* in that order"),
    ({"r_edges": list(np.logspace(-1, 1.3, 21))}, "r_edges .* differ from conventions.R_EDGES"),
    ({"ensemble_size": 3}, "ensemble_size"),
    ({"bounds": {"mu_cen": [1, -1]}}, r"bounds\['mu_cen'\]"),
])
def test_metadata_validation_names_the_problem(folder, changes, message):
    _rewrite_metadata(folder, **changes)
    with pytest.raises(WeightsIntegrityError, match=message):
        load_weights_folder(folder)


def test_bad_output_normalisation_and_correlation(folder, tmp_path):
    meta, members, corr, mf = _contents(folder)
    bad = json.loads(json.dumps(meta))
    bad["normalisation"]["output"]["omega"]["std"] = [0.0] * 20
    with pytest.raises(WeightsIntegrityError, match=r"normalisation\.output\.omega\.std = .*std must be > 0"):
        write_weights_folder(tmp_path / "a", bad, members, corr, mf)
    bad = json.loads(json.dumps(meta))
    bad["normalisation"]["output"]["xi"]["transform"] = "sqrt"
    with pytest.raises(WeightsIntegrityError, match=r"xi\.transform = 'sqrt'"):
        write_weights_folder(tmp_path / "b", bad, members, corr, mf)
    with pytest.raises(WeightsIntegrityError, match="unit diagonal"):
        write_weights_folder(tmp_path / "c", meta, members, 2 * corr, mf)
    with pytest.raises(WeightsIntegrityError, match=r"shape = \(59, 59\)"):
        write_weights_folder(tmp_path / "d", meta, members, corr[:59, :59], mf)
    with pytest.raises(ValueError, match="volume"):
        write_weights_folder(tmp_path / "e", meta, members, corr, {**mf, "volume": -1.0})


def test_torch_state_dicts_are_accepted_and_stored_as_float32(tmp_path, folder):
    import torch

    from iaemu_likelihood.networks import build_network

    meta, _, corr, mf = _contents(folder)
    torch.manual_seed(0)
    nets = [build_network("mlp", meta["architecture_config"]).double() for _ in range(meta["ensemble_size"])]
    out = write_weights_folder(tmp_path / "t", meta, [n.state_dict() for n in nets], corr, mf)
    _, members, _, _ = _contents(out)
    np.testing.assert_array_equal(members[1]["out.bias"],
                                  nets[1].out.bias.detach().numpy().astype(np.float32))


@pytest.mark.parametrize("line, message", [
    ("{digest}  ../../outside.txt", r"line \d+: file name '\.\./\.\./outside\.txt'; allowed: a relative path inside"),
    ("{digest}  {absolute}", r"line \d+: file name '/.*'; allowed: a relative path inside"),
    ("{digest}  metadata.json", r"line \d+: 'metadata\.json' is listed twice"),
])
def test_checksum_lines_outside_the_folder_or_twice_are_refused(folder, tmp_path, line, message):
    """SHA256SUMS may only vouch for files inside its folder, each once."""
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the weights")
    from iaemu_likelihood.weights_io import sha256_file

    sums = folder / "SHA256SUMS"
    text = line.format(digest=sha256_file(outside), absolute=outside)
    sums.write_text(sums.read_text() + text + "\n")
    with pytest.raises(WeightsIntegrityError, match=message):
        verify_checksums(folder)


def test_checksum_file_that_is_not_text_is_named(folder):
    (folder / "SHA256SUMS").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(WeightsIntegrityError, match=r"SHA256SUMS: not readable as a UTF-8 text file"):
        verify_checksums(folder)
