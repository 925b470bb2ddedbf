"""Open3D viewer: an interactive window, headless PNG snapshots, and camera frustums.

Every function takes the same kinds of items (see :func:`to_open3d_geometry`): trimesh meshes and point
clouds, Open3D geometries, ``(N, 3)`` arrays of points, ``(points, colors)`` pairs, voxel grids
(:class:`carve.VoxelGrid` or anything with ``to_mesh``/``to_open3d``) and file paths.

- :func:`show` opens a window (Open3D's ``O3DVisualizer``) framed on the object, its size fitted to
  the screen, with one toggle per group (mesh, grid, points, cameras, images), camera frustums
  labelled with their view names and coloured by agreement (``flagged=``), "look through camera i"
  with its photograph, and Reset view; :data:`CONTROLS` lists the controls. With no display (no X
  server that accepts us, or no OpenGL driver: checked in a child process within 3 s) it raises a
  ``RuntimeError`` that points to :func:`snapshot`. :func:`has_display` says beforehand whether it can.
- :func:`snapshot` writes PNGs with ``open3d.visualization.rendering.OffscreenRenderer`` (Filament)
  of the same scene (:func:`build_scene`): by default the window's first view with the same groups
  hidden; or from a :class:`geometry.Camera`, or an ``eye``/``target``/``up`` dict; ``turntable=N``
  writes N frames around the ``up`` axis.
  :func:`render` returns the picture as an array instead; :func:`check_headless` says whether
  rendering works here (the notes on headless rendering are in :mod:`carve.viz.offscreen`).
- :func:`camera_frustums` draws a batch of cameras as pyramids (an Open3D ``LineSet``).

Modules: :mod:`~carve.viz.convert` (items and cameras to Open3D geometries, file loading),
:mod:`~carve.viz.scene` (the scene description both consume: named geometries in groups, photos,
flagged views), :mod:`~carve.viz.framing` (bounds, default and given views, turntables),
:mod:`~carve.viz.offscreen` (headless rendering), :mod:`~carve.viz.display` (the display check),
:mod:`~carve.viz.window` (show, Viewer), :mod:`~carve.viz.controls` (the controls' text).

Example:
    >>> import numpy as np
    >>> from carve import viz
    >>> type(viz.to_open3d_geometry(np.random.default_rng(0).random((10, 3)))).__name__
    'PointCloud'
"""
from data.lazy import lazy_attributes

# public name -> the module that defines it: loaded on first use, so that ``carve view --help`` can
# read the controls (carve.viz.controls) without importing numpy or Open3D
_EXPORTS = {
    "to_open3d_geometry": "carve.viz.convert", "camera_frustums": "carve.viz.convert",
    "MESH_COLOR": "carve.viz.convert", "POINT_COLOR": "carve.viz.convert", "FRUSTUM_COLOR": "carve.viz.convert",
    "MESH_SUFFIXES": "carve.viz.convert", "POINT_SUFFIXES": "carve.viz.convert",
    "display_problem": "carve.viz.display", "has_display": "carve.viz.display", "screen_size": "carve.viz.display",
    "DEFAULT_SIZE": "carve.viz.framing",
    "build_scene": "carve.viz.scene", "flagged_from_report": "carve.viz.scene", "GROUPS": "carve.viz.scene",
    "GOOD_COLOR": "carve.viz.scene", "FLAGGED_COLOR": "carve.viz.scene", "render_scene": "carve.viz.offscreen",
    "BACKGROUND": "carve.viz.offscreen", "check_headless": "carve.viz.offscreen", "render": "carve.viz.offscreen",
    "snapshot": "carve.viz.offscreen",
    "CONTROLS": "carve.viz.controls", "show": "carve.viz.window", "Viewer": "carve.viz.window",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
