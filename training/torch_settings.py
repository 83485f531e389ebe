"""Optimiser and run settings shared by the training configs: :class:`TorchTrainingSettings`.

``iaemu train`` (:class:`~.train_config.TrainConfig`) and ``iaemu field-train``
(:class:`~.field_train.FieldTrainConfig`) both train with AdamW, clip the gradient norm, seed
torch and run on one device with a number of CPU threads. Those keys, their defaults and their
checks live here once; each config extends this class (its YAML keys keep the same names, flat)
and may change a default.
"""
from __future__ import annotations

import dataclasses

__all__ = ["TorchTrainingSettings", "checked_settings"]


@dataclasses.dataclass(kw_only=True)
class TorchTrainingSettings:
    """AdamW, gradient clipping, seed, device and threads of a torch training run.

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

    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    grad_clip: float = 10.0
    seed: int = 0
    device: str = "cpu"
    threads: int = 1


#: Float keys: (minimum, whether the minimum itself is allowed).
_FLOAT_MINIMA = {"learning_rate": (0.0, False), "weight_decay": (0.0, True), "grad_clip": (0.0, False)}
#: Integer keys: minimum.
_INT_MINIMA = {"seed": 0, "threads": 1}


def checked_settings(config: TorchTrainingSettings, where: str | None = None) -> dict:
    """The settings of ``config``, type- and range-checked and normalised.

    Parameters
    ----------
    config : TorchTrainingSettings
        A training config (any subclass).
    where : str, optional
        Prefix of the messages (the config file, or ``--set``): ``"<where>: <key>"``.

    Returns
    -------
    dict
        Key -> checked value (floats, ints, the device name), for every key of this class.

    Raises
    ------
    ConfigError
        A value of the wrong type or out of range, naming the key, the value and what is allowed.
    """
    from ..config_checks import check_float, check_int, check_str

    def at(key):
        return key if where is None else f"{where}: {key}"

    out = {key: check_float(getattr(config, key), at(key), minimum, None, inclusive)
           for key, (minimum, inclusive) in _FLOAT_MINIMA.items()}
    out.update((key, check_int(getattr(config, key), at(key), minimum)) for key, minimum in _INT_MINIMA.items())
    out["device"] = check_str(config.device, at("device"))
    return out
