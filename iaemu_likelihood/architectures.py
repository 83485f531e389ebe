"""The architecture registry: every emulator network the package can build, load and run.

One :class:`Architecture` per name says what the weights reader, the emulator, training and the
test fixtures need to know: default options, the torch module (training, "paper" inference,
gradients), the numpy mirror (torch-free inference, if any), the state-dict shapes, extra checks
of the weights metadata and what the network predicts. This module does not import torch: the
torch and numpy builders are named as ``"module:attribute"`` strings (or given as callables) and
imported on first use.

Adding an architecture is one :func:`register` call; see ``docs/ARCHITECTURE.md``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module

from .errors import ConfigError

__all__ = ["Architecture", "register", "get_architecture", "architecture_names", "ARCHITECTURES"]

#: name -> :class:`Architecture` (use :func:`register` to add one).
ARCHITECTURES: dict = {}


def _resolve(target):
    """A callable given as itself or as ``"package.module:attribute"``."""
    if callable(target):
        return target
    module, _, path = str(target).partition(":")
    value = import_module(module)
    for attribute in path.split("."):
        value = getattr(value, attribute)
    return value


@dataclass(frozen=True)
class Architecture:
    """One emulator network family.

    Attributes
    ----------
    name : str
        The ``architecture`` entry of weights metadata and training configs.
    defaults : mapping
        Default ``architecture_config`` (every key the network accepts).
    torch_builder : str or callable
        ``(config, layout) -> torch.nn.Module`` whose ``forward(x)`` takes inputs mapped to
        [-1, 1], (n, n_inputs), and returns ``(mean, var)``, each (n, n_out), standardised.
    numpy_builder : str, callable or None
        ``(members, config, input_low, input_high, output_mean, output_std, layout) -> ensemble``
        whose call on physical inputs (n, n_inputs) returns ``(y, var_std)``, each
        (members, n, n_out): de-standardised transformed means and standardised variances (see
        :class:`~iaemu_likelihood.numpy_forward.MLPEnsemble`). None: inference runs in torch.
    predicts : str
        What the network outputs, in words (shown by ``iaemu info``).
    shapes : str, callable or None
        ``(config, member, layout) -> {state-dict key: shape}`` without torch; None: shapes come
        from the torch module built on the "meta" device.
    check_metadata : str, callable or None
        ``(metadata, layout, where) -> None``: extra checks of a weights folder's metadata,
        raising :class:`~iaemu_likelihood.errors.WeightsIntegrityError`.
    uncentred : tuple of str
        Statistics this network needs standardised without centring (output mean 0).
    input_box_config : str, callable or None
        ``(config, low, high) -> config``: options derived from the training input box at export.
    """

    name: str
    defaults: Mapping
    torch_builder: str | Callable
    numpy_builder: str | Callable | None = None
    predicts: str = ""
    shapes: str | Callable | None = None
    check_metadata: str | Callable | None = None
    uncentred: tuple = ()
    input_box_config: str | Callable | None = None

    @property
    def runs_in_numpy(self) -> bool:
        """Whether inference needs no torch."""
        return self.numpy_builder is not None

    def merged_config(self, config: Mapping | None) -> dict:
        """``config`` over :attr:`defaults`; unknown keys raise ValueError naming them."""
        config = dict(config or {})
        unknown = sorted(set(config) - set(self.defaults))
        if unknown:
            raise ValueError(f"unknown {self.name!r} architecture_config keys {unknown}; "
                             f"allowed: {sorted(self.defaults)}")
        return {**self.defaults, **config}

    def build_torch(self, config: Mapping | None = None, layout=None):
        """An untrained torch module (imports torch)."""
        from .layout import DEFAULT_LAYOUT

        return _resolve(self.torch_builder)(self.merged_config(config), layout or DEFAULT_LAYOUT)

    def build_numpy(self, members, config, input_low, input_high, output_mean, output_std,
                    layout):
        """The numpy ensemble of ``members`` (ValueError if this architecture runs in torch)."""
        if self.numpy_builder is None:
            raise ValueError(f"architecture {self.name!r} has no numpy forward pass")
        cfg = {**self.defaults, **dict(config or {})}
        return _resolve(self.numpy_builder)(members, cfg, input_low, input_high, output_mean,
                                            output_std, layout)

    def expected_shapes(self, config, member, layout) -> dict:
        """State-dict key -> shape for ``config`` (ValueError/TypeError for a bad config)."""
        if self.shapes is not None:
            return _resolve(self.shapes)(dict(config or {}), member, layout)
        import torch

        with torch.device("meta"):  # shapes only: a tampered config cannot make it allocate
            net = self.build_torch(config, layout)
        return {k: tuple(v.shape) for k, v in net.state_dict().items()}

    def check(self, metadata, layout, where: str) -> None:
        if self.check_metadata is not None:
            _resolve(self.check_metadata)(metadata, layout, where)

    def export_config(self, config: Mapping, low, high) -> dict:
        """``architecture_config`` written with trained weights (input-box options added)."""
        config = dict(config)
        if self.input_box_config is not None:
            config = _resolve(self.input_box_config)(config, low, high)
        return config


def register(architecture: Architecture, replace: bool = False) -> Architecture:
    """Add an architecture to :data:`ARCHITECTURES` (ValueError if the name is taken)."""
    if architecture.name in ARCHITECTURES and not replace:
        raise ValueError(f"architecture {architecture.name!r} is already registered")
    ARCHITECTURES[architecture.name] = architecture
    return architecture


def architecture_names() -> tuple:
    """Registered names, in registration order."""
    return tuple(ARCHITECTURES)


def get_architecture(name) -> Architecture:
    """The registered architecture ``name``; ConfigError naming the known ones otherwise."""
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        from .config_checks import suggest

        hint = suggest(name, ARCHITECTURES) if isinstance(name, str) else ""
        raise ConfigError(f"architecture = {name!r} is not one of {sorted(ARCHITECTURES)}"
                          f"{hint}") from None


register(Architecture(
    "mlp", {"width": 128, "n_hidden": 3, "activation": "silu", "var_floor": 1e-6},
    torch_builder="iaemu_likelihood.networks:MLPNet.from_layout",
    numpy_builder="iaemu_likelihood.numpy_forward:MLPEnsemble.from_config",
    predicts="per output: a standardised mean and a softplus variance (one fully connected net)",
    shapes="iaemu_likelihood.numpy_forward:mlp_shapes"))
register(Architecture(
    "paper", {"hidden_dim": 128, "latent_dim": 128, "dropout": 0.2, "decoder_channels": 7,
              "decoder_length": 100, "conv_channels": [14, 28, 28, 56, 112, 112],
              "var_floor": 1e-6},
    torch_builder="iaemu_likelihood.networks:PaperNet.from_layout",
    predicts="the IAEmu reference network (Pandya et al. 2025): a mean and a softplus variance per "
             "bin from one convolutional decoder per statistic; epistemic by MC dropout"))
register(Architecture(
    "factorised", {"width": 128, "n_hidden": 3, "var_width": 64, "var_hidden": 2,
                   "activation": "silu", "var_floor": 1e-6, "mu_low": [-1.0, -1.0],
                   "mu_high": [1.0, 1.0]},
    torch_builder="iaemu_likelihood.networks:FactorisedNet.from_layout",
    numpy_builder="iaemu_likelihood.numpy_forward:FactorisedEnsemble.from_config",
    predicts="HOD-only basis functions combined with the exact alignment factors c(mu) "
             "(omega linear, eta quadratic in c); a separate variance net",
    shapes="iaemu_likelihood.numpy_forward:factorised_shapes",
    check_metadata="iaemu_likelihood.weights_checks:check_factorised_metadata",
    uncentred=("omega", "eta"),
    input_box_config="iaemu_likelihood.numpy_forward:factorised_box_config"))
