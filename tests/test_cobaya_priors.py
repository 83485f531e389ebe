"""The Cobaya theory's prior handling as plain functions (through Cobaya: test_cobaya.py)."""
import json

import pytest

pytest.importorskip("cobaya")

from iaemu_likelihood.cobaya_priors import prior_with_bounds, priors_for_weights  # noqa: E402
from iaemu_likelihood.conventions import PARAM_NAMES  # noqa: E402

#: Exact arithmetic up to float rounding.
RTOL = 1e-12


def test_prior_with_bounds_maps_ref_and_proposal_linearly():
    info = {"prior": {"min": 0.0, "max": 1.0}, "ref": {"dist": "norm", "loc": 0.25, "scale": 0.1},
            "proposal": 0.05, "latex": "x"}
    moved = prior_with_bounds(info, (0.0, 1.0), (10.0, 14.0))
    assert moved["prior"] == {"min": 10.0, "max": 14.0}
    assert moved["ref"]["loc"] == pytest.approx(11.0, rel=RTOL)
    assert moved["ref"]["scale"] == pytest.approx(0.4, rel=RTOL)
    assert moved["ref"]["dist"] == "norm" and moved["latex"] == "x"
    assert moved["proposal"] == pytest.approx(0.2, rel=RTOL)
    # a fixed starting point moves the same way; the block given is left as it was
    assert prior_with_bounds({**info, "ref": 0.5}, (0.0, 1.0), (10.0, 14.0))["ref"] == pytest.approx(12.0)
    assert info["prior"] == {"min": 0.0, "max": 1.0} and info["ref"]["loc"] == 0.25


def test_priors_for_weights_uses_the_weights_box(synthetic_weights):
    bounds = json.loads((synthetic_weights / "metadata.json").read_text())["bounds"]
    params = {name: {"prior": {"min": 0.0, "max": 1.0}, "ref": 0.5} for name in PARAM_NAMES}
    params["other"] = {"prior": {"min": 0.0, "max": 1.0}}
    defaults = {"weights": None, "params": params}
    moved = priors_for_weights(defaults, synthetic_weights)
    for name in PARAM_NAMES:
        lo, hi = bounds[name]
        assert moved["params"][name]["prior"] == {"min": lo, "max": hi}
        assert moved["params"][name]["ref"] == pytest.approx(0.5 * (lo + hi), rel=RTOL)
    assert moved["params"]["other"] == params["other"]  # not an input of the emulator
    assert defaults["params"][PARAM_NAMES[0]]["prior"] == {"min": 0.0, "max": 1.0}


def test_priors_for_weights_keeps_the_yaml_values_when_the_weights_cannot_be_read(tmp_path):
    defaults = {"params": {PARAM_NAMES[0]: {"prior": {"min": 0.0, "max": 1.0}}}}
    assert priors_for_weights(defaults, tmp_path / "missing") is defaults
