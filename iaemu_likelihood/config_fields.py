"""Config dataclass fields that carry their allowed values: :func:`setting`, :func:`checked_fields`.

A key of a YAML config is declared once, with its default and its range::

    @dataclasses.dataclass
    class MyConfig:
        steps: int = setting(2000, 1)                          # integer >= 1
        fraction: float = setting(0.1, 0.0, 0.99, min_inclusive=False)
        device: str = setting("cpu")                           # non-empty string

and :func:`checked_fields` checks every such field of an instance with the checks of
:mod:`~iaemu_likelihood.config_checks` (the kind follows the default: an ``int`` default takes
integers, a ``float`` default finite numbers, a ``str`` default non-empty strings), so no second
table of names and ranges is needed. Fields without a range (lists, mappings, optional paths) are
left to the config's own checks.
"""
from __future__ import annotations

import dataclasses

__all__ = ["setting", "with_default", "checked_fields"]

#: Key of the range in a field's metadata.
_RANGE = "iaemu_range"


def setting(default, minimum=None, maximum=None, *, min_inclusive: bool = True,
            kw_only=dataclasses.MISSING):
    """A dataclass field with its default and allowed range.

    Parameters
    ----------
    default : int, float or str
        Default value; its type sets the check (see the module docstring).
    minimum, maximum : number, optional
        Allowed range (inclusive; ``min_inclusive=False`` excludes ``minimum`` for floats).
    kw_only : bool, optional
        As for :func:`dataclasses.field`.
    """
    if isinstance(default, bool) or not isinstance(default, (int, float, str)):
        raise TypeError(f"setting default {default!r}: must be an int, float or str")
    return dataclasses.field(default=default, kw_only=kw_only,
                             metadata={_RANGE: (minimum, maximum, min_inclusive)})


def with_default(base, name: str, default):
    """The :func:`setting` ``name`` of dataclass ``base`` with another default (keyword-only).

    For a config that extends ``base`` and wants another default for one of its keys, the range
    staying the one ``base`` declares.
    """
    fields = {f.name: f for f in dataclasses.fields(base)}
    if name not in fields or _RANGE not in fields[name].metadata:
        raise TypeError(f"{base.__name__} has no setting {name!r}")
    minimum, maximum, inclusive = fields[name].metadata[_RANGE]
    return setting(default, minimum, maximum, min_inclusive=inclusive, kw_only=True)


def checked_fields(config, where: str | None = None) -> dict:
    """Every :func:`setting` field of a dataclass instance, checked and normalised.

    Parameters
    ----------
    config : dataclass instance
    where : str, optional
        Prefix of the messages (a file, ``--set``): ``"<where>: <key>"``; the bare key if None.

    Returns
    -------
    dict
        Key -> checked value (int, float or str), in field order.

    Raises
    ------
    ConfigError
        The first value of the wrong type or out of range, naming the key, the value and what is
        allowed.
    """
    from .config_checks import check_float, check_int, check_str

    out = {}
    for field in dataclasses.fields(config):
        if _RANGE not in field.metadata:
            continue
        minimum, maximum, inclusive = field.metadata[_RANGE]
        at = field.name if where is None else f"{where}: {field.name}"
        value = getattr(config, field.name)
        if isinstance(field.default, str):
            out[field.name] = check_str(value, at)
        elif isinstance(field.default, int):
            out[field.name] = check_int(value, at, minimum, maximum)
        else:
            out[field.name] = check_float(value, at, minimum, maximum, inclusive)
    return out
