"""Latin-hypercube design over the reference IAEmu prior.

The rule (Pandya et al. 2025, following their Fig. 1):

* ``mu_cen``, ``mu_sat`` uniform in [-1, 1];
* ``logMmin`` uniform over the range spanned by the Zheng et al. (2007) luminosity-threshold samples,
  trimmed to what the halo catalog resolves (``logMmin_range``);
* ``sigma_logM``, ``logM0``, ``logM1``, ``alpha`` uniform within +-``n_rmse`` RMSE of their linear
  least-squares relations with ``logMmin`` fitted to the Zheng07 table, floored where a parameter
  must stay positive (``floors``).

The design lives in the unit cube ``u`` (one Latin-hypercube sample per point); parameters are a
deterministic function of ``u`` and the rule, both stored in the dataset.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..conventions import PARAM_NAMES, ZHENG07_TABLE

__all__ = ["DesignRule", "DESIGN_KEYS", "latin_hypercube", "zheng07_linear_fits", "make_design", "infer_linear_band"]

_DEPENDENT = ("sigma_logM", "logM0", "logM1", "alpha")


def zheng07_linear_fits() -> dict:
    """Least-squares lines ``p = a + b * logMmin`` through the Zheng07 table and their RMSE.

    Returns
    -------
    dict
        name -> {"intercept", "slope", "rmse"} for sigma_logM, logM0, logM1, alpha.
    """
    table = np.array(list(ZHENG07_TABLE.values()))
    x = table[:, 0]
    design = np.column_stack([np.ones_like(x), x])
    fits = {}
    for j, name in enumerate(_DEPENDENT, start=1):
        coef, *_ = np.linalg.lstsq(design, table[:, j], rcond=None)
        rmse = float(np.sqrt(np.mean((table[:, j] - design @ coef) ** 2)))
        fits[name] = {"intercept": float(coef[0]), "slope": float(coef[1]), "rmse": rmse}
    return fits


#: Keys of a ``design`` config section.
DESIGN_KEYS = ("logMmin_range", "mu_range", "n_rmse", "floors")
#: logMmin values (log10 Msun/h) a design may span: beyond these no halo catalog has hosts.
LOGMMIN_LIMITS = (9.0, 16.0)


def _checked_range(value, where: str, limits: tuple) -> tuple:
    from ..config_checks import check_float_array
    from ..errors import ConfigError

    arr = check_float_array(value, where, shape=(2,))
    if not (limits[0] <= arr[0] < arr[1] <= limits[1]):
        raise ConfigError(f"{where} = {list(value)!r}: must be [low, high] with "
                          f"{limits[0]} <= low < high <= {limits[1]}")
    return (float(arr[0]), float(arr[1]))


def _checked_fields(values: dict, where: str) -> dict:
    """The four rule fields, type- and range-checked (ConfigError naming ``where`` and the key)."""
    from ..config_checks import check_float, check_keys, check_mapping

    floors = check_mapping(values["floors"], f"{where}: floors")
    check_keys(floors, _DEPENDENT, f"{where}: floors")
    return {"logMmin_range": _checked_range(values["logMmin_range"], f"{where}: logMmin_range",
                                            LOGMMIN_LIMITS),
            "mu_range": _checked_range(values["mu_range"], f"{where}: mu_range", (-1.0, 1.0)),
            "n_rmse": check_float(values["n_rmse"], f"{where}: n_rmse", minimum=0.0,
                                  min_inclusive=False),
            "floors": tuple(sorted((name, check_float(v, f"{where}: floors: {name}"))
                                   for name, v in floors.items()))}


@dataclasses.dataclass(frozen=True)
class DesignRule:
    """The prior the design samples (see module docstring)."""

    logMmin_range: tuple = (11.6, 13.2)
    mu_range: tuple = (-1.0, 1.0)
    n_rmse: float = 4.0
    floors: tuple = (("sigma_logM", 0.05), ("alpha", 0.1))

    def __post_init__(self):
        checked = _checked_fields(dataclasses.asdict(self) | {"floors": dict(self.floors)}, "design rule")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_config(cls, mapping, where: str = "design") -> DesignRule:
        """The rule from a config mapping (keys ``logMmin_range``, ``mu_range``, ``n_rmse``,
        ``floors``; missing ones take the defaults), validated with messages naming ``where``.

        Raises
        ------
        ConfigError
            Unknown key (with a suggestion), wrong type or value out of range.
        """
        from ..config_checks import check_keys, check_mapping

        mapping = check_mapping(mapping, where)
        check_keys(mapping, DESIGN_KEYS, where)
        defaults = {f.name: getattr(cls, f.name) for f in dataclasses.fields(cls)}
        values = {**defaults, "floors": dict(defaults["floors"]), **mapping}
        return cls(**_checked_fields(values, where))

    def band(self, name: str, logMmin) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper limit of a dependent parameter at ``logMmin``."""
        fit = zheng07_linear_fits()[name]
        centre = fit["intercept"] + fit["slope"] * np.asarray(logMmin, dtype=float)
        half = self.n_rmse * fit["rmse"]
        low = centre - half
        floor = dict(self.floors).get(name)
        if floor is not None:
            low = np.maximum(low, floor)
        return low, centre + half

    def from_unit_cube(self, u: np.ndarray) -> np.ndarray:
        """Map points of the unit cube (n, 7) to parameters (n, 7) in PARAM_NAMES order."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        out = np.empty_like(u)
        lo, hi = self.mu_range
        out[:, 0] = lo + (hi - lo) * u[:, 0]
        out[:, 1] = lo + (hi - lo) * u[:, 1]
        mlo, mhi = self.logMmin_range
        out[:, 2] = mlo + (mhi - mlo) * u[:, 2]
        for j, name in enumerate(_DEPENDENT, start=3):
            low, high = self.band(name, out[:, 2])
            out[:, j] = low + (high - low) * u[:, j]
        return out

    def bounding_box(self) -> dict:
        """Rectangular bounds (name -> (low, high)) enclosing the whole prior."""
        grid = np.linspace(*self.logMmin_range, 201)
        box = {"mu_cen": tuple(self.mu_range), "mu_sat": tuple(self.mu_range),
               "logMmin": tuple(self.logMmin_range)}
        for name in _DEPENDENT:
            low, high = self.band(name, grid)
            box[name] = (float(low.min()), float(high.max()))
        return {name: box[name] for name in PARAM_NAMES}

    def contains(self, params: np.ndarray) -> np.ndarray:
        """Whether each row of ``params`` (n, 7) lies inside the prior (band included)."""
        p = np.atleast_2d(params)
        ok = np.ones(p.shape[0], dtype=bool)
        for j in (0, 1):
            ok &= (p[:, j] >= self.mu_range[0]) & (p[:, j] <= self.mu_range[1])
        ok &= (p[:, 2] >= self.logMmin_range[0]) & (p[:, 2] <= self.logMmin_range[1])
        for j, name in enumerate(_DEPENDENT, start=3):
            low, high = self.band(name, p[:, 2])
            ok &= (p[:, j] >= low) & (p[:, j] <= high)
        return ok

    def support_metadata(self) -> dict:
        """The band part of the prior in the weights-metadata form the emulator checks
        (``type: linear_band``; see trained_weights/README.md)."""
        fits = zheng07_linear_fits()
        floors = dict(self.floors)
        bands = {}
        for name in _DEPENDENT:
            half = self.n_rmse * fits[name]["rmse"]
            bands[name] = {"slope": fits[name]["slope"], "low_intercept": fits[name]["intercept"] - half,
                           "high_intercept": fits[name]["intercept"] + half, "floor": floors.get(name)}
        return {"type": "linear_band", "pivot": "logMmin", "bands": bands,
                "description": f"Zheng07 linear fit in logMmin +- {self.n_rmse:g} RMSE"}

    def to_dict(self) -> dict:
        """JSON-ready description of the rule, with the fitted lines."""
        return {"logMmin_range": list(self.logMmin_range), "mu_range": list(self.mu_range),
                "n_rmse": self.n_rmse, "floors": dict(self.floors),
                "zheng07_linear_fits": zheng07_linear_fits(), "bounding_box": self.bounding_box()}

    @classmethod
    def from_dict(cls, d: dict) -> DesignRule:
        """Inverse of :meth:`to_dict` (extra keys ignored)."""
        return cls(logMmin_range=tuple(d["logMmin_range"]), mu_range=tuple(d["mu_range"]),
                   n_rmse=float(d["n_rmse"]), floors=tuple(sorted(d["floors"].items())))


def latin_hypercube(n: int, dim: int, seed: int) -> np.ndarray:
    """An (n, dim) Latin-hypercube sample of the unit cube (scipy's LHS, seeded)."""
    from scipy.stats import qmc

    return qmc.LatinHypercube(d=dim, seed=np.random.default_rng(seed)).random(n)


def make_design(n_points: int, seed: int, rule: DesignRule | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Design points: returns (unit-cube sample, parameters), each (n_points, 7)."""
    rule = rule or DesignRule()
    u = latin_hypercube(n_points, len(PARAM_NAMES), seed)
    return u, rule.from_unit_cube(u)


def infer_linear_band(params: np.ndarray, margin: float = 1e-6) -> dict:
    """A ``linear_band`` support (see trained_weights/README.md) enclosing given inputs.

    For weights whose design rule is unknown (e.g. an imported reference checkpoint): each of
    sigma_logM, logM0, logM1, alpha gets its least-squares line in logMmin, and the band spans
    the smallest and largest residual of the inputs (plus ``margin`` in the parameter's units),
    so every input point is inside and the emulator refuses HOD combinations far from them.

    Parameters
    ----------
    params : ndarray, shape (n, 7)
        Training inputs in PARAM_NAMES order (n >= 3).
    margin : float
        Widening of the band on both sides (default 1e-6: only round-off, so the extreme inputs
        themselves pass the check).

    Returns
    -------
    dict
        The ``support`` metadata entry.
    """
    p = np.asarray(params, dtype=float)
    if p.ndim != 2 or p.shape[1] != len(PARAM_NAMES) or p.shape[0] < 3:
        raise ValueError(f"params has shape {p.shape}; expected (n >= 3, {len(PARAM_NAMES)})")
    x = p[:, PARAM_NAMES.index("logMmin")]
    design = np.column_stack([np.ones_like(x), x])
    bands = {}
    for name in _DEPENDENT:
        y = p[:, PARAM_NAMES.index(name)]
        (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - (a + b * x)
        bands[name] = {"slope": float(b), "low_intercept": float(a + resid.min() - margin),
                       "high_intercept": float(a + resid.max() + margin), "floor": None}
    return {"type": "linear_band", "pivot": "logMmin", "bands": bands,
            "description": "inferred from the training inputs: least-squares line in logMmin, "
                           "between the smallest and largest residual"}
