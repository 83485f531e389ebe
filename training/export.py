"""Assemble a weights folder from trained members: metadata, residual correlation, README.

Shared by ``iaemu train`` and ``iaemu convert-checkpoint``; the file layout itself is written by
:func:`iaemu_likelihood.weights_io.write_weights_folder`.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import shutil
import tempfile
from importlib import metadata as _importlib_metadata
from pathlib import Path

import numpy as np

from ..conventions import N_BINS, PARAM_NAMES, R_EDGES, STATISTICS

__all__ = ["dataset_bounds", "dataset_support", "residual_correlation", "library_versions", "build_metadata",
           "write_exported_folder", "readme_text"]

log = logging.getLogger(__name__)

#: Points written to reference_predictions.npz by default.
DEFAULT_REFERENCE_POINTS = 4


def dataset_bounds(dataset, layout=None) -> dict:
    """Input box of a dataset, ``{name: [low, high]}`` for every input of ``layout`` (default the
    seven HOD + alignment parameters).

    The seven: its provenance ``bounds``, else the design rule's bounding box, else (with a
    warning) the min/max of its points. Cosmology and redshift inputs (``point_inputs``, a dataset
    over an N-body suite): the min/max over its points, i.e. the range the suite's boxes and
    snapshots span (:meth:`~.dataset_io.IADataset.inputs`).
    """
    names = PARAM_NAMES if layout is None else layout.param_names
    prov = dataset.provenance
    box = prov.get("bounds") or (prov.get("design_rule") or {}).get("bounding_box")
    if not box:
        log.warning("dataset provenance has no 'bounds' or design_rule.bounding_box: using the min/max "
                    "of its %d points as the emulator's bounds", dataset.n_points)
    out = {}
    for name in names:
        if box and name in PARAM_NAMES:
            out[name] = [float(box[name][0]), float(box[name][1])]
        else:
            column = dataset.inputs([name])[:, 0]
            out[name] = [float(column.min()), float(column.max())]
    return out


def dataset_support(dataset) -> dict | None:
    """The ``support`` metadata entry (training-prior band, see trained_weights/README.md) of a
    dataset generated with a design rule; None when its provenance has none."""
    rule = dataset.provenance.get("design_rule")
    if not rule:
        return None
    from .design import DesignRule

    return DesignRule.from_dict(rule).support_metadata()


def residual_correlation(dataset, min_sigma_fraction: float = 1e-12) -> np.ndarray:
    """Pooled correlation (60, 60) of the standardised per-realization residuals.

    For every point and bin, each realization's residual from the point mean is divided by the
    point's ddof=1 scatter (physical units; xi is not logged); the standardised residuals of all
    realizations of all points are pooled and their correlation across the 60 bins
    ``[xi, omega, eta]`` is returned. A bin without scatter at a point contributes zero there.
    """
    parts = []
    for stat in STATISTICS:
        values = dataset.stat(stat)
        mean = values.mean(axis=1, keepdims=True)
        sd = values.std(axis=1, ddof=1, keepdims=True)
        tiny = min_sigma_fraction * np.maximum(np.abs(mean), 1e-300)
        with np.errstate(divide="ignore", invalid="ignore"):
            parts.append(np.where(sd > tiny, (values - mean) / sd, 0.0))
    z = np.concatenate(parts, axis=2).reshape(-1, len(STATISTICS) * N_BINS)
    cov = z.T @ z / z.shape[0]
    d = np.sqrt(np.diag(cov))
    d = np.where(d > 0, d, 1.0)
    corr = cov / np.outer(d, d)
    corr = 0.5 * (corr + corr.T)
    np.fill_diagonal(corr, 1.0)
    return corr


def library_versions() -> dict:
    """Versions of Python and of the libraries the weights depend on."""
    out = {"python": platform.python_version()}
    for dist in ("iaemu-likelihood", "numpy", "scipy", "torch"):
        try:
            out[dist] = _importlib_metadata.version(dist)
        except _importlib_metadata.PackageNotFoundError:
            out[dist] = None
    return out


def build_metadata(*, version: str, architecture: str, architecture_config: dict, ensemble_size: int,
                   bounds: dict, input_low, input_high, output_normalisation: dict,
                   training_set: dict, halo_catalog: dict, training: dict | None = None,
                   epistemic: dict | None = None, support: dict | None = None,
                   input_scaling: str = "box", layout=None, caveats=None) -> dict:
    """``metadata.json`` content as in docs/CONTRACTS.md (``accuracy`` left empty for evaluation;
    ``support`` only when given). ``input_scaling`` (``normalisation.input.scaling``): "box" when
    [input_low, input_high] is the training box, "standard" when they are mean -/+ std of the
    training inputs (converted reference checkpoints); it sets how the bounds are checked against
    them at load (:mod:`iaemu_likelihood.weights_checks`). ``layout`` (default
    :data:`~iaemu_likelihood.layout.DEFAULT_LAYOUT`) names the inputs, in the order of
    ``input_low``/``input_high``; a layout other than the default is recorded as ``layout``."""
    from ..layout import DEFAULT_LAYOUT

    layout = DEFAULT_LAYOUT if layout is None else layout
    names = layout.param_names
    meta = {
        "schema_version": 1,
        "version": version,
        "architecture": architecture,
        "architecture_config": dict(architecture_config),
        "ensemble_size": int(ensemble_size),
        "param_names": list(names),
        "bounds": {n: [float(bounds[n][0]), float(bounds[n][1])] for n in names},
        "r_edges": np.asarray(R_EDGES).tolist(),
        "r_units": "comoving h^-1 Mpc",
        "statistics": list(STATISTICS),
        "normalisation": {"input": {"low": np.asarray(input_low, dtype=float).tolist(),
                                    "high": np.asarray(input_high, dtype=float).tolist(),
                                    "scaling": input_scaling},
                          "output": output_normalisation},
        "training_set": dict(training_set),
        "halo_catalog": dict(halo_catalog),
        "library_versions": library_versions(),
        "accuracy": {},
        "epistemic": dict(epistemic or {}),
        "training": dict(training or {}),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if support:
        meta["support"] = dict(support)
    if caveats:
        meta["caveats"] = [str(c) for c in caveats]
    if layout != DEFAULT_LAYOUT:
        meta["layout"] = layout.to_metadata()
    return meta


def readme_text(meta: dict) -> str:
    """Short README.md of a weights folder: what it is, its ranges and how to use it."""
    rows = "\n".join(f"| {n} | {lo:g} | {hi:g} |" for n, (lo, hi) in meta["bounds"].items())
    ts = meta.get("training_set", {})
    return (
        f"# iaemu weights `{meta['version']}`\n\n"
        f"Architecture `{meta['architecture']}` ({meta['ensemble_size']} member(s); epistemic "
        f"uncertainty: {meta.get('epistemic', {}).get('method', 'n/a')}).\n"
        "Outputs: xi(r), omega(r), eta(r) (mean over mock realizations) and the variance of one "
        "realization, in 20 log bins of comoving separation 0.1-15.85 h^-1 Mpc.\n\n"
        f"Training set: {ts.get('path')} ({ts.get('n_points')} points x {ts.get('n_realizations')} "
        f"realizations, sha256 `{ts.get('sha256')}`).\n\n"
        "| parameter | low | high |\n| --- | --- | --- |\n" + rows + "\n\n"
        "```python\nfrom iaemu_likelihood import IAEmulator\n"
        f"emu = IAEmulator.load({meta['version']!r})  # or the folder path\n"
        "pred = emu.predict(theta, epistemic=True)\n```\n\n"
        "Accuracy: see report.md (written by `iaemu train --evaluate`; `iaemu evaluate` writes its "
        "reports to ./iaemu-evaluation/<version>/, never into this folder).\n"
        + ("\n## Caveats\n\n" + "".join(f"- {c}\n" for c in meta["caveats"]) if meta.get("caveats") else ""))


#: Files of a previous export or evaluation that would describe other weights.
STALE_OUTPUTS = ("report.json", "report.md", "reference_predictions.npz")


#: Prefixes (after ``.<folder name>``) of the hidden siblings an export works in.
_STAGE, _OLD = ".export-", ".replaced-"


def _weights_folder_files() -> set[str]:
    """Files of ``folder`` an export may replace: what a weights folder and its evaluation hold."""
    from ..weights_io import CHECKSUM_FILE, MASS_FUNCTION_TABLE_FILE, REQUIRED_FILES

    return {*REQUIRED_FILES, MASS_FUNCTION_TABLE_FILE, CHECKSUM_FILE, "README.md", *STALE_OUTPUTS}


def _check_replaceable(folder: Path) -> None:
    """An existing ``folder`` is replaced only if it holds nothing but weights-folder files
    (``figures/*.png`` included): anything else is someone's data, never deleted by an export."""
    from ..errors import ConfigError

    if not folder.exists():
        return
    if not folder.is_dir():
        raise ConfigError(f"output {folder} is a file; allowed: a new folder or a weights folder to replace")
    known = _weights_folder_files()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        ok = rel in known or rel == "figures" or (rel.startswith("figures/") and rel.endswith(".png")
                                                   and path.is_file())
        if not ok:
            raise ConfigError(f"output {folder} holds {rel!r}, which is not part of a weights folder; "
                              "allowed: a new folder or an earlier export (move that file or choose "
                              "another output)")


def _remove_leftovers(folder: Path) -> None:
    """Working folders of an earlier export of ``folder`` that was killed."""
    for prefix in (_STAGE, _OLD):
        for path in folder.parent.glob(f".{folder.name}{prefix}*"):
            log.warning("removing %s, left by an interrupted export", path)
            shutil.rmtree(path, ignore_errors=True)


def _swap_in(stage: Path, folder: Path) -> None:
    """Put the finished ``stage`` at ``folder`` by renames: ``folder`` is never half written."""
    if folder.exists():
        old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}{_OLD}"))
        os.rename(folder, old / folder.name)
        os.rename(stage, folder)
        shutil.rmtree(old)
    else:
        os.rename(stage, folder)


def _reference_points(emu, n: int, extra=None) -> np.ndarray:
    """``n`` points inside the emulator's bounds and training support: the seeded
    :func:`~iaemu_likelihood.verify.default_reference_points` that pass, else ``extra`` rows."""
    from ..verify import default_reference_points

    candidates = default_reference_points(emu.bounds, 50 * n, names=emu.param_names)
    if extra is not None:
        candidates = np.vstack([candidates, np.asarray(extra, dtype=float)])
    inside = np.atleast_1d(emu.in_support(candidates))
    if inside.sum() < n:
        raise ValueError(f"only {int(inside.sum())} reference points inside the training support")
    return candidates[inside][:n]


def write_exported_folder(folder, meta: dict, member_state_dicts, correlation, mass_function,
                          reference_points: int = DEFAULT_REFERENCE_POINTS, extra_points=None,
                          mass_function_table=None) -> Path:
    """Write the folder (with README.md), then reference predictions at ``reference_points``
    points inside the bounds and support (seeded, see :func:`_reference_points`; ``extra_points``
    (m, n_inputs), e.g. training points, are the fallback) computed by
    :class:`~iaemu_likelihood.emulator.IAEmulator` loading it back. ``mass_function_table``: the
    suite's host mass-function table of weights with cosmology inputs
    (:func:`~iaemu_likelihood.weights_io.write_weights_folder`)."""
    from ..emulator import IAEmulator
    from ..verify import write_reference_predictions
    from ..weights_io import write_weights_folder

    folder = Path(folder)
    _check_replaceable(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(folder)
    # written complete in a hidden sibling, then renamed into place: an export killed at any
    # point leaves the old folder (or none) at ``folder``, never a mix of old and new files
    stage = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}{_STAGE}"))
    try:
        write_weights_folder(stage, meta, member_state_dicts, correlation, mass_function,
                             extra_files={"README.md": readme_text(meta).encode()},
                             mass_function_table=mass_function_table)
        if reference_points > 0:
            emu = IAEmulator.load(stage)
            write_reference_predictions(stage, emu, _reference_points(emu, reference_points, extra_points))
        os.chmod(stage, 0o777 & ~_umask())  # mkdtemp's 0o700 would hide installed weights from users
        _swap_in(stage, folder)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("exported %s weights to %s", meta["architecture"], folder)
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
