"""Reconstruction: voxel visual hulls, silhouettes, depth, meshing, the viewer and the command line.

Public names are imported lazily (PEP 562) so that ``import carve`` and ``carve --help`` stay fast:
Numba, torch and Open3D load only when the code that needs them runs.
"""
from importlib import import_module

# public name -> module that defines it
_EXPORTS = {
    "carve": "carve.engine",
    "carve_depth": "carve.engine",
    "VoxelGrid": "carve.grid",
    "silhouettes": "carve.segmentation",
}
# submodules reachable as attributes (carve.metrics.mask_iou, carve.viz.show, ...)
_SUBMODULES = {"metrics", "viz", "depth", "nets", "engine", "grid", "segmentation", "cli"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = import_module(f"carve.{name}")
    else:
        raise AttributeError(f"module 'carve' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
