"""Known limits of a weights version (``metadata["caveats"]``, from the training config's ``caveats``):
logged once per version at load, printed by ``iaemu info``, listed in the folder's README, validated."""
import logging

import pytest

from iaemu_likelihood import weights as weights_module
from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.errors import ConfigError
from iaemu_likelihood.testing import copy_with_metadata

CAVEATS = ["Trained on one phase realization: cosmology constraints carry its cosmic variance.",
           "Aleatoric variance of a (125 h^-1 Mpc)^3 box."]


@pytest.fixture
def folder(synthetic_weights, tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "_CAVEATS_LOGGED", set())
    return copy_with_metadata(synthetic_weights, tmp_path / "w", caveats=CAVEATS)


def test_caveats_are_logged_once_per_version(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="iaemu_likelihood.weights"):
        emu = IAEmulator.load(folder)
        IAEmulator.load(folder)
    assert emu.caveats == CAVEATS
    logged = [r.getMessage() for r in caplog.records if r.name == "iaemu_likelihood.weights"]
    assert logged == [f"weights {emu.version}: {c}" for c in CAVEATS]


def test_weights_without_caveats_log_none(synthetic_weights, caplog):
    with caplog.at_level(logging.WARNING, logger="iaemu_likelihood.weights"):
        emu = IAEmulator.load(synthetic_weights)
    assert emu.caveats == [] and not [r for r in caplog.records if r.name == "iaemu_likelihood.weights"]


def test_iaemu_info_prints_the_caveats(folder, capsys):
    from iaemu_likelihood.cli import main

    assert main(["info", "--weights", str(folder)]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("caveat: ")] == [f"caveat: {c}" for c in CAVEATS]


def test_readme_lists_the_caveats():
    from iaemu_likelihood.training.export import readme_text

    meta = {"version": "v", "architecture": "mlp", "ensemble_size": 1, "bounds": {"alpha": [0.5, 1.5]},
            "caveats": CAVEATS}
    text = readme_text(meta)
    assert "## Caveats" in text and all(f"- {c}" in text for c in CAVEATS)
    assert "Caveats" not in readme_text({**meta, "caveats": []})


@pytest.mark.parametrize("value, message", [
    ("one sentence", r"caveats = 'one sentence': give a list of sentences"),
    (["ok", 3], r"caveats\[1\]"),
    (["ok", ""], r"caveats\[1\] = '': must be a non-empty string"),
    (["ok", "   "], r"caveats\[1\] = '   ': give a non-empty sentence"),
    (["x" * 700], r"caveats\[0\] = 'xxx.*at most 600 characters"),
])
def test_training_config_caveats_are_checked(value, message, tmp_path):
    from iaemu_likelihood.training.train_config import TrainConfig

    with pytest.raises(ConfigError, match=message):
        TrainConfig(data=str(tmp_path / "d.npz"), output=str(tmp_path / "w"), caveats=value)
    assert TrainConfig(data="d.npz", output="w", caveats=CAVEATS).caveats == CAVEATS
