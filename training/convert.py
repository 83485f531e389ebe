"""``iaemu convert-checkpoint``: import a reference-code IAEmu checkpoint as a weights folder.

Usage::

    iaemu convert-checkpoint --state-dict best_model.pt --x-train x_train.npy \\
        --y-train y_train_means.npy --mass-function training/data/train.npz \\
        --output trained_weights/iaemu-paper-published

Accepted input layout (the reference IAEmu code, arXiv:2504.05235)
------------------------------------------------------------------
``--state-dict``
    A file written by ``torch.save(model.state_dict(), path)`` for the reference
    ``ResidualMultiTaskEncoderDecoder`` with its default sizes (keys such as
    ``encoder.layer1.0.weight``, ``decoder1.conv7.bias``; a ``module.`` prefix left by
    ``DataParallel`` is stripped). It is read with ``torch.load(..., weights_only=True)``, so a
    file holding anything but tensors is refused. Its keys and shapes must match
    :class:`iaemu_likelihood.networks.PaperNet` with the default ``PAPER_DEFAULTS`` (or
    ``--architecture-config``).
``--x-train``
    ``.npy`` (no pickle), shape (n, 7): the training inputs the reference code fitted its input
    scaler on, columns in ``PARAM_NAMES`` order (mu_cen, mu_sat, logMmin, sigma_logM, logM0,
    logM1, alpha).
``--y-train``
    ``.npy`` (no pickle), shape (n, 3, 20): the matching training outputs, the realization means
    of xi, omega and eta in that order, on ``conventions.R_EDGES``.

Scalers are rebuilt exactly as the reference dataset class does: rows with any xi < 0 are
dropped; inputs get a per-feature StandardScaler (mean, population std); xi is logged; each
statistic gets ONE StandardScaler over all its bins (``--output-scaler per-statistic``, the
reference behaviour; ``per-bin`` fits each bin separately). In our metadata the input scaler
``(x - m) / s`` becomes the linear map of ``[m - s, m + s]`` to ``[-1, 1]`` (identical), and the
scalar output mean/std are repeated over the 20 bins. The emulator's ``bounds`` default to the
min/max of the kept training inputs (``--bounds`` JSON overrides them).

Differences from the reference code's own post-processing, on purpose: the xi variance is
converted with the delta method of docs/CONTRACTS.md (``xi**2 * var * std**2``), where the
reference ``inverse_transform`` multiplies by ``xi`` rather than ``xi**2``; the variance floor
is set to 0 as in the reference network.

Training support: the reference prior is not a box (sigma_logM, logM0, logM1, alpha lie in bands
around lines in logMmin), and the network is unreliable outside it. ``--support infer`` (default)
records a band fitted to the ``--x-train`` inputs (:func:`~.design.infer_linear_band`);
``--support-from`` takes the design rule of an iaemu dataset ``.npz`` instead; ``--support none``
checks the box only. The emulator then refuses points outside the band (OutOfRangeError).

The weights folder also needs the binned halo mass function of the training catalog
(``--mass-function``: an iaemu dataset ``.npz`` whose provenance has it, or an ``.npz`` with
``log10_mass_edges``, ``counts``, ``mean_log10_mass``, ``volume``) and a residual correlation:
estimated from an iaemu dataset with ``--correlation-from``, else the identity (bins treated as
uncorrelated; said so in the metadata).
"""
from __future__ import annotations

import argparse
import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from ..conventions import N_BINS, PARAM_NAMES, STATISTICS
from ..errors import ConfigError
from .dataset_io import file_sha256, load_dataset
from .design import infer_linear_band
from .export import build_metadata, dataset_support, residual_correlation, write_exported_folder

#: ``--support`` choices (see the module docstring).
SUPPORT_CHOICES = ("infer", "none")

__all__ = ["ReferenceScalers", "fit_reference_scalers", "load_reference_state_dict",
           "convert_checkpoint", "build_parser", "main"]

log = logging.getLogger(__name__)

OUTPUT_SCALERS = ("per-statistic", "per-bin")


class ReferenceScalers:
    """Input and output scalers of the reference code.

    Attributes
    ----------
    input_mean, input_std : ndarray (7,)
    output_mean, output_std : dict
        Statistic -> ndarray (20,) (constant over bins for ``per-statistic``).
    kept : ndarray of bool (n,)
        Rows used (xi >= 0 in every bin).
    """

    def __init__(self, input_mean, input_std, output_mean, output_std, kept):
        self.input_mean, self.input_std = input_mean, input_std
        self.output_mean, self.output_std = output_mean, output_std
        self.kept = kept

    def normalisation(self) -> dict:
        """The ``normalisation`` entry of metadata.json."""
        return {"input": {"low": (self.input_mean - self.input_std).tolist(),
                          "high": (self.input_mean + self.input_std).tolist()},
                "output": {s: {"transform": "log" if s == "xi" else "identity",
                               "mean": self.output_mean[s].tolist(),
                               "std": self.output_std[s].tolist()} for s in STATISTICS}}


def _std(a, axis=None):
    # sklearn's StandardScaler: population std, and scale 1 for a constant feature
    s = np.std(a, axis=axis)
    return np.where(s > 0, s, 1.0)


def fit_reference_scalers(x_train, y_train, output_scaler: str = "per-statistic") -> ReferenceScalers:
    """Rebuild the reference code's scalers from its training arrays (see the module docstring).

    Parameters
    ----------
    x_train : array_like, shape (n, 7)
    y_train : array_like, shape (n, 3, 20)
    output_scaler : {"per-statistic", "per-bin"}
    """
    x = np.asarray(x_train, dtype=float)
    y = np.asarray(y_train, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(PARAM_NAMES):
        raise ValueError(f"x_train must have shape (n, {len(PARAM_NAMES)}), got {x.shape}")
    if y.shape != (x.shape[0], len(STATISTICS), N_BINS):
        raise ValueError(f"y_train must have shape ({x.shape[0]}, {len(STATISTICS)}, {N_BINS}), got {y.shape}")
    if output_scaler not in OUTPUT_SCALERS:
        raise ValueError(f"output_scaler = {output_scaler!r}; allowed: {OUTPUT_SCALERS}")
    kept = ~np.any(y[:, 0, :] < 0, axis=1)
    kept &= np.all(np.isfinite(x), axis=1) & np.all(np.isfinite(y), axis=(1, 2))
    if kept.sum() < 2:
        raise ValueError("fewer than 2 training rows have xi >= 0 and finite values")
    x, y = x[kept], y[kept].copy()
    with np.errstate(divide="ignore"):
        y[:, 0, :] = np.log(y[:, 0, :])
    if not np.all(np.isfinite(y)):
        raise ValueError("xi = 0 in a kept training row: its log is not finite")
    out_mean, out_std = {}, {}
    for i, stat in enumerate(STATISTICS):
        if output_scaler == "per-statistic":
            out_mean[stat] = np.full(N_BINS, y[:, i, :].mean())
            out_std[stat] = np.full(N_BINS, float(_std(y[:, i, :])))
        else:
            out_mean[stat], out_std[stat] = y[:, i, :].mean(axis=0), _std(y[:, i, :], axis=0)
    return ReferenceScalers(x.mean(axis=0), _std(x, axis=0), out_mean, out_std, kept)


def load_reference_state_dict(path, architecture_config: dict | None = None) -> dict:
    """Read a reference state dict (``weights_only``) and check it fits :class:`PaperNet`.

    Returns
    -------
    dict
        ``key -> tensor`` ready for ``PaperNet.load_state_dict`` (``module.`` prefix removed).
    """
    import torch

    from ..networks import build_network

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ... by format
        if type(exc).__name__ == "UnpicklingError":  # torch's text advises weights_only=False: never
            why = "it holds Python objects besides tensors, which iaemu never unpickles"
        else:
            why = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
        raise ConfigError(f"--state-dict {path}: not a torch state dict of tensors ({why})") from None
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(sd).__name__})")
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    net = build_network("paper", architecture_config)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} does not match the reference architecture: missing keys "
                         f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected keys "
                         f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(sd[k].shape)]
    if bad:
        raise ValueError(f"{path}: shapes differ from the reference architecture for {bad[:5]}")
    net.load_state_dict(sd)  # the final check: strict loading
    return sd


def _load_array(path, option: str, finite: bool = False) -> np.ndarray:
    """A ``.npy`` array of real numbers (all finite if ``finite``), read without pickle; errors
    name the option and file."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"{option} {path}: not a .npy array readable without pickle "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
        kind = "an .npz archive" if not isinstance(arr, np.ndarray) else f"dtype {arr.dtype}"
        if hasattr(arr, "close"):
            arr.close()
        raise ConfigError(f"{option} {path}: {kind}; allowed: a .npy array of real numbers")
    if finite and not np.all(np.isfinite(arr)):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ConfigError(f"{option} {path}: value {arr[index]} at {list(index)}; allowed: finite numbers")
    return arr


def _check_bounds_option(bounds):
    """``--bounds``: every parameter named once, each [low, high] of two numbers."""
    if bounds is None:
        return None
    from ..config_checks import check_float_array, check_keys

    check_keys(bounds, PARAM_NAMES, "--bounds", required=PARAM_NAMES)
    return {n: check_float_array(bounds[n], f"--bounds {n}", shape=(2,), increasing=True).tolist()
            for n in PARAM_NAMES}


def _json_option(text, option: str):
    """A JSON command-line value (an object), or None when not given."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{option} {text!r}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option} {text!r}: allowed: a JSON object {{...}}")
    return value


def _mass_function(path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "provenance" in z.files:
                prov = json.loads(str(z["provenance"]))
                if not isinstance(prov, dict) or "halo_mass_function" not in prov:
                    raise ConfigError(f"--mass-function {path}: dataset provenance has no "
                                      "'halo_mass_function'")
                return prov["halo_mass_function"]
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"--mass-function {path}: not an .npz readable without pickle "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None


def convert_checkpoint(state_dict, x_train, y_train, output, mass_function, *,
                       version: str | None = None, output_scaler: str = "per-statistic",
                       bounds: dict | None = None, correlation_from=None,
                       architecture_config: dict | None = None, reference_points: int = 4,
                       support: str = "infer", support_from=None) -> Path:
    """Convert a reference checkpoint (paths as in the module docstring) into a weights folder.

    Returns
    -------
    pathlib.Path
        The weights folder ``output``.
    """
    config = {"var_floor": 0.0, **(architecture_config or {})}
    sd = load_reference_state_dict(state_dict, config)
    x = _load_array(x_train, "--x-train", finite=True)
    y = _load_array(y_train, "--y-train")
    scalers = fit_reference_scalers(x, y, output_scaler)
    if (~scalers.kept).any():
        log.warning("dropped %d of %d training rows with xi < 0 (as the reference code does)",
                    int((~scalers.kept).sum()), scalers.kept.size)
    xk = np.asarray(x, dtype=float)[scalers.kept]
    if bounds is None:
        bounds = {n: [float(xk[:, j].min()), float(xk[:, j].max())] for j, n in enumerate(PARAM_NAMES)}
    if correlation_from is not None:
        corr = residual_correlation(load_dataset(correlation_from))
        corr_note = f"estimated from {Path(correlation_from).name}"
    else:
        corr = np.eye(len(STATISTICS) * N_BINS)
        corr_note = "identity: the reference checkpoint carries no per-realization data"
    if support_from is not None:
        support_meta = dataset_support(load_dataset(support_from))
        if support_meta is None:
            raise ValueError(f"--support-from {support_from}: the dataset's provenance has no design rule")
    elif support == "infer":
        support_meta = infer_linear_band(xk)
    elif support == "none":
        support_meta = None
        log.warning("no training-support band: every point inside the bounds box is accepted")
    else:
        raise ValueError(f"support = {support!r}; allowed: {list(SUPPORT_CHOICES)}")
    norm = scalers.normalisation()
    out = Path(output)
    meta = build_metadata(
        version=version or out.name, architecture="paper", architecture_config=config,
        ensemble_size=1, bounds=bounds, input_low=norm["input"]["low"],
        input_high=norm["input"]["high"], input_scaling="standard", output_normalisation=norm["output"],
        training_set={"sha256": file_sha256(y_train), "path": Path(y_train).name,
                      "n_points": int(scalers.kept.sum()), "n_realizations": None,
                      "x_train_sha256": file_sha256(x_train), "x_train_path": Path(x_train).name},
        halo_catalog={"sha256": None, "mass_function_from": Path(mass_function).name},
        epistemic={"method": "mc_dropout", "note": "dropout layers the reference code re-enables"},
        support=support_meta,
        training={"converted_from": {"state_dict": Path(state_dict).name,
                                     "state_dict_sha256": file_sha256(state_dict),
                                     "output_scaler": output_scaler},
                  "residual_correlation": corr_note})
    return write_exported_folder(out, meta, [sd], corr, _mass_function(mass_function),
                                 reference_points=reference_points)


def build_parser(prog: str = "iaemu convert-checkpoint") -> argparse.ArgumentParser:
    """Command-line options of ``iaemu convert-checkpoint``."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                epilog="File layout: see `python -c 'import iaemu_likelihood.training."
                                       "convert as c; help(c)'`.")
    p.add_argument("--state-dict", required=True, help="torch.save(model.state_dict()) of the reference model")
    p.add_argument("--x-train", required=True, help=".npy (n, 7) training inputs")
    p.add_argument("--y-train", required=True, help=".npy (n, 3, 20) training outputs (xi, omega, eta means)")
    p.add_argument("--mass-function", required=True,
                   help="iaemu dataset .npz with provenance, or .npz of the binned halo mass function")
    p.add_argument("--output", required=True, help="weights folder to write")
    p.add_argument("--version", help="version name (default: the folder name)")
    p.add_argument("--output-scaler", choices=OUTPUT_SCALERS, default="per-statistic")
    p.add_argument("--bounds", help='JSON {"name": [low, high], ...} (default: training min/max)')
    p.add_argument("--correlation-from", help="iaemu dataset .npz to estimate the residual correlation")
    p.add_argument("--architecture-config", help="JSON overrides of networks.PAPER_DEFAULTS")
    p.add_argument("--support", choices=SUPPORT_CHOICES, default="infer",
                   help="training-support band: fitted to --x-train (default) or none (box only)")
    p.add_argument("--support-from", help="iaemu dataset .npz whose design rule gives the support band")
    return p


def main(args) -> int:
    """Run ``iaemu convert-checkpoint``; returns 0."""
    folder = convert_checkpoint(
        args.state_dict, args.x_train, args.y_train, args.output, args.mass_function,
        version=args.version, output_scaler=args.output_scaler,
        bounds=_check_bounds_option(_json_option(args.bounds, "--bounds")),
        correlation_from=args.correlation_from,
        architecture_config=_json_option(args.architecture_config, "--architecture-config"),
        support=args.support, support_from=args.support_from)
    log.warning("wrote %s", folder)
    return 0
