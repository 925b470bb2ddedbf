"""The carving engine: voxel visual hulls from silhouettes, free-space carving from depth maps.

    >>> from carve.hull import carve, carve_depth, border_views, memory_estimate, EmptyHullWarning

Modules: :mod:`~carve.hull.carving` (the entry points), :mod:`~carve.hull.checks` (input checks),
:mod:`~carve.hull.bounds` (``bounds="auto"``), :mod:`~carve.hull.rule` (what both backends share),
:mod:`~carve.hull.numba_kernels` (CPU) and :mod:`~carve.hull.torch_kernels` (any torch device), one
file per backend, the same algorithm: they agree voxel for voxel. Numba and torch load only when a
carving call needs them.
"""
from carve.hull.carving import EmptyHullWarning, border_views, carve, carve_depth
from carve.hull.checks import memory_estimate

__all__ = ["carve", "carve_depth", "border_views", "memory_estimate", "EmptyHullWarning"]
