"""Field-level galaxy painter: a dark-matter density mesh -> an HOD galaxy field, without halos.

``paint(density, hod_params, seed, mode="sample" | "mean")`` runs a trained two-phase 3-D network
(probability of >= 1 galaxy per voxel, then a count distribution), conditioned on the five HOD
parameters; see :mod:`.painter`. Weights folders: :mod:`.weights`. torch and MONAI are imported
only when a painter is loaded.
"""
from .._lazy import lazy_attributes

_LAZY = {
    "GalaxyPainter": "iaemu_likelihood.field.painter",
    "paint": "iaemu_likelihood.field.painter",
    "MeshShapeError": "iaemu_likelihood.field.painter",
    "InvalidDensityError": "iaemu_likelihood.field.painter",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
del lazy_attributes
