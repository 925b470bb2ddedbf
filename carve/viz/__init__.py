"""Open3D viewer: an interactive window, headless PNG snapshots, and camera frustums.

Every function takes the same kinds of items (see :func:`to_open3d_geometry`): trimesh meshes and point
clouds, Open3D geometries, ``(N, 3)`` arrays of points, ``(points, colors)`` pairs, voxel grids
(:class:`carve.VoxelGrid` or anything with ``to_mesh``/``to_open3d``) and file paths.

- :func:`show` opens a window (Open3D's classic ``Visualizer``); with no display it raises a
  ``RuntimeError`` that points to :func:`snapshot`. :func:`has_display` says beforehand whether it can.
- :func:`snapshot` writes PNGs with ``open3d.visualization.rendering.OffscreenRenderer`` (Filament),
  from a default 3/4 view that frames everything, from a :class:`geometry.Camera`, or from an
  ``eye``/``target``/``up`` dict; ``turntable=N`` writes N frames around the ``up`` axis.
  :func:`render` returns the picture as an array instead; :func:`check_headless` says whether
  rendering works here (the notes on headless rendering are in :mod:`carve.viz.offscreen`).
- :func:`camera_frustums` draws a batch of cameras as pyramids (an Open3D ``LineSet``).

Modules: :mod:`~carve.viz.convert` (items and cameras to Open3D geometries, file loading),
:mod:`~carve.viz.framing` (bounds, default and given views, turntables), :mod:`~carve.viz.offscreen`
(headless rendering), :mod:`~carve.viz.display` (the display check), :mod:`~carve.viz.window` (show).

Example:
    >>> import numpy as np
    >>> from carve import viz
    >>> type(viz.to_open3d_geometry(np.random.default_rng(0).random((10, 3)))).__name__
    'PointCloud'
"""
from carve.viz.convert import (FRUSTUM_COLOR, MESH_COLOR, MESH_SUFFIXES, POINT_COLOR, POINT_SUFFIXES,
                               camera_frustums, to_open3d_geometry)
from carve.viz.display import display_problem, has_display
from carve.viz.framing import DEFAULT_SIZE
from carve.viz.offscreen import BACKGROUND, check_headless, render, snapshot
from carve.viz.window import show

__all__ = ["show", "snapshot", "render", "camera_frustums", "to_open3d_geometry", "check_headless",
           "has_display", "display_problem", "BACKGROUND", "MESH_COLOR", "POINT_COLOR", "FRUSTUM_COLOR",
           "DEFAULT_SIZE", "MESH_SUFFIXES", "POINT_SUFFIXES"]
