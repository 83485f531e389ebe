"""``iaemu evaluate``: score a weights folder on a test set; write report.json, report.md, figures.

Usage::

    iaemu evaluate iaemu-factorised-v1 --data training/data/test_deep.npz [--output DIR]

Everything is compared with the test set's realization mean ("truth", itself noisy with
scatter sigma/sqrt(n_realizations)) and the realizations' ddof=1 scatter ``sigma``; the report
gives the noise floor a perfect emulator would reach next to each accuracy figure. The
metric definitions are in :mod:`.metrics`.

The report goes to an output folder (default ``./iaemu-evaluation/<version>/``), every file
written atomically; the weights folder is never modified, so evaluating installed weights or a
folder someone sent you cannot break it. Only ``iaemu train --evaluate`` puts the report into
the weights folder it has just created (``into_weights=True``: report files, the ``accuracy``
entry of metadata.json, then a re-validated ``SHA256SUMS``, see
:func:`iaemu_likelihood.weights_io.reseal_folder`).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes
from ..conventions import STATISTICS, r_centres
from ..config_checks import parse_name_value
from ..errors import ConfigError
from . import metrics as M
from .dataset_io import file_sha256, load_dataset

__all__ = ["TARGETS", "evaluate_predictions", "evaluate_folder", "default_output", "build_parser",
           "main", "DEFAULT_OUTPUT_ROOT"]

log = logging.getLogger(__name__)

#: Accuracy targets of issue 5: name -> (summary key, lower bound, upper bound).
TARGETS = {
    "xi mean |fractional error|": ("xi_mean_abs_frac_error", None, 0.03),
    "omega mean |fractional error| (|omega| > 3 sigma)": ("omega_mean_abs_frac_error", None, 0.05),
    "eta median |residual| / sigma": ("eta_median_abs_residual_sigma", None, 1.0),
    "xi calibration bias (dex)": ("xi_calibration_dex", -0.2, 0.2),
    "omega calibration bias (dex)": ("omega_calibration_dex", -0.2, 0.2),
    "eta calibration bias (dex)": ("eta_calibration_dex", -0.2, 0.2),
    "xi 68% coverage": ("xi_coverage_68", 0.60, 0.76),
    "omega 68% coverage": ("omega_coverage_68", 0.60, 0.76),
    "eta 68% coverage": ("eta_coverage_68", 0.60, 0.76),
}
#: Significance threshold (in sigma of the realization mean) for fractional errors.
NSIGMA = 3.0
LATENCY_CALLS = 300
#: Folder (relative to the current directory) under which ``iaemu evaluate`` writes
#: ``<version>/report.json`` etc. unless ``--output`` is given.
DEFAULT_OUTPUT_ROOT = "iaemu-evaluation"


def _pooled(a):
    """(n, bins) -> (n * bins, 1): one summary over every point and bin."""
    return np.asarray(a, dtype=float).reshape(-1, 1)


def evaluate_predictions(pred: dict, samples: dict) -> dict:
    """Metrics of predictions against test realizations.

    Parameters
    ----------
    pred : dict
        For each statistic ``s``: ``pred[s]`` (n, 20) mean, ``pred[s + "_var"]`` aleatoric and
        ``pred[s + "_epi_var"]`` epistemic variance (physical units).
    samples : dict
        ``samples[s]``: (n, n_realizations, 20) test realizations.

    Returns
    -------
    dict
        ``summary`` (one number per metric and statistic, pooled over points and bins) and
        ``per_bin`` (statistic -> metric -> list of 20).
    """
    summary, per_bin = {}, {}
    for stat in STATISTICS:
        real = np.asarray(samples[stat], dtype=float)
        n_real = real.shape[1]
        true, sigma = real.mean(axis=1), real.std(axis=1, ddof=1)
        p, ale, epi = pred[stat], pred[f"{stat}_var"], pred[f"{stat}_epi_var"]
        total_sigma = np.sqrt(ale + epi)
        sig = M.significant_mask(true, sigma, n_real, NSIGMA)
        frac_mask = None if stat == "xi" else sig
        bins = {
            "mean_abs_frac_error": M.mean_abs_fractional_error(p, true, frac_mask),
            "noise_floor_frac_error": M.noise_floor_fractional(true, sigma, n_real, frac_mask),
            "fraction_significant": sig.mean(axis=0),
            "median_abs_residual_sigma": M.median_residual_sigma(p, true, sigma),
            "median_residual_sigma": M.median_residual_sigma(p, true, sigma, absolute=False),
            "spearman": M.spearman_per_bin(p, true),
            "nrmse": M.nrmse(p, true),
            "smape": M.smape(p, true),
            "calibration_dex": M.calibration_dex(np.sqrt(ale), sigma),
            "coverage_68": M.coverage(p, total_sigma, real, 0.68),
            "coverage_95": M.coverage(p, total_sigma, real, 0.95),
            "mean_coverage_68": M.coverage(p, np.sqrt(ale / n_real + epi), true, 0.68),
            "epistemic_to_aleatoric": M.epistemic_to_aleatoric(epi, ale),
            "epistemic_to_mean_error": M.median_residual_sigma(p, true, np.sqrt(epi + sigma ** 2 / n_real)),
        }
        per_bin[stat] = {k: [None if not np.isfinite(v) else float(v) for v in arr]
                         for k, arr in bins.items()}
        pooled_mask = None if frac_mask is None else _pooled(frac_mask)
        s = {
            "mean_abs_frac_error": M.mean_abs_fractional_error(_pooled(p), _pooled(true), pooled_mask)[0],
            "noise_floor_frac_error": M.noise_floor_fractional(_pooled(true), _pooled(sigma), n_real,
                                                               pooled_mask)[0],
            "median_abs_residual_sigma": M.median_residual_sigma(_pooled(p), _pooled(true), _pooled(sigma))[0],
            "noise_floor_median_abs_residual_sigma": M.noise_floor_median_sigma(n_real),
            "spearman_median_over_bins": float(np.nanmedian(bins["spearman"])),
            "nrmse_median_over_bins": float(np.nanmedian(bins["nrmse"])),
            "smape": float(np.mean(bins["smape"])),
            "calibration_dex": M.calibration_dex(_pooled(np.sqrt(ale)), _pooled(sigma))[0],
            "calibration_dex_noise_bias": M.expected_log10_std_bias(n_real),
            "coverage_68": float(np.mean(bins["coverage_68"])),
            "coverage_95": float(np.mean(bins["coverage_95"])),
            "mean_coverage_68": float(np.mean(bins["mean_coverage_68"])),
            "epistemic_to_aleatoric": M.epistemic_to_aleatoric(_pooled(epi), _pooled(ale))[0],
        }
        for key, value in s.items():
            summary[f"{stat}_{key}"] = None if not np.isfinite(value) else float(value)
    return {"summary": summary, "per_bin": per_bin}


def _check_targets(summary: dict) -> dict:
    out = {}
    for name, (key, low, high) in TARGETS.items():
        value = summary.get(key)
        ok = value is not None and (low is None or value >= low) and (high is None or value <= high)
        out[name] = {"key": key, "value": value, "low": low, "high": high, "pass": bool(ok)}
    return out


def _latency(emu, theta) -> dict:
    one = np.array(theta[0], dtype=np.float64)
    emu.predict(one)
    times = []
    for _ in range(LATENCY_CALLS):
        t = time.perf_counter()
        emu.predict(one)
        times.append(time.perf_counter() - t)
    batch = np.repeat(theta, max(1, 10000 // len(theta)) + 1, axis=0)[:10000]
    t = time.perf_counter()
    emu.predict(batch)
    dt = time.perf_counter() - t
    return {"single_point_median_ms": 1e3 * float(np.median(times)),
            "batch_points_per_s": float(len(batch) / dt), "note": "this machine, at evaluation time"}


def _markdown(report: dict) -> str:
    s, t = report["summary"], report["targets"]
    lines = [f"# Evaluation of `{report['version']}`", "",
             f"Test set `{report['test_set']['path']}`: {report['test_set']['n_used']} points x "
             f"{report['test_set']['n_realizations']} realizations (sha256 "
             f"`{report['test_set']['sha256'][:16]}...`).", "",
             "| target | value | allowed | pass |", "| --- | --- | --- | --- |"]
    for name, e in t.items():
        rng = f"[{'' if e['low'] is None else e['low']}, {'' if e['high'] is None else e['high']}]"
        val = "n/a" if e["value"] is None else f"{e['value']:.4g}"
        lines.append(f"| {name} | {val} | {rng} | {'yes' if e['pass'] else 'NO'} |")
    lines += ["", "| statistic | mean abs frac err (floor) | median abs res/sigma (floor) | "
              "calib. dex | cov. 68% | cov. 95% | means in 68% | epi/ale sigma | Spearman | NRMSE | SMAPE |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def f(key, fmt=".3g"):
        v = s.get(key)
        return "n/a" if v is None else format(v, fmt)

    for st in STATISTICS:
        lines.append(
            f"| {st} | {f(st + '_mean_abs_frac_error')} ({f(st + '_noise_floor_frac_error')}) | "
            f"{f(st + '_median_abs_residual_sigma')} ({f(st + '_noise_floor_median_abs_residual_sigma')}) | "
            f"{f(st + '_calibration_dex', '+.3f')} | {f(st + '_coverage_68')} | {f(st + '_coverage_95')} | "
            f"{f(st + '_mean_coverage_68')} | "
            f"{f(st + '_epistemic_to_aleatoric')} | {f(st + '_spearman_median_over_bins')} | "
            f"{f(st + '_nrmse_median_over_bins')} | {f(st + '_smape')} |")
    lat = report.get("latency", {})
    if lat:
        lines += ["", f"Latency (this machine): {lat['single_point_median_ms']:.3f} ms per single point, "
                      f"{lat['batch_points_per_s']:.0f} points/s batched."]
    lines += ["", "Truth = mean of the test realizations; sigma = their ddof=1 scatter. Floors: what a "
              "perfect emulator scores against that noisy mean. omega (and eta) fractional errors only "
              "where |mean| > 3 sigma/sqrt(n). Coverage: fraction of single test realizations inside "
              "pred +- z sqrt(aleatoric + epistemic); means in 68%: fraction of test means inside "
              "pred +- z sqrt(epistemic + sigma^2/n) (checks the epistemic term alone)."]
    scale = report.get("epistemic_scale")
    if scale:
        lines += ["", "Epistemic variance scale (fitted on the validation split at training time): "
                  + ", ".join(f"{k} {v:.3g}" for k, v in scale.items()) + "."]
    lines += ["", "Figures in figures/." if report.get("figures") else "No figures (--no-figures).", ""]
    return "\n".join(lines)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _figures(report: dict, pred: dict, samples: dict) -> dict[str, bytes]:
    """The three figures, ``relative name -> PNG bytes`` (written atomically by the caller)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = r_centres()
    pb = report["per_bin"]

    def arr(stat, key):
        return np.array([np.nan if v is None else v for v in pb[stat][key]])

    names = {}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, stat in zip(axes[:2], ("xi", "omega")):
        ax.plot(r, arr(stat, "mean_abs_frac_error"), "o-", label="emulator")
        ax.plot(r, arr(stat, "noise_floor_frac_error"), "k--", label="noise floor")
        ax.axhline(0.03 if stat == "xi" else 0.05, color="r", lw=0.8, label="target")
        ax.set(xscale="log", xlabel=r"$r$ [$h^{-1}$Mpc]", ylabel="mean |fractional error|", title=stat)
        ax.legend(fontsize=8)
    for stat in STATISTICS:
        axes[2].plot(r, arr(stat, "median_abs_residual_sigma"), "o-", label=stat)
    axes[2].axhline(report["summary"]["eta_noise_floor_median_abs_residual_sigma"], color="k", ls="--",
                    label="noise floor")
    axes[2].set(xscale="log", xlabel=r"$r$ [$h^{-1}$Mpc]", ylabel=r"median |residual| / $\sigma$")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    names["figures/accuracy.png"] = _png(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, stat in enumerate(STATISTICS):
        c = f"C{i}"
        axes[0].plot(r, arr(stat, "calibration_dex"), "o-", color=c, label=stat)
        axes[1].plot(r, arr(stat, "coverage_68"), "o-", color=c, label=f"{stat} 68%")
        axes[1].plot(r, arr(stat, "coverage_95"), "s:", color=c, label=f"{stat} 95%")
        axes[2].plot(r, arr(stat, "epistemic_to_aleatoric"), "o-", color=c, label=stat)
    axes[0].axhspan(-0.2, 0.2, color="g", alpha=0.1)
    axes[0].set(ylabel=r"median log$_{10}$($\sigma_{\rm pred}/\sigma_{\rm true}$)")
    axes[1].axhspan(0.60, 0.76, color="g", alpha=0.1)
    axes[1].axhline(0.95, color="k", lw=0.5)
    axes[1].set(ylabel="coverage of test realizations")
    axes[2].set(ylabel=r"median $\sigma_{\rm epi}/\sigma_{\rm ale}$", yscale="log")
    for ax in axes:
        ax.set(xscale="log", xlabel=r"$r$ [$h^{-1}$Mpc]")
        ax.legend(fontsize=7)
    fig.tight_layout()
    names["figures/calibration.png"] = _png(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, stat in zip(axes, STATISTICS):
        for i, colour in zip(range(min(3, len(pred[stat]))), ("C0", "C1", "C2")):
            true = samples[stat][i].mean(axis=0)
            err = samples[stat][i].std(axis=0, ddof=1)
            scale = r ** 2 if stat != "xi" else 1.0
            ax.errorbar(r, scale * true, scale * err, fmt="o", ms=3, color=colour)
            band = np.sqrt(pred[f"{stat}_var"][i] + pred[f"{stat}_epi_var"][i])
            ax.plot(r, scale * pred[stat][i], color=colour)
            ax.fill_between(r, scale * (pred[stat][i] - band), scale * (pred[stat][i] + band),
                            color=colour, alpha=0.2)
        ax.set(xscale="log", xlabel=r"$r$ [$h^{-1}$Mpc]", title=f"{stat}: test points (dots) vs emulator",
               ylabel=stat if stat == "xi" else rf"$r^2$ {stat}")
        if stat == "xi":
            ax.set_yscale("log")
    fig.tight_layout()
    names["figures/examples.png"] = _png(fig)
    plt.close(fig)
    return names


def default_output(version: str, folder_name: str = "weights") -> Path:
    """``./iaemu-evaluation/<version>`` (relative to the current directory); a version that is not a
    plain file name (e.g. ``../x`` in a foreign metadata.json) is replaced by ``folder_name``."""
    plain = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", str(version)) is not None
    return Path(DEFAULT_OUTPUT_ROOT) / (str(version) if plain else folder_name)


def _output_folder(weights: Path, output, version: str, into_weights: bool) -> Path:
    """The folder the report goes to; never the weights folder (or inside it) unless
    ``into_weights``."""
    if into_weights:
        if output is not None and Path(output).resolve() != weights.resolve():
            raise ConfigError(f"output = {output}: with into_weights=True the report goes into the "
                              f"weights folder {weights}; pass no output")
        return weights
    out = Path(output) if output is not None else default_output(version, weights.name)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out} is a file; allowed: a folder (created if needed) for "
                          "report.json, report.md and figures/")
    resolved, root = out.resolve(), weights.resolve()
    if resolved == root or root in resolved.parents:
        raise ConfigError(f"--output {out} is inside the weights folder {weights}; allowed: a "
                          "folder outside it (iaemu evaluate never modifies a weights folder)")
    return out


def _write_report(out: Path, report: dict, figures: dict[str, bytes]) -> None:
    """report.json, report.md and figures/*.png into ``out``, each file atomically."""
    out.mkdir(parents=True, exist_ok=True)
    if figures:
        (out / "figures").mkdir(exist_ok=True)
    for name, png in figures.items():
        atomic_write_bytes(out / name, png)
    atomic_write_bytes(out / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    atomic_write_bytes(out / "report.md", _markdown(report).encode())


def _record_accuracy(folder: Path, report: dict) -> None:
    """Put the summary into metadata.json of a weights folder being created, then re-seal it."""
    from ..weights_io import METADATA_FILE, read_metadata_file, reseal_folder

    meta = read_metadata_file(folder)
    meta["accuracy"] = {"test_set": report["test_set"], "summary": report["summary"],
                        "targets_passed": {k: v["pass"] for k, v in report["targets"].items()},
                        "latency": report.get("latency", {})}
    atomic_write_bytes(folder / METADATA_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    reseal_folder(folder)


def evaluate_folder(folder, data, output=None, figures: bool = True, n_samples: int | None = None,
                    latency: bool = True, into_weights: bool = False, fixed_inputs=None) -> dict:
    """Evaluate the weights in ``folder`` on the dataset ``data`` and write the report files.

    Parameters
    ----------
    folder : path-like or str
        A weights folder or a shipped version name. Never modified unless ``into_weights``.
    data : path-like
        Test dataset (``.npz`` of :mod:`.dataset_io`); points outside the emulator's bounds or
        training support, or with non-finite values, are skipped (and counted in the report).
    output : path-like, optional
        Folder for report.json, report.md and figures/ (created; default
        ``./iaemu-evaluation/<version>``); refused if it is the weights folder or inside it.
    figures : bool
        Write ``figures/*.png``.
    n_samples : int, optional
        MC-dropout passes for a single "paper" network.
    latency : bool
        Time single-point and batched predictions.
    into_weights : bool
        For the training pipeline only (``iaemu train --evaluate``): write the report into the
        weights folder it has just created, record the summary in metadata.json's ``accuracy``
        and re-seal the folder (content re-validated, ``SHA256SUMS`` rewritten atomically).
    fixed_inputs : dict, optional
        ``{name: value}`` of inputs the test set does not hold per point (cosmology and z of a
        one-catalog test set evaluated with cosmology-dependent weights); recorded in the report.

    Returns
    -------
    dict
        The content of report.json.
    """
    from ..emulator import IAEmulator
    from ..weights import resolve_weights_dir

    folder = resolve_weights_dir(folder)
    emu = IAEmulator.load(folder)
    version = str(emu.metadata.get("version") or folder.name)
    out = _output_folder(folder, output, version, into_weights)
    ds = load_dataset(data)
    low = np.array([emu.bounds[n][0] for n in emu.param_names])
    high = np.array([emu.bounds[n][1] for n in emu.param_names])
    fixed_inputs = {k: float(v) for k, v in (fixed_inputs or {}).items()}
    unknown = sorted(set(fixed_inputs) - set(emu.param_names))
    if unknown:
        raise ConfigError(f"fixed inputs {unknown}: not inputs of {folder.name}; allowed: "
                          f"{list(emu.param_names)}")
    # cosmology and redshift inputs from point_inputs, or fixed
    inputs = ds.inputs(emu.param_names, fixed_inputs)
    inside = np.all((inputs >= low) & (inputs <= high), axis=1)
    if hasattr(emu, "in_support"):  # the training-prior band, when the weights record one
        inside &= np.atleast_1d(emu.in_support(inputs))
    finite = np.all([np.isfinite(ds.stat(s)).all(axis=(1, 2)) for s in STATISTICS], axis=0)
    keep = np.flatnonzero(inside & finite)
    if keep.size < 3:
        raise ValueError(f"only {keep.size} test points of {data} are finite and inside the bounds")
    if keep.size < ds.n_points:
        log.warning("skipping %d of %d test points (outside the bounds/support or not finite)",
                    ds.n_points - keep.size, ds.n_points)
    theta = inputs[keep]
    p = emu.predict(theta, epistemic=True, n_samples=n_samples)
    pred = {k: np.asarray(v) for k, v in p.as_dict().items()}
    samples = {s: ds.stat(s)[keep] for s in STATISTICS}
    report = {"version": emu.metadata.get("version"), "architecture": emu.metadata.get("architecture"),
              "weights_folder": str(folder),
              "test_set": {"path": Path(data).name, "sha256": file_sha256(data),
                           "n_points": int(ds.n_points), "n_used": int(keep.size),
                           "n_realizations": int(ds.n_realizations),
                           **({"fixed_inputs": fixed_inputs} if fixed_inputs else {})},
              "r": r_centres().tolist(), **evaluate_predictions(pred, samples),
              "epistemic_scale": (emu.metadata.get("epistemic") or {}).get("scale")}
    report["targets"] = _check_targets(report["summary"])
    if latency:
        report["latency"] = _latency(emu, theta)
    pngs = _figures(report, pred, samples) if figures else {}
    if figures:
        report["figures"] = sorted(pngs)
    _write_report(out, report, pngs)
    if into_weights:
        _record_accuracy(folder, report)
    passed = sum(v["pass"] for v in report["targets"].values())
    log.info("evaluated %s on %d points: %d/%d targets met; report in %s", folder, keep.size,
             passed, len(TARGETS), out)
    return report


def build_parser(prog: str = "iaemu evaluate") -> argparse.ArgumentParser:
    """Command-line options of ``iaemu evaluate``."""
    p = argparse.ArgumentParser(prog=prog, description="Evaluate a weights folder on a test set.")
    p.add_argument("weights", help="weights folder or shipped version name (never modified)")
    p.add_argument("--data", required=True, help="test dataset .npz (e.g. training/data/test.npz)")
    p.add_argument("--output", help=f"folder for report.json, report.md, figures/ (default: "
                                    f"./{DEFAULT_OUTPUT_ROOT}/<version>; not inside the weights folder)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--no-latency", action="store_true", help="skip the timing of predictions")
    p.add_argument("--mc-samples", type=int, help="MC-dropout passes for a 'paper' network")
    p.add_argument("--fixed", nargs="+", default=(), metavar="NAME=VALUE",
                   help="inputs the test set does not hold, the same for every point (e.g. "
                        "Omega_m=0.307 sigma_8=0.823 z=0 for a v1 test set and v2 weights)")
    return p


def parse_fixed(items) -> dict:
    """``["Omega_m=0.307", ...]`` -> ``{"Omega_m": 0.307}``; ConfigError naming a bad item."""
    return dict(parse_name_value(item, "--fixed") for item in items)


def main(args) -> int:
    """Run ``iaemu evaluate``; prints the markdown summary; returns 0."""
    report = evaluate_folder(args.weights, args.data, output=args.output, figures=not args.no_figures,
                             n_samples=args.mc_samples, latency=not args.no_latency,
                             fixed_inputs=parse_fixed(args.fixed))
    sys.stdout.write(_markdown(report))
    return 0
