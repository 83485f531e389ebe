"""Parameter ranges against the training box and support band (iaemu_likelihood.prior_support)."""
import math

import numpy as np
import pytest

from iaemu_likelihood.conventions import PARAM_NAMES
from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.prior_support import band_text, check_ranges

#: the example's fiducial HOD (Zheng07 Mr < -20) with mu_cen = 0.8, mu_sat = 0.5
FIDUCIAL = dict(zip(PARAM_NAMES, (0.8, 0.5, 12.02, 0.26, 11.38, 13.31, 1.06)))
#: grid points per axis of the brute-force feasibility check
GRID = 301


@pytest.fixture(scope="module")
def shipped():
    """The shipped default weights: they record a linear_band support."""
    emu = IAEmulator.load()
    assert emu.support and emu.support["type"] == "linear_band"
    return emu


def box(emu):
    return {n: tuple(emu.bounds[n]) for n in PARAM_NAMES}


def band_at(emu, name, x):
    b = emu.support["bands"][name]
    floor = -math.inf if b.get("floor") is None else b["floor"]
    return max(b["low_intercept"] + b["slope"] * x, floor), b["high_intercept"] + b["slope"] * x


def test_training_box_is_fine_but_partly_outside_the_band(shipped):
    report = check_ranges(shipped, box(shipped))
    assert report.errors == []
    assert any(clause.startswith("the range of logM0 is") for clause in report.partial)
    # the fraction of the box inside the support is what a uniform draw sees
    rng = np.random.default_rng(1)
    lo = np.array([shipped.bounds[n][0] for n in PARAM_NAMES])
    hi = np.array([shipped.bounds[n][1] for n in PARAM_NAMES])
    direct = shipped.in_support(lo + (hi - lo) * rng.uniform(size=(20_000, 7))).mean()
    assert 0.0 < report.inside_fraction < 1.0
    assert report.inside_fraction == pytest.approx(direct, abs=0.02)
    assert "prior volume is inside" in report.partial_message()


def test_inside_fraction_with_cosmology_inputs():
    """Weights with Omega_m, sigma_8, z inputs (the shipped v2): the fraction draws every input,
    the ones without a range uniformly in their box (was a shape error at CosmoSIS set-up)."""
    emu = IAEmulator.load("iaemu-factorised-v2")
    assert list(emu.param_names[7:]) == ["Omega_m", "sigma_8", "z"]
    report = check_ranges(emu, box(emu))
    assert report.errors == [] and 0.0 < report.inside_fraction < 1.0
    rng = np.random.default_rng(2)
    lo = np.array([emu.bounds[n][0] for n in emu.param_names])
    hi = np.array([emu.bounds[n][1] for n in emu.param_names])
    direct = emu.in_support(lo + (hi - lo) * rng.uniform(size=(20_000, len(lo)))).mean()
    assert report.inside_fraction == pytest.approx(direct, abs=0.02)


def test_fixed_point_inside_support_has_no_message(shipped):
    report = check_ranges(shipped, {n: (v, v) for n, v in FIDUCIAL.items()})
    assert report.errors == [] and report.partial == []


def test_fixed_value_outside_band_names_parameter_value_and_band(shipped):
    ranges = {n: (v, v) for n, v in FIDUCIAL.items()}
    low, _ = band_at(shipped, "logM0", FIDUCIAL["logMmin"])
    value = round(low - 0.3, 3)  # inside the box, below the band
    assert shipped.bounds["logM0"][0] < value
    ranges["logM0"] = (value, value)
    report = check_ranges(shipped, ranges)
    assert len(report.errors) == 1
    message = report.errors[0]
    assert f"logM0 is fixed to {value:g}" in message
    assert "outside the training support" in message
    assert f"{low:.5g}" in message and shipped.support["description"] in message
    assert "\n" not in message


def test_prior_range_with_no_point_in_the_band(shipped):
    ranges = box(shipped)
    ranges["logMmin"] = (11.6, 12.0)
    _, high = band_at(shipped, "logM0", 12.0)
    ranges["logM0"] = (high + 0.1, shipped.bounds["logM0"][1])
    report = check_ranges(shipped, ranges)
    assert len(report.errors) == 1 and "the range of logM0 is" in report.errors[0]
    assert "at logMmin = 11.6 to" in report.errors[0]


def test_ranges_each_possible_but_not_together(shipped):
    ranges = box(shipped)
    ranges["logM0"] = (14.0, 14.6)    # needs logMmin >~ 12.63
    ranges["logM1"] = (12.17, 12.3)   # needs logMmin <~ 11.78
    report = check_ranges(shipped, ranges)
    assert len(report.errors) == 1
    assert report.errors[0].startswith("no value of logMmin in [11.6, 13.2]")


@pytest.mark.parametrize("name, value, words", [
    ("alpha", (3.0, 3.0), "alpha is fixed to 3, outside the training range"),
    ("logMmin", (10.0, 13.0), "the range of logMmin is [10, 13], beyond the training range"),
    ("mu_cen", (2.0, math.inf), "disjoint from the training range"),
    ("mu_sat", (0.5, 0.2), "not a valid interval"),
])
def test_box_errors(shipped, name, value, words):
    ranges = box(shipped)
    ranges[name] = value
    report = check_ranges(shipped, ranges)
    assert any(words in e for e in report.errors), report.errors


def test_unbounded_ranges_are_allowed(shipped):
    ranges = {n: (-math.inf, math.inf) for n in PARAM_NAMES}
    report = check_ranges(shipped, ranges)
    assert report.errors == [] and report.inside_fraction is None


def test_weights_without_band_check_only_the_box(synthetic_weights):
    emu = IAEmulator.load(synthetic_weights)
    assert not emu.support
    ranges = {n: (lo, hi) for n, (lo, hi) in emu.bounds.items()}
    assert check_ranges(emu, ranges).errors == []
    ranges["logM0"] = (emu.bounds["logM0"][1] + 1,) * 2
    assert "outside the training range" in check_ranges(emu, ranges).errors[0]


@pytest.mark.parametrize("seed", range(3))
def test_feasibility_agrees_with_brute_force(shipped, seed):
    """Random ranges of logMmin and one dependent parameter: an error exactly when no grid point of
    the rectangle lies in the band (cases within a grid step of the edge are skipped)."""
    rng = np.random.default_rng(seed)
    for name in shipped.support["bands"]:
        for _ in range(15):
            ranges = box(shipped)
            for key in ("logMmin", name):
                lo, hi = shipped.bounds[key]
                a = rng.uniform(lo, hi)
                ranges[key] = (float(a), float(min(hi, a + rng.uniform(0, 0.3) * (hi - lo))))
            x = np.linspace(*ranges["logMmin"], GRID)
            p = np.linspace(*ranges[name], GRID)
            low, high = np.vectorize(lambda v, name=name: band_at(shipped, name, v))(x)
            margin = np.max(np.minimum(high[:, None] - p[None, :], p[None, :] - low[:, None]))
            step = max(np.diff(x[:2])[0], np.diff(p[:2])[0]) * 3
            if abs(margin) < step:
                continue
            report = check_ranges(shipped, ranges)
            assert bool(report.errors) == (margin < 0), (name, ranges, report.errors)


def test_band_text_at_a_fixed_pivot(shipped):
    text = band_text(shipped.support, "logM1", (12.0, 12.0))
    low, high = band_at(shipped, "logM1", 12.0)
    assert text.startswith(f"allowed logM1 in [{low:.5g}, {high:.5g}] at logMmin = 12")
