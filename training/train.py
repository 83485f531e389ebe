"""``iaemu train``: train an emulator on a training set and export a weights folder.

Usage::

    iaemu train training/configs/mlp_default.yaml            # the shipped "mlp" model
    iaemu train training/configs/paper.yaml                  # the reference architecture
    iaemu train CONFIG.yaml --set max_epochs=50 --set ensemble_size=2 --output /tmp/w

What it does
------------
1. Loads the dataset (``data``), drops points whose xi mean is not positive, splits the rest
   **by design point** into train/validation (:func:`~.splits.split_points`). The inputs come
   from the dataset (:func:`~.dataset_io.input_layout`): the seven HOD + alignment parameters,
   and for a dataset generated over an N-body suite also ``Omega_m``, ``sigma_8`` and ``z`` of
   each point's box and snapshot (those that vary); the layout is recorded in the weights'
   metadata, so the runtime and the adapters see the same inputs and training ranges.
2. Fits the input box (dataset bounds; for the cosmology inputs the range of the points) and the
   per-statistic, per-bin output standardisation on the training split only (:mod:`.normalisation`).
3. Trains ``ensemble_size`` members (seeds ``seed + member``; a deep ensemble for ``"mlp"``, one
   network with MC dropout for ``"paper"``) with AdamW, a step learning-rate schedule, gradient
   clipping and the beta-NLL loss of :mod:`.losses` (``warmup_epochs`` at beta = 1, then
   per-statistic betas). Each member stops early when the validation metric (a mix of MSE and
   Gaussian NLL) has not improved for ``patience`` epochs after the warm-up; its best epoch is kept.
4. Checkpoints atomically after every epoch (``checkpoint``; resumed automatically, the result
   is identical to an uninterrupted run) and finally exports the weights folder ``output`` with
   the pooled residual correlation, halo mass function and reference predictions.

Paths in a YAML config are relative to the config file; paths on the command line to the
current directory.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from ..architectures import get_architecture
from ..conventions import PARAM_NAMES, STATISTICS
from ..weights import MASS_FUNCTION_TABLE_FILE
from .dataset_io import file_sha256, files_sha256, input_layout, load_datasets
from .export import (build_metadata, dataset_bounds, dataset_support, residual_correlation,
                     write_exported_folder)
from .losses import beta_nll_loss, beta_vector, validation_metric
from .normalisation import InputScaler, OutputNormaliser, valid_points
from .splits import split_points
from .train_config import ARCHITECTURE_NAMES, TrainConfig, load_config

__all__ = ["TrainConfig", "ARCHITECTURE_NAMES", "load_config", "train", "TrainResult", "build_parser", "main"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
#: Config keys that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = frozenset({"output", "version", "checkpoint", "reference_points", "threads",
                               "max_epochs", "patience", "device"})


@dataclasses.dataclass
class TrainResult:
    """Outcome of :func:`train`: the weights folder (None when stopped before the end) and the
    per-member summaries (best epoch, best validation metric, epochs run)."""

    folder: Path | None
    members: list
    wall_s: float


class _Data:
    """Standardised tensors of one split, on the training device."""

    def __init__(self, torch, x, ym, yv, device):
        self.x = torch.as_tensor(x, dtype=torch.float32, device=device)
        self.ym = torch.as_tensor(ym, dtype=torch.float32, device=device)
        self.yv = torch.as_tensor(yv, dtype=torch.float32, device=device)

    def __len__(self):
        return self.x.shape[0]


def _prepare(config: TrainConfig):
    dataset = load_datasets(config.data)
    ok = valid_points(dataset)
    if not ok.all():
        log.warning("dropping %d of %d points whose realizations are not finite or whose xi mean "
                    "is not positive", int((~ok).sum()), dataset.n_points)
    kept = np.flatnonzero(ok)
    split = split_points(kept.size, val_fraction=config.val_fraction, seed=config.seed)
    train_idx, val_idx = kept[split.train], kept[split.val]
    train_ds, val_ds = dataset.subset(train_idx), dataset.subset(val_idx)
    layout, fixed = input_layout(dataset)
    if layout.n_inputs > len(PARAM_NAMES) or fixed:
        log.info("inputs %s%s", list(layout.param_names),
                 f"; the same at every point (not inputs): {fixed}" if fixed else "")
    bounds = dataset_bounds(dataset, layout)
    scaler = InputScaler.from_bounds(bounds, layout.param_names)
    uncentred = get_architecture(config.architecture).uncentred
    normaliser = OutputNormaliser.fit(train_ds, uncentred=uncentred)
    return dataset, train_idx, val_idx, train_ds, val_ds, bounds, scaler, layout, normaliser


def _atomic_torch_save(torch, obj, path: Path) -> None:
    import io

    from .._io import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _batches(torch, n, batch_size, generator):
    """Shuffled index batches of near-equal size (never a batch of 1, which batch norm rejects)."""
    perm = torch.randperm(n, generator=generator)
    n_batches = max(1, -(-n // batch_size))
    if n > 1 and n // n_batches < 2:
        n_batches = max(1, n // 2)
    return torch.tensor_split(perm, n_batches)


def _network_config(config: TrainConfig, scaler) -> dict:
    """``architecture_config`` of the exported network: the config's, plus the options its
    registry entry derives from the input box (for "factorised": mu at the box edges)."""
    return get_architecture(config.architecture).export_config(config.architecture_config,
                                                               scaler.low, scaler.high)


def _new_member_state(torch, config, member, device, net_config, layout):
    from ..networks import build_network

    torch.manual_seed(config.seed * 1000 + member)
    net = build_network(config.architecture, net_config, layout).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=config.learning_rate,
                            weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=config.lr_step_epochs,
                                            gamma=config.lr_gamma)
    gen = torch.Generator().manual_seed(config.seed * 1000 + member)
    return net, opt, sched, gen


def _check_resumable(saved: dict, config: TrainConfig, data_sha: str) -> None:
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint format {saved.get('format')!r} is not {CHECKPOINT_FORMAT}")
    if saved["data_sha256"] != data_sha:
        raise ValueError("the checkpoint was made on a different training set; use --restart")
    old = json.loads(saved["config"])
    new = config.to_dict()
    changed = sorted(k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k])
    if changed:
        raise ValueError(f"config differs from the checkpoint's in {changed}; use --restart to "
                         "start afresh")


def train(config: TrainConfig, *, restart: bool = False, stop_after_epochs: int | None = None,
          progress: bool | None = None) -> TrainResult:
    """Train (or resume) and export; see the module docstring.

    Parameters
    ----------
    config : TrainConfig
    restart : bool
        Ignore an existing checkpoint.
    stop_after_epochs : int, optional
        Stop after this many epochs in this call, leaving the checkpoint to resume from (for
        time-sliced runs and the resume test); the result then has ``folder=None``.
    progress : bool, optional
        tqdm bars (default: only on a terminal).

    Returns
    -------
    TrainResult
    """
    import torch
    from tqdm.auto import tqdm

    from ..config_checks import check_int, check_torch_device

    check_torch_device(config.device, f"{config.source}: device")  # before any data or step
    if stop_after_epochs is not None:
        stop_after_epochs = check_int(stop_after_epochs, "--stop-after-epochs", minimum=1)
    torch.set_num_threads(int(config.threads))
    t0 = time.perf_counter()
    dataset, train_idx, val_idx, train_ds, val_ds, bounds, scaler, layout, normaliser = _prepare(config)
    table = _suite_mass_function(config, dataset)  # checked before any training step
    data_sha = files_sha256(config.data)
    device = torch.device(config.device)
    names = layout.param_names
    train_d = _Data(torch, scaler.transform(train_ds.inputs(names)), *normaliser.targets(train_ds), device)
    val_d = _Data(torch, scaler.transform(val_ds.inputs(names)), *normaliser.targets(val_ds), device)
    n_real = dataset.n_realizations
    log.info("training %s x%d on %d points (%d validation), %d realizations each",
             config.architecture, config.ensemble_size, len(train_d), len(val_d), n_real)

    ckpt_path = config.checkpoint_path
    state = None
    if ckpt_path.is_file() and not restart:
        state = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        _check_resumable(state, config, data_sha)
        log.info("resuming from %s (member %d, epoch %d)", ckpt_path, state["member"], state["epoch"])
    finished = list(state["finished"]) if state else []
    summaries = list(state["summaries"]) if state else []
    epochs_this_call = 0

    for member in range(len(finished), config.ensemble_size):
        net, opt, sched, gen = _new_member_state(torch, config, member, device,
                                                 _network_config(config, scaler), layout)
        if state is not None and state["member"] == member and "model" in state:
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            epoch, best = state["epoch"], state["best"]
            history = list(state["history"])
        else:
            epoch, history = 0, []
            best = {"metric": float("inf"), "epoch": -1, "state": None, "bad_epochs": 0}
        state = None
        bar = tqdm(total=config.max_epochs, initial=epoch, desc=f"member {member}",
                   disable=(not progress) if progress is not None else None, leave=False)
        while epoch < config.max_epochs:
            if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
                bar.close()
                log.info("stopping after %d epochs as asked; resume from %s", epochs_this_call, ckpt_path)
                return TrainResult(None, summaries, time.perf_counter() - t0)
            te = time.perf_counter()
            beta = beta_vector(epoch, config.warmup_epochs, config.betas)
            net.train()
            total, n_seen = 0.0, 0
            for idx in _batches(torch, len(train_d), config.batch_size, gen):
                idx = idx.to(device)
                mean, var = net(train_d.x[idx])
                loss = beta_nll_loss(mean, var, train_d.ym[idx], train_d.yv[idx], beta.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
                opt.step()
                total += loss.item() * len(idx)
                n_seen += len(idx)
            sched.step()
            net.eval()
            with torch.no_grad():
                mean, var = net(val_d.x)
            metrics = validation_metric(mean, var, val_d.ym, val_d.yv, n_real, config.val_mse_weight)
            if not np.isfinite(metrics["combined"]) or not np.isfinite(total):
                raise FloatingPointError(f"member {member} epoch {epoch}: non-finite loss "
                                         f"(train {total}, validation {metrics}); lower learning_rate")
            history.append({"epoch": epoch, "train": total / n_seen, **metrics,
                            "lr": opt.param_groups[0]["lr"], "s": time.perf_counter() - te})
            if metrics["combined"] < best["metric"]:
                best = {"metric": metrics["combined"], "epoch": epoch, "bad_epochs": 0,
                        "state": {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}}
            elif epoch >= config.warmup_epochs:
                best["bad_epochs"] += 1
            epoch += 1
            epochs_this_call += 1
            bar.update(1)
            bar.set_postfix(val=f"{metrics['combined']:.4f}", best=best["epoch"])
            done = epoch >= config.max_epochs or best["bad_epochs"] >= config.patience
            _atomic_torch_save(torch, {
                "format": CHECKPOINT_FORMAT, "config": json.dumps(config.to_dict()),
                "data_sha256": data_sha, "member": member, "epoch": config.max_epochs if done else epoch,
                "model": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "best": best, "history": history,
                "finished": finished, "summaries": summaries}, ckpt_path)
            if done:
                break
        bar.close()
        if best["state"] is None:
            raise RuntimeError(f"member {member} has no validated epoch")
        finished.append(best["state"])
        summaries.append({"member": member, "best_epoch": best["epoch"],
                          "best_val_metric": best["metric"], "epochs_run": epoch,
                          "final": history[best["epoch"]] if best["epoch"] < len(history) else {},
                          "mean_epoch_s": float(np.mean([h["s"] for h in history]))})
        log.info("member %d: best validation %.5f at epoch %d of %d", member, best["metric"],
                 best["epoch"], epoch)
        # the member boundary: nothing of the finished member's optimiser is needed any more
        _atomic_torch_save(torch, {
            "format": CHECKPOINT_FORMAT, "config": json.dumps(config.to_dict()),
            "data_sha256": data_sha, "member": member + 1, "epoch": 0, "finished": finished,
            "summaries": summaries}, ckpt_path)

    folder = _export(config, dataset, train_ds, bounds, scaler, layout, normaliser, finished, summaries,
                     data_sha, train_idx, val_idx, time.perf_counter() - t0, table)
    return TrainResult(folder, summaries, time.perf_counter() - t0)


def _calibrate_epistemic(meta, members, corr, mass_function, val_ds) -> dict:
    """``scale``, ``correlation`` and ``calibration`` entries of metadata["epistemic"] (see
    :mod:`.calibration`)."""
    from ..emulator import IAEmulator
    from .calibration import LEVEL, fit_epistemic_correlation, fit_epistemic_scale

    arrays = [{k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
               for k, v in sd.items()} for sd in members]
    emu = IAEmulator(meta, arrays, corr, mass_function)
    inputs = val_ds.inputs(emu.param_names)
    keep = np.atleast_1d(emu.in_support(inputs))
    pred = emu.predict(inputs[keep], epistemic=True).as_dict()
    samples = {s: val_ds.stat(s)[keep] for s in STATISTICS}
    fit = fit_epistemic_scale(pred, samples)
    scale = {s: fit[s]["scale"] for s in STATISTICS}
    corr_e = fit_epistemic_correlation(pred, samples, scale) if keep.sum() >= 3 else None
    return {"scale": scale,
            "correlation": None if corr_e is None else np.round(corr_e, 6).tolist(),
            "calibration": {"method": f"variance scale matching {LEVEL:.0%} coverage of the "
                                      "validation means (iaemu_likelihood.training.calibration)",
                            "n_points": int(keep.sum()),
                            **{s: {k: v for k, v in fit[s].items() if k != "scale"} for s in STATISTICS}}}


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _point_inputs_summary(dataset, layout) -> dict | None:
    """The ``training_set.point_inputs`` metadata entry of a dataset over an N-body suite: its
    boxes, redshifts and the cosmology inputs it holds fixed (None for a one-catalog dataset)."""
    entry = dataset.provenance.get("point_inputs")
    if not entry:
        return None
    _, fixed = input_layout(dataset)
    return {"boxes": sorted(set(entry.get("box") or ())), "redshifts": sorted(set(entry.get("z") or ())),
            "inputs": [n for n in layout.param_names if n not in PARAM_NAMES], "fixed": fixed}


def _suite_mass_function(config, dataset):
    """The host mass-function table of a dataset generated over an N-body suite (``config``'s
    ``mass_function_table``, checked against the dataset: :func:`.mass_function.table_for_dataset`);
    None for a dataset of one catalog, whose provenance carries its binned mass function."""
    from ..errors import ConfigError

    catalog = dataset.provenance.get("halo_catalog") or {}
    if dataset.provenance.get("point_inputs") is None:
        if config.mass_function_table is not None:
            raise ConfigError(f"{config.source}: mass_function_table = {config.mass_function_table!r}: the "
                              f"dataset {config.data} was made from one halo catalog (its provenance holds "
                              "its mass function); allowed: no mass_function_table")
        if dataset.provenance.get("halo_mass_function") is None:
            raise ValueError(f"{config.data} has no 'halo_mass_function' in its provenance; the weights "
                             "folder needs the catalog's binned host mass function")
        return None
    if config.mass_function_table is None:
        raise ConfigError(f"{config.source}: mass_function_table is not set; the dataset {config.data} was "
                          f"generated over the N-body suite {catalog.get('suite')!r}: allowed: the path of its "
                          "host mass-function table (python -m iaemu_likelihood.training.mass_function "
                          "GENERATION_CONFIG OUT.npz)")
    from .mass_function import table_for_dataset

    return table_for_dataset(config.mass_function_table, dataset)


def _table_entry(table, layout, bounds, fixed):
    """(``metadata["mass_function_table"]``, the binned mass function at the centre of the training
    box written as ``halo_mass_function.npz``) of weights trained over a suite."""
    from ..cosmology_inputs import COSMOLOGY_INPUTS
    from ..mass_function_table import MassFunctionInterpolator

    centre = {i.name: (0.5 * (bounds[i.name][0] + bounds[i.name][1]) if i.name in layout.param_names
                       else fixed[i.name]) for i in COSMOLOGY_INPUTS}
    binned = MassFunctionInterpolator(table).mass_function(*centre.values())
    entry = {"file": MASS_FUNCTION_TABLE_FILE, "fixed": fixed, "boxes": table["provenance"].get("boxes"),
             "redshifts": np.asarray(table["z"]).tolist(), "min_mass": table["provenance"].get("min_mass"),
             "description": ("host n(>M) per (box, z) of the suite, interpolated to each point's Omega_m, "
                             "sigma_8, z for n_gal and f_sat (iaemu_likelihood.mass_function_table); "
                             "halo_mass_function.npz holds it at reference_point"),
             "reference_point": centre}
    return entry, binned


def _export(config, dataset, train_ds, bounds, scaler, layout, normaliser, members, summaries, data_sha,
            train_idx, val_idx, wall_s, table=None) -> Path:
    out = Path(config.output)
    prov = dataset.provenance
    mass_function = prov.get("halo_mass_function")
    if table is not None:
        table_entry, mass_function = _table_entry(table, layout, bounds, input_layout(dataset)[1])
    catalog = dict(prov.get("halo_catalog") or {})
    catalog.setdefault("sha256", None)
    if config.architecture == "paper" and config.ensemble_size == 1:
        epistemic = {"method": "mc_dropout", "note": "variance over seeded MC-dropout passes"}
    else:
        epistemic = {"method": "deep_ensemble", "members": config.ensemble_size,
                     "note": "population variance of the members' physical means"}
    meta = build_metadata(
        version=config.version or out.name, architecture=config.architecture,
        architecture_config=_network_config(config, scaler), ensemble_size=len(members), bounds=bounds,
        input_low=scaler.low, input_high=scaler.high, output_normalisation=normaliser.to_dict(),
        training_set={"sha256": data_sha, "path": "+".join(Path(p).name for p in _as_list(config.data)),
                      "n_points": int(dataset.n_points), "n_realizations": int(dataset.n_realizations),
                      "n_train_points": int(train_idx.size), "n_val_points": int(val_idx.size),
                      "files": [{"path": Path(p).name, "sha256": file_sha256(p)}
                                for p in _as_list(config.data)]},
        halo_catalog=catalog, epistemic=epistemic, support=dataset_support(dataset), layout=layout,
        caveats=config.caveats,
        training={"config": {k: v for k, v in config.to_dict().items()
                             if k not in ("data", "output", "checkpoint")},
                  "members": summaries, "wall_s": round(wall_s, 1),
                  "variance_head": ("variance of ONE realization in standardised space, trained "
                                    "with beta-NLL on the Bessel-corrected scatter of each point's "
                                    "realizations about their own mean (iaemu_likelihood.training.losses)"),
                  "residual_correlation": "pooled over the training split's realizations"})
    summary = _point_inputs_summary(dataset, layout)
    if summary:
        meta["training_set"]["point_inputs"] = summary
    if table is not None:
        meta["mass_function_table"] = table_entry
    corr = residual_correlation(train_ds)
    val_ds = dataset.subset(val_idx)
    if val_ds.n_points >= 2:
        meta["epistemic"].update(_calibrate_epistemic(meta, members, corr, mass_function, val_ds))
    return write_exported_folder(out, meta, members, corr, mass_function,
                                 reference_points=config.reference_points,
                                 extra_points=train_ds.inputs(layout.param_names), mass_function_table=table)


def build_parser(prog: str = "iaemu train") -> argparse.ArgumentParser:
    """Command-line options of ``iaemu train``."""
    p = argparse.ArgumentParser(prog=prog, description="Train an emulator and export a weights folder.")
    p.add_argument("config", help="training config (YAML), e.g. training/configs/mlp_default.yaml")
    p.add_argument("--data", nargs="+", help="training dataset .npz file(s) (overrides the config)")
    p.add_argument("--output", help="weights folder to write (overrides the config)")
    p.add_argument("--checkpoint", help="checkpoint file (default: <output>.checkpoint.pt)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key (YAML value), repeatable")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--stop-after-epochs", type=int, metavar="N",
                   help="stop after N epochs in this run, leaving a checkpoint to resume from")
    p.add_argument("--evaluate", metavar="TEST_NPZ",
                   help="run `iaemu evaluate` on this test set after exporting")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(args) -> int:
    """Run ``iaemu train`` with parsed ``args``; returns the exit status."""
    from ..config_checks import parse_set_overrides

    overrides = parse_set_overrides(args.set)
    for key in ("data", "output", "checkpoint"):
        value = getattr(args, key)
        if isinstance(value, list):
            value = [str(Path(v).resolve()) for v in value]
            overrides[key] = value[0] if len(value) == 1 else value
        elif value is not None:
            overrides[key] = str(Path(value).resolve())
    config = load_config(args.config, overrides)
    result = train(config, restart=args.restart, stop_after_epochs=args.stop_after_epochs,
                   progress=False if args.no_progress else None)
    if result.folder is None:
        log.warning("stopped early; run the same command again to resume")
        return 0
    log.warning("wrote %s in %.0f s", result.folder, result.wall_s)
    if args.evaluate:
        from .evaluate import evaluate_folder

        # the folder was created by this run: the report goes into it, then it is re-sealed
        evaluate_folder(result.folder, args.evaluate, into_weights=True)
    return 0
