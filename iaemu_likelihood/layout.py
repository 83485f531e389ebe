"""The data layout of an emulator: its inputs, its statistics and the covariance-term vocabulary.

Everything that needs to know "which parameters, in which order and units" or "which statistics,
on which bins" reads it from a :class:`Layout`: the emulator, the weights reader and checks, the
point-evaluation path and the Cobaya and CosmoSIS adapters. A weights folder records its layout in
``metadata.json`` (key ``layout``, written by :func:`~iaemu_likelihood.weights_io.write_weights_folder`);
folders written before the key existed get :data:`DEFAULT_LAYOUT`, the layout of every shipped
version: 7 HOD + alignment inputs and xi, omega, eta on 20 log bins of separation.

Adding a statistic (for example a projected ``w_g+(r_p)`` on its own ``r_p`` axis) or an input
(a cosmological parameter) is a new :class:`Statistic` or :class:`Input` in the layout of the
weights that emulate it; no other module lists them.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .config_checks import suggest
from .conventions import PARAM_LATEX, PARAM_NAMES, R_EDGES, STATISTICS
from .errors import ConfigError, WeightsIntegrityError

__all__ = ["Input", "Statistic", "Layout", "DEFAULT_LAYOUT", "COVARIANCE_TERMS", "TRANSFORMS",
           "parse_terms", "layout_of"]

#: Terms an emulator covariance can contain, in canonical order: ``aleatoric`` (the covariance of
#: one mock realization around the mean) and ``epistemic`` (the emulator's own uncertainty).
COVARIANCE_TERMS = ("aleatoric", "epistemic")
#: Output transforms a statistic may be standardised in: ``log`` (the network predicts log of the
#: value) or ``identity``.
TRANSFORMS = ("log", "identity")
#: Separation unit of every shipped statistic.
SEPARATION_UNITS = "comoving h^-1 Mpc"


@dataclass(frozen=True)
class Input:
    """One emulator input.

    Attributes
    ----------
    name : str
        Parameter name (as samplers see it).
    units : str
        Units, e.g. ``"log10(Msun/h)"``; ``""`` for dimensionless.
    latex : str
        LaTeX label for plots and sampler output.
    physical_range : (float, float, bool)
        ``(low, high, low is exclusive)``: weights bounds outside it are refused.
    group : str
        Family the input belongs to (``"alignment"``, ``"hod"``, ``"cosmology"``...): the
        CosmoSIS module reads each group from its own data-block section.
    """

    name: str
    units: str
    latex: str
    physical_range: tuple
    group: str

    def range_text(self) -> str:
        low, high, open_low = self.physical_range
        return f"{'(' if open_low else '['}{low:g}, {high:g}]"

    def to_metadata(self) -> dict:
        low, high, open_low = self.physical_range
        return {"name": self.name, "units": self.units, "latex": self.latex,
                "physical_range": [float(low), float(high)], "open_low": bool(open_low),
                "group": self.group}


@dataclass(frozen=True)
class Statistic:
    """One emulated statistic on its own bin axis.

    Attributes
    ----------
    name : str
        e.g. ``"xi"``; the key of its arrays everywhere (predictions, data files, Cobaya products
        ``iaemu_<name>``, CosmoSIS outputs).
    axis : str
        Name of its bin axis, e.g. ``"r"`` (3-d separation) or ``"r_p"`` (projected separation).
    axis_units : str
        Units of the axis values, e.g. ``"comoving h^-1 Mpc"``.
    edges : tuple of float
        Bin edges along the axis (increasing); the values are at the geometric bin centres.
    transform : {"log", "identity"}
        Default output transform of its network outputs (the weights' normalisation says which
        one a trained network uses).
    description : str
    """

    name: str
    axis: str
    axis_units: str
    edges: tuple
    transform: str = "identity"
    description: str = ""

    @property
    def n_bins(self) -> int:
        return len(self.edges) - 1

    @cached_property
    def centres(self) -> np.ndarray:
        """Geometric bin centres (read-only array), in :attr:`axis_units`."""
        edges = np.asarray(self.edges, dtype=float)
        out = np.sqrt(edges[1:] * edges[:-1])
        out.setflags(write=False)
        return out

    def to_metadata(self) -> dict:
        return {"name": self.name, "axis": self.axis, "axis_units": self.axis_units,
                "edges": [float(e) for e in self.edges], "transform": self.transform,
                "description": self.description}


@dataclass(frozen=True)
class Layout:
    """Inputs and statistics of an emulator, in the order of every array.

    The emulator's output vector is the concatenation of the statistics' bins, in
    :attr:`statistics` order; its input vector lists :attr:`inputs` in order.
    """

    inputs: tuple
    statistics: tuple

    def __post_init__(self):
        for kind, items in (("input", self.inputs), ("statistic", self.statistics)):
            names = [item.name for item in items]
            if not names or len(set(names)) != len(names):
                raise ValueError(f"layout {kind} names {names}: allowed: a non-empty list of "
                                 "distinct names")

    # ------------------------------------------------------------------ names and sizes
    @cached_property
    def param_names(self) -> tuple:
        """Input names, in input-vector order."""
        return tuple(i.name for i in self.inputs)

    @cached_property
    def statistic_names(self) -> tuple:
        """Statistic names, in output-vector order."""
        return tuple(s.name for s in self.statistics)

    @property
    def n_inputs(self) -> int:
        return len(self.inputs)

    @cached_property
    def n_out(self) -> int:
        """Length of the output vector (all statistics' bins)."""
        return sum(s.n_bins for s in self.statistics)

    @cached_property
    def slices(self) -> dict:
        """``{statistic: slice}`` of each statistic in the output vector."""
        out, start = {}, 0
        for s in self.statistics:
            out[s.name] = slice(start, start + s.n_bins)
            start += s.n_bins
        return out

    def statistic(self, name: str) -> Statistic:
        """The statistic called ``name`` (KeyError naming the known ones otherwise)."""
        for s in self.statistics:
            if s.name == name:
                return s
        raise KeyError(f"{name!r} is not a statistic of this layout ({list(self.statistic_names)})")

    def input(self, name: str) -> Input:
        for i in self.inputs:
            if i.name == name:
                return i
        raise KeyError(f"{name!r} is not an input of this layout ({list(self.param_names)})")

    @cached_property
    def output_axis(self) -> np.ndarray:
        """Bin centre of every element of the output vector, (n_out,)."""
        return np.concatenate([s.centres for s in self.statistics])

    @cached_property
    def shared_axis(self) -> bool:
        """Whether every statistic has the same axis name and edges."""
        first = self.statistics[0]
        return all(s.axis == first.axis and s.edges == first.edges for s in self.statistics)

    # ------------------------------------------------------------------ metadata
    def to_metadata(self) -> dict:
        """JSON-ready description (``metadata["layout"]``)."""
        return {"inputs": [i.to_metadata() for i in self.inputs],
                "statistics": [s.to_metadata() for s in self.statistics]}

    @classmethod
    def from_metadata(cls, entry, where: str = "metadata") -> Layout:
        """Parse ``metadata["layout"]``; None gives :data:`DEFAULT_LAYOUT`.

        Raises
        ------
        WeightsIntegrityError
            One line naming ``where``, the field, its value and what is allowed.
        """
        if entry is None:
            return DEFAULT_LAYOUT

        def fail(field, value, allowed):
            text = repr(value)
            text = text if len(text) <= 80 else text[:77] + "..."
            raise WeightsIntegrityError(f"{where}: layout.{field} = {text}; allowed: {allowed}")

        if not isinstance(entry, Mapping):
            fail("", entry, "a mapping with 'inputs' and 'statistics'")
        inputs, stats = [], []
        for k, item in enumerate(_items(entry, "inputs", fail)):
            rng = item.get("physical_range")
            if not (isinstance(rng, (list, tuple)) and len(rng) == 2
                    and all(_finite(v) for v in rng) and rng[0] < rng[1]):
                fail(f"inputs[{k}].physical_range", rng, "[low, high]: two finite numbers, low < high")
            inputs.append(Input(_text(item, "name", f"inputs[{k}]", fail), str(item.get("units", "")),
                                str(item.get("latex", item["name"])),
                                (float(rng[0]), float(rng[1]), bool(item.get("open_low", False))),
                                str(item.get("group", "other"))))
        for k, item in enumerate(_items(entry, "statistics", fail)):
            edges = item.get("edges")
            if not (isinstance(edges, (list, tuple)) and len(edges) >= 2
                    and all(_finite(v) and v > 0 for v in edges)
                    and all(a < b for a, b in zip(edges[:-1], edges[1:]))):
                fail(f"statistics[{k}].edges", edges, "at least 2 increasing finite numbers > 0")
            transform = item.get("transform", "identity")
            if transform not in TRANSFORMS:
                fail(f"statistics[{k}].transform", transform, f"one of {list(TRANSFORMS)}")
            stats.append(Statistic(_text(item, "name", f"statistics[{k}]", fail),
                                   _text(item, "axis", f"statistics[{k}]", fail),
                                   str(item.get("axis_units", "")), tuple(float(e) for e in edges),
                                   transform, str(item.get("description", ""))))
        try:
            return cls(tuple(inputs), tuple(stats))
        except ValueError as exc:
            raise WeightsIntegrityError(f"{where}: {exc}") from None


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _items(entry, key, fail):
    items = entry.get(key)
    if not isinstance(items, list) or not items or not all(isinstance(i, Mapping) for i in items):
        fail(key, items, "a non-empty list of mappings")
    return items


def _text(item, key, field, fail):
    value = item.get(key)
    if not (isinstance(value, str) and value.isidentifier()):
        fail(f"{field}.{key}", value, "a name (letters, digits, underscores)")
    return value


def layout_of(metadata: Mapping, where: str = "metadata") -> Layout:
    """The layout a weights folder's parsed ``metadata.json`` records (default if none)."""
    return Layout.from_metadata(metadata.get("layout"), where)


def parse_terms(terms, what: str = "covariance terms", allow_empty: bool = True) -> tuple:
    """A selection of covariance terms as a tuple in canonical (:data:`COVARIANCE_TERMS`) order.

    Parameters
    ----------
    terms : None, str or iterable of str
        ``None`` or ``"none"`` for no term, one name, or several names; a string may list
        several names separated by spaces or commas (as CosmoSIS options do).
    what : str
        The option being parsed, for the message.
    allow_empty : bool
        Whether selecting no term is allowed.

    Raises
    ------
    ConfigError
        One line naming ``what``, the value and the allowed terms.
    """
    given = terms
    if isinstance(terms, str):
        words = [w for w in terms.replace(",", " ").split() if w != "none"]
    elif isinstance(terms, (list, tuple)) or (terms is None and allow_empty):
        words = list(terms or ())
    else:
        words = None
    if allow_empty:
        allowed = f"give a list of terms from {list(COVARIANCE_TERMS)} (or none)"
        shown = f"{what} = {given!r}: {allowed}"
    else:
        allowed = f"a non-empty subset of {COVARIANCE_TERMS}"
        shown = f"{what} = {given!r}; allowed: {allowed}"
    if words is None or not all(isinstance(w, str) for w in words):
        raise ConfigError(shown)
    for word in words:
        if word not in COVARIANCE_TERMS:
            raise ConfigError(f"{what}: {word!r} is not a covariance term"
                              f"{suggest(word, COVARIANCE_TERMS)}; allowed: {allowed}")
    if not words and not allow_empty:
        raise ConfigError(shown)
    return tuple(t for t in COVARIANCE_TERMS if t in words)


_GROUPS = {"mu_cen": "alignment", "mu_sat": "alignment"}
_UNITS = {"logMmin": "log10(Msun/h)", "logM0": "log10(Msun/h)", "logM1": "log10(Msun/h)",
          "sigma_logM": "dex"}
#: Physical ranges of the shipped inputs: (low, high, low is exclusive).
_PHYSICAL = {"mu_cen": (-1.0, 1.0, False), "mu_sat": (-1.0, 1.0, False),
             "logMmin": (8.0, 16.0, False), "sigma_logM": (0.0, 5.0, True),
             "logM0": (8.0, 16.0, False), "logM1": (8.0, 16.0, False), "alpha": (0.0, 5.0, True)}
_DESCRIPTIONS = {"xi": "position-position correlation xi(r)",
                 "omega": "position-orientation correlation omega(r)",
                 "eta": "orientation-orientation correlation eta(r)"}

#: The layout of every shipped weights version (and of folders without a ``layout`` entry):
#: (mu_cen, mu_sat, logMmin, sigma_logM, logM0, logM1, alpha) -> xi, omega, eta on the 20 log bins
#: of :data:`~iaemu_likelihood.conventions.R_EDGES`.
DEFAULT_LAYOUT = Layout(
    inputs=tuple(Input(n, _UNITS.get(n, ""), PARAM_LATEX[n], _PHYSICAL[n], _GROUPS.get(n, "hod"))
                 for n in PARAM_NAMES),
    statistics=tuple(Statistic(s, "r", SEPARATION_UNITS, tuple(float(e) for e in R_EDGES),
                               "log" if s == "xi" else "identity", _DESCRIPTIONS[s])
                     for s in STATISTICS))
