"""Measurement files whose arrays are not real numbers: one-line errors naming the file and key.

Covers what ``np.asarray(..., dtype=float)`` would turn into a raw ValueError (strings), silently
convert (booleans, complex numbers losing their imaginary part) or let through as NaN.
"""
import json

import numpy as np
import pytest

from iaemu_likelihood.conventions import N_BINS, STATISTICS, r_centres
from iaemu_likelihood.data import DataFileError, load_measurement, save_measurement

R = r_centres()


def _valid():
    rng = np.random.default_rng(3)
    n = N_BINS * len(STATISTICS)
    a = rng.normal(size=(n, n))
    arrays = {"r": R, "statistics": np.array(STATISTICS), "cov": a @ a.T + n * np.eye(n),
              "metadata": np.array(json.dumps({"truth": {"mu_cen": 0.8}}))}
    arrays.update({s: rng.normal(size=N_BINS) for s in STATISTICS})
    return arrays


def _with(key, transform):
    arrays = _valid()
    arrays[key] = transform(arrays[key])
    return arrays


CASES = {
    "r as strings": ("r", lambda a: a.astype(str), r"'r' must hold real numbers, got dtype <U\d+, e.g. '0.1"),
    "xi as strings": ("xi", lambda a: np.array(["0.5"] * a.size), r"'xi' must hold real numbers"),
    "omega as words": ("omega", lambda a: np.array(["n/a"] * a.size),
                       r"'omega' must hold real numbers, got dtype <U3, e.g. 'n/a'"),
    "eta complex": ("eta", lambda a: a + 1j, r"'eta' must hold real numbers, got dtype complex128"),
    "cov booleans": ("cov", lambda a: a > 0, r"'cov' must hold real numbers, got dtype bool"),
    "cov strings": ("cov", lambda a: a.astype(str), r"'cov' must hold real numbers"),
    "xi with NaN": ("xi", lambda a: np.where(np.arange(a.size) == 4, np.nan, a),
                    r"'xi' contains non-finite values \(e.g. nan at index 4\)"),
    "eta with inf": ("eta", lambda a: np.where(np.arange(a.size) == 0, np.inf, a),
                     r"'eta' contains non-finite values \(e.g. inf at index 0\)"),
    "cov with inf": ("cov", lambda a: np.where(np.eye(a.shape[0], dtype=bool) & (np.arange(a.shape[0]) == 7),
                                               np.inf, a),
                     r"'cov' contains non-finite values \(e.g. inf at \(7, 7\)\)"),
    "omega 2-d": ("omega", lambda a: np.tile(a, (2, 1)), r"'omega' has shape \(2, 20\), expected \(20,\)"),
    "cov wrong shape": ("cov", lambda a: a[:-1, :-1], r"'cov' has shape \(59, 59\), expected \(60, 60\)"),
    "r 2-d": ("r", lambda a: a[None, :], r"'r' must be a non-empty 1-d array, got shape \(1, 20\)"),
    "metadata a list": ("metadata", lambda a: np.array("[1, 2]"), r"'metadata' must be a JSON object"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_load_names_file_and_key(tmp_path, case):
    key, transform, message = CASES[case]
    path = tmp_path / "measurement.npz"
    np.savez(path, **_with(key, transform))
    with pytest.raises(DataFileError, match=message) as info:
        load_measurement(path)
    text = str(info.value)
    assert text.startswith(f"measurement file {path}: ") and "\n" not in text


@pytest.mark.parametrize("case", sorted(c for c in CASES if CASES[c][0] != "metadata"))
def test_save_refuses_the_same_and_writes_nothing(tmp_path, case):
    key, transform, message = CASES[case]
    arrays = _with(key, transform)
    path = tmp_path / "measurement.npz"
    with pytest.raises(DataFileError, match=message):
        save_measurement(path, arrays["r"], {s: arrays[s] for s in STATISTICS}, arrays["cov"])
    assert not path.exists() and not list(tmp_path.iterdir())


def test_ragged_values_given_in_python(tmp_path):
    arrays = _valid()
    with pytest.raises(DataFileError, match=r"'xi' is not an array of real numbers \(ragged nesting\)"):
        save_measurement(tmp_path / "m.npz", arrays["r"],
                         {"xi": [[1.0, 2.0], [3.0]], "omega": arrays["omega"], "eta": arrays["eta"]},
                         arrays["cov"])


def test_metadata_with_a_duplicate_key_or_deep_nesting_is_named(tmp_path):
    arrays = _valid()
    for name, text, match in [("dup", '{"truth": {"mu_cen": 0.8}, "truth": {"mu_cen": -0.8}}',
                               "appears 2 times"),
                              ("deep", "[" * 100_000 + "]" * 100_000, "nesting too deep")]:
        path = tmp_path / f"{name}.npz"
        np.savez(path, **{**arrays, "metadata": np.array(text)})
        with pytest.raises(DataFileError, match=match) as info:
            load_measurement(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_arrays_declaring_more_than_the_limit_are_refused_before_loading(tmp_path):
    """A few kB of compressed zeros can declare GBs: refused from the .npy headers alone."""
    arrays = _valid()
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, **{**arrays, "cov": np.zeros((6000, 6000))})  # 288 MB declared
    assert path.stat().st_size < 2**20
    with pytest.raises(DataFileError, match="declare 275 MiB; a measurement holds at most 64 MiB"):
        load_measurement(path)
