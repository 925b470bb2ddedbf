"""The carving engine: voxel visual hulls from silhouettes, free-space carving from depth maps.

    >>> from carve.hull import carve, carve_depth, border_views, memory_estimate, EmptyHullWarning
    >>> from carve.hull import robust_carve, view_scores, HullReport

Modules: :mod:`~carve.hull.carving` (the entry points), :mod:`~carve.hull.checks` (input checks),
:mod:`~carve.hull.bounds` (``bounds="auto"``), :mod:`~carve.hull.rule` (what both backends share),
:mod:`~carve.hull.numba_kernels` (CPU) and :mod:`~carve.hull.torch_kernels` (any torch device), one
file per backend, the same algorithm: they agree voxel for voxel. Numba and torch load only when a
carving call needs them. :mod:`~carve.hull.agreement` scores each view against a hull and carves a
robust one (:func:`robust_carve`: without the masks that cut the object, with ``slack`` for
calibration error), reporting in a :class:`~carve.hull.report.HullReport`;
:mod:`~carve.hull.reprojection` gives a grid's exact silhouettes.
"""
from carve.hull.carving import EmptyHullWarning, border_views, carve, carve_depth, outside_per_view
from carve.hull.agreement import ViewScores, robust_carve, view_scores
from carve.hull.checks import memory_estimate
from carve.hull.report import HullReport, ViewRow

__all__ = ["carve", "carve_depth", "border_views", "outside_per_view", "memory_estimate", "EmptyHullWarning", "robust_carve",
           "view_scores", "ViewScores", "HullReport", "ViewRow"]
