"""`iaemu info`: parameter ranges, the HOD support band in words and numbers, broken weights."""
import re

import numpy as np
import pytest

from iaemu_likelihood import cli_info
from iaemu_likelihood.cli import main as cli_main
from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.errors import WeightsIntegrityError
from iaemu_likelihood.testing import copy_with_metadata
from iaemu_likelihood.weights_io import WEIGHTS_FILE, write_checksums

SUPPORT = {"type": "linear_band", "pivot": "logMmin", "description": "test band",
           "bands": {"logM0": {"slope": 1.0, "low_intercept": -3.0, "high_intercept": 0.5, "floor": None},
                     "sigma_logM": {"slope": 0.1, "low_intercept": -1.2, "high_intercept": -0.6,
                                    "floor": 0.05}}}


@pytest.fixture
def banded(synthetic_weights, tmp_path):
    return copy_with_metadata(synthetic_weights, tmp_path / "w", support=SUPPORT)


def _info(folder, capsys):
    status = cli_info.main(cli_info.build_parser("iaemu info").parse_args(["--weights", str(folder)]))
    return status, capsys.readouterr().out


def test_info_prints_the_support_band_formula_and_table(banded, capsys):
    status, out = _info(banded, capsys)
    assert status == 0
    assert "logMmin     [11.6, 13.5]" in out
    assert "in a band around a linear relation with logMmin (test band)" in out
    assert "  -3.0 + 1.0 * logMmin <= logM0 <= 0.5 + 1.0 * logMmin" in out
    assert "  max(0.05, -1.2 + 0.1 * logMmin) <= sigma_logM <= -0.6 + 0.1 * logMmin" in out
    assert "allowed at logMmin = 11.6 | logMmin = 12.55 | logMmin = 13.5:" in out
    # the table is the band clipped to the box, and agrees with the emulator's own check
    row = re.search(r"    logM0 +(.*)\n", out).group(1)
    cells = [tuple(float(v) for v in c.strip(" []").split(",")) for c in row.split("|")]
    assert cells == [(10.5, 12.1), (10.5, 13.05), (10.5, 14.0)]
    emu = IAEmulator.load(banded)
    point = emu.support_point()
    point[2] = 11.6
    for logM0, inside in ((10.5, True), (12.1, True), (12.2, False)):
        point[4] = logM0
        assert emu.in_support(point) == inside


def test_info_without_band_prints_only_the_box(synthetic_weights, capsys):
    status, out = _info(synthetic_weights, capsys)
    assert status == 0 and "alpha       [0.6, 1.4]" in out and "support" not in out


def test_broken_weights_raise_one_clear_error(banded, capsys):
    with np.load(banded / WEIGHTS_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["member3/hidden.2.bias"] = arrays["member3/hidden.2.bias"] * np.float32(np.inf)
    np.savez(banded / WEIGHTS_FILE, **arrays)
    with pytest.raises(WeightsIntegrityError, match=r"weights\.npz in .* does not match its SHA256SUMS"):
        _info(banded, capsys)
    write_checksums(banded)  # re-sealed after the damage
    with pytest.raises(WeightsIntegrityError, match=r"weights\.npz: member3/hidden\.2\.bias\[\d+\] = "
                                                    r"-?inf; allowed: finite values"):
        _info(banded, capsys)
    # through the command line: one line on stderr, no traceback, exit status 1
    assert cli_main(["info", "--weights", str(banded)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "member3/hidden.2.bias" in err


def _printed_intervals(out, name):
    row = re.search(rf"    {name} +(.*)\n", out).group(1)
    return [tuple(float(v) for v in c.strip(" []").split(",")) for c in row.split("|")]


def test_every_printed_number_is_accepted_by_the_emulator(capsys):
    """What `iaemu info` prints can be typed back: the ranges and formulas exactly, the table's
    intervals rounded inward (0.767469... prints 0.7674, not 0.7675, which the emulator refuses),
    checked at the printed pivot values for the shipped default weights."""
    status = cli_info.main(cli_info.build_parser("iaemu info").parse_args([]))
    out = capsys.readouterr().out
    assert status == 0
    emu = IAEmulator.load()
    for name in emu.param_names:
        low, high = (float(v) for v in re.search(rf"  {name} +\[(.*), (.*)\]\n", out).groups())
        assert (low, high) == emu.bounds[name]
    pivot = emu.support["pivot"]
    xs = [float(v) for v in re.findall(rf"{pivot} = ([0-9.]+)", out.split("allowed at")[1].splitlines()[0])]
    for name in emu.support["bands"]:
        for x, (low, high) in zip(xs, _printed_intervals(out, name)):
            for value in (low, high, 0.5 * (low + high)):
                point = emu.support_point()
                point[emu.param_names.index(pivot)] = x
                for other in emu.support["bands"]:  # the other banded parameters mid-band at x
                    if other != name:
                        o_low, o_high = _printed_intervals(out, other)[xs.index(x)]
                        point[emu.param_names.index(other)] = 0.5 * (o_low + o_high)
                point[emu.param_names.index(name)] = value
                assert emu.in_support(point), (name, x, value)
