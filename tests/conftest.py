"""Shared fixtures: synthetic weights folders (tiny deterministic networks, never shipped)."""
import pytest

from iaemu_likelihood.testing import write_synthetic_weights


@pytest.fixture(scope="session")
def synthetic_weights(tmp_path_factory):
    """A 4-member "mlp" weights folder fitted to the analytic toy model (read-only: copy to modify)."""
    return write_synthetic_weights(tmp_path_factory.mktemp("weights") / "synthetic-mlp", seed=0)


@pytest.fixture(scope="session")
def synthetic_paper_weights(tmp_path_factory):
    """A single-network reference-architecture ("paper") weights folder (needs torch)."""
    return write_synthetic_weights(tmp_path_factory.mktemp("weights") / "synthetic-paper", seed=0,
                                   architecture="paper", reference_points=2)


@pytest.fixture(scope="session")
def emulator(synthetic_weights):
    from iaemu_likelihood.emulator import IAEmulator

    return IAEmulator.load(synthetic_weights)


@pytest.fixture(scope="module")
def band_rule():
    """The support band of the training design rule (logMmin in [11.6, 13.5])."""
    from iaemu_likelihood.training.design import DesignRule

    return DesignRule(logMmin_range=(11.6, 13.5))


@pytest.fixture(scope="module")
def banded(weights, band_rule, tmp_path_factory):
    """The requesting module's ``weights`` with the support band of ``band_rule`` in their metadata."""
    from test_cobaya import copy_weights_with_metadata

    return copy_weights_with_metadata(weights, tmp_path_factory.mktemp("banded") / "weights",
                                      support=band_rule.support_metadata())
