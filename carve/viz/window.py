"""The interactive viewer: an Open3D window (the classic ``Visualizer``) on the items.

- It opens only where :func:`carve.viz.display.display_problem` finds an X server that accepts us
  and a working OpenGL driver (checked in a child process within 3 s), so it never waits on a window
  nobody can see.
- The run loop is ours (``poll_events`` and a short sleep), so Ctrl+C in the terminal closes the
  window and raises ``KeyboardInterrupt``; idle, it costs about 1 % of a core.
- The first view is framed on the object, not on the cameras (:func:`carve.viz.framing.window_camera`),
  and ``R`` returns to it; ``H`` prints :data:`CONTROLS`.
"""
from __future__ import annotations

import time

import numpy as np

from carve.viz.controls import CONTROLS
from carve.viz.display import display_problem, screen_size
from carve.viz.framing import bounds, check_size, check_up, object_bounds, scene, window_camera, window_size
from carve.viz.offscreen import BACKGROUND
from geometry import Camera

__all__ = ["show", "CONTROLS"]

_USE_SNAPSHOT = "use carve.viz.snapshot(..., path='view.png') to render a PNG instead"

_POLL = 0.01  # seconds between two looks at the window's events


def _set_view(vis, view, lo, hi, points, up, extent: float) -> None:
    """Point the window's view control at ``view`` (see :func:`window_camera`) at its current size."""
    import open3d as o3d

    control = vis.get_view_control()
    params = control.convert_to_pinhole_camera_parameters()
    W, H = params.intrinsic.width, params.intrinsic.height
    cam, pivot = window_camera(view, lo, hi, up, (W, H), points)
    K = cam.K[0]
    params.intrinsic = o3d.camera.PinholeCameraIntrinsic(W, H, K[0, 0], K[1, 1], W / 2 - 0.5, H / 2 - 0.5)
    extrinsic = np.eye(4)
    extrinsic[:3, :3], extrinsic[:3, 3] = cam.R[0], cam.T[0]
    params.extrinsic = extrinsic
    control.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True)  # sets the field of view
    # Open3D keeps eye = lookat + front * distance, distance = zoom * extent / tan(fov / 2): put the
    # turning point on the object and the eye where the camera is
    eye = cam.center[0]
    distance = float(np.linalg.norm(eye - pivot))
    half_fov = np.radians(control.get_field_of_view()) / 2
    control.set_lookat(pivot)
    control.set_front((eye - pivot) / max(distance, 1e-12))
    control.set_up(-cam.R[0][1])
    control.set_zoom(distance * np.tan(half_fov) / max(extent, 1e-12))


def _run(vis) -> None:
    """Our run loop: Open3D's ``run`` holds the interpreter, so Ctrl+C would wait for the window."""
    while vis.poll_events():
        time.sleep(_POLL)


def show(*items, cameras: Camera | None = None, title: str = "carve", size=None, view=None,
         up=(0.0, 0.0, 1.0)) -> None:
    """Open an Open3D window with the items (and camera frustums); returns when it is closed.

    Args:
        *items: what to draw (see :func:`carve.viz.to_open3d_geometry`).
        cameras: a :class:`geometry.Camera` batch (with size) drawn as frustums.
        title: the window's title.
        size: (width, height) of the window; default: up to 1280 x 960, fitted to the screen (within
            85 % of it), with the aspect of a Camera ``view``.
        view: the first view. None: a 3/4 view from above framed on the items (not the cameras),  the
            items spanning 60 % of the window's width or height. A one-camera :class:`geometry.Camera`: look
            through it (its pose and vertical field of view; e.g. the camera of a depth map, with
            ``up=(0, -1, 0)``). Or ``dict(eye=, target=, up=, fov=)`` as for :func:`carve.viz.snapshot`.
        up: (3,) world up of the default view (z up; pass (0, -1, 0) for an OpenCV camera's frame).

    Controls (:data:`CONTROLS`; ``H`` prints them): left drag rotates, ctrl + left drag or middle drag
    pans, shift + left drag rolls, the wheel zooms, ``[``/``]`` change the field of view, ``R``
    returns to the first view, ``W`` wireframe, ``L`` lighting, ``+``/``-`` point size, ``S``
    shading, ``B`` back faces, ``P`` a screenshot, ``Q`` or Esc (or Ctrl+C in the terminal) closes.

    Raises:
        RuntimeError: no display (:func:`carve.viz.display.display_problem`: on Linux no reachable X
            server that accepts us, or no working OpenGL driver on it), or the window could not open;
            use :func:`carve.viz.snapshot` instead.
        KeyboardInterrupt: Ctrl+C in the terminal, after the window is closed.
    """
    import open3d as o3d

    if size is not None:
        size, _ = check_size(size)
    up = check_up(up)
    if title is None or not str(title).strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    if view is not None and not isinstance(view, (Camera, dict)):
        raise TypeError(f"view must be None, a geometry.Camera or a dict(eye=, target=, up=), got "
                        f"{type(view).__name__}")
    geometries, _ = scene(items, cameras)
    lo, hi, points = object_bounds(geometries, cameras is not None)
    extent = float(np.max(np.subtract(*bounds(geometries)[::-1])))  # what Open3D's zoom is relative to
    problem = display_problem()
    if problem:
        raise RuntimeError(f"{problem}; {_USE_SNAPSHOT}")
    if size is None:
        aspect = view.width / view.height if isinstance(view, Camera) and view.has_size else 4 / 3
        size = window_size(screen_size(), aspect)
    vis = o3d.visualization.VisualizerWithKeyCallback()
    if not vis.create_window(window_name=str(title), width=size[0], height=size[1]):
        raise RuntimeError(f"could not open an Open3D window; {_USE_SNAPSHOT}")
    try:
        for g in geometries:
            vis.add_geometry(g)
        option = vis.get_render_option()
        option.background_color = np.array(BACKGROUND)
        option.point_size = 3.0
        option.mesh_show_back_face = True

        def home(v):
            _set_view(v, view, lo, hi, points, up, extent)
            return False

        def help_(v):
            print(CONTROLS, flush=True)
            return False

        vis.register_key_callback(ord("R"), home)
        vis.register_key_callback(ord("H"), help_)
        home(vis)
        _run(vis)
    finally:
        vis.destroy_window()
