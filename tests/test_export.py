"""Exporting a weights folder (`iaemu train`, `iaemu convert-checkpoint`): the folder at the output
path is always complete, old or new, and nothing that is not part of a weights folder is deleted."""

import pytest

from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.errors import ConfigError
from iaemu_likelihood.weights_io import load_weights_folder, verify_checksums


def _contents(folder):
    meta, members, corr, mass_function = load_weights_folder(folder)
    return meta, members, corr, mass_function


def _export(target, synthetic_weights, **kw):
    from iaemu_likelihood.training.export import write_exported_folder

    meta, members, corr, mf = _contents(synthetic_weights)
    return write_exported_folder(target, dict(meta, **kw), members, corr, mf, reference_points=2)


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_export_replaces_an_earlier_export_whole(synthetic_weights, tmp_path):
    target = tmp_path / "w"
    _export(target, synthetic_weights, version="first")
    (target / "report.json").write_text("{}")  # an earlier evaluation: stale after a new export
    _export(target, synthetic_weights, version="second")
    assert IAEmulator.load(target).version == "second"
    assert not (target / "report.json").exists()
    verify_checksums(target)
    assert [p.name for p in tmp_path.iterdir()] == ["w"]  # no working folders left


@pytest.mark.parametrize("step", ["write_reference_predictions", "_swap_in"])
def test_export_killed_midway_leaves_the_old_folder_complete(synthetic_weights, tmp_path, monkeypatch, step):
    """Killed after the tensors were written but before the folder was complete (or before it was
    renamed into place): the previous export is still there, byte for byte, and still loads; the
    next export removes the working folder the killed one left."""
    from iaemu_likelihood.training import export

    target = tmp_path / "w"
    _export(target, synthetic_weights, version="first")
    before = _snapshot(target)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        if step == "write_reference_predictions":
            import iaemu_likelihood.verify as verify

            patch.setattr(verify, "write_reference_predictions", killed)
        else:
            patch.setattr(export, "_swap_in", killed)
        with pytest.raises(KeyboardInterrupt):
            _export(target, synthetic_weights, version="second")
    assert _snapshot(target) == before and IAEmulator.load(target).version == "first"
    # a hard kill (no cleanup) leaves a hidden working folder: the next export removes it
    (tmp_path / ".w.export-leftover").mkdir()
    _export(target, synthetic_weights, version="third")
    assert IAEmulator.load(target).version == "third"
    assert [p.name for p in tmp_path.iterdir()] == ["w"]


@pytest.mark.parametrize("foreign", ["notes.txt", "data/train.npz"])
def test_export_never_deletes_files_that_are_not_weights(synthetic_weights, tmp_path, foreign):
    target = tmp_path / "results"
    (target / foreign).parent.mkdir(parents=True, exist_ok=True)
    (target / foreign).write_text("someone's data")
    with pytest.raises(ConfigError, match=rf"output .*results holds '{foreign.split('/')[0]}', which is not part of "
                       r"a weights folder"):
        _export(target, synthetic_weights)
    assert (target / foreign).read_text() == "someone's data"
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match=r"output .*afile is a file"):
        _export(afile, synthetic_weights)
