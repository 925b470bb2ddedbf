"""Reconstruction: voxel visual hulls, silhouettes, depth, meshing, the viewer and the command line.

The tree is the architecture; imports point down it (``cli`` -> everything; ``viz``, ``segmentation``,
``depth`` -> ``learn``, ``hull``, ``grid``; ``hull`` -> ``grid`` alone):

- :mod:`carve.hull`: the carving engine (entry points, input checks, automatic bounds, the
  backend-neutral rule, one kernel module per backend).
- :mod:`carve.grid` and :mod:`carve.mesh`: the voxel grid, and its surfaces and colours.
- :mod:`carve.segmentation`: silhouettes from photographs (classical methods and a learned model).
- :mod:`carve.depth`: monocular depth. :mod:`carve.learn`: networks, losses and the training loop.
- :mod:`carve.metrics`: mask and depth scores. :mod:`carve.viz`: the Open3D viewer.
- :mod:`carve.cli`: the ``carve`` command line and the demo.

Public names are imported lazily (PEP 562) so that ``import carve`` and ``carve --help`` stay fast:
Numba, torch and Open3D load only when the code that needs them runs.
"""
from data.lazy import lazy_attributes

# public name -> module that defines it
_EXPORTS = {
    "carve": "carve.hull",
    "carve_depth": "carve.hull",
    "VoxelGrid": "carve.grid",
    "silhouettes": "carve.segmentation",
}
# sub-packages and modules reachable as attributes (carve.metrics.mask_iou, carve.viz.show, ...)
_SUBMODULES = {"hull", "grid", "mesh", "metrics", "segmentation", "depth", "learn", "viz", "cli"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, _SUBMODULES)
