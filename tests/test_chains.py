"""Reading chains never runs code from the chain folder (no unpickling, no unsafe YAML tags)."""
import os
import pickle

import numpy as np
import pytest

from iaemu_likelihood.chains import ChainError, chain_files, load_cobaya_chain

HEADER = "#  weight  minuslogpost  mu_cen  mu_sat  n_gal  minuslogprior  minuslogprior__0  chi2\n"
N_ROWS = 200


class _RunsCode:
    """Unpickling this object creates ``marker`` (what an attacker's cache file would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write_chain(folder, name="run", yaml_text=None, rows=N_ROWS, seed=0):
    rng = np.random.default_rng(seed)
    body = np.column_stack([np.ones(rows), rng.normal(size=rows) ** 2, rng.uniform(-1, 1, rows),
                            rng.uniform(-1, 1, rows), rng.uniform(1e-4, 1e-3, rows),
                            np.full(rows, 0.7), np.full(rows, 0.7), rng.normal(size=rows) ** 2])
    np.savetxt(folder / f"{name}.1.txt", body, header=HEADER[1:].rstrip("\n"), comments="#")
    if yaml_text is None:
        yaml_text = ("likelihood:\n  gauss: null\n"
                     "params:\n"
                     "  mu_cen: {prior: {min: -1, max: 1}, latex: '\\mu_{\\rm cen}'}\n"
                     "  mu_sat: {prior: {min: -1, max: 1}, latex: '\\mu_{\\rm sat}'}\n"
                     "  n_gal: {latex: 'n_{\\rm gal}', derived: true}\n")
    (folder / f"{name}.updated.yaml").write_text(yaml_text)
    return str(folder / name)


def test_reads_names_labels_ranges_derived_and_burn_in(tmp_path):
    prefix = _write_chain(tmp_path)
    s = load_cobaya_chain(prefix, burn_in=0.25)
    assert s.numrows == N_ROWS - N_ROWS // 4
    names = s.getParamNames()
    assert names.parWithName("mu_cen").label == r"\mu_{\rm cen}"
    assert not names.parWithName("mu_cen").isDerived
    assert names.parWithName("n_gal").isDerived and names.parWithName("chi2").isDerived
    assert s.ranges.getLower("mu_sat") == -1 and s.ranges.getUpper("mu_sat") == 1
    assert load_cobaya_chain(prefix, burn_in=50).numrows == N_ROWS - 50


def test_unsafe_yaml_tag_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    prefix = _write_chain(tmp_path, yaml_text=(
        "params:\n  mu_cen: {prior: {min: -1, max: 1}}\n"
        f"x: !!python/object/apply:os.system ['touch {marker}']\n"))
    with pytest.raises(ChainError, match="updated.yaml.*not plain YAML"):
        load_cobaya_chain(prefix)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["beside", "user_cache"])
def test_getdist_pickle_cache_is_never_read(tmp_path, monkeypatch, where):
    import hashlib

    import getdist

    marker = tmp_path / "ran"
    folder = tmp_path / "chains"
    folder.mkdir()
    prefix = _write_chain(folder)
    if where == "beside":
        monkeypatch.setattr(getdist, "cache_dir", None)
        cache = folder / "run.py_mcsamples"
    else:  # where GetDist looks when it has a user cache folder
        monkeypatch.setattr(getdist, "cache_dir", str(tmp_path / "cache"))
        (tmp_path / "cache").mkdir()
        digest = hashlib.md5(os.path.abspath(folder).encode("utf-8")).hexdigest()[:10]
        cache = tmp_path / "cache" / f"run_{digest}.py_mcsamples"
    cache.write_bytes(pickle.dumps(_RunsCode(marker)))
    os.utime(cache, (2e9, 2e9))  # newer than the chain, as GetDist requires to trust a cache
    s = load_cobaya_chain(prefix)
    assert s.numrows > 0 and not marker.exists()
    assert cache.exists()  # and the folder is left as it was


@pytest.mark.parametrize("content, match", [
    ("1 2 3\n", "header"),
    ("#  a  b\n1 2\n", "weight minuslogpost"),
    ("#  weight  minuslogpost  x\n1 2 abc\n", "not a numeric table"),
    ("#  weight  minuslogpost  x\n1 2 3 4\n", "columns"),
    ("#  weight  minuslogpost  x\nnan 2 3\n", "weight"),
    ("#  weight  minuslogpost  x\n1 2 nan\n", "'x' holds NaN"),
])
def test_malformed_chain_files_are_named(tmp_path, content, match):
    (tmp_path / "bad.1.txt").write_text(content)
    with pytest.raises(ChainError, match=match) as info:
        load_cobaya_chain(str(tmp_path / "bad"), burn_in=0)
    assert "bad" in str(info.value) and "\n" not in str(info.value)


def test_missing_chain_and_bad_burn_in(tmp_path):
    with pytest.raises(ChainError, match="no chain files"):
        chain_files(tmp_path / "none")
    prefix = _write_chain(tmp_path)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ChainError, match="burn-in"):
            load_cobaya_chain(prefix, burn_in=bad)
    with pytest.raises(ChainError, match="no samples left"):
        load_cobaya_chain(prefix, burn_in=10 * N_ROWS)


def _table(tmp_path, header, rows, yaml_text=None):
    np.savetxt(tmp_path / "c.1.txt", np.asarray(rows, dtype=float), header=header)
    if yaml_text is not None:
        (tmp_path / "c.updated.yaml").write_text(yaml_text)
    return str(tmp_path / "c")


_RNG_ROWS = np.c_[np.ones(50), np.ones(50), np.random.default_rng(1).normal(size=(50, 2))]


@pytest.mark.parametrize("header, rows, match", [
    ("weight minuslogpost x y", np.where(np.arange(4) == 2, np.inf, _RNG_ROWS),
     r"column 'x' holds inf \(data row 1\); allowed: finite numbers"),
    ("weight minuslogpost x y", np.where(np.arange(4) == 1, -np.inf, _RNG_ROWS),
     r"column 'minuslogpost' holds -inf"),
    ("weight minuslogpost x x", _RNG_ROWS, r"column\(s\) \['x'\] named more than once"),
    ("weight minuslogpost", _RNG_ROWS[:, :2], r"the header names no parameter"),
    ("weight minuslogpost x y", np.where(np.arange(4) == 0, 0.0, _RNG_ROWS), r"weights after burn-in 0 sum to 0\.0"),
    ("weight minuslogpost x y", np.where(np.arange(4) == 0, 1e308, _RNG_ROWS), r"weights after burn-in 0 sum to inf"),
    ("weight minuslogpost x y", np.where(np.arange(4) == 2, 0.0, _RNG_ROWS),
     r"parameter 'x' of chain .* takes one value \(0\.0 in 50 samples"),
    ("weight minuslogpost x y", _RNG_ROWS[:1], r"parameter 'x' of chain .* takes one value .* in 1 samples"),
    ("weight minuslogpost x y", _RNG_ROWS * np.array([1, 1, 1e300, 1]), r"parameter 'x' .*too large to plot"),
])
def test_chain_content_getdist_cannot_use_is_named(tmp_path, header, rows, match):
    """Non-finite values, duplicate or missing columns, weights that sum to 0 or overflow, a parameter
    that never moved: one ChainError naming the file or chain, never a GetDist crash or NaN plot."""
    with pytest.raises(ChainError, match=match) as info:
        load_cobaya_chain(_table(tmp_path, header, rows), burn_in=0)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("prior, match", [("{min: 1, max: 0}", r"min = 1\.0, max = 0\.0; allowed: min < max"),
                                          ("{min: .nan, max: 1}", r"min = nan")])
def test_prior_ranges_that_are_empty_are_named(tmp_path, prior, match):
    prefix = _table(tmp_path, "weight minuslogpost x y", _RNG_ROWS, f"params:\n  x:\n    prior: {prior}\n")
    with pytest.raises(ChainError, match=match):
        load_cobaya_chain(prefix, burn_in=0)


def test_unbounded_prior_and_untypesettable_label_still_load(tmp_path, caplog):
    prefix = _table(tmp_path, "weight minuslogpost x y", _RNG_ROWS,
                    'params:\n  x:\n    prior: {min: -.inf, max: .inf}\n    latex: "\\\\frac{"\n'
                    '  y:\n    prior: {min: -5, max: 5}\n    latex: "y_{0}"\n')
    s = load_cobaya_chain(prefix, burn_in=0)
    assert s.paramNames.parWithName("x").label == "x" and "cannot be typeset" in caplog.text
    assert s.paramNames.parWithName("y").label == "y_{0}"


@pytest.mark.parametrize("burn_in", [2.5, True])
def test_burn_in_rows_must_be_whole(tmp_path, burn_in):
    with pytest.raises(ChainError, match="whole number of rows"):
        load_cobaya_chain(_table(tmp_path, "weight minuslogpost x y", _RNG_ROWS), burn_in=burn_in)


def _billion_laughs(depth=9):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, depth + 1)]
    return "\n".join(lines) + f"\nparams:\n  x:\n    latex: *a{depth}\n    prior: {{min: *a{depth}, max: 1}}\n"


def test_yaml_aliases_that_expand_exponentially_never_stall_loading(tmp_path):
    """A chain folder from someone else: yaml aliases nest a 9^10-element list in a few hundred bytes.
    Nothing may str() or walk it (this hung `iaemu plot` before). Run in a subprocess with a timeout,
    so a regression fails instead of stalling the suite."""
    import subprocess
    import sys

    prefix = _table(tmp_path, "weight minuslogpost x y", _RNG_ROWS, _billion_laughs())
    code = ("import sys\nfrom iaemu_likelihood.chains import ChainError, load_cobaya_chain\n"
            "try:\n    load_cobaya_chain(sys.argv[1], burn_in=0)\n"
            "except ChainError as exc:\n    print(exc)\n")
    run = lambda: subprocess.run([sys.executable, "-c", code, prefix], capture_output=True, text=True,  # noqa: E731
                                 timeout=60, check=True).stdout
    assert "prior of 'x' has non-numeric min/max (list, int)" in run()
    (tmp_path / "c.updated.yaml").write_text(_billion_laughs().replace("prior: {min: *a9, max: 1}",
                                                                        "prior: {min: -5, max: 5}"))
    assert run() == ""  # loads, with the parameter's name as its label
    assert load_cobaya_chain(prefix, burn_in=0).paramNames.parWithName("x").label == "x"
