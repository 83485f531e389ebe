"""``iaemu field-train``: train the field-level painter on sub-volumes and export a painter folder.

Usage::

    iaemu field-train training/configs/field_painter.yaml
    iaemu field-train training/configs/field_painter.yaml --set steps=200 --set device=cuda

Data: the boxes of :mod:`.field_data` (``density_n{n_mesh}.npz`` and ``galaxies_{tag}.npz`` in
each folder of ``boxes``). Each step draws ``batch_size`` crops -- a random box, HOD point,
realization, origin (uniform, or for a fraction ``dense_fraction`` near a voxel drawn in proportion
to the density) and one of the 48 axis permutations/flips (the fields are statistically
isotropic) -- of ``crop + 2 context`` voxels of density (periodic wrap), and scores the network
(:mod:`iaemu_likelihood.field.network`) on the central ``crop^3`` voxels only, so the zero padding
of the convolutions never touches the loss. The crops of step ``i`` depend only on ``(seed, i)``,
so a run resumed from its checkpoint (atomic, every ``checkpoint_every`` steps) draws the same
data as an uninterrupted one. Paths in the YAML are relative to the config file.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import time
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, npz_bytes
from ..config_fields import checked_fields, setting, with_default
from ..errors import ConfigError
from .field_data import HOD_NAMES, load_density, load_galaxies
from .torch_settings import TorchTrainingSettings

__all__ = ["FieldTrainConfig", "load_config", "train", "build_parser", "main"]

logger = logging.getLogger(__name__)

#: Columns of the loss history (``loss.txt``, the checkpoint's ``history``).
HISTORY_COLUMNS = ("step", "cls_loss", "count_nll", "distill_loss")


@dataclasses.dataclass
class FieldTrainConfig(TorchTrainingSettings):
    """Everything that defines a painter training run (YAML keys have the same names).

    The optimiser and run keys (``learning_rate``, ``weight_decay``, ``grad_clip``, ``seed``,
    ``device``, ``threads``) are those of :class:`~.torch_settings.TorchTrainingSettings`, here
    with ``grad_clip`` 5 and 2 threads by default; the learning rate decays as a cosine to 5% of
    ``learning_rate`` over ``steps``.

    Attributes
    ----------
    boxes : list of str
        Training box folders (never the held-out test box).
    output : str
        Painter folder to write.
    workdir : str
        Folder of the checkpoint and the loss log.
    tag : str
        Galaxy set of each box (``galaxies_{tag}.npz``).
    n_mesh : int
        Mesh of the galaxy counts (voxel = box / n_mesh).
    input_factor : int
        The density mesh is ``input_factor * n_mesh`` per side (sub-voxel cells as channels, see
        :func:`iaemu_likelihood.field.network.space_to_depth`); 1 = the galaxy mesh itself.
    kind : str
        Network kind (:data:`iaemu_likelihood.field.network.KINDS`): ``"unet"`` (HOD parameters as
        input channels of one U-Net) or ``"encoder_head"`` (an HOD-independent U-Net encoder of the
        density and a per-voxel HOD-conditioned head).
    channels, strides, num_res_units : MONAI UNet settings.
    features, head_width : int
        ``encoder_head`` only: feature channels per voxel out of the encoder, width of the head.
    targets_per_crop : int
        HOD targets (point, realization) scored on each crop. With ``encoder_head`` the crop is
        encoded once for all of them, so each encoder pass sees that many labellings of its voxels.
    context : int
        Voxels of periodic context around each crop (and around the box when painting).
    crop, batch_size, steps : int
        Side of the scored crop (voxels), crops per step, optimiser steps.
    pos_weight : float
        Weight of voxels with >= 1 galaxy in the classifier loss (recall over precision).
    count_weight : float
        Weight of the count NLL relative to the classifier loss.
    block_weight : float
        Weight of the Poisson NLL of block counts (:func:`~iaemu_likelihood.field.network.block_count_nll`).
    block_sizes : list of int
        Block sides (voxels) of that term; each must divide ``crop``.
    dense_fraction : float
        Fraction of crops centred (within +-crop/4) on a voxel drawn with probability proportional
        to the dark-matter density; the rest are uniform.
    loader_workers : int
        Processes that draw the crops ahead of the optimiser (0 = in the training process). A GPU
        step is faster than one process can cut crops; the batches are identical whatever the count.
    checkpoint_every : int
    version : str
        Version name in painter.json (default the output folder's name).
    init_weights : str, optional
        Painter folder (a path relative to the config, or a shipped version name) whose network
        weights and input normalisation start the run: a fine-tune. Its ``architecture_config``
        must equal this config's. Recorded in ``painter.json`` (``training.initialised_from``).
    ema_decay : float
        Decay per step of an exponential moving average of the weights (0 = off, else in
        [0, 1)); the exported painter holds the averaged weights, an average over the last
        ~``1 / (1 - ema_decay)`` steps that smooths the step-to-step noise of the optimiser.
    teacher : str, optional
        Painter folder (relative to the config) or shipped version whose classifier is distilled
        into this network: its raw logits averaged over ``teacher_symmetries`` cube symmetries
        (:meth:`~iaemu_likelihood.field.GalaxyPainter.raw_outputs`) on each training box and HOD point
        are soft targets of a binary cross-entropy with this network's logits, added to the loss
        with weight ``distill_weight``. The average over symmetries ranks voxels better than any one
        orientation of the same network, and a network trained towards it keeps part of that gain at
        the cost of one encoding. Computed once per box (a few minutes) and cached in ``workdir``.
        Its mesh must equal the config's.
    teacher_symmetries : int
        Cube symmetries the teacher is averaged over (1 to 8).
    distill_weight : float
        Weight of the distillation term (with ``teacher``).
    """

    boxes: list
    output: str
    workdir: str
    tag: str = "train"
    n_mesh: int = setting(128, 1)
    input_factor: int = setting(1, 1, 4)
    kind: str = "unet"
    channels: list = dataclasses.field(default_factory=lambda: [8, 16, 32])
    strides: list = dataclasses.field(default_factory=lambda: [2, 2])
    num_res_units: int = setting(1, 1)
    features: int = setting(32, 1)
    head_width: int = setting(32, 1)
    targets_per_crop: int = setting(1, 1)
    context: int = setting(4, 0)
    crop: int = setting(24, 1)
    batch_size: int = setting(4, 1)
    steps: int = setting(2000, 1)
    pos_weight: float = setting(10.0, 0.0, min_inclusive=False)
    count_weight: float = setting(0.5, 0.0)
    block_weight: float = setting(0.0, 0.0)
    block_sizes: list = dataclasses.field(default_factory=lambda: [4, 8])
    dense_fraction: float = setting(0.5, 0.0, 1.0)
    loader_workers: int = setting(0, 0)
    checkpoint_every: int = setting(100, 1)
    version: str | None = None
    init_weights: str | None = None
    ema_decay: float = setting(0.0, 0.0, 1.0)
    teacher: str | None = None
    teacher_symmetries: int = setting(8, 1, 8)
    distill_weight: float = setting(1.0, 0.0)
    grad_clip: float = with_default(TorchTrainingSettings, "grad_clip", 5.0)
    threads: int = with_default(TorchTrainingSettings, "threads", 2)

    def __post_init__(self):
        from ..config_checks import check_int

        if not isinstance(self.boxes, list) or not self.boxes:
            raise ConfigError(f"boxes = {self.boxes!r}: list at least one training box folder")
        for name, value in checked_fields(self).items():
            setattr(self, name, value)
        if not isinstance(self.block_sizes, list) or not self.block_sizes:
            raise ConfigError(f"block_sizes = {self.block_sizes!r}: list at least one block side (voxels)")
        self.block_sizes = [check_int(b, "block_sizes", minimum=1) for b in self.block_sizes]
        for b in self.block_sizes if self.block_weight > 0 else ():
            if self.crop % b:
                raise ConfigError(f"block_sizes entry {b} does not divide crop = {self.crop}")
        if self.ema_decay >= 1:
            raise ConfigError(f"ema_decay = {self.ema_decay!r}: must be in [0, 1) (0 = no weight average)")
        from iaemu_likelihood.field.network import KINDS

        if self.kind not in KINDS:
            raise ConfigError(f"kind = {self.kind!r}; allowed: {list(KINDS)}")
        if len(self.channels) != len(self.strides) + 1:
            raise ConfigError(f"channels {self.channels} must have one more entry than strides {self.strides}")
        multiple = int(np.prod(self.strides))
        if (self.crop + 2 * self.context) % multiple:
            raise ConfigError(f"crop + 2 context = {self.crop + 2 * self.context} must be a multiple of "
                              f"prod(strides) = {multiple}")

    def architecture_config(self) -> dict:
        config = {"n_params": len(HOD_NAMES), "channels": list(map(int, self.channels)),
                  "strides": list(map(int, self.strides)), "num_res_units": self.num_res_units,
                  "context": self.context, "input_factor": self.input_factor}
        if self.kind != "unet":
            config.update(kind=self.kind, features=self.features, head_width=self.head_width)
        return config


def load_config(path, overrides: dict | None = None) -> FieldTrainConfig:
    """Read a YAML config (paths relative to its folder); ``overrides`` replace keys."""
    from ..config_checks import check_keys, load_yaml_mapping

    path = Path(path)
    raw = load_yaml_mapping(path, "field training config")
    raw.update(overrides or {})
    check_keys(raw, [f.name for f in dataclasses.fields(FieldTrainConfig)], str(path),
               required=("boxes", "output", "workdir"))

    def resolve(value):
        return value if Path(value).is_absolute() else str((path.parent / value).resolve())

    raw["boxes"] = [resolve(b) for b in raw["boxes"]]
    for key in ("init_weights", "teacher"):
        if raw.get(key) is not None and (path.parent / str(raw[key])).exists():
            raw[key] = resolve(str(raw[key]))  # else: a shipped version name
    raw["output"], raw["workdir"] = resolve(raw["output"]), resolve(raw["workdir"])
    return FieldTrainConfig(**raw)


class _CropSampler:
    """Random crops of (normalised density, galaxy counts, normalised HOD) from the training boxes."""

    def __init__(self, config: FieldTrainConfig, bounds: dict, input_normalisation: dict | None = None):
        from iaemu_likelihood.field.network import normalise_density, normalise_hod

        self.config = config
        self.n, f = config.n_mesh, config.input_factor
        fine = [load_density(b, self.n * f)[0] for b in config.boxes]
        if input_normalisation is None:  # log1p(rho) standardised over the training boxes
            logs = np.concatenate([np.log1p(r).ravel()[::7] for r in fine])
            self.shift, self.scale = float(logs.mean()), float(logs.std())
        else:  # a fine-tune keeps the normalisation its starting network was trained with
            self.shift, self.scale = float(input_normalisation["shift"]), float(input_normalisation["scale"])
        self.sets = [load_galaxies(b, config.tag) for b in config.boxes]
        # the teacher's raw logits (float16, one (n, n, n) mesh per HOD point of each box) and its
        # painter.json record (training.teacher), or None
        self.teacher = self.teacher_record = None
        if config.teacher is not None:
            teacher, self.teacher_record = _load_teacher(config)
            self.teacher = [_teacher_logits(config, teacher, self.teacher_record["weights_sha256"], b, r, s)
                            for b, r, s in zip(config.boxes, fine, self.sets)]
        self.x = [normalise_density(r, self.shift, self.scale).astype(np.float32) for r in fine]
        n = self.n
        rhos = [r.reshape(n, f, n, f, n, f).mean(axis=(1, 3, 5)) for r in fine]  # the galaxy mesh
        del fine
        # crops centred on a voxel drawn with probability proportional to the density (half of them):
        # the choice depends on the input only, so P(galaxies | density) is learned without bias,
        # while fewer steps are spent in empty voids
        self.cdf = [np.cumsum(r.ravel(), dtype=np.float64) / float(r.sum(dtype=np.float64)) for r in rhos]
        low = [bounds[k][0] for k in HOD_NAMES]
        high = [bounds[k][1] for k in HOD_NAMES]
        self.params = [normalise_hod(s.hod, low, high) for s in self.sets]
        # galaxy voxel coordinates (int16) per (box, point, realization)
        self.ijk = []
        for s in self.sets:
            per = []
            for p in range(s.n_points):
                per.append([np.floor(np.mod(s.positions(p, r), s.box_size) * (self.n / s.box_size))
                            .astype(np.int16).clip(0, self.n - 1) for r in range(s.n_realizations)])
            self.ijk.append(per)

    def batch(self, step: int):
        """(x (B, 1, fS, fS, fS), params (B, K, 5), counts (B, K, c, c, c)) for one step; S = crop + 2 context,
        f = input_factor, K = targets_per_crop (HOD points and realizations of the crop's box); with a
        teacher, also its logits (B, K, c, c, c) on the same voxels (the random draws are the same)."""
        c, ctx, n, f = self.config.crop, self.config.context, self.n, self.config.input_factor
        rng = np.random.default_rng([self.config.seed, step])
        size = c + 2 * ctx
        xs, ps, ys, ts = [], [], [], []
        for _ in range(self.config.batch_size):
            b = int(rng.integers(len(self.x)))
            s = self.sets[b]
            targets = [(int(rng.integers(s.n_points)), int(rng.integers(s.n_realizations)))
                       for _ in range(self.config.targets_per_crop)]
            if rng.random() < self.config.dense_fraction:
                centre = np.unravel_index(min(int(np.searchsorted(self.cdf[b], rng.random())), n ** 3 - 1), (n,) * 3)
                origin = np.asarray(centre) - c // 2 + rng.integers(-(c // 4), c // 4 + 1, size=3)
            else:
                origin = rng.integers(n, size=3)
            idx = [((o - ctx) * f + np.arange(size * f)) % (n * f) for o in origin]
            x = self.x[b][np.ix_(*idx)]
            y = np.zeros((len(targets), c, c, c), dtype=np.float32)
            for k, (p, r) in enumerate(targets):
                rel = (self.ijk[b][p][r].astype(np.int64) - origin) % n
                inside = (rel < c).all(axis=1)
                np.add.at(y[k], tuple(rel[inside].T), 1.0)
            if self.teacher is not None:  # the scored voxels origin .. origin + c - 1 of each target's point
                centre = np.ix_(*[(o + np.arange(c)) % n for o in origin])
                t = np.stack([self.teacher[b][p][centre] for p, _ in targets]).astype(np.float32)
            perm, flips = rng.permutation(3), rng.random(3) < 0.5
            x = x.transpose(perm)
            y = y.transpose(0, *(perm + 1))
            t = t.transpose(0, *(perm + 1)) if self.teacher is not None else None
            for axis in np.flatnonzero(flips):
                x, y = np.flip(x, axis), np.flip(y, axis + 1)
                t = None if t is None else np.flip(t, axis + 1)
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
            ts.append(None if t is None else np.ascontiguousarray(t))
            ps.append(np.stack([self.params[b][p] for p, _ in targets]))
        out = (np.stack(xs)[:, None], np.stack(ps), np.stack(ys))
        return out if self.teacher is None else (*out, np.stack(ts))


def _load_teacher(config: FieldTrainConfig):
    """(GalaxyPainter, ``training.teacher`` record) of ``config.teacher`` after its mesh check."""
    from iaemu_likelihood.field.painter import GalaxyPainter

    teacher = GalaxyPainter.load(config.teacher, device=config.device)
    for key, want in (("n_mesh", config.n_mesh), ("density_n_mesh", config.n_mesh * config.input_factor)):
        if teacher.metadata["mesh"][key] != want:
            raise ConfigError(f"teacher = {config.teacher!r}: its mesh {key} is {teacher.metadata['mesh'][key]}, "
                              f"the config's {want}")
    record = {**_painter_provenance(teacher.metadata, teacher.folder), "symmetries": config.teacher_symmetries,
              "distill_weight": config.distill_weight}
    return teacher, record


def _teacher_logits(config: FieldTrainConfig, teacher, teacher_sha256: str, box, rho: np.ndarray,
                    galaxies) -> np.ndarray:
    """The teacher's raw logits (float16, (n_points, n, n, n)) on one training box, averaged over
    ``config.teacher_symmetries`` cube symmetries; cached in ``workdir`` (recomputed when the
    teacher's weights, the symmetries, the box's snapshot or its HOD points differ from the cache's)."""
    _, prov = load_density(box, config.n_mesh * config.input_factor)
    stamp = {"teacher_sha256": teacher_sha256,
             "symmetries": str(config.teacher_symmetries), "snapshot_sha256": prov["snapshot_sha256"],
             "hod_sha256": _array_sha256(galaxies.hod)}
    path = Path(config.workdir) / f"teacher_{Path(box).name}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            if set(stamp) <= set(cached.files) and all(str(cached[k]) == v for k, v in stamp.items()):
                logger.info("teacher logits of %s from %s", Path(box).name, path)
                return cached["logits"]
    import torch
    from tqdm.auto import tqdm

    torch.set_num_threads(config.threads)
    hods = [dict(zip(HOD_NAMES, h.tolist())) for h in galaxies.hod]
    outputs = teacher.raw_outputs(rho, hods, box_size=galaxies.box_size, symmetries=config.teacher_symmetries)
    logits = np.stack([out[0, 0].cpu().numpy().astype(np.float16)
                       for out in tqdm(outputs, total=len(hods), desc=f"teacher {Path(box).name}")])
    Path(config.workdir).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, npz_bytes({"logits": logits, **stamp}, compressed=False))
    return logits


def _array_sha256(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _batches(torch, sampler: _CropSampler, start: int, end: int, workers: int, pin: bool = False):
    """The batches of steps ``start .. end - 1`` in order: drawn in this process (``workers = 0``)
    or by ``workers`` forked torch DataLoader processes a few steps ahead (same batches, since a
    step's crops depend only on ``(seed, step)``)."""
    if workers == 0:
        return (sampler.batch(step) for step in range(start, end))

    class Steps(torch.utils.data.Dataset):
        def __len__(self):
            return end - start

        def __getitem__(self, i):
            return tuple(torch.from_numpy(a) for a in sampler.batch(start + i))

    return iter(torch.utils.data.DataLoader(Steps(), batch_size=None, shuffle=False, num_workers=workers,
                                            prefetch_factor=2, pin_memory=pin,
                                            multiprocessing_context="fork"))


def _checkpoint_bytes(torch, net, optimiser, step: int, history: list, average: dict | None = None) -> bytes:
    buffer = io.BytesIO()
    state = {"model": {k: v.cpu() for k, v in net.state_dict().items()},
             "optimiser": optimiser.state_dict(), "step": step,
             "history": torch.tensor(np.asarray(history, dtype=np.float64).reshape(-1, len(HISTORY_COLUMNS)))}
    if average is not None:
        state["weight_average"] = {k: v.cpu() for k, v in average.items()}
    torch.save(state, buffer)
    return buffer.getvalue()


def initial_painter(config: FieldTrainConfig) -> tuple[dict, dict, dict] | None:
    """(metadata, state dict, provenance) of ``config.init_weights`` after its checks, or None.

    The folder's checksums are verified (:func:`~iaemu_likelihood.field.weights.load_painter_folder`)
    and its architecture must equal the config's, else :class:`ConfigError` names the keys that differ.
    """
    if config.init_weights is None:
        return None
    from iaemu_likelihood.field.weights import load_painter_folder

    meta, state, folder = load_painter_folder(config.init_weights)
    want, have = config.architecture_config(), meta["architecture_config"]
    differ = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    if differ:
        raise ConfigError(f"init_weights = {config.init_weights!r}: its architecture differs from the config's in "
                          + ", ".join(f"{k} ({have.get(k)!r} there, {want.get(k)!r} here)" for k in differ))
    return meta, state, _painter_provenance(meta, folder)


def _painter_provenance(meta: dict, folder: Path) -> dict:
    """Version, creation date and weights sha256 of a painter folder (checksums verified)."""
    from iaemu_likelihood.field.weights import WEIGHTS_FILE, verify_painter_checksums

    return {"version": meta.get("version", folder.name), "created": meta.get("created"),
            "weights_sha256": verify_painter_checksums(folder)[WEIGHTS_FILE]}


def _update_average(average: dict, net, decay: float) -> None:
    """``average <- decay average + (1 - decay) weights`` for floating tensors (others copied)."""
    for name, value in net.state_dict().items():
        value = value.detach()
        if value.is_floating_point():
            average[name].lerp_(value, 1.0 - decay)
        else:
            average[name].copy_(value)


def train(config: FieldTrainConfig, stop_at: int | None = None) -> Path | None:
    """Train (resuming from ``workdir/checkpoint.pt`` if present) and export the painter folder.

    ``stop_at``: checkpoint and return None after that step (a time-boxed session); a later
    call resumes exactly where it stopped.
    """
    import torch
    from tqdm.auto import tqdm

    from iaemu_likelihood.field.network import block_count_nll, build_network, count_nll

    from ..config_checks import check_torch_device
    from .design import DesignRule

    device = check_torch_device(config.device)
    torch.set_num_threads(config.threads)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed crop shapes: pick the fastest convolution once
    torch.manual_seed(config.seed)
    rule = DesignRule()
    bounds = {k: rule.bounding_box()[k] for k in HOD_NAMES}
    init_meta, init_state, initialised_from = initial_painter(config) or (None, None, None)
    sampler = _CropSampler(config, bounds, init_meta["input"] if init_meta else None)
    net = build_network(config.architecture_config()).to(device)
    if init_state is not None:
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in init_state.items()})
        logger.info("starting from %s (weights sha256 %s)", initialised_from["version"],
                    initialised_from["weights_sha256"])
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = lambda step: 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(step / config.steps, 1.0)))  # noqa: E731
    workdir = Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = workdir / "checkpoint.pt"
    start, history, saved_average = 0, [], None
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        start, history = int(state["step"]), state["history"].numpy().tolist()
        history = [row + [0.0] * (len(HISTORY_COLUMNS) - len(row)) for row in history]  # earlier runs: 3 columns
        saved_average = state.get("weight_average")
        logger.info("resumed from %s at step %d", ckpt, start)
    average = None
    if config.ema_decay > 0:  # starts from the initial (or resumed) weights
        average = {k: (saved_average[k] if saved_average is not None else v.detach()).clone().to(device)
                   for k, v in net.state_dict().items()}
    t0 = time.perf_counter()
    ctx, c = config.context, config.crop
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    bar = tqdm(range(start, end), initial=start, total=config.steps, desc="field-train")
    batches = _batches(torch, sampler, start, end, config.loader_workers,
                       pin=device.startswith("cuda"))
    for step, batch in zip(bar, batches):
        for group in optimiser.param_groups:
            # a numpy scalar would not reload with weights_only
            group["lr"] = float(config.learning_rate * schedule(step))
        x, p, y, *teacher_logits = (torch.as_tensor(a).to(device, non_blocking=True) for a in batch)
        out = net.targets(net.prepare(x), p, (ctx, c)).flatten(0, 1)  # the scored centre of each crop
        y = y.flatten(0, 1)
        cls, cnt = count_nll(out, y, config.pos_weight)
        loss = cls + config.count_weight * cnt
        distill = torch.zeros(())
        if teacher_logits:  # soft targets: the teacher's probabilities in the same (pos_weight-shifted) logit scale
            distill = torch.nn.functional.binary_cross_entropy_with_logits(
                out[:, 0], torch.sigmoid(teacher_logits[0].flatten(0, 1)))
            loss = loss + config.distill_weight * distill
        if config.block_weight > 0:
            loss = loss + config.block_weight * block_count_nll(out, y, config.pos_weight, config.block_sizes)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimiser.step()
        if average is not None:
            _update_average(average, net, config.ema_decay)
        history.append([step, float(cls.detach()), float(cnt.detach()), float(distill.detach())])
        if (step + 1) % 20 == 0:
            recent = np.asarray(history[-100:])
            bar.set_postfix(cls=f"{recent[:, 1].mean():.4f}", count=f"{recent[:, 2].mean():.3f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == end:
            atomic_write_bytes(ckpt, _checkpoint_bytes(torch, net, optimiser, step + 1, history, average))
            np.savetxt(workdir / "loss.txt", np.asarray(history), header=" ".join(HISTORY_COLUMNS))
    logger.info("trained steps %d-%d in %.1f s", start, end, time.perf_counter() - t0)
    if end < config.steps:
        return None
    return export(config, net.state_dict() if average is None else average, sampler, bounds, rule,
                  np.asarray(history), initialised_from, sampler.teacher_record)


def export(config: FieldTrainConfig, state_dict: dict, sampler: _CropSampler, bounds: dict, rule, history,
           initialised_from: dict | None = None, teacher: dict | None = None) -> Path:
    """Write the painter folder (painter.json, weights.npz, SHA256SUMS) with the weights ``state_dict``
    (the network's, or their average)."""
    from iaemu_likelihood.field.weights import write_painter_folder

    from ..weights_io import sha256_file
    from .catalog_builder import code_versions

    boxes = []
    for b, s in zip(config.boxes, sampler.sets):
        _, prov = load_density(b, config.n_mesh * config.input_factor)
        boxes.append({"name": Path(b).name, "seed": prov["simulation"]["seed"],
                      "snapshot_sha256": prov["snapshot_sha256"], "catalog_sha256": s.provenance["catalog_sha256"],
                      "galaxies_sha256": sha256_file(Path(b) / f"galaxies_{config.tag}.npz"),
                      "n_points": s.n_points, "n_realizations": s.n_realizations,
                      "design_seed": s.provenance["design_seed"]})
    box_size = sampler.sets[0].box_size
    last = history[-200:]
    support = rule.support_metadata()
    meta = {
        "version": config.version or Path(config.output).name,
        "architecture": ("monai.networks.nets.UNet + HOD parameter channels" if config.kind == "unet" else
                         "monai.networks.nets.UNet density encoder + per-voxel HOD-conditioned head"),
        "architecture_config": config.architecture_config(),
        "hod_names": list(HOD_NAMES), "bounds": {k: list(v) for k, v in bounds.items()},
        "support": support,
        "mesh": {"n_mesh": config.n_mesh, "box_size": box_size, "voxel_size": box_size / config.n_mesh,
                 "density_n_mesh": config.n_mesh * config.input_factor,
                 "assignment": "dark matter: CIC (pysco.mesh.CIC) rho / rho_mean on the density mesh; "
                               "galaxies: counts per voxel"},
        "input": {"transform": "log1p", "shift": sampler.shift, "scale": sampler.scale},
        "pos_weight": config.pos_weight,
        "training": {"boxes": boxes, "tag": config.tag, "config": dataclasses.asdict(config),
                     "final_cls_loss": float(last[:, 1].mean()), "final_count_nll": float(last[:, 2].mean()),
                     **({"final_distill_loss": float(last[:, 3].mean()), "teacher": teacher}
                        if teacher else {}),
                     **({"initialised_from": initialised_from} if initialised_from else {})},
        "library_versions": code_versions(("numpy", "torch", "monai", "halotools", "pysco-nbody",
                                           "iaemu-likelihood")),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    meta["training"]["config"].update(boxes=[Path(b).name for b in config.boxes], output=Path(config.output).name,
                                      workdir=Path(config.workdir).name)
    if initialised_from:
        meta["training"]["config"]["init_weights"] = initialised_from["version"]
    if teacher:
        meta["training"]["config"]["teacher"] = teacher["version"]
    folder = write_painter_folder(config.output, meta, {k: v.cpu() for k, v in state_dict.items()})
    logger.info("wrote painter folder %s", folder)
    return folder


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config (training/configs/field_painter.yaml)")
    p.add_argument("--stop-at", type=int, default=None,
                   help="checkpoint and stop after this step (resume later with the same command)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value syntax)")
    return p


def main(args) -> int:
    from ..config_checks import parse_set_overrides

    train(load_config(args.config, parse_set_overrides(args.set)), stop_at=args.stop_at)
    return 0
