"""``iaemu plot``: triangle plots of Cobaya chains with burn-in removal and truth markers."""
import subprocess
import sys

import numpy as np
import pytest

from iaemu_likelihood.data import DataFileError, save_measurement
from iaemu_likelihood.conventions import r_centres
from iaemu_likelihood.chains import ChainError
from iaemu_likelihood.plotting import build_parser, load_chains, main, parse_truth

PNG_MAGIC = b"\x89PNG"


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    """Two short Cobaya chains of a 2-d Gaussian (no emulator needed)."""
    from cobaya.run import run

    out = tmp_path_factory.mktemp("chains")
    prefixes = []
    for i, centre in enumerate((0.8, 0.6)):
        info = {"likelihood": {"gauss": {"external": f"lambda mu_cen, mu_sat: "
                                         f"-0.5 * ((mu_cen - {centre})**2 + (mu_sat - 0.5)**2) / 0.01"}},
                "params": {"mu_cen": {"prior": {"min": -1, "max": 1}, "latex": r"\mu_{\rm cen}"},
                           "mu_sat": {"prior": {"min": -1, "max": 1}, "latex": r"\mu_{\rm sat}"}},
                "sampler": {"mcmc": {"max_samples": 400, "seed": i}},
                "output": str(out / f"run{i}")}
        run(info)
        prefixes.append(str(out / f"run{i}"))
    return prefixes


def test_parse_truth_pairs_and_files(tmp_path):
    assert parse_truth(None) == {}
    assert parse_truth(["mu_cen=0.8", "alpha=1.06"]) == {"mu_cen": 0.8, "alpha": 1.06}
    path = save_measurement(tmp_path / "m.npz", r_centres(), {"xi": np.ones(20)}, np.eye(20),
                            {"truth": {"mu_cen": 0.8, "mu_sat": 0.5}})
    assert parse_truth([str(path), "mu_sat=0.4"]) == {"mu_cen": 0.8, "mu_sat": 0.4}
    with pytest.raises(ValueError, match="not a number"):
        parse_truth(["mu_cen=high"])
    with pytest.raises(ValueError, match="existing file"):
        parse_truth(["nothing_here.npz"])
    bare = save_measurement(tmp_path / "bare.npz", r_centres(), {"xi": np.ones(20)}, np.eye(20))
    with pytest.raises(ValueError, match="no 'truth'"):
        parse_truth([str(bare)])


def test_truth_example():
    try:
        truth = parse_truth(["example"])
    except DataFileError as exc:
        assert "make_example_data" in str(exc)
    else:
        assert truth["mu_cen"] == 0.8 and truth["mu_sat"] == 0.5


def test_burn_in_removes_rows(chains):
    full = load_chains(chains[:1], burn_in=0)[0]
    cut = load_chains(chains[:1], burn_in=0.5)[0]
    assert cut.numrows == pytest.approx(full.numrows / 2, abs=2)
    with pytest.raises(ChainError, match="_missing"):
        load_chains([chains[0] + "_missing"])


def test_plot_two_chains_with_truth(chains, tmp_path):
    out = tmp_path / "plots" / "tri.png"
    args = build_parser().parse_args([*chains, "--truth", "mu_cen=0.8", "mu_sat=0.5",
                                      "--output", str(out), "--burn-in", "0.3"])
    assert main(args) == 0
    assert out.read_bytes()[:4] == PNG_MAGIC


def test_plot_errors_are_reported_in_one_line(chains, tmp_path, capsys):
    from iaemu_likelihood.cli import main as cli_main

    out = tmp_path / "x.png"
    assert cli_main(["plot", chains[0], "--params", "alpha", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "alpha" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_plot_reads_labels_and_ranges_from_the_chain(chains):
    s = load_chains(chains[:1])[0]
    assert s.getParamNames().parWithName("mu_cen").label == r"\mu_{\rm cen}"
    assert s.ranges.getLower("mu_cen") == -1 and s.ranges.getUpper("mu_sat") == 1
    assert not s.getParamNames().parWithName("mu_sat").isDerived


def test_console_script(chains, tmp_path):
    out = tmp_path / "cli.png"
    proc = subprocess.run([sys.executable, "-m", "iaemu_likelihood.cli", "plot", chains[0],
                           "--output", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()


@pytest.mark.parametrize("extra, named", [
    (["--params", "mu_cen", "mu_cen"], "--params: ['mu_cen'] given more than once"),
    (["--truth", "mu_ce=0.8"], "no chain has a parameter 'mu_ce'; did you mean 'mu_cen'?"),
    (["--truth", "mu_cen=nan"], "allowed: NAME=VALUE with a finite VALUE"),
    (["--truth", "=0.8"], "allowed: NAME=VALUE"),
    (["--width", "1e6"], "--width = 1000000.0; allowed: inches in (0, 100]"),
    (["--width", "nan"], "--width = nan"),
    (["--output", "."], "--output . is a folder"),
    (["--burn-in", "2.5"], "whole number of rows"),
])
def test_plot_options_are_checked_and_named(chains, tmp_path, capsys, monkeypatch, extra, named):
    """Options that GetDist/matplotlib would crash on, silently ignore (a misspelt truth draws
    nothing) or misread are one named line, and nothing is written."""
    from iaemu_likelihood.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    args = ["plot", chains[0], *extra]
    if "--output" not in extra:
        args += ["--output", str(tmp_path / "x.png")]
    assert cli_main(args) == 1
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("value", ["0.8", [0.8], None, True, float("nan"), {"a": 1}])
def test_truth_values_of_a_measurement_file_must_be_finite_numbers(tmp_path, value):
    """A measurement's metadata truth is data from someone else: a string, list, None, bool or NaN
    is named with the file and key (a raw float() error or a TypeError before)."""
    path = save_measurement(tmp_path / "m.npz", r_centres(), {"xi": np.ones(20)}, np.eye(20),
                            {"truth": {"mu_cen": value, "mu_sat": 0.5}})
    with pytest.raises(ValueError, match=r"m\.npz metadata truth\['mu_cen'\] = .*; allowed: a finite number"):
        parse_truth([str(path)])
