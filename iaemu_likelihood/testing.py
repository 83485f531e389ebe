"""Synthetic weights for tests: a small, deterministic, smooth emulator (never shipped).

:func:`write_synthetic_weights` writes a complete weights folder in well under a second, without
torch for the "mlp" architecture. Its networks are fits to an analytic toy model with realistic
magnitudes (xi from ~1e3 at 0.1 h^-1 Mpc to ~1e-2 at 15 h^-1 Mpc, omega ~ 0.1 x the alignment
strengths, eta small): random-feature hidden layers (seeded) whose output layer is solved by ridge
least squares, so each member is smooth in the inputs and the members differ slightly, which gives
a non-zero epistemic spread.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .conventions import PARAM_NAMES, R_EDGES, STATISTICS, r_centres
from .numpy_forward import ACTIVATIONS

__all__ = ["write_synthetic_weights", "copy_with_metadata", "toy_model", "synthetic_mass_function", "SYNTHETIC_BOUNDS",
           "SYNTHETIC_VOLUME"]

log = logging.getLogger(__name__)

#: Plausible training box used by the synthetic weights (the real one comes from training).
SYNTHETIC_BOUNDS = {
    "mu_cen": (-1.0, 1.0),
    "mu_sat": (-1.0, 1.0),
    "logMmin": (11.6, 13.5),
    "sigma_logM": (0.05, 0.8),
    "logM0": (10.5, 14.0),
    "logM1": (12.5, 14.8),
    "alpha": (0.6, 1.4),
}
#: Volume of the synthetic halo catalog, (h^-1 Mpc)^3 (a 250 h^-1 Mpc box, like Bolshoi).
SYNTHETIC_VOLUME = 250.0 ** 3
N_FIT_POINTS = 1500
RIDGE = 1e-6
#: Fractional aleatoric scatter of one realization used by the toy (xi, omega, eta).
TOY_FRACTIONAL_SIGMA = {"xi": 0.1, "omega": 0.3, "eta": 0.5}


def toy_model(theta: np.ndarray):
    """Analytic toy correlation functions and one-realization standard deviations.

    Parameters
    ----------
    theta : ndarray, shape (n, 7)
        Parameters in ``PARAM_NAMES`` order.

    Returns
    -------
    mean : dict of ndarray (n, 20)
        ``xi``, ``omega``, ``eta`` at the bin centres (comoving h^-1 Mpc).
    sigma : dict of ndarray (n, 20)
        One-realization standard deviations.
    """
    theta = np.atleast_2d(theta)
    mu_cen, mu_sat, logMmin, sigma_logM, logM0, logM1, alpha = (theta[:, [i]] for i in range(7))
    lr = np.log(r_centres() / 1.0)[None, :]
    # a power law with a one-halo boost that grows with the satellite content
    sat = 1.0 / (1.0 + np.exp(2.0 * (logM1 - logMmin - 1.2)))
    slope = 1.9 + 0.4 * (alpha - 1.0) + 0.3 * sat * (lr < 0)
    log_xi = 1.7 + 0.35 * (logMmin - 12.5) - 0.2 * sigma_logM - 0.05 * (logM0 - 12.0) - slope * lr
    xi = np.exp(log_xi)
    mu = (1.0 - 0.6 * sat) * mu_cen + 0.6 * sat * mu_sat
    omega = 0.12 * mu * np.exp(-0.275 * (lr - np.log(0.1))) * (1.0 + 0.1 * (logMmin - 12.5))
    eta = 0.02 * (mu ** 2 + 0.1 * mu_sat * mu_cen) * np.exp(-0.7 * (lr - np.log(0.1)))
    mean = {"xi": xi, "omega": omega, "eta": eta}
    floor = {"xi": 0.0, "omega": 2e-3, "eta": 5e-4}
    ones = np.ones_like(xi)
    scale = {"xi": xi, "omega": 0.12 * np.exp(-0.3 * (lr - np.log(0.1))) * ones,
             "eta": 0.02 * np.exp(-0.7 * (lr - np.log(0.1))) * ones}
    sigma = {s: TOY_FRACTIONAL_SIGMA[s] * scale[s] + floor[s] for s in STATISTICS}
    return mean, sigma


def synthetic_mass_function(volume: float = SYNTHETIC_VOLUME) -> dict:
    """A smooth binned host-halo mass function (Schechter-like, ~1e-2 halos per (h^-1 Mpc)^3 above
    10^11.5 Msun/h), deterministic, in the format of ``halo_mass_function.npz``."""
    edges = np.arange(10.5, 15.6 + 1e-9, 0.02)
    centres = 0.5 * (edges[1:] + edges[:-1])
    m_star = 10.0 ** 14.3
    mass = 10.0 ** centres
    # dn/dlog10M in (h^-1 Mpc)^-3 dex^-1
    dn = 4e-3 * (mass / 1e12) ** -0.9 * np.exp(-mass / m_star)
    counts = np.round(dn * np.diff(edges) * volume).astype(np.int64)
    return {"log10_mass_edges": edges, "counts": counts, "mean_log10_mass": centres,
            "volume": np.float64(volume)}


def _standardisation(theta):
    mean, _ = toy_model(theta)
    transformed = {"xi": np.log(mean["xi"]), "omega": mean["omega"], "eta": mean["eta"]}
    stats = {}
    for s in STATISTICS:
        mu = transformed[s].mean(axis=0)
        std = transformed[s].std(axis=0)
        stats[s] = (mu, np.where(std > 0, std, 1.0))
    return transformed, stats


def _mlp_member(rng, x, target_mean, target_var_std, width, n_hidden, activation):
    """Random hidden layers + ridge-fitted output layer, as an MLPNet state dict (float32)."""
    act = ACTIVATIONS[activation]
    sd = {}
    h = x.copy()
    n_in = x.shape[1]
    for i in range(n_hidden):
        W = rng.normal(0.0, 1.6 / np.sqrt(n_in), size=(width, n_in)).astype(np.float32)
        b = rng.normal(0.0, 0.3, size=width).astype(np.float32)
        sd[f"hidden.{i}.weight"], sd[f"hidden.{i}.bias"] = W, b
        h = act(h @ W.astype(np.float64).T + b)
        n_in = width
    design = np.hstack([h, np.ones((len(h), 1))])
    gram = design.T @ design + RIDGE * len(h) * np.eye(design.shape[1])
    # means: fit the standardised toy; variances: fit softplus^-1 of the standardised toy variance
    z_var = np.log(np.expm1(np.maximum(target_var_std, 1e-6)))
    coef = np.linalg.solve(gram, design.T @ np.hstack([target_mean, z_var]))
    sd["out.weight"] = coef[:-1].T.astype(np.float32).copy()
    sd["out.bias"] = coef[-1].astype(np.float32).copy()
    return sd


def _paper_member(seed, x, config):
    import torch

    from .networks import build_network

    torch.manual_seed(seed)
    net = build_network("paper", config)
    net.train()
    for m in net.modules():  # one pass of cumulative batch-norm statistics over the design
        if isinstance(m, torch.nn.BatchNorm1d):
            m.momentum = None
    with torch.no_grad():
        net(torch.as_tensor(x, dtype=torch.float32))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.momentum = 0.1
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def write_synthetic_weights(folder: str | os.PathLike, seed: int = 0, architecture: str = "mlp",
                            ensemble_size: int | None = None, *, width: int = 64,
                            n_hidden: int = 3, activation: str = "silu",
                            paper_config: dict | None = None,
                            reference_points: int = 4) -> Path:
    """Write a valid, deterministic weights folder of a synthetic emulator.

    Parameters
    ----------
    folder : path-like
        Created if needed.
    seed : int
        Seed of the random features (same seed -> byte-identical folder).
    architecture : {"mlp", "paper"}
        "mlp": members fitted to :func:`toy_model` (numpy only, fast). "paper": randomly
        initialised reference networks with calibrated batch norm (needs torch; outputs are smooth
        but do not follow the toy model).
    ensemble_size : int, optional
        Members; default 4 for "mlp", 1 for "paper" (epistemic by MC dropout).
    width, n_hidden, activation :
        "mlp" member size (defaults make a tiny network; pass the shipped sizes for benchmarks).
    paper_config : dict, optional
        Overrides of ``networks.PAPER_DEFAULTS``.
    reference_points : int
        Points written to ``reference_predictions.npz`` (0 for none).

    Returns
    -------
    pathlib.Path
        The folder.
    """
    from .weights_io import write_checksums, write_weights_folder

    if architecture not in ("mlp", "paper"):
        raise ValueError(f"architecture = {architecture!r} is not one of ['mlp', 'paper']")
    if ensemble_size is None:
        ensemble_size = 4 if architecture == "mlp" else 1
    if int(ensemble_size) < 1:
        raise ValueError(f"ensemble_size = {ensemble_size!r} must be >= 1")
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    low = np.array([SYNTHETIC_BOUNDS[n][0] for n in PARAM_NAMES])
    high = np.array([SYNTHETIC_BOUNDS[n][1] for n in PARAM_NAMES])
    theta = low + (high - low) * rng.random((N_FIT_POINTS, len(PARAM_NAMES)))
    x = 2.0 * (theta - low) / (high - low) - 1.0
    transformed, stats = _standardisation(theta)
    target_mean = np.hstack([(transformed[s] - stats[s][0]) / stats[s][1] for s in STATISTICS])
    mean, sigma = toy_model(theta)
    # variance of the transformed value (delta method for log xi), standardised
    sig_t = {"xi": sigma["xi"] / mean["xi"], "omega": sigma["omega"], "eta": sigma["eta"]}
    target_var = np.hstack([(sig_t[s] / stats[s][1]) ** 2 for s in STATISTICS])

    if architecture == "mlp":
        config = {"width": int(width), "n_hidden": int(n_hidden), "activation": activation,
                  "var_floor": 1e-6}
        members = [_mlp_member(np.random.default_rng([seed, i]), x, target_mean, target_var,
                               config["width"], config["n_hidden"], activation)
                   for i in range(ensemble_size)]
    else:
        config = dict(paper_config or {})
        members = [_paper_member(seed * 1000 + i, x[:512], config) for i in range(ensemble_size)]

    # residual correlation: exponential in log r within a statistic, weaker across statistics
    lr = np.log(r_centres())
    within = np.exp(-np.abs(lr[:, None] - lr[None, :]) / 0.8)
    cross = np.array([[1.0, 0.3, 0.1], [0.3, 1.0, 0.4], [0.1, 0.4, 1.0]])
    corr = np.kron(cross, within)
    np.fill_diagonal(corr, 1.0)

    metadata = {
        "schema_version": 1,
        "version": f"synthetic-{architecture}-seed{seed}",
        "synthetic": True,
        "architecture": architecture,
        "architecture_config": config,
        "ensemble_size": ensemble_size,
        "param_names": list(PARAM_NAMES),
        "bounds": {n: list(SYNTHETIC_BOUNDS[n]) for n in PARAM_NAMES},
        "r_edges": R_EDGES.tolist(),
        "r_units": "comoving h^-1 Mpc",
        "statistics": list(STATISTICS),
        "normalisation": {
            "input": {"low": low.tolist(), "high": high.tolist()},
            "output": {s: {"transform": "log" if s == "xi" else "identity",
                           "mean": stats[s][0].tolist(), "std": stats[s][1].tolist()}
                       for s in STATISTICS},
        },
        "training_set": {"sha256": None, "path": None, "n_points": N_FIT_POINTS,
                         "n_realizations": 0, "note": "analytic toy model, iaemu_likelihood.testing"},
        "halo_catalog": {"sha256": None, "note": "synthetic Schechter-like mass function"},
        "library_versions": {},
        "accuracy": {},
        "created": "synthetic (deterministic; not a trained model)",
    }
    write_weights_folder(folder, metadata, members, corr, synthetic_mass_function())
    if reference_points:
        from .emulator import IAEmulator
        from .verify import default_reference_points, write_reference_predictions

        emu = IAEmulator.load(folder)
        write_reference_predictions(folder, emu, default_reference_points(emu.bounds,
                                                                          reference_points))
    else:
        write_checksums(folder)
    log.debug("wrote synthetic %s weights to %s", architecture, folder)
    return folder


def copy_with_metadata(source: str | os.PathLike, folder: str | os.PathLike, **entries) -> Path:
    """Copy a weights folder to ``folder``, set top-level ``metadata.json`` entries (e.g.
    ``support=...``, ``caveats=[...]``) and re-seal its checksums (for tests of what loaders do
    with an entry; the content is validated when the copy is loaded, not here)."""
    import json
    import shutil

    from .weights import METADATA_FILE
    from .weights_io import write_checksums

    out = Path(shutil.copytree(source, folder))
    meta = json.loads((out / METADATA_FILE).read_text())
    meta.update(entries)
    (out / METADATA_FILE).write_text(json.dumps(meta))
    write_checksums(out)
    return out
