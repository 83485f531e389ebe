"""`iaemu evaluate`: metrics of a perfect emulator; reports go to an output folder (atomically) and
the evaluated weights folder is never modified; the training pipeline's in-folder report and reseal."""
import json

import numpy as np
import pytest

from iaemu_likelihood.training.dataset_io import save_dataset
from iaemu_likelihood._io import atomic_write_bytes
from iaemu_likelihood.errors import ConfigError
from iaemu_likelihood.training.evaluate import (DEFAULT_OUTPUT_ROOT, TARGETS, build_parser,
                                                evaluate_folder, evaluate_predictions, main)
from iaemu_likelihood.training.synthetic import make_synthetic_dataset, synthetic_truth

COVERAGE_TOL = 0.02
CALIBRATION_TOL = 0.03  # dex
FLOOR_RTOL = 0.1


def test_perfect_emulator_scores_the_noise_floor_and_nominal_coverage():
    ds = make_synthetic_dataset(600, 10, seed=7)
    mean, sigma = synthetic_truth(ds.params)
    pred = {}
    for s in ("xi", "omega", "eta"):
        pred[s], pred[f"{s}_var"], pred[f"{s}_epi_var"] = mean[s], sigma[s] ** 2, np.zeros_like(mean[s])
    out = evaluate_predictions(pred, {s: ds.stat(s) for s in ("xi", "omega", "eta")})["summary"]
    for s in ("xi", "omega", "eta"):
        assert out[f"{s}_coverage_68"] == pytest.approx(0.68, abs=COVERAGE_TOL)
        assert out[f"{s}_coverage_95"] == pytest.approx(0.95, abs=COVERAGE_TOL)
        assert abs(out[f"{s}_calibration_dex"]) < CALIBRATION_TOL
        assert out[f"{s}_median_abs_residual_sigma"] == pytest.approx(
            out[f"{s}_noise_floor_median_abs_residual_sigma"], rel=FLOOR_RTOL)
    assert out["xi_mean_abs_frac_error"] == pytest.approx(out["xi_noise_floor_frac_error"], rel=FLOOR_RTOL)
    assert out["xi_spearman_median_over_bins"] > 0.99
    # an emulator whose sigma is twice too large is 0.3 dex off and over-covers
    pred["xi_var"] = 4 * sigma["xi"] ** 2
    out2 = evaluate_predictions(pred, {s: ds.stat(s) for s in ("xi", "omega", "eta")})["summary"]
    assert out2["xi_calibration_dex"] == pytest.approx(np.log10(2), abs=CALIBRATION_TOL)
    assert out2["xi_coverage_68"] > 0.9


def _snapshot(folder):
    """Every file of a folder with its bytes (to prove nothing was modified, added or removed)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def weights_and_data(tmp_path):
    from iaemu_likelihood.emulator import IAEmulator
    from iaemu_likelihood.testing import write_synthetic_weights

    folder = write_synthetic_weights(tmp_path / "w", seed=1)
    data = tmp_path / "test.npz"
    save_dataset(data, make_synthetic_dataset(40, 5, seed=8, bounds=IAEmulator.load(folder).bounds))
    return folder, data


REPORT_FILES = ("report.json", "report.md", "figures/accuracy.png", "figures/calibration.png",
                "figures/examples.png")


def test_evaluate_writes_to_an_output_folder_and_never_touches_the_weights(weights_and_data, tmp_path,
                                                                          monkeypatch):
    folder, data = weights_and_data
    before = _snapshot(folder)
    folder.chmod(0o555)  # like installed package data: writing there would fail
    try:
        out = tmp_path / "out"
        assert main(build_parser().parse_args([str(folder), "--data", str(data), "--no-latency",
                                               "--output", str(out)])) == 0
        # default: ./iaemu-evaluation/<version>
        monkeypatch.chdir(tmp_path)
        assert main(build_parser().parse_args([str(folder), "--data", str(data), "--no-latency",
                                               "--no-figures"])) == 0
    finally:
        folder.chmod(0o755)
    assert _snapshot(folder) == before
    report = json.loads((out / "report.json").read_text())
    assert set(report["targets"]) == set(TARGETS)
    assert report["test_set"]["n_used"] == 40 and report["weights_folder"] == str(folder)
    assert len(report["per_bin"]["xi"]["mean_abs_frac_error"]) == 20
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0
    assert not [p for p in out.rglob(".*")]  # no temporary files left
    default = tmp_path / DEFAULT_OUTPUT_ROOT / "synthetic-mlp-seed1" / "report.json"
    assert json.loads(default.read_text())["test_set"]["n_used"] == 40


def test_output_inside_the_weights_folder_is_refused(weights_and_data):
    folder, data = weights_and_data
    for output in (folder, folder / "figures"):
        with pytest.raises(ConfigError, match=r"--output .* is inside the weights folder .*never modifies"):
            evaluate_folder(folder, data, output=output, latency=False, figures=False)


def test_interrupted_evaluation_leaves_the_weights_valid_and_no_partial_file(weights_and_data,
                                                                            tmp_path, monkeypatch):
    """Killed while writing figures: the weights folder is untouched and still verifies; the
    output folder holds only complete files."""
    import iaemu_likelihood.training.evaluate as ev
    from iaemu_likelihood.emulator import IAEmulator

    folder, data = weights_and_data
    before = _snapshot(folder)
    written = []

    def dying_write(path, data_bytes, **kwargs):
        if written:
            raise KeyboardInterrupt  # the second file never appears
        written.append(path)
        atomic_write_bytes(path, data_bytes)

    fake_pngs = {f"figures/{name}.png": b"\x89PNG\r\n\x1a\n" + bytes(100) for name in "abc"}
    monkeypatch.setattr(ev, "_figures", lambda report, pred, samples: fake_pngs)  # fast stand-ins
    monkeypatch.setattr(ev, "atomic_write_bytes", dying_write)
    with pytest.raises(KeyboardInterrupt):
        evaluate_folder(folder, data, output=tmp_path / "out", latency=False)
    assert _snapshot(folder) == before
    IAEmulator.load(folder)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert files == written and files[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_pipeline_puts_the_report_into_its_new_folder_and_reseals(weights_and_data, capsys):
    from iaemu_likelihood.cli import main as cli_main
    from iaemu_likelihood.emulator import IAEmulator
    import iaemu_likelihood.weights_io as wio

    folder, data = weights_and_data
    evaluate_folder(folder, data, latency=False, figures=False, into_weights=True)
    reloaded = IAEmulator.load(folder)  # checksums and content verified
    assert reloaded.metadata["accuracy"]["test_set"]["n_used"] == 40
    listed = wio.verify_checksums(folder)
    assert {"report.json", "report.md", "metadata.json"} <= set(listed)
    assert cli_main(["verify", "--weights", str(folder)]) == 0


def test_train_evaluate_killed_before_resealing_is_repaired_by_reseal(weights_and_data, monkeypatch,
                                                                     capsys):
    """The one window of the training pipeline: metadata.json rewritten, SHA256SUMS not yet.
    The folder then fails verification, and `iaemu reseal` (which re-validates) repairs it."""
    import iaemu_likelihood.weights_io as wio
    from iaemu_likelihood.cli import main as cli_main
    from iaemu_likelihood.emulator import IAEmulator
    from iaemu_likelihood.errors import WeightsIntegrityError

    folder, data = weights_and_data

    def killed(folder):
        raise KeyboardInterrupt

    monkeypatch.setattr(wio, "reseal_folder", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate_folder(folder, data, latency=False, figures=False, into_weights=True)
    with pytest.raises(WeightsIntegrityError, match="metadata.json .*does not match"):
        IAEmulator.load(folder)
    monkeypatch.undo()
    assert cli_main(["reseal", str(folder)]) == 0
    assert IAEmulator.load(folder).metadata["accuracy"]["test_set"]["n_used"] == 40


def test_default_output_never_leaves_the_evaluation_folder(weights_and_data, tmp_path, monkeypatch):
    """A foreign metadata.json naming its version '../../x' cannot steer where the report goes."""
    from iaemu_likelihood.weights_io import METADATA_FILE, write_checksums

    folder, data = weights_and_data
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["version"] = "../../x"
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    write_checksums(folder)
    monkeypatch.chdir(tmp_path)
    evaluate_folder(folder, data, latency=False, figures=False)
    assert (tmp_path / DEFAULT_OUTPUT_ROOT / folder.name / "report.json").is_file()
    assert not (tmp_path.parent / "x").exists()


def test_output_that_is_a_file_is_refused_and_no_figures_means_none_mentioned(weights_and_data, tmp_path):
    folder, data = weights_and_data
    afile = tmp_path / "report.txt"
    afile.write_text("keep me")
    with pytest.raises(ConfigError, match=r"--output .*report\.txt is a file; allowed: a folder"):
        evaluate_folder(folder, data, output=afile, latency=False, figures=False)
    assert afile.read_text() == "keep me"
    out = tmp_path / "nofig"
    evaluate_folder(folder, data, output=out, latency=False, figures=False)
    text = (out / "report.md").read_text()
    assert "No figures" in text and "Figures in figures/" not in text
    assert not (out / "figures").exists()
