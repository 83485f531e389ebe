"""The shipped default weights: integrity, regression against the committed reference, science sanity.

These run on the weights installed with the package (``trained_weights/DEFAULT``); they are skipped
only in a checkout that ships no weights version yet.
"""
import numpy as np
import pytest
import yaml

from iaemu_likelihood.conventions import PARAM_NAMES
from iaemu_likelihood.weights import default_version, resolve_weights_dir

pytestmark = pytest.mark.skipif(default_version() is None, reason="no weights version shipped yet")

#: the example's 400-realization mean must lie within this many predicted sigma of the mean
#: (one-realization sigma / sqrt(400) plus the emulator's own uncertainty) in most bins
MAX_PULL = 5.0


@pytest.fixture(scope="module")
def emulator():
    from iaemu_likelihood.emulator import IAEmulator

    return IAEmulator.load()


def test_checksums_and_reference_predictions(emulator):
    from iaemu_likelihood.verify import check_reference_predictions
    from iaemu_likelihood.weights_io import REFERENCE_FILE, verify_checksums

    folder = resolve_weights_dir(None)
    verify_checksums(folder)
    results = check_reference_predictions(emulator, folder / REFERENCE_FILE)
    assert results and all(ok for _, ok, _ in results), results


def test_metadata_names_training_data(emulator):
    from iaemu_likelihood.training.catalogs import OfflineHaloCatalog
    from pathlib import Path

    meta = emulator.metadata
    assert meta["training_set"]["n_points"] >= 2000
    assert len(meta["training_set"]["sha256"]) == 64
    catalog = Path(__file__).resolve().parents[1] / "training" / "data" / "halo_catalog_pm512_L250.npz"
    assert meta["halo_catalog"]["sha256"] == OfflineHaloCatalog(catalog).provenance["content_sha256"]
    assert meta.get("support", {}).get("type") == "linear_band"


def test_prediction_matches_example_realization_mean(emulator):
    """At the held-out fiducial point the emulator reproduces the mean of 400 mocks."""
    from iaemu_likelihood.data import example_data_path, load_measurement

    m = load_measurement(example_data_path())
    truth = m.metadata["truth"]
    mean = np.asarray(m.metadata["realization_mean"], dtype=float)  # 60 values, xi|omega|eta
    n_real = m.metadata["n_realizations_covariance"]
    pred = emulator.predict(truth, epistemic=True)
    sigma = np.sqrt(pred.variance_vector() / n_real + pred.epistemic_vector())
    pull = (pred.vector() - mean) / sigma
    assert np.median(np.abs(pull)) < 2.0, pull
    assert np.mean(np.abs(pull) < MAX_PULL) > 0.9, pull


def test_ia_hod_yaml_as_shipped_evaluates_at_the_truth():
    """yamls/ia_hod.yaml with its defaults (shipped weights, bundled data) gives a finite posterior,
    higher at the truth than at a distant point."""
    from pathlib import Path

    from cobaya.model import get_model

    from iaemu_likelihood.data import example_data_path, load_measurement

    info = yaml.safe_load((Path(__file__).resolve().parents[1] / "yamls" / "ia_hod.yaml").read_text())
    info.pop("sampler"), info.pop("output")
    info.pop("covmat", None)
    model = get_model(info)
    truth = load_measurement(example_data_path()).metadata["truth"]
    at_truth = model.logposterior({p: truth[p] for p in PARAM_NAMES}).logpost
    far = dict(truth, mu_cen=-0.8, mu_sat=-0.5)
    assert np.isfinite(at_truth)
    assert at_truth > model.logposterior({p: far[p] for p in PARAM_NAMES}).logpost


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_verify_passes_for_every_shipped_version_on_any_thread_count(threads, capsys):
    """`iaemu verify` holds for every shipped version (the torch float32 "paper" one included)
    whatever number of BLAS and torch threads the user runs with."""
    import torch
    from threadpoolctl import threadpool_limits

    from iaemu_likelihood import verify
    from iaemu_likelihood.weights import available_versions

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            for version in available_versions():
                args = verify.build_parser("iaemu verify").parse_args(["--weights", version])
                status = verify.main(args)
                out = capsys.readouterr().out
                assert status == 0, out
                assert torch.get_num_threads() == threads  # restored after the pinned check
    finally:
        torch.set_num_threads(old)
