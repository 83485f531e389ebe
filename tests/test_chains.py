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
