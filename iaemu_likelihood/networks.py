"""Torch modules of the emulator: the IAEmu reference architecture, a fast MLP and the
physics-factorised MLP.

This module imports torch at the top, so nothing on the package's import path imports it:
:mod:`iaemu_likelihood.emulator` imports it only when a "paper" network or
:meth:`~iaemu_likelihood.emulator.IAEmulator.torch_forward` is used.

Every network follows the contract of ``docs/CONTRACTS.md``: ``forward(x)`` takes inputs already
mapped to [-1, 1], shape (n, 7), and returns ``(mean, var)``, each (n, 60) = ``[xi(20), omega(20),
eta(20)]`` in standardised output space (for xi: standardised log xi), ``var`` > 0.
"""
from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

from .architectures import get_architecture
from .layout import DEFAULT_LAYOUT

__all__ = ["build_network", "MLPNet", "PaperNet", "FactorisedNet", "PAPER_DEFAULTS", "MLP_DEFAULTS",
           "FACTORISED_DEFAULTS", "N_INPUTS", "N_OUTPUTS"]

log = logging.getLogger(__name__)

#: Number of inputs and outputs of the default layout (:data:`~iaemu_likelihood.layout.DEFAULT_LAYOUT`).
N_INPUTS = DEFAULT_LAYOUT.n_inputs
N_OUTPUTS = DEFAULT_LAYOUT.n_out
N_STATS = len(DEFAULT_LAYOUT.statistics)
N_BINS = DEFAULT_LAYOUT.statistics[0].n_bins

#: Default configuration of the fast MLP (from the architecture registry).
MLP_DEFAULTS = get_architecture("mlp").defaults
#: Default configuration of the reference architecture (Pandya et al. 2025, arXiv:2504.05235).
#: ``decoder_channels * decoder_length`` is the width of each decoder's first linear layer (700);
#: the last convolution (kernel 5, stride 5, padding 1) turns length 100 into the 20 r bins.
PAPER_DEFAULTS = get_architecture("paper").defaults
#: Default configuration of the factorised emulator.
FACTORISED_DEFAULTS = get_architecture("factorised").defaults

_ACTIVATIONS = {"silu": F.silu, "tanh": torch.tanh, "gelu": F.gelu}


def _check_sizes(activation: str, var_floor: float, **sizes) -> None:
    """Refuse a layer count or width below 1, an unknown activation or a variance floor <= 0
    (``ValueError`` naming the option and its value)."""
    for name, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"{name} = {value!r} must be a positive integer")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation = {activation!r} is not one of {sorted(_ACTIVATIONS)}")
    if not var_floor > 0:
        raise ValueError(f"var_floor = {var_floor!r} must be > 0")


class MLPNet(nn.Module):
    """Fast emulator: 7 -> ``n_hidden`` x (Linear + activation, ``width``) -> Linear -> 120.

    The first 60 outputs are the standardised means; the last 60 go through softplus plus
    ``var_floor`` to give the standardised variances. :mod:`iaemu_likelihood.numpy_forward`
    reproduces this forward pass from the state-dict arrays without torch.

    Parameters
    ----------
    width : int
        Units per hidden layer.
    n_hidden : int
        Number of hidden layers (>= 1).
    activation : {"silu", "tanh", "gelu"}
        Hidden-layer activation (``gelu`` is the exact, erf-based one).
    var_floor : float
        Added to the softplus so the variance is strictly positive (standardised units).
    """

    def __init__(self, width: int = 128, n_hidden: int = 3, activation: str = "silu",
                 var_floor: float = 1e-6, n_inputs: int = N_INPUTS, n_outputs: int = N_OUTPUTS):
        super().__init__()
        _check_sizes(activation, var_floor, width=width, n_hidden=n_hidden)
        self.activation = activation
        self.var_floor = float(var_floor)
        self.n_outputs = int(n_outputs)
        sizes = [int(n_inputs)] + [int(width)] * int(n_hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], 2 * self.n_outputs)

    @classmethod
    def from_layout(cls, config, layout):
        """The registry's builder: sizes from the layout (any inputs and statistics)."""
        return cls(**config, n_inputs=layout.n_inputs, n_outputs=layout.n_out)

    def forward(self, x):
        act = _ACTIVATIONS[self.activation]
        h = x
        for layer in self.hidden:
            h = act(layer(h))
        o = self.out(h)
        n = self.n_outputs
        return o[:, :n], F.softplus(o[:, n:]) + self.var_floor


def _dense_block(n_in: int, n_out: int, dropout: float) -> nn.Sequential:
    # Reference order: Linear -> LeakyReLU -> BatchNorm1d -> Dropout.
    return nn.Sequential(nn.Linear(n_in, n_out), nn.LeakyReLU(), nn.BatchNorm1d(n_out),
                         nn.Dropout(dropout))


class _PaperEncoder(nn.Module):
    """Residual MLP embedding of the reference architecture (7 -> ``latent_dim``)."""

    def __init__(self, hidden_dim: int, latent_dim: int, dropout: float):
        super().__init__()
        h, h2 = hidden_dim, 2 * hidden_dim
        self.layer1 = _dense_block(N_INPUTS, h, dropout)
        self.layer2 = _dense_block(h, h, dropout)
        self.match_dim1 = nn.Linear(h, h2)  # projection for the first skip connection
        self.layer3 = _dense_block(h, h2, dropout)
        self.layer4 = _dense_block(h2, h2, dropout)
        self.final_layer = _dense_block(h2, latent_dim, dropout)

    def mc_dropout_modules(self):
        return [block[3] for block in (self.layer1, self.layer2, self.layer3, self.layer4,
                                       self.final_layer)]

    def forward(self, x):
        h2 = self.layer2(self.layer1(x))
        h3 = self.layer3(h2) + self.match_dim1(h2)
        h4 = self.layer4(h3) + h3
        return self.final_layer(h4)


class _PaperDecoder(nn.Module):
    """One 1-D convolutional head of the reference architecture: latent -> (mean, var) x 20 bins."""

    def __init__(self, latent_dim: int, dropout: float, channels: int, length: int,
                 conv_channels: list[int], var_floor: float):
        super().__init__()
        if len(conv_channels) != 6:
            raise ValueError(f"conv_channels = {conv_channels!r} must list 6 channel counts")
        self.channels, self.length, self.var_floor = channels, length, var_floor
        self.initial_layer = nn.Linear(latent_dim, channels * length)
        self.initial_relu = nn.LeakyReLU()
        self.initial_bn = nn.BatchNorm1d(channels * length)
        self.initial_dropout = nn.Dropout(dropout)
        widths = [channels] + list(conv_channels)
        for i in range(6):
            setattr(self, f"conv{i + 1}", nn.Conv1d(widths[i], widths[i + 1], 3, padding=1))
            setattr(self, f"relu{i + 1}", nn.LeakyReLU())
            setattr(self, f"bn{i + 1}", nn.BatchNorm1d(widths[i + 1]))
            setattr(self, f"dropout{i + 1}", nn.Dropout(dropout))
        # kernel 5, stride 5, padding 1: length L -> floor((L - 3) / 5) + 1 (100 -> 20)
        self.conv7 = nn.Conv1d(widths[-1], 2, kernel_size=5, padding=1, stride=5)
        out_len = (length + 2 - 5) // 5 + 1
        if out_len != N_BINS:
            raise ValueError(f"decoder_length = {length} gives {out_len} output bins, need {N_BINS}")
        with torch.no_grad():
            self.conv7.bias[1] = 1.0  # start the variance channel at softplus(1)

    def mc_dropout_modules(self):
        # the reference code re-enables dropout only in the first four convolutional blocks
        return [self.dropout1, self.dropout2, self.dropout3, self.dropout4]

    def _block(self, i, x):
        conv, relu = getattr(self, f"conv{i}"), getattr(self, f"relu{i}")
        bn, drop = getattr(self, f"bn{i}"), getattr(self, f"dropout{i}")
        return drop(bn(relu(conv(x))))

    def forward(self, z):
        x = self.initial_dropout(self.initial_bn(self.initial_relu(self.initial_layer(z))))
        x = x.reshape(x.shape[0], self.channels, self.length)
        x = self._block(2, self._block(1, x))
        x = self._block(3, x) + x
        x = self._block(5, self._block(4, x))
        x = self._block(6, x) + x
        out = self.conv7(x)
        return out[:, 0], F.softplus(out[:, 1]) + self.var_floor


class PaperNet(nn.Module):
    """IAEmu reference architecture (Pandya et al. 2025, arXiv:2504.05235).

    A residual MLP embedding (Linear, LeakyReLU, BatchNorm1d, Dropout blocks of widths 128, 128,
    256, 256 and a 128-d latent, with two skip connections) feeds three 1-D convolutional decoder
    heads, one per statistic (xi, omega, eta). Each head maps the latent to 7 channels x 100,
    applies six Conv1d blocks (two with skip connections) and a strided convolution to 2 channels x
    20 bins: a mean and a softplus variance per bin. Submodule names follow the reference code, so
    a reference state dict loads directly (``load_state_dict``).

    Epistemic uncertainty comes from Monte Carlo dropout: :meth:`set_mc_dropout` keeps the dropout
    layers the reference code re-enables active in eval mode (batch norm keeps its running stats).

    Parameters
    ----------
    hidden_dim, latent_dim : int
        Encoder width and latent size (128, 128 in the paper).
    dropout : float
        Dropout probability of every block, in [0, 1).
    decoder_channels, decoder_length : int
        Shape the latent is projected to before the convolutions (7 x 100).
    conv_channels : list of 6 int
        Output channels of the six convolutional blocks.
    var_floor : float
        Added to the softplus variance (standardised units); the reference code has none.
    """

    def __init__(self, hidden_dim=128, latent_dim=128, dropout=0.2, decoder_channels=7,
                 decoder_length=100, conv_channels=(14, 28, 28, 56, 112, 112), var_floor=1e-6):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout = {dropout!r} is outside the allowed range [0, 1)")
        if not var_floor >= 0:
            raise ValueError(f"var_floor = {var_floor!r} must be >= 0")
        self.encoder = _PaperEncoder(hidden_dim, latent_dim, dropout)
        for i in range(N_STATS):
            setattr(self, f"decoder{i + 1}", _PaperDecoder(
                latent_dim, dropout, decoder_channels, decoder_length, list(conv_channels),
                float(var_floor)))
        self._mc_dropout = False

    @classmethod
    def from_layout(cls, config, layout):
        """The registry's builder: the reference network has one decoder per statistic of the
        default layout (3 statistics x 20 bins, 7 inputs)."""
        _require_default_sizes(layout, "paper")
        return cls(**config)

    @property
    def decoders(self):
        return [self.decoder1, self.decoder2, self.decoder3]

    def set_mc_dropout(self, enabled: bool = True) -> PaperNet:
        """Keep (``enabled``) or stop keeping the MC-dropout layers active in eval mode."""
        self._mc_dropout = bool(enabled)
        self._apply_dropout_mode()
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self._apply_dropout_mode()
        return self

    def _apply_dropout_mode(self):
        if self.training:
            return
        modules = self.encoder.mc_dropout_modules()
        for dec in self.decoders:
            modules += dec.mc_dropout_modules()
        for m in modules:
            m.train(self._mc_dropout)

    def forward(self, x):
        z = self.encoder(x)
        outs = [dec(z) for dec in self.decoders]
        return torch.cat([m for m, _ in outs], dim=1), torch.cat([v for _, v in outs], dim=1)


class FactorisedNet(nn.Module):
    """Physics-factorised emulator: exact alignment dependence, learned HOD dependence.

    The mean of a mock depends on the alignment strengths only through ``c = c(mu)`` of
    :mod:`iaemu_likelihood.alignment`: xi not at all, omega linearly, eta quadratically. So a
    ``basis`` MLP of every input but the two alignment strengths (``n_hidden`` x ``width``: the
    five HOD inputs, and the cosmology and redshift inputs of a layout that has them, which thus
    feed every basis function) emits 120 alignment-free functions
    ``[xi, W_c, W_s, E_cc, E_cs, E_ss]`` (20 bins each) and the standardised means are::

        xi = xi,   omega = c_c W_c + c_s W_s,   eta = c_c^2 E_cc + c_c c_s E_cs + c_s^2 E_ss,

    which needs omega and eta standardised WITHOUT centring (output ``mean`` 0, see
    :class:`~iaemu_likelihood.training.normalisation.OutputNormaliser`). The variance of one
    realization is not of this form; a smaller ``var`` MLP of all the inputs (``var_hidden`` x
    ``var_width``) gives the 60 softplus variances. :mod:`iaemu_likelihood.numpy_forward` has the
    same forward pass in numpy.

    Parameters
    ----------
    width, n_hidden : int
        Size of the HOD basis MLP.
    var_width, var_hidden : int
        Size of the variance MLP.
    activation : {"silu", "tanh", "gelu"}
    var_floor : float
        Added to the softplus variance (standardised units).
    mu_low, mu_high : list of 2 float
        Physical (mu_cen, mu_sat) at the scaled inputs -1 and +1 (the input box), to recover mu.
    n_inputs : int
        Number of inputs, mu_cen and mu_sat first (7 in the default layout).
    """

    def __init__(self, width: int = 128, n_hidden: int = 3, var_width: int = 64, var_hidden: int = 2,
                 activation: str = "silu", var_floor: float = 1e-6, mu_low=(-1.0, -1.0),
                 mu_high=(1.0, 1.0), n_inputs: int = N_INPUTS):
        super().__init__()
        _check_sizes(activation, var_floor, width=width, n_hidden=n_hidden, var_width=var_width,
                     var_hidden=var_hidden)
        low, high = [float(v) for v in mu_low], [float(v) for v in mu_high]
        if len(low) != 2 or len(high) != 2 or not all(-1 <= a < b <= 1 for a, b in zip(low, high)):
            raise ValueError(f"mu_low = {mu_low!r}, mu_high = {mu_high!r}: need two ranges inside [-1, 1]")
        self.activation = activation
        self.var_floor = float(var_floor)
        if int(n_inputs) < 3:
            raise ValueError(f"n_inputs = {n_inputs!r}: a factorised network needs mu_cen, mu_sat and "
                             "at least one more input")
        sizes = [int(n_inputs) - 2] + [int(width)] * int(n_hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.basis = nn.Linear(sizes[-1], 6 * N_BINS)
        vsizes = [int(n_inputs)] + [int(var_width)] * int(var_hidden)
        self.var_hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(vsizes[:-1], vsizes[1:]))
        self.var_out = nn.Linear(vsizes[-1], N_OUTPUTS)
        self.register_buffer("mu_low", torch.tensor(low), persistent=False)
        self.register_buffer("mu_high", torch.tensor(high), persistent=False)

    @classmethod
    def from_layout(cls, config, layout):
        """The registry's builder: the default statistics (xi, omega, eta on the same bins) and
        inputs mu_cen, mu_sat first, then any others (the default layout's five HOD inputs, and
        cosmology and redshift inputs after them)."""
        if layout.param_names[:2] != DEFAULT_LAYOUT.param_names[:2] or \
                layout.statistics != DEFAULT_LAYOUT.statistics:
            raise ValueError(f"a 'factorised' network needs the inputs mu_cen, mu_sat first and the "
                             f"statistics {list(DEFAULT_LAYOUT.statistic_names)} of the default layout; "
                             f"got inputs {list(layout.param_names)} and statistics "
                             f"{list(layout.statistic_names)}")
        return cls(**config, n_inputs=layout.n_inputs)

    def alignment_factors(self, x):
        """(c(mu_cen), c(mu_sat)), each (n, 1), from scaled inputs x (n, n_inputs)."""
        from .alignment import torch_alignment_p2

        mu = self.mu_low + 0.5 * (x[:, :2] + 1.0) * (self.mu_high - self.mu_low)
        c = torch_alignment_p2(mu.clamp(-1.0, 1.0))
        return c[:, :1], c[:, 1:]

    def forward(self, x):
        act = _ACTIVATIONS[self.activation]
        h = x[:, 2:]
        for layer in self.hidden:
            h = act(layer(h))
        b = self.basis(h)
        cc, cs = self.alignment_factors(x)
        B = N_BINS
        omega = cc * b[:, B:2 * B] + cs * b[:, 2 * B:3 * B]
        eta = cc * cc * b[:, 3 * B:4 * B] + cc * cs * b[:, 4 * B:5 * B] + cs * cs * b[:, 5 * B:]
        v = x
        for layer in self.var_hidden:
            v = act(layer(v))
        var = F.softplus(self.var_out(v)) + self.var_floor
        return torch.cat([b[:, :B], omega, eta], dim=1), var


def _require_default_sizes(layout, name: str) -> None:
    if (layout.n_inputs, layout.n_out, len(layout.statistics)) != (N_INPUTS, N_OUTPUTS, N_STATS):
        raise ValueError(f"a {name!r} network needs the default layout ({N_INPUTS} inputs, "
                         f"{N_STATS} statistics x {N_BINS} bins); got {layout.n_inputs} inputs and "
                         f"statistics {list(layout.statistic_names)}")


def build_network(architecture: str, config: dict | None = None, layout=None) -> nn.Module:
    """Build an untrained emulator network of a registered architecture.

    Parameters
    ----------
    architecture : str
        A name of :mod:`iaemu_likelihood.architectures` (``"mlp"``, ``"paper"``, ``"factorised"``
        or one registered later).
    config : dict, optional
        Overrides of the architecture's defaults (``architecture_config`` of the weights metadata).
    layout : Layout, optional
        Inputs and statistics (default :data:`~iaemu_likelihood.layout.DEFAULT_LAYOUT`).

    Returns
    -------
    torch.nn.Module
        ``forward(x)`` with x (n, n_inputs) in [-1, 1] returns ``(mean, var)``, each (n, n_out),
        standardised.
    """
    return get_architecture(architecture).build_torch(config, layout)
