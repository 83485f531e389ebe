"""iaemu: a neural-network emulator of galaxy intrinsic-alignment correlation functions.

The emulator maps 7 HOD + alignment parameters to the position-position ``xi(r)``,
position-orientation ``omega(r)`` and orientation-orientation ``eta(r)`` correlation
functions (20 log bins, 0.1-15.85 comoving h^-1 Mpc) with their aleatoric and
epistemic uncertainties. It ships as a Cobaya theory/likelihood and a CosmoSIS module.

Importing this package is cheap: torch, halotools and cobaya are imported only when
the objects that need them are first used.
"""
from importlib.metadata import PackageNotFoundError, version as _version

from ._lazy import lazy_attributes
from .conventions import PARAM_NAMES, R_EDGES, STATISTICS, r_centres
from .errors import (BatchTooLargeError, IAEmuError, InputShapeError, OutOfRangeError,
                     WeightsIntegrityError)

try:
    __version__ = _version("iaemu-likelihood")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# Public names that live in modules with heavy dependencies, imported on first access.
_LAZY = {
    "IAEmulator": "iaemu_likelihood.emulator",
    "IAEmuTheory": "iaemu_likelihood.cobaya_theory",
    "IAEmuLikelihood": "iaemu_likelihood.cobaya_likelihood",
}

__all__ = ["__version__", "PARAM_NAMES", "R_EDGES", "STATISTICS", "r_centres", "IAEmuError",
           "OutOfRangeError", "InputShapeError", "BatchTooLargeError", "WeightsIntegrityError", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
del lazy_attributes
