#!/usr/bin/env python
"""What the HOD-IA model absorbs: fits to mocks of alignment models it was not trained on.

For each data file of ``benchmarks/data/out_of_model/`` (made by
``benchmarks/make_out_of_model_mocks.py``: the training model as the control, satellites aligned
with the host major axis, a mass-dependent central alignment; one realization each with a
covariance from 399 more) the yaml ``yamls/out_of_model/<variant>.yaml`` (all seven parameters,
data covariance + the emulator's epistemic covariance, as ``yamls/ia_hod.yaml``) is fitted with
``iaemu sample``'s NUTS (Python API) and, for one variant, with ``cobaya-run``'s mcmc sampler.

Reported per variant (``benchmarks/results/out_of_model.json``, figure
``benchmarks/results/out_of_model.png``):

* ``best_fit``: the maximum of the posterior (``iaemu_likelihood.sampling.start.find_start``), its
  ``chi2 = (d - m)^T C^-1 (d - m)`` with ``C`` = data covariance + epistemic covariance there,
  ``dof = 60 - 7`` and the chi2 probability to exceed; also chi2 of the emulator at the generating
  parameters (``chi2_at_truth``; for the mass-dependent model ``mu_cen`` is replaced by the
  number-weighted effective strength, an approximation);
* ``residuals_sigma``: ``(d - m) / sqrt(diag C)`` per statistic and bin at the best fit, with
  their largest absolute value and RMS;
* ``posterior``: mean, standard deviation and 2.5/16/50/84/97.5% quantiles of every parameter from
  the NUTS chains, and ``(mean - truth) / sd`` of mu_cen and mu_sat;
* ``cobaya`` (one variant): wall time and mean / sd of mu_cen, mu_sat from the Cobaya chain (first
  30% dropped; started about the best fit, the yaml's proposal covariance), and the NUTS means'
  shift from them in Cobaya sigmas.

Run from the repository root (shared 2-core machine: nice, one thread)::

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/bench_out_of_model.py
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
VARIANTS = ("in_model", "major_axis_satellites", "mass_dependent_centrals")
TITLES = {"in_model": "training model (control)",
          "major_axis_satellites": "satellites along the host major axis",
          "mass_dependent_centrals": "mass-dependent central alignment"}
QUANTILES = (0.025, 0.16, 0.5, 0.84, 0.975)
LIKELIHOOD = "iaemu_likelihood.IAEmuLikelihood"

log = logging.getLogger("bench_out_of_model")


def variant_info(variant: str, cobaya: bool = False) -> dict:
    """The variant's yaml with its data file (and proposal covmat) as absolute paths."""
    from iaemu_likelihood.sampling.posterior import read_input

    info = read_input(REPO / "yamls" / "out_of_model" / f"{variant}.yaml")
    like = info["likelihood"][LIKELIHOOD]
    like["data_file"] = str(REPO / like["data_file"])
    mcmc = (info.get("sampler") or {}).get("mcmc") or {}
    if cobaya and isinstance(mcmc.get("covmat"), str):
        mcmc["covmat"] = str(REPO / mcmc["covmat"])
    return info


def fit_at(posterior, theta) -> dict:
    """Model vector, total covariance, chi2 and residuals at sampled parameters ``theta``."""
    from iaemu_likelihood.likelihood_math import gaussian_terms

    full = posterior.full(np.asarray(theta, dtype=float))
    emu = posterior.emulator
    pred = emu.predict(full, epistemic="epistemic" in posterior.terms)
    model = pred.vector()[posterior.emulator_indices]
    cov = posterior.data_cov + emu.covariance(full, posterior.terms, prediction=pred)[
        np.ix_(posterior.emulator_indices, posterior.emulator_indices)]
    resid = (posterior.data - model) / np.sqrt(np.diag(cov))
    return {"model": model, "cov": cov, "chi2": gaussian_terms(posterior.data, model, cov).chi2,
            "resid": resid}


def _quantiles(values) -> dict:
    values = np.asarray(values, dtype=float)
    q = np.quantile(values, QUANTILES)
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)),
            **{f"q{100 * p:g}": float(v) for p, v in zip(QUANTILES, q)}}


def _residual_summary(resid, n_bins) -> dict:
    out = {}
    for k, stat in enumerate(("xi", "omega", "eta")):
        r = resid[k * n_bins:(k + 1) * n_bins]
        out[stat] = {"values": np.round(r, 3).tolist(), "max_abs": round(float(np.abs(r).max()), 3),
                     "rms": round(float(np.sqrt(np.mean(r ** 2))), 3),
                     "n_beyond_2sigma": int(np.sum(np.abs(r) > 2))}
    return out


def fit_variant(variant: str, seed: int, min_ess: float) -> tuple[dict, dict]:
    """NUTS fit of one variant: the JSON entry and the arrays the figure needs."""
    from scipy.stats import chi2 as chi2_dist

    from iaemu_likelihood.data import load_measurement
    from iaemu_likelihood.sampling.nuts import run_nuts
    from iaemu_likelihood.sampling.posterior import load_posterior
    from iaemu_likelihood.sampling.start import find_start

    t0 = time.perf_counter()
    info = variant_info(variant)
    posterior = load_posterior(info)
    lik_path = info["likelihood"][LIKELIHOOD]["data_file"]
    meta = load_measurement(lik_path).metadata
    if posterior.data.size != 60 or posterior.dim != 7:
        raise RuntimeError(f"{variant}: expected 60 data values and 7 sampled parameters, got "
                           f"{posterior.data.size} and {posterior.dim}")
    start = find_start(posterior, seed)
    best = fit_at(posterior, start.theta)
    truth = dict(meta["truth"])
    if "effective_mu_cen" in meta:
        truth["mu_cen"] = meta["effective_mu_cen"]["mu_of_mean_c"]
    at_truth = fit_at(posterior, [truth[n] for n in posterior.names])
    result = run_nuts(posterior, seed=seed, min_ess=min_ess, progress=False)
    samples = np.concatenate(result.chains)
    wall = time.perf_counter() - t0
    dof = posterior.data.size - posterior.dim
    post = {n: _quantiles(samples[:, k]) for k, n in enumerate(posterior.names)}
    for n in ("mu_cen", "mu_sat"):
        post[n]["truth"] = truth[n]
        post[n]["shift_from_truth_sigma"] = round((post[n]["mean"] - truth[n]) / post[n]["sd"], 3)
    entry = {
        "data_file": str(Path(lik_path).relative_to(REPO)),
        "alignment_model": meta["alignment_model"], "description": meta["description"],
        "truth": meta["truth"], **({"effective_mu_cen": meta["effective_mu_cen"]}
                                   if "effective_mu_cen" in meta else {}),
        "n_covariance_realizations": meta["n_covariance"],
        "best_fit": {"params": {n: round(float(v), 5) for n, v in zip(posterior.names, start.theta)},
                     "logpost": round(start.logpost, 4), "chi2": round(best["chi2"], 3), "dof": dof,
                     "chi2_per_dof": round(best["chi2"] / dof, 3),
                     "p_value": float(f"{chi2_dist.sf(best['chi2'], dof):.3g}")},
        "chi2_at_truth": round(at_truth["chi2"], 3),
        "residuals_sigma": _residual_summary(best["resid"], posterior.data.size // 3),
        "posterior": post,
        "nuts": {"wall_seconds": round(result.wall_seconds, 2), "min_ess": round(result.min_ess, 1),
                 "max_rhat": round(max(result.rhat.values()), 5), "samples": int(len(samples)),
                 "seed": seed},
        "wall_seconds": round(wall, 2),
    }
    arrays = {"data": posterior.data, "best": best, "truth_model": at_truth["model"],
              "mean": np.asarray(meta["realization_mean"]), "samples": samples,
              "names": posterior.names, "truth": truth}
    return entry, arrays


def _cache_key(variant: str, seed: int, min_ess: float) -> dict:
    """What a cached fit depends on: the data file's bytes, the weights, seed and ESS target."""
    import hashlib

    from iaemu_likelihood.emulator import IAEmulator

    data = Path(variant_info(variant)["likelihood"][LIKELIHOOD]["data_file"])
    return {"variant": variant, "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
            "weights": IAEmulator.load().version, "seed": seed, "min_ess": min_ess}


def cached_fit(variant: str, seed: int, min_ess: float, workdir: Path) -> tuple[dict, dict]:
    """:func:`fit_variant`, or its result saved in ``workdir`` by an earlier run with the same
    data, weights, seed and ESS target (so an interrupted benchmark resumes per variant)."""
    from iaemu_likelihood._io import atomic_write_bytes, npz_bytes

    key = _cache_key(variant, seed, min_ess)
    path = workdir / f"{variant}_fit.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                stored = {k: f[k] for k in f.files}
            meta = json.loads(str(stored.pop("meta")))
        except Exception as exc:  # unreadable: fit again
            log.warning("%s is unreadable (%s); fitting again", path, exc)
        else:
            if meta["key"] == key:
                log.info("%s: reusing the fit in %s", variant, path)
                best = {"model": stored["best_model"], "cov": stored["best_cov"],
                        "resid": stored["best_resid"]}
                arrays = {"data": stored["data"], "best": best, "truth_model": stored["truth_model"],
                          "mean": stored["mean"], "samples": stored["samples"],
                          "names": tuple(meta["names"]), "truth": meta["truth"]}
                return meta["entry"], arrays
            log.info("%s: the fit in %s was made with other inputs; fitting again", variant, path)
    entry, arrays = fit_variant(variant, seed, min_ess)
    meta = {"key": key, "entry": entry, "names": list(arrays["names"]), "truth": arrays["truth"]}
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, npz_bytes({
        "meta": np.array(json.dumps(meta)), "data": arrays["data"], "best_model": arrays["best"]["model"],
        "best_cov": arrays["best"]["cov"], "best_resid": arrays["best"]["resid"],
        "truth_model": arrays["truth_model"], "mean": arrays["mean"], "samples": arrays["samples"]}))
    return entry, arrays


def cobaya_fit(variant: str, workdir: Path, nuts_entry: dict) -> dict:
    """cobaya-run's mcmc (Python API) on the variant's yaml: wall time, mu posteriors, and the
    NUTS means' shifts from them. Its summary is kept in ``workdir`` and reused by a rerun on the
    same data and weights."""
    from iaemu_likelihood._io import atomic_write_bytes

    key = {**_cache_key(variant, "yaml", "R-1 < 0.01"), "start": "best fit"}
    cache = workdir / f"{variant}_cobaya.json"
    out = None
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            log.info("%s: reusing the Cobaya chain summary in %s", variant, cache)
            out = stored["result"]
    if out is None:
        from cobaya.run import run

        from iaemu_likelihood.chains import load_cobaya_chain

        from iaemu_likelihood.cobaya_theory import IAEmuTheory

        info = variant_info(variant, cobaya=True)
        # started about the best fit: from the prior's reference point the chain stuck (98 of
        # 49,708 proposals accepted in a minute, on the major-axis data); the proposal covariance
        # stays the yaml's, so the chain does not depend on the NUTS samples
        defaults = IAEmuTheory.get_defaults()["params"]
        info["params"] = {n: {**defaults[n], "ref": {"dist": "norm", "loc": v,
                                                     "scale": 0.5 * nuts_entry["posterior"][n]["sd"]}}
                          for n, v in nuts_entry["best_fit"]["params"].items()}
        prefix = workdir / "cobaya" / variant
        info.update(output=str(prefix), force=True)
        t0 = time.perf_counter()
        run(info)
        wall = time.perf_counter() - t0
        samples = load_cobaya_chain(prefix, burn_in=0.3)
        out = {"variant": variant, "wall_seconds": round(wall, 2), "burn_in_dropped": 0.3,
               "stopping_rule": "R-1 < 0.01 (yaml)", "n_samples": int(samples.numrows)}
        for n in ("mu_cen", "mu_sat"):
            out[n] = {"mean": round(float(samples.mean(n)), 5), "sd": round(float(samples.std(n)), 5)}
        workdir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache, json.dumps({"key": key, "result": out}, indent=1).encode())
    for n in ("mu_cen", "mu_sat"):
        nuts = nuts_entry["posterior"][n]
        out[n]["nuts_mean_shift_sigma"] = round((nuts["mean"] - out[n]["mean"]) / out[n]["sd"], 3)
        out[n]["nuts_sd_ratio"] = round(nuts["sd"] / out[n]["sd"], 3)
    return out


def figure(arrays: dict, path: Path):
    """Data vs best fit of omega and eta with residual panels, and mu_cen-mu_sat posteriors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from iaemu_likelihood._io import atomic_write_bytes
    from iaemu_likelihood.conventions import r_centres

    r = r_centres()
    n = r.size
    rows = len(arrays)
    fig = plt.figure(figsize=(13, 3.9 * rows))
    blocks = fig.add_gridspec(rows, 1, hspace=0.32)
    for i, (variant, a) in enumerate(arrays.items()):
        grid = blocks[i].subgridspec(2, 3, height_ratios=[3, 1], hspace=0.06, wspace=0.28)
        sigma = np.sqrt(np.diag(a["best"]["cov"]))
        for j, (stat, k) in enumerate((("omega", 1), ("eta", 2))):
            sl = slice(k * n, (k + 1) * n)
            top = fig.add_subplot(grid[0, j])
            bottom = fig.add_subplot(grid[1, j], sharex=top)
            top.errorbar(r, a["data"][sl], sigma[sl], fmt="o", ms=3, color="k", label="data (1 mock)")
            top.plot(r, a["mean"][sl], "s", ms=3, mfc="none", color="0.5", label="mean of 399 mocks")
            top.plot(r, a["best"]["model"][sl], "-", color="C3", label="best fit")
            top.plot(r, a["truth_model"][sl], "--", color="C0", lw=1, label="emulator at the truth")
            top.axhline(0, color="0.8", lw=0.5)
            top.set_xscale("log")
            top.set_ylabel(rf"$\{stat}(r)$")
            top.tick_params(labelbottom=False)
            top.set_title(f"{TITLES[variant]}: $\\{stat}$", fontsize=10)
            bottom.axhspan(-1, 1, color="0.9")
            bottom.axhline(0, color="0.6", lw=0.5)
            bottom.plot(r, a["best"]["resid"][sl], "o-", ms=3, color="C3")
            bottom.set_ylabel(r"$\Delta/\sigma$")
            bottom.set_xlabel(r"$r$ [$h^{-1}$ Mpc]")
            if i == 0 and j == 0:
                top.legend(fontsize=7, frameon=False)
        ax = fig.add_subplot(grid[:, 2])
        names = list(a["names"])
        s = a["samples"][:: max(1, len(a["samples"]) // 3000)]
        ax.plot(s[:, names.index("mu_cen")], s[:, names.index("mu_sat")], ".", ms=1.5, alpha=0.3,
                color="C3", label="NUTS posterior")
        ax.plot(a["truth"]["mu_cen"], a["truth"]["mu_sat"], "*", ms=12, color="C0",
                label="truth" + (" (effective mu_cen)" if variant == "mass_dependent_centrals" else ""))
        ax.set_xlabel(r"$\mu_{\rm cen}$")
        ax.set_ylabel(r"$\mu_{\rm sat}$")
        ax.set_title(f"best-fit chi2/dof = {a['chi2']:.1f}/{a['dof']}", fontsize=10)
        ax.legend(fontsize=7, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-ess", type=float, default=1000.0)
    parser.add_argument("--cobaya", default="major_axis_satellites", choices=(*VARIANTS, "none"),
                        help="variant also fitted with Cobaya's mcmc (default major_axis_satellites)")
    parser.add_argument("--workdir", default=str(REPO / "work_data" / "out_of_model" / "fits"),
                        help="fits of each variant are kept here and reused by a rerun with the same "
                             "data, weights, seed and --min-ess; Cobaya's chain too")
    parser.add_argument("--json", default=str(RESULTS / "out_of_model.json"))
    parser.add_argument("--figure", default=str(RESULTS / "out_of_model.png"))
    args = parser.parse_args(argv)
    from iaemu_likelihood._io import atomic_write_bytes

    load = os.getloadavg()[0]
    results, arrays = {"variants": {}}, {}
    for variant in args.variants:
        entry, arr = cached_fit(variant, args.seed, args.min_ess, Path(args.workdir))
        results["variants"][variant] = entry
        arrays[variant] = {**arr, "chi2": entry["best_fit"]["chi2"], "dof": entry["best_fit"]["dof"]}
        bf, post = entry["best_fit"], entry["posterior"]
        res = entry["residuals_sigma"]
        print(f"{variant:24s} chi2/dof {bf['chi2']:7.2f}/{bf['dof']} (p {bf['p_value']:.2g}; at truth "
              f"{entry['chi2_at_truth']:.2f})  mu_cen {post['mu_cen']['mean']:+.3f} +- "
              f"{post['mu_cen']['sd']:.3f} (truth {post['mu_cen']['truth']:+.3f})  mu_sat "
              f"{post['mu_sat']['mean']:+.3f} +- {post['mu_sat']['sd']:.3f} (truth "
              f"{post['mu_sat']['truth']:+.3f})  max|res| omega {res['omega']['max_abs']:.2f} eta "
              f"{res['eta']['max_abs']:.2f} xi {res['xi']['max_abs']:.2f}  NUTS "
              f"{entry['nuts']['wall_seconds']:.0f} s", flush=True)
    if args.cobaya != "none" and args.cobaya in results["variants"]:
        results["cobaya"] = cobaya_fit(args.cobaya, Path(args.workdir),
                                       results["variants"][args.cobaya])
        c = results["cobaya"]
        print(f"cobaya {args.cobaya}: {c['wall_seconds']:.0f} s; mu_cen {c['mu_cen']['mean']:+.3f} +- "
              f"{c['mu_cen']['sd']:.3f} (NUTS shift {c['mu_cen']['nuts_mean_shift_sigma']:+.2f} sigma), "
              f"mu_sat {c['mu_sat']['mean']:+.3f} +- {c['mu_sat']['sd']:.3f} (NUTS shift "
              f"{c['mu_sat']['nuts_mean_shift_sigma']:+.2f} sigma)", flush=True)
    results["machine"] = {"cpus": os.cpu_count(), "load_average_at_start": round(load, 2),
                          "load_average_at_end": round(os.getloadavg()[0], 2),
                          "python": platform.python_version(),
                          "note": "shared 2-core machine, other jobs running (nice 15, one thread)"}
    results["command"] = " ".join(["benchmarks/bench_out_of_model.py", *(argv or sys.argv[1:])])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.json), (json.dumps(results, indent=1) + "\n").encode())
    figure(arrays, Path(args.figure))
    print(f"wrote {args.json} and {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
