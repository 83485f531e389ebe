"""Measurement files: round trip, validation messages, selections, the bundled example."""
import json

import numpy as np
import pytest

from iaemu_likelihood.conventions import N_BINS, PARAM_NAMES, STATISTICS, r_centres
from iaemu_likelihood.data import (DataFileError, Measurement, example_data_path, load_measurement,
                                   save_measurement)

R = r_centres()


def _arrays(n_r=N_BINS, stats=STATISTICS, seed=0):
    rng = np.random.default_rng(seed)
    n = n_r * len(stats)
    a = rng.normal(size=(n, n))
    values = {s: rng.normal(size=n_r) for s in stats}
    return R[N_BINS - n_r:], values, a @ a.T + n * np.eye(n)


def _write_raw(path, **arrays):
    np.savez(path, **arrays)
    return path


def _valid_raw(**changes):
    r, values, cov = _arrays()
    raw = {"r": r, "statistics": np.array(STATISTICS), "cov": cov,
           "metadata": np.array(json.dumps({"truth": {"mu_cen": 0.8}})), **values}
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not None}


def test_round_trip(tmp_path):
    r, values, cov = _arrays(n_r=12, stats=("xi", "eta"))
    path = save_measurement(tmp_path / "sub" / "m.npz", r, values, cov, {"truth": {"mu_cen": 0.8}})
    m = load_measurement(path, r_bins=R)
    assert m.statistics == ("xi", "eta")
    np.testing.assert_array_equal(m.r, r)
    np.testing.assert_array_equal(m.vector(), np.concatenate([values["xi"], values["eta"]]))
    np.testing.assert_array_equal(m.cov, cov)
    assert m.metadata == {"truth": {"mu_cen": 0.8}}
    assert m.source == str(path)
    assert [p.name for p in path.parent.iterdir()] == ["m.npz"]  # no temporary file left


def test_loaded_arrays_are_read_only(tmp_path):
    r, values, cov = _arrays()
    m = load_measurement(save_measurement(tmp_path / "m.npz", r, values, cov))
    with pytest.raises(ValueError):
        m.cov[0, 0] = 1.0


def test_selection_maps_data_subset_to_emulator_vector(tmp_path):
    r, values, cov = _arrays(n_r=8, stats=("omega", "eta"))
    m = load_measurement(save_measurement(tmp_path / "m.npz", r, values, cov))
    data_idx, emu_idx = m.selection(statistics=["eta"], r_min=2.0)
    keep = np.flatnonzero(r >= 2.0)
    np.testing.assert_array_equal(data_idx, 8 + keep)
    np.testing.assert_array_equal(emu_idx, 2 * N_BINS + (N_BINS - 8) + keep)
    np.testing.assert_array_equal(m.vector()[data_idx], values["eta"][keep])
    with pytest.raises(ValueError, match="not available"):
        m.selection(statistics=["xi"])
    with pytest.raises(ValueError, match="leave no bin"):
        m.selection(r_max=0.01)


BAD_FILES = {
    "missing cov": (dict(cov=None), "missing key"),
    "missing r": (dict(r=None), "missing key"),
    "missing statistics": (dict(statistics=None), "missing key"),
    "listed statistic absent": (dict(eta=None), "'eta' is missing"),
    "unlisted statistic": (dict(statistics=np.array(["xi", "omega"])), "not listed"),
    "unknown statistic": (dict(statistics=np.array(["xi", "omega", "gamma"])), "unknown statistic"),
    "statistics order": (dict(statistics=np.array(["omega", "xi", "eta"])), "order"),
    "statistics not strings": (dict(statistics=np.array([1, 2, 3])), "strings"),
    "unknown key": (dict(extra=np.zeros(3)), "unknown key"),
    "value shape": (dict(xi=np.zeros(19)), "shape"),
    "cov shape": (dict(cov=np.eye(40)), "'cov' has shape"),
    "nan value": (dict(omega=np.full(N_BINS, np.nan)), "non-finite"),
    "inf cov": (dict(cov=np.full((60, 60), np.inf)), "non-finite"),
    "asymmetric cov": (dict(cov=np.eye(60) + np.triu(np.ones((60, 60)), 1)), "not symmetric"),
    "indefinite cov": (dict(cov=np.diag(np.r_[-1.0, np.ones(59)])), "not positive definite"),
    "zero cov": (dict(cov=np.zeros((60, 60))), "zero"),
    "r decreasing": (dict(r=R[::-1]), "strictly increasing"),
    "r negative": (dict(r=-R), "positive"),
    "r nan": (dict(r=np.r_[np.nan, R[1:]]), "finite"),
    "r 2-d": (dict(r=R[None, :]), "1-d"),
    "metadata not json": (dict(metadata=np.array("{not json")), "not valid JSON"),
    "metadata not object": (dict(metadata=np.array("[1, 2]")), "JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_files_name_file_and_problem(tmp_path, case):
    changes, message = BAD_FILES[case]
    path = _write_raw(tmp_path / "bad.npz", **_valid_raw(**changes))
    with pytest.raises(DataFileError, match=message) as info:
        load_measurement(path)
    assert str(path) in str(info.value)


def test_r_off_the_emulator_bins(tmp_path):
    path = _write_raw(tmp_path / "m.npz", **_valid_raw(r=R * 1.01))
    load_measurement(path)  # fine without bins to check against
    with pytest.raises(DataFileError, match="not emulator bin centres") as info:
        load_measurement(path, r_bins=R)
    assert str(path) in str(info.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_measurement(tmp_path / "absent.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataFileError, match="cannot be read"):
        load_measurement(tmp_path / "text.npz")


def test_pickled_objects_are_refused(tmp_path):
    raw = _valid_raw(metadata=np.array([{"a": 1}], dtype=object))
    path = _write_raw(tmp_path / "m.npz", **raw)
    with pytest.raises(DataFileError, match="cannot be read"):
        load_measurement(path)


def test_metadata_is_optional(tmp_path):
    path = _write_raw(tmp_path / "m.npz", **_valid_raw(metadata=None))
    assert load_measurement(path).metadata == {}


def test_save_validates_and_writes_nothing_on_error(tmp_path):
    r, values, cov = _arrays()
    with pytest.raises(DataFileError, match="not positive definite"):
        save_measurement(tmp_path / "m.npz", r, values, -cov)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataFileError, match="at least one|no statistic"):
        save_measurement(tmp_path / "m.npz", r, {}, cov)


def test_measurement_symmetrises_within_tolerance():
    r, values, cov = _arrays()
    noisy = cov + 1e-12 * np.abs(cov).max() * np.triu(np.ones_like(cov), 1)
    m = Measurement(r=r, statistics=STATISTICS, values=values, cov=noisy)
    np.testing.assert_array_equal(m.cov, m.cov.T)


def test_bundled_example():
    try:
        path = example_data_path()
    except DataFileError as exc:  # not made yet: the message must say how to get it
        assert "make_example_data" in str(exc)
        return
    m = load_measurement(path, r_bins=R)
    truth = m.metadata["truth"]
    assert set(truth) == set(PARAM_NAMES)
    assert truth["mu_cen"] == 0.8 and truth["mu_sat"] == 0.5


def test_example_names_and_data_file_resolution(tmp_path, monkeypatch):
    from iaemu_likelihood.data import EXAMPLES, resolve_data_file

    assert resolve_data_file(None) == resolve_data_file("") == example_data_path()
    assert resolve_data_file("example") == example_data_path("example")
    assert set(EXAMPLES) == {"example", "example_cosmology"}
    with pytest.raises(DataFileError, match=r"example measurement 'example_v9': unknown; allowed"):
        example_data_path("example_v9")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IAEMU_TEST_DIR", str(tmp_path / "sub"))
    assert resolve_data_file("m.npz") == tmp_path / "m.npz"
    assert resolve_data_file("$IAEMU_TEST_DIR/m.npz") == tmp_path / "sub" / "m.npz"
