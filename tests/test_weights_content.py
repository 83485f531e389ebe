"""Weights broken inside but re-sealed (SHA256SUMS rewritten after the edit) are refused at load.

Every check names the file, the field, its value and what is allowed; nothing such weights hold
ever reaches a prediction as NaN or is silently clipped.
"""
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from iaemu_likelihood.emulator import IAEmulator
from iaemu_likelihood.errors import WeightsIntegrityError
from iaemu_likelihood._io import npz_bytes
from iaemu_likelihood.weights_io import (CORRELATION_FILE, MASS_FUNCTION_FILE, METADATA_FILE,
                                         WEIGHTS_FILE, load_weights_folder, write_checksums,
                                         write_weights_folder)

NAN, INF = float("nan"), float("inf")
#: A band that leaves part of the synthetic box (logMmin 11.6-13.5, logM0 10.5-14) inside.
VALID_SUPPORT = {"type": "linear_band", "pivot": "logMmin", "description": "test band",
                 "bands": {"logM0": {"slope": 1.0, "low_intercept": -3.0, "high_intercept": 0.5,
                                     "floor": None},
                           "sigma_logM": {"slope": 0.0, "low_intercept": 0.1, "high_intercept": 0.6,
                                          "floor": 0.05}}}


@pytest.fixture
def folder(synthetic_weights, tmp_path):
    return Path(shutil.copytree(synthetic_weights, tmp_path / "w"))


def _edit_metadata(folder, edit):
    meta = json.loads((folder / METADATA_FILE).read_text())
    edit(meta)
    (folder / METADATA_FILE).write_text(json.dumps(meta))  # NaN / Infinity as Python's json writes them
    write_checksums(folder)  # re-sealed: the checksums alone cannot tell


def _edit_arrays(folder, edit, name=WEIGHTS_FILE):
    with np.load(folder / name, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)
    (folder / name).write_bytes(npz_bytes(arrays, compressed=False))
    write_checksums(folder)


def _with_support_and_epistemic(meta):
    meta["support"] = json.loads(json.dumps(VALID_SUPPORT))
    meta["epistemic"] = {"method": "deep_ensemble", "scale": {"xi": 2.0, "omega": 3.0, "eta": 4.0},
                         "correlation": np.eye(60).tolist()}


def _bad_psd():
    corr = np.eye(60)
    corr[0, 1] = corr[1, 0] = corr[0, 2] = corr[2, 0] = 0.9
    corr[1, 2] = corr[2, 1] = -0.9
    return corr


def _set(*path, value):
    def edit(meta):
        _with_support_and_epistemic(meta)
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value(target[path[-1]]) if callable(value) else value
    return edit


METADATA_CASES = {
    "bounds NaN": (_set("bounds", "logMmin", value=[NAN, 13.5]), r"bounds\['logMmin'\] = \[nan, 13\.5\]; allowed: .*finite"),
    "mu outside [-1, 1]": (_set("bounds", "mu_cen", value=[-1.5, 1.0]), r"bounds\['mu_cen'\] = \[-1\.5, 1\.0\]; allowed: inside the physical range \[-1, 1\]"),
    "sigma_logM = 0": (_set("bounds", "sigma_logM", value=[0.0, 0.8]), r"bounds\['sigma_logM'\] .*physical range \(0, 5\]"),
    "alpha < 0": (_set("bounds", "alpha", value=[-0.2, 1.4]), r"bounds\['alpha'\] .*physical range \(0, 5\]"),
    "mass 10^19": (_set("bounds", "logM1", value=[12.5, 19.0]), r"bounds\['logM1'\] .*physical range \[8, 16\]"),
    "low > high": (_set("bounds", "logM0", value=[14.0, 10.5]), r"bounds\['logM0'\] .*low < high"),
    "bounds not numbers": (_set("bounds", "alpha", value="wide"), r"bounds\['alpha'\] = 'wide'; allowed: \[low, high\]"),
    "bounds beyond normalisation": (_set("bounds", "logMmin", value=[11.0, 13.5]), r"bounds\['logMmin'\] .*inside the normalisation box"),
    "input normalisation NaN": (_set("normalisation", "input", "high", value=lambda v: v[:2] + [NAN] + v[3:]), r"normalisation\.input\.high = .*nan.*allowed: 7 finite numbers"),
    "output mean NaN": (_set("normalisation", "output", "eta", "mean", value=lambda v: [NAN] + v[1:]), r"normalisation\.output\.eta\.mean = \[nan.*allowed: 20 finite numbers"),
    "output std < 0": (_set("normalisation", "output", "xi", "std", value=lambda v: [-1.0] + v[1:]), r"normalisation\.output\.xi\.std .*std must be > 0"),
    "support slope NaN": (_set("support", "bands", "logM0", "slope", value=NAN), r"support\.bands\.logM0\.slope = nan; allowed: a finite number"),
    "support low >= high": (_set("support", "bands", "logM0", "high_intercept", value=-4.0), r"support\.bands\.logM0 .*low_intercept < high_intercept"),
    "support band empty": (_set("support", "bands", "logM0", value={"slope": 1.0, "low_intercept": 5.0, "high_intercept": 6.0, "floor": None}), r"support\.bands = .*every point would be refused"),
    "support type": (_set("support", "type", value="spline"), r"support\.type = 'spline'; allowed: 'linear_band'"),
    "support pivot": (_set("support", "pivot", value="logMhalo"), r"support\.pivot = 'logMhalo'"),
    "epistemic factor 0": (_set("epistemic", "scale", "xi", value=0.0), r"epistemic\.scale\.xi = 0\.0; allowed: a finite factor > 0"),
    "epistemic factor inf": (_set("epistemic", "scale", "eta", value=INF), r"epistemic\.scale\.eta = inf; allowed: a finite number"),
    "epistemic factor unknown": (_set("epistemic", "scale", "zeta", value=1.0), r"epistemic\.scale key = 'zeta'"),
    "epistemic correlation not PSD": (_set("epistemic", "correlation", value=_bad_psd().tolist()), r"epistemic\.correlation smallest eigenvalue = -.*positive semi-definite"),
    "epistemic correlation diagonal": (_set("epistemic", "correlation", value=(2 * np.eye(60)).tolist()), r"epistemic\.correlation\[0, 0\] = 2\.0; allowed: 1 \(unit diagonal"),
    "var_floor < 0": (_set("architecture_config", "var_floor", value=-1.0), r"architecture_config\.var_floor = -1\.0; allowed: > 0"),
    "caveats not a list": (_set("caveats", value="trust me"), r"caveats = 'trust me'; allowed: a list of sentences"),
    "caveat empty": (_set("caveats", value=["fine", " "]), r"caveats\[1\] = ' '; allowed: a non-empty string"),
}


def test_valid_support_and_epistemic_entries_load(folder):
    _edit_metadata(folder, _with_support_and_epistemic)
    emu = IAEmulator.load(folder)
    assert emu.in_support(emu.support_point())
    assert np.all(np.isfinite(emu.predict(emu.support_point(), epistemic=True).vector()))


@pytest.mark.parametrize("case", sorted(METADATA_CASES))
def test_resealed_bad_metadata_is_refused_naming_file_field_value(folder, case):
    edit, message = METADATA_CASES[case]
    _edit_metadata(folder, edit)
    with pytest.raises(WeightsIntegrityError, match=message) as info:
        IAEmulator.load(folder)
    text = str(info.value)
    assert str(folder / METADATA_FILE) in text and "allowed:" in text and "\n" not in text


def test_metadata_that_is_not_an_object(folder):
    (folder / METADATA_FILE).write_text("[1, 2]")
    write_checksums(folder)
    with pytest.raises(WeightsIntegrityError, match=r"metadata\.json: content = 'list'; allowed: a JSON object"):
        load_weights_folder(folder)


def _nan_at(key, index):
    def edit(arrays):
        arrays[key] = arrays[key].copy()
        arrays[key][index] = np.nan
    return edit


def _replace(key, value):
    def edit(arrays):
        arrays[key] = value(arrays[key])
    return edit


def _drop(suffix):
    def edit(arrays):
        for key in [k for k in arrays if k.endswith(suffix)]:
            del arrays[key]
    return edit


TENSOR_CASES = {
    "NaN weight": (_nan_at("member2/hidden.1.weight", (3, 5)), r"weights\.npz: member2/hidden\.1\.weight\[3, 5\] = nan; allowed: finite values \(1 of 4096"),
    "inf bias": (_replace("member0/out.bias", lambda a: np.where(np.arange(a.size) == 7, np.float32(np.inf), a)), r"member0/out\.bias\[7\] = inf"),
    "wrong shape": (_replace("member1/hidden.0.weight", lambda a: np.hstack([a, a[:, :1]])), r"member1/hidden\.0\.weight shape = \(64, 8\); allowed: \(64, 7\)"),
    "float64 tensor": (_replace("member3/out.weight", lambda a: a.astype(np.float64)), r"member3/out\.weight dtype = 'float64'; allowed: float32"),
    "missing layer": (_drop("/out.bias"), r"member0 keys = .*'out\.bias'.*allowed: exactly the state-dict keys of a 'mlp' network"),
}


@pytest.mark.parametrize("case", sorted(TENSOR_CASES))
def test_resealed_bad_tensors_are_refused(folder, case):
    edit, message = TENSOR_CASES[case]
    _edit_arrays(folder, edit)
    with pytest.raises(WeightsIntegrityError, match=message) as info:
        IAEmulator.load(folder)
    assert str(folder / WEIGHTS_FILE) in str(info.value)


def test_pickled_object_array_is_never_unpickled(folder):
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["member0/out.bias"] = np.array([{"payload": 1}], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # numpy pickles the object array
    (folder / WEIGHTS_FILE).write_bytes(buffer.getvalue())
    write_checksums(folder)
    with pytest.raises(WeightsIntegrityError, match=r"weights\.npz: array 'member0/out\.bias' cannot be read without pickle"):
        load_weights_folder(folder)


def test_garbage_weights_file_is_named(folder):
    (folder / WEIGHTS_FILE).write_bytes(b"not a zip archive")
    write_checksums(folder)
    with pytest.raises(WeightsIntegrityError, match=r"weights\.npz: cannot be read as a numpy file"):
        load_weights_folder(folder)


def test_finite_tensors_that_predict_inf_are_refused_at_load(folder):
    # log xi = 1e4 * std + mean: exp overflows to inf although every tensor is finite
    _edit_arrays(folder, _replace("member0/out.bias", lambda a: np.where(np.arange(a.size) < 60, np.float32(1e4), a)))
    with pytest.raises(WeightsIntegrityError, match=r"the weights predict xi = inf at the support point .*allowed: finite"):
        IAEmulator.load(folder)


@pytest.mark.parametrize("make, message", [
    (lambda c: np.where(np.eye(60, k=1) > 0, np.nan, c), r"residual correlation\[0, 1\] = nan"),
    (lambda c: _bad_psd(), r"residual correlation smallest eigenvalue = -"),
    (lambda c: c + 0.01 * np.eye(60, k=3), r"residual correlation\[\d+, \d+\] - residual correlation\[\d+, \d+\] = .*symmetric"),
])
def test_resealed_bad_residual_correlation(folder, make, message):
    corr = np.load(folder / CORRELATION_FILE, allow_pickle=False)
    np.save(folder / CORRELATION_FILE, make(corr))
    write_checksums(folder)
    with pytest.raises(WeightsIntegrityError, match=message) as info:
        load_weights_folder(folder)
    assert str(folder / CORRELATION_FILE) in str(info.value)


@pytest.mark.parametrize("key, value, message", [
    ("log10_mass_edges", lambda a: np.concatenate([[np.nan], a[1:]]), r"log10_mass_edges\[0\] = nan"),
    ("volume", lambda a: np.float64(np.inf), r"volume = inf; allowed: a finite volume"),
])
def test_resealed_bad_mass_function(folder, key, value, message):
    _edit_arrays(folder, _replace(key, value), MASS_FUNCTION_FILE)
    with pytest.raises(WeightsIntegrityError, match=message) as info:
        load_weights_folder(folder)
    assert str(folder / MASS_FUNCTION_FILE) in str(info.value)


def test_writer_refuses_what_the_loader_refuses(folder, tmp_path):
    meta, members, corr, mf = load_weights_folder(folder)
    members = [dict(m) for m in members]
    members[1]["hidden.0.bias"] = np.full_like(members[1]["hidden.0.bias"], np.nan)
    with pytest.raises(WeightsIntegrityError, match=r"member1/hidden\.0\.bias\[0\] = nan"):
        write_weights_folder(tmp_path / "new", meta, members, corr, mf)
    assert not (tmp_path / "new" / WEIGHTS_FILE).exists()


def test_standard_input_scaling_allows_a_few_sigma(folder):
    """Converted reference checkpoints map mean -/+ std to -/+1: bounds may lie a few std out."""
    def scaling(sigmas):
        def edit(meta):
            low = np.array([meta["bounds"][n][0] for n in meta["param_names"]])
            high = np.array([meta["bounds"][n][1] for n in meta["param_names"]])
            centre, half = 0.5 * (low + high), 0.5 * (high - low) / sigmas
            meta["normalisation"]["input"] = {"low": (centre - half).tolist(),
                                              "high": (centre + half).tolist(), "scaling": "standard"}
        return edit

    _edit_metadata(folder, scaling(1.7))
    load_weights_folder(folder)
    _edit_metadata(folder, scaling(8.0))
    with pytest.raises(WeightsIntegrityError, match=r"bounds\['mu_cen'\] .*within 6 standard deviations"):
        load_weights_folder(folder)


def _shipped_copy(version, tmp_path):
    from iaemu_likelihood.weights import available_versions, resolve_weights_dir

    if version not in available_versions():
        pytest.skip(f"{version} is not shipped in this checkout")
    return Path(shutil.copytree(resolve_weights_dir(version), tmp_path / version))


def test_factorised_weights_need_uncentred_omega_and_eta(tmp_path):
    folder = _shipped_copy("iaemu-factorised-v1", tmp_path)
    _edit_metadata(folder, lambda m: m["normalisation"]["output"]["omega"].update(
        mean=[0.1] + m["normalisation"]["output"]["omega"]["mean"][1:]))
    with pytest.raises(WeightsIntegrityError, match=r"normalisation\.output\.omega\.mean = \[0\.1, 0\.0.*"
                                                    r"allowed: all 0 for a 'factorised' network"):
        IAEmulator.load(folder)


def test_paper_config_that_does_not_fit_the_tensors_is_refused_without_building_it(tmp_path):
    """A huge hidden_dim would need ~10^15 parameters: shapes come from a meta-device build."""
    folder = _shipped_copy("iaemu-paper-v1", tmp_path)
    _edit_metadata(folder, lambda m: m["architecture_config"].update(hidden_dim=10 ** 7))
    with pytest.raises(WeightsIntegrityError, match=r"weights\.npz: member0/encoder\.layer1\.0\.weight shape = "
                                                    r"\(128, 7\); allowed: \(10000000, 7\)"):
        load_weights_folder(folder)
    _edit_metadata(folder, lambda m: m["architecture_config"].update(hidden_dim=128, depth=3))
    with pytest.raises(WeightsIntegrityError, match=r"architecture_config = .*cannot build a 'paper' network"):
        load_weights_folder(folder)


def _metadata_text(folder, text):
    (folder / METADATA_FILE).write_text(text)
    write_checksums(folder)


def _metadata_bytes(folder, data):
    (folder / METADATA_FILE).write_bytes(data)
    write_checksums(folder)


def _huge_ensemble(folder):
    _edit_metadata(folder, lambda meta: meta.update(ensemble_size=10 ** 30))


@pytest.mark.parametrize("make, message", [
    (lambda f: _metadata_text(f, (f / METADATA_FILE).read_text().replace("{", '{"architecture": "paper", ', 1)),
     r"metadata\.json: not readable as JSON \(key 'architecture' appears 2 times in one object\)"),
    (lambda f: _metadata_text(f, "[" * 100_000 + "]" * 100_000), r"metadata\.json: not readable as JSON \(nesting too deep\)"),
    (lambda f: _metadata_bytes(f, b'{"a": "\xff"}'), r"metadata\.json: not readable as JSON"),
    (_huge_ensemble, r"weights\.npz: number of members = 4; allowed: 10{30} \(ensemble_size"),
    (lambda f: _edit_metadata(f, lambda meta: meta.update(version={"a": [1]})), r"version = \{'a': \[1\]\}; allowed: a non-empty printable string"),
    (lambda f: _edit_metadata(f, lambda meta: meta.update(version="v1\n../x")), r"version = 'v1\\n\.\./x'; allowed"),
])
def test_metadata_that_parses_ambiguously_or_sizes_memory_is_refused(folder, make, message):
    """Duplicate keys (plain json keeps the last silently), nesting that overflows the parser, bad
    UTF-8, an ensemble size that would size an allocation (10^30 members: killed for memory before),
    a version that is not a plain string: one WeightsIntegrityError naming the file, at load and reseal."""
    make(folder)
    for call in (IAEmulator.load, lambda f: load_weights_folder(f, check_sums=False)):
        with pytest.raises(WeightsIntegrityError, match=message) as info:
            call(folder)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", [bool, complex, np.str_])
def test_correlation_of_booleans_complex_or_strings_is_refused_not_converted(folder, dtype):
    np.save(folder / CORRELATION_FILE, np.eye(60).astype(dtype))
    write_checksums(folder)
    with pytest.raises(WeightsIntegrityError, match=r"residual correlation = 'dtype .*'; allowed: a \(60, 60\) "
                       r"array of real numbers"):
        IAEmulator.load(folder)


def test_mass_function_without_any_halo_is_refused(folder):
    """All bins empty: n_gal would be 0 and f_sat 0/0 at every point."""
    _edit_arrays(folder, lambda a: a.update(counts=np.zeros_like(a["counts"])), MASS_FUNCTION_FILE)
    with pytest.raises(WeightsIntegrityError, match=r"halo_mass_function\.npz: counts = 'all \d+ bins "
                       r"empty'; allowed: at least one halo"):
        IAEmulator.load(folder)


def test_arrays_declaring_more_memory_than_a_weights_folder_needs_are_refused_before_reading(
        folder, monkeypatch):
    """A few kB of compressed zeros can declare GBs ("zip bomb"): the declared size is read from the
    .npy headers and refused before any array is allocated (limit lowered here to keep the test small)."""
    import iaemu_likelihood.weights_io as weights_io

    monkeypatch.setattr(weights_io, "MAX_DECLARED_BYTES", 4 * 1024 ** 2)
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["member0/zeros"] = np.zeros(2 * 1024 ** 2, dtype=np.float32)  # 8 MiB, ~8 kB compressed
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    (folder / WEIGHTS_FILE).write_bytes(buffer.getvalue())
    assert (folder / WEIGHTS_FILE).stat().st_size < 2 * 1024 ** 2
    write_checksums(folder)
    loaded = []
    monkeypatch.setattr(np, "load", lambda *a, **k: loaded.append(a) or pytest.fail("np.load called"))
    with pytest.raises(WeightsIntegrityError, match=r"weights\.npz: its arrays declare 8\.\d MiB; allowed: "
                       r"at most 4\.0 MiB .*refused before reading"):
        load_weights_folder(folder)
    assert not loaded


def test_weights_that_overflow_away_from_the_checked_point_never_return_nan(folder):
    """Load checks one point (the box centre, where a first-layer weight on mu_cen contributes
    nothing); at mu_cen = 1 these finite weights overflow. predict, covariance and batches raise a
    WeightsIntegrityError naming the point instead of returning inf/NaN."""
    _edit_arrays(folder, _replace("member0/hidden.0.weight",
                                  lambda a: np.where(np.arange(a.shape[1]) == 0, np.float32(3e4), a)))
    emu = IAEmulator.load(folder)  # fine at the centre
    corner = emu.reference_point.copy()
    corner[0] = emu.bounds["mu_cen"][1]
    with np.errstate(all="ignore"):
        for call in (lambda: emu.predict(corner), lambda: emu.covariance(corner),
                     lambda: emu.predict(np.vstack([emu.reference_point, corner]), epistemic=True),
                     lambda: emu.predict(np.tile(corner, (600, 1)))):
            with pytest.raises(WeightsIntegrityError, match=r"the weights predict (xi|omega|eta)(_var|_epi_var)?"
                               r"\[\d+\] = (inf|-inf|nan) at \{'mu_cen': 1\.0, .*allowed: finite values"):
                call()
    assert np.all(np.isfinite(emu.predict(emu.reference_point).vector()))
