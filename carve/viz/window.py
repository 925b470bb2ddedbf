"""The interactive viewer: an Open3D window (the classic ``Visualizer``) on the items."""
from __future__ import annotations

import numpy as np

from carve.viz.display import display_problem
from carve.viz.framing import check_size, check_up, default_camera, scene
from carve.viz.offscreen import BACKGROUND
from geometry import Camera

__all__ = ["show"]

_USE_SNAPSHOT = "use carve.viz.snapshot(..., path='view.png') to render a PNG instead"


def show(*items, cameras: Camera | None = None, title: str = "carve", size=(1280, 960),
         up=(0.0, 0.0, 1.0)) -> None:
    """Open an Open3D window with the items (and camera frustums); returns when it is closed.

    Args:
        *items: what to draw (see :func:`carve.viz.to_open3d_geometry`).
        cameras: a :class:`geometry.Camera` batch (with size) drawn as frustums.
        title: window title. size: window (width, height). up: (3,) world up for the initial 3/4 view.

    Raises:
        RuntimeError: no display (:func:`carve.viz.display.display_problem`: on Linux, DISPLAY and
            WAYLAND_DISPLAY unset, or no X server), or the window could not open; use
            :func:`carve.viz.snapshot` instead.
    """
    import open3d as o3d

    problem = display_problem()
    if problem:
        raise RuntimeError(f"{problem}; {_USE_SNAPSHOT}")
    size, _ = check_size(size)
    up = check_up(up)
    geometries, (lo, hi) = scene(items, cameras)
    cam = default_camera(lo, hi, up, size)
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(window_name=str(title), width=size[0], height=size[1]):
        raise RuntimeError(f"could not open an Open3D window; {_USE_SNAPSHOT}")
    try:
        for g in geometries:
            vis.add_geometry(g)
        option = vis.get_render_option()
        option.background_color = np.array(BACKGROUND)
        option.point_size = 3.0
        option.mesh_show_back_face = True
        control = vis.get_view_control()
        target = (lo + hi) / 2
        control.set_lookat(target)
        control.set_front(cam.center[0] - target)
        control.set_up(up)
        control.set_zoom(0.8)
        vis.run()
    finally:
        vis.destroy_window()
