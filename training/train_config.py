"""The configuration of ``iaemu train``: :class:`TrainConfig`, its checks and :func:`load_config`.

Every key of a training YAML is a field of :class:`TrainConfig`; each is type- and range-checked
when the config is built (:class:`~iaemu_likelihood.errors.ConfigError` naming the file or
``--set``, the key, the value and what is allowed). Training itself: :mod:`.train`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..architectures import architecture_names, get_architecture
from ..config_fields import checked_fields, setting
from ..conventions import STATISTICS
from ..errors import ConfigError
from ..weights_checks import MAX_CAVEAT_CHARS, is_caveat
from .losses import DEFAULT_BETAS
from .torch_settings import TorchTrainingSettings

__all__ = ["TrainConfig", "ARCHITECTURE_NAMES", "load_config"]


@dataclasses.dataclass
class TrainConfig(TorchTrainingSettings):
    """Everything that defines a training run (YAML keys have the same names).

    The optimiser and run keys (``learning_rate``, ``weight_decay``, ``grad_clip``, ``seed``,
    ``device``, ``threads``) are those of :class:`~.torch_settings.TorchTrainingSettings`, with
    its defaults: ``seed`` seeds the split, the initialisations and the batch order; 1 thread is
    fastest for these small matrices on a shared machine; resuming reproduces an uninterrupted
    run exactly on the CPU (dropout draws on a GPU follow its own generator).

    Attributes
    ----------
    data : str or list of str
        Training dataset (``.npz`` of :mod:`.dataset_io`), or several with the same prior and
        halo catalog, concatenated (:func:`~.dataset_io.load_datasets`).
    output : str
        Weights folder to write.
    version : str, optional
        Version name in metadata.json; default the output folder's name.
    checkpoint : str, optional
        Checkpoint file; default ``<output>.checkpoint.pt`` next to the folder.
    architecture, architecture_config :
        Passed to :func:`iaemu_likelihood.networks.build_network`.
    ensemble_size : int
        Members trained with seeds ``seed + i`` (use 1 with MC dropout for "paper").
    val_fraction : float
        Fraction of design points held out for validation and early stopping.
    batch_size, max_epochs, warmup_epochs, patience :
        Points per step; epoch limit; beta = 1 epochs; early-stopping patience (epochs after
        the warm-up without improvement).
    betas : dict
        Statistic -> beta after the warm-up.
    lr_step_epochs, lr_gamma :
        StepLR settings: the learning rate is multiplied by ``lr_gamma`` every ``lr_step_epochs``.
    val_mse_weight : float
        Validation metric = w * MSE + (1 - w) * NLL.
    reference_points : int
        Points stored in reference_predictions.npz.
    mass_function_table : str, optional
        For a dataset generated over an N-body suite (required then, refused otherwise): the host
        mass function table of its (box, z) catalogs (``python -m
        iaemu_likelihood.training.mass_function GENERATION_CONFIG OUT.npz``), shipped with the
        weights so that n_gal and f_sat follow each point's Omega_m, sigma_8 and z.
    caveats : list of str
        Known limits of the weights, one sentence each, written to ``metadata["caveats"]`` and the
        folder's README; every load logs them once as warnings and ``iaemu info`` prints them.
    """

    data: str | list
    output: str
    version: str | None = None
    checkpoint: str | None = None
    architecture: str = "mlp"
    architecture_config: dict = dataclasses.field(default_factory=dict)
    ensemble_size: int = setting(4, 1)
    val_fraction: float = setting(0.1, 0.0, 0.99, min_inclusive=False)
    batch_size: int = setting(64, 1)
    max_epochs: int = setting(400, 1)
    warmup_epochs: int = setting(40, 0)
    patience: int = setting(60, 0)
    betas: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_BETAS))
    lr_step_epochs: int = setting(120, 1)
    lr_gamma: float = setting(0.3, 0.0, 1.0, min_inclusive=False)
    val_mse_weight: float = setting(0.7, 0.0, 1.0)
    reference_points: int = setting(4, 0)
    mass_function_table: str | None = None
    caveats: list = dataclasses.field(default_factory=list)

    source: dataclasses.InitVar[str] = "training config"

    def __post_init__(self, source):
        for name, value in _checked_values(self, str(source)).items():
            setattr(self, name, value)
        self.source = str(source)  # not a field: where the values came from, for messages

    @property
    def checkpoint_path(self) -> Path:
        """Where the checkpoint lives."""
        if self.checkpoint:
            return Path(self.checkpoint)
        out = Path(self.output)
        return out.with_name(out.name + ".checkpoint.pt")

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return dataclasses.asdict(self)


#: Architectures a config may name (the registry's, read when this module is imported).
ARCHITECTURE_NAMES = architecture_names()


def _checked_values(config: TrainConfig, where: str) -> dict:
    """Every field of ``config`` type- and range-checked (ConfigError naming ``where`` and the
    key); returns the normalised values."""
    from ..config_checks import check_float, check_keys, check_mapping, check_str

    out = {}
    data = config.data
    if isinstance(data, (list, tuple)):
        if not data:
            raise ConfigError(f"{where}: data = []: list at least one dataset file")
        out["data"] = [check_str(v, f"{where}: data[{k}]") for k, v in enumerate(data)]
    else:
        out["data"] = check_str(data, f"{where}: data")
    out["output"] = check_str(config.output, f"{where}: output")
    for name in ("version", "checkpoint", "mass_function_table"):
        value = getattr(config, name)
        out[name] = None if value is None else check_str(value, f"{where}: {name}")
    if not isinstance(config.caveats, (list, tuple)):
        raise ConfigError(f"{where}: caveats = {config.caveats!r}: give a list of sentences")
    out["caveats"] = [check_str(v, f"{where}: caveats[{k}]") for k, v in enumerate(config.caveats)]
    bad = [k for k, v in enumerate(out["caveats"]) if not is_caveat(v)]
    if bad:
        raise ConfigError(f"{where}: caveats[{bad[0]}] = {config.caveats[bad[0]]!r}: give a "
                          f"non-empty sentence of at most {MAX_CAVEAT_CHARS} characters")
    out["architecture"] = check_str(config.architecture, f"{where}: architecture",
                                    choices=ARCHITECTURE_NAMES)
    out["architecture_config"] = _checked_architecture_config(
        out["architecture"], config.architecture_config, f"{where}: architecture_config")
    out.update(checked_fields(config, where))  # the numeric keys and device, with their ranges
    betas = check_mapping(config.betas, f"{where}: betas")
    check_keys(betas, STATISTICS, f"{where}: betas", required=STATISTICS)
    out["betas"] = {s: check_float(betas[s], f"{where}: betas: {s}", 0.0, 1.0) for s in STATISTICS}
    return out


def _checked_architecture_config(architecture: str, value, where: str) -> dict:
    """Keys against the network's defaults (with a suggestion); each value of its default's type:
    integers >= 1, floats finite and >= 0 (``dropout`` < 1), ``activation`` a known name."""
    from ..config_checks import (check_float, check_float_array, check_int, check_keys, check_mapping,
                                 check_str)
    from ..networks import _ACTIVATIONS  # the names the networks accept

    mapping = check_mapping(value if value is not None else {}, where)
    defaults = get_architecture(architecture).defaults
    check_keys(mapping, defaults, where)
    out = {}
    for key, v in mapping.items():
        default, at = defaults[key], f"{where}: {key}"
        if key == "activation":
            out[key] = check_str(v, at, choices=tuple(sorted(_ACTIVATIONS)))
        elif isinstance(default, bool):
            out[key] = v
        elif isinstance(default, int):
            out[key] = check_int(v, at, minimum=1)
        elif isinstance(default, float):
            out[key] = check_float(v, at, minimum=0.0, maximum=0.99 if key == "dropout" else None)
        elif isinstance(default, list):
            arr = check_float_array(v, at, shape=(len(default),))
            out[key] = [int(x) for x in arr] if all(isinstance(d, int) for d in default) else arr.tolist()
        else:
            out[key] = v
    return out


def load_config(path, overrides: dict | None = None) -> TrainConfig:
    """Read and validate a YAML config; relative ``data``/``output``/``checkpoint``/
    ``mass_function_table`` are taken from its folder.

    ``overrides`` (already-resolved values, e.g. from ``--set`` or ``--data``) replace YAML keys;
    errors in them name the option.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ConfigError
        Invalid YAML, an unknown key (with a "did you mean"), a wrong type or an out-of-range
        value, naming the file (or ``--set``), the key, the value and what is allowed.
    """
    from ..config_checks import check_keys, load_yaml_mapping

    path = Path(path)
    raw = load_yaml_mapping(path, "training config")

    def resolve(value):
        if not isinstance(value, str):
            return value  # the type check below names it
        return value if Path(value).is_absolute() else str((path.parent / value).resolve())

    for key in ("data", "output", "checkpoint", "mass_function_table"):
        if isinstance(raw.get(key), list):
            raw[key] = [resolve(v) for v in raw[key]]
        elif raw.get(key) is not None:
            raw[key] = resolve(raw[key])
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    check_keys(raw, known, str(path))
    overrides = dict(overrides or {})
    check_keys(overrides, known, f"{path}: --set")
    for key in ("data", "output"):
        if key not in raw and key not in overrides:
            raise ConfigError(f"{path}: required key {key!r} is missing")
    where = (f"{path} (overridden on the command line: {', '.join(sorted(overrides))})" if overrides
             else str(path))
    return TrainConfig(**{**raw, **overrides}, source=where)
