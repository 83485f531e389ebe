"""Optimiser and run settings shared by the training configs: :class:`TorchTrainingSettings`.

``iaemu train`` (:class:`~.train_config.TrainConfig`) and ``iaemu field-train``
(:class:`~.field_train.FieldTrainConfig`) both train with AdamW, clip the gradient norm, seed
torch and run on one device with a number of CPU threads. Those keys, their defaults and their
checks live here once; each config extends this class (its YAML keys keep the same names, flat)
and may change a default (:func:`~iaemu_likelihood.config_fields.with_default`).
"""
from __future__ import annotations

import dataclasses

from ..config_fields import setting

__all__ = ["TorchTrainingSettings"]


@dataclasses.dataclass(kw_only=True)
class TorchTrainingSettings:
    """AdamW, gradient clipping, seed, device and threads of a torch training run.

    Each key is a :func:`~iaemu_likelihood.config_fields.setting` (checked with the config's
    other keys by :func:`~iaemu_likelihood.config_fields.checked_fields`).

    Attributes
    ----------
    learning_rate : float
        AdamW learning rate (> 0), at the start of the config's schedule.
    weight_decay : float
        AdamW decoupled weight decay (>= 0).
    grad_clip : float
        Largest gradient norm (> 0); larger gradients are scaled down to it.
    seed : int
        Seed (>= 0) of the initialisations and of the batch draws.
    device : str
        torch device for training, e.g. ``"cpu"`` or ``"cuda"``; checkpoints and exported
        weights are always stored on the CPU.
    threads : int
        torch CPU threads (>= 1).
    """

    learning_rate: float = setting(2e-3, 0.0, min_inclusive=False)
    weight_decay: float = setting(1e-5, 0.0)
    grad_clip: float = setting(10.0, 0.0, min_inclusive=False)
    seed: int = setting(0, 0)
    device: str = setting("cpu")
    threads: int = setting(1, 1)
