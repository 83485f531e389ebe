"""Package attributes imported on first access (PEP 562), so importing a package stays cheap."""
from __future__ import annotations

from importlib import import_module

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, table: dict, namespace: dict):
    """The ``__getattr__`` and ``__dir__`` of a package with lazily imported names.

    Parameters
    ----------
    package : str
        The package's name (for the error message).
    table : dict
        ``{attribute name: module that defines it}``; the module is imported on first access.
    namespace : dict
        The package's ``globals()``: an attribute imported once is stored there, so later
        accesses do not come back here.

    Returns
    -------
    getattr, dir : callable
        Assign them to the package's ``__getattr__`` and ``__dir__``.
    """
    def __getattr__(name):
        if name in table:
            value = getattr(import_module(table[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
