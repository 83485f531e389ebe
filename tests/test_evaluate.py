"""`iaemu evaluate`: metrics of a perfect emulator, report files and checksums of a folder."""
import json

import numpy as np
import pytest

from iaemu_likelihood.training.dataset_io import save_dataset
from iaemu_likelihood.training.evaluate import TARGETS, build_parser, evaluate_predictions, main
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


def test_evaluate_writes_reports_and_keeps_checksums_valid(tmp_path):
    from iaemu_likelihood.emulator import IAEmulator
    from iaemu_likelihood.testing import write_synthetic_weights

    folder = write_synthetic_weights(tmp_path / "w", seed=1)
    data = tmp_path / "test.npz"
    emu = IAEmulator.load(folder)
    save_dataset(data, make_synthetic_dataset(40, 5, seed=8, bounds=emu.bounds))
    args = build_parser().parse_args([str(folder), "--data", str(data), "--no-latency"])
    assert main(args) == 0
    report = json.loads((folder / "report.json").read_text())
    assert set(report["targets"]) == set(TARGETS)
    assert report["test_set"]["n_used"] == 40
    assert len(report["per_bin"]["xi"]["mean_abs_frac_error"]) == 20
    for name in ("report.md", "figures/accuracy.png", "figures/calibration.png", "figures/examples.png"):
        assert (folder / name).stat().st_size > 0
    sums = (folder / "SHA256SUMS").read_text()
    assert "report.json" in sums and "figures/accuracy.png" in sums
    reloaded = IAEmulator.load(folder)  # checksums verified, metadata updated
    assert reloaded.metadata["accuracy"]["test_set"]["n_used"] == 40
