"""Checks of configuration values where they are read: keys, types, ranges, devices.

Every function raises :class:`~iaemu_likelihood.errors.ConfigError` with one line that names
where the value came from (``where``, e.g. ``"train.yaml: max_retries"``), the value, and what
is allowed. Unknown keys get a "did you mean" suggestion (:func:`difflib.get_close_matches`).
"""
from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import ConfigError

__all__ = ["load_yaml_mapping", "check_keys", "check_mapping", "check_int", "check_float", "check_str", "check_bool",
           "check_float_array", "check_torch_device", "parse_name_value", "suggest"]


def load_yaml_mapping(path, kind: str = "config") -> dict:
    """Read a YAML file holding one mapping (an empty file gives ``{}``); no Python objects.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (the message names ``kind`` and the path).
    ConfigError
        If it is not valid YAML or not a mapping with string keys.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    return check_mapping(raw if raw is not None else {}, str(path))


def parse_set_overrides(items) -> dict:
    """``--set KEY=VALUE`` command-line items as ``{key: value}``, each value parsed as YAML data.

    Raises
    ------
    ConfigError
        An item without ``=``, or a value that is not valid YAML.
    """
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML "
                              f"({' '.join(str(exc).split())})") from None
    return out


def parse_name_value(item, option: str) -> tuple[str, float]:
    """A command-line ``NAME=VALUE`` item (``option``, e.g. ``"--fixed"``) as ``(name, value)``.

    Raises
    ------
    ConfigError
        No ``=`` or no name, a value that is not a number, or one that is not finite.
    """
    name, sep, value = str(item).partition("=")
    if sep:
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{option} {item!r}: {value!r} is not a number") from None
    if not sep or not math.isfinite(number) or not name.strip():
        raise ConfigError(f"{option} {item!r}: allowed: NAME=VALUE with a finite VALUE")
    return name.strip(), number


def suggest(name, allowed) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``allowed`` to ``name``, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_mapping(value, where: str) -> dict:
    """``value`` as a dict; ConfigError if it is not a mapping with string keys."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} = {_short(value)}: must be a mapping of key: value")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}: key {bad[0]!r} is not a string")
    return dict(value)


def check_keys(mapping, allowed, where: str, required=()) -> None:
    """Refuse keys of ``mapping`` not in ``allowed`` (with a suggestion) and missing ``required`` ones.

    Parameters
    ----------
    mapping : mapping
        The configuration read.
    allowed : iterable of str
        Every key that may appear.
    where : str
        Where the mapping comes from (a file name, possibly with a section), for the message.
    required : iterable of str
        Keys that must appear.
    """
    allowed = sorted(allowed)
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}{suggest(key, allowed)} "
                              f"(allowed: {', '.join(allowed)})")
    for key in required:
        if key not in mapping:
            raise ConfigError(f"{where}: required key {key!r} is missing")


def _bound_text(minimum, maximum, min_inclusive=True) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>=' if min_inclusive else '>'} {minimum}")
    if maximum is not None:
        parts.append(f"<= {maximum}")
    return " and ".join(parts)


def check_int(value, where: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool, not a fractional float) within ``[minimum, maximum]``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if not ok and isinstance(value, float) and math.isfinite(value) and value == int(value):
        ok = True  # 1e3 in a yaml file is a float
    if ok:
        number = int(value)
        if (minimum is None or number >= minimum) and (maximum is None or number <= maximum):
            return number
    bounds = _bound_text(minimum, maximum)
    raise ConfigError(f"{where} = {_short(value)}: must be an integer{' ' + bounds if bounds else ''}")


def check_float(value, where: str, minimum: float | None = None, maximum: float | None = None,
                min_inclusive: bool = True) -> float:
    """A finite real number within the bounds (``min_inclusive=False``: strictly above ``minimum``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if ok:
        number = float(value)
        ok = math.isfinite(number)
        if ok and minimum is not None:
            ok = number >= minimum if min_inclusive else number > minimum
        if ok and maximum is not None:
            ok = number <= maximum
        if ok:
            return number
    bounds = _bound_text(minimum, maximum, min_inclusive)
    raise ConfigError(f"{where} = {_short(value)}: must be a finite number{' ' + bounds if bounds else ''}")


def check_str(value, where: str, choices=None) -> str:
    """A non-empty string, optionally one of ``choices``."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} = {_short(value)}: must be a non-empty string"
                          + (f" (one of {', '.join(map(repr, choices))})" if choices else ""))
    if choices is not None and value not in choices:
        raise ConfigError(f"{where} = {_short(value)}{suggest(value, choices)}; allowed: "
                          f"{', '.join(map(repr, choices))}")
    return value


def check_bool(value, where: str) -> bool:
    """``true``/``false`` (a yaml boolean, not a string or number)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{where} = {_short(value)}: must be true or false")
    return bool(value)


def check_float_array(value, where: str, ndim: int | None = None, shape=None,
                      increasing: bool = False, positive: bool = False) -> np.ndarray:
    """A finite float array of the given ``ndim``/``shape``.

    Parameters
    ----------
    value : array_like
        Numbers (a yaml list); strings, booleans and nested ragged lists are refused.
    where : str
        For the message.
    ndim, shape : optional
        Required dimensionality or shape (``None`` in ``shape`` matches any length).
    increasing, positive : bool
        Require strictly increasing (1-d) or strictly positive entries.
    """
    if _exceeds(value, MAX_CONFIG_ARRAY_ENTRIES):
        raise ConfigError(f"{where} = {_short(value)}: more than {MAX_CONFIG_ARRAY_ENTRIES:,} entries "
                          "(nested lists, or YAML aliases that expand)")
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged nesting
        arr = None
    if arr is None or arr.dtype.kind not in "iuf" or arr.size == 0:
        raise ConfigError(f"{where} = {_short(value)}: must be a non-empty array of numbers")
    arr = arr.astype(float)
    if ndim is not None and arr.ndim != ndim:
        raise ConfigError(f"{where} = {_short(value)}: must be {ndim}-dimensional, got shape {arr.shape}")
    if shape is not None and (arr.ndim != len(shape)
                              or any(s is not None and s != a for s, a in zip(shape, arr.shape))):
        want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        raise ConfigError(f"{where}: shape {arr.shape}, expected {want}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{where} = {_short(value)}: every entry must be finite")
    if positive and np.any(arr <= 0):
        raise ConfigError(f"{where} = {_short(value)}: every entry must be > 0")
    if increasing and (arr.ndim != 1 or np.any(np.diff(arr) <= 0)):
        raise ConfigError(f"{where} = {_short(value)}: must be strictly increasing")
    return arr


#: Most entries (counting nested lists' items) a config array may hold; YAML aliases can make a
#: few hundred bytes expand to billions, which numpy would try to allocate.
MAX_CONFIG_ARRAY_ENTRIES = 1_000_000


def _exceeds(value, limit: int) -> bool:
    """Whether nested lists/tuples in ``value`` hold more than ``limit`` items, counted lazily."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            count += len(item)
            if count > limit:
                return True
            stack.extend(item)
    return False


def _short(value, limit: int = 80) -> str:
    """A bounded repr: never walks all of a deeply nested value (a YAML alias nest of a few hundred
    bytes expands to billions of items: a plain ``repr`` would never return)."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother = 3, limit, limit
    text = shortener.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_torch_device(name, where: str = "device") -> str:
    """A torch device string that this machine can use, checked before any work starts.

    ``"cpu"``, ``"cuda"``/``"cuda:N"`` (needs a visible GPU with index ``N``) or ``"mps"``
    (Apple GPU). Imports torch.

    Returns
    -------
    str
        ``name`` unchanged.
    """
    import torch

    check_str(name, where)
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"{where} = {_short(name)}: not a torch device ({str(exc).splitlines()[0]}); "
                          "allowed: 'cpu', 'cuda', 'cuda:N', 'mps'") from None
    if device.type == "cpu":
        return name
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{where} = {_short(name)}: no CUDA GPU is visible here "
                              f"(torch {torch.__version__}); use 'cpu'")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{where} = {_short(name)}: only {count} CUDA device(s) here "
                              f"(cuda:0 to cuda:{count - 1})")
        return name
    if device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"{where} = {_short(name)}: no Apple MPS device is available here; use 'cpu'")
        return name
    raise ConfigError(f"{where} = {_short(name)}: device type {device.type!r} is not supported; "
                      "allowed: 'cpu', 'cuda', 'cuda:N', 'mps'")
