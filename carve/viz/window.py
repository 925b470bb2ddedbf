"""The interactive viewer: Open3D's ``O3DVisualizer`` on a :class:`carve.viz.scene.Scene`.

- It opens only where :func:`carve.viz.display.display_problem` finds an X server that accepts us
  and a working OpenGL driver (checked in a child process within 3 s), so it never waits on a window
  nobody can see; otherwise :func:`show` raises and points to :func:`carve.viz.snapshot`.
- The run loop is ours (``Application.run_one_tick``), so Ctrl+C in the terminal closes the window
  and raises ``KeyboardInterrupt``.
- The panel on the right lists the geometries by group (mesh, grid, points, cameras, images), one
  checkbox each; the actions (panel buttons and the Actions menu) are Reset view, Previous / Next
  camera (look through it), Toggle GROUP and Controls (:data:`CONTROLS` in a dialog).
- The first view is the scene's (:meth:`Scene.first_camera`: framed on the object, not on the
  cameras), at the size of the 3-D view left of the panel; Reset view returns to it.
- Looking through camera i sets Open3D's camera from its R, T and its K fitted to the 3-D view
  (:func:`carve.viz.framing.fit_camera`: ``setup_camera`` would stretch an image of another aspect
  over the view) and draws its photograph at full size
  on its frustum's image plane, in front of the view; Toggle images shows the object behind it.

Notes on Open3D (0.19, 0.20):
- The arcball turns around the point on the view axis at the depth of the centre of the scene's
  bounding box, and its far plane comes from that box. Line sets (the frustums) do not count in it,
  photographs do; so a hidden two-point cloud, symmetric about the object's centre and reaching every
  geometry, sets the box: the view turns around the object and nothing is clipped.
- ``O3DVisualizer`` has no key callbacks in Python: the controls are its mouse controls and actions.
- Its ``modify_geometry_material`` and the ``defaultUnlitTransparency`` shader crash the process
  (segmentation fault, 0.20): photographs are swapped through the scene's own
  ``modify_geometry_material``, and they are opaque.
- Under Mesa's software drivers the renderer spins for good in a process started with a glibc malloc
  tunable set (Dask sets one): :func:`carve.viz.allocator.steady_mmap_threshold` runs first.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from carve.viz.allocator import steady_mmap_threshold
from carve.viz.controls import CONTROLS
from carve.viz.display import display_problem, gl_renderer, screen_size
from carve.viz.framing import check_size, fit_camera, window_size
from carve.viz.offscreen import BACKGROUND, srgb, srgb_texture, stdout_to_devnull
from carve.viz.scene import Scene, build_scene
from geometry import Camera

__all__ = ["show", "Viewer", "CONTROLS"]

_USE_SNAPSHOT = "use carve.viz.snapshot(..., path='view.png') to render a PNG instead"
_IDLE_SLEEP = 0.005    # seconds to sleep after a tick that had nothing to do
_SETTLE_TICKS = 4      # ticks before the first view is set (see Viewer.__init__)
_REDRAW_TICKS = 6      # ticks that render the 3-D view again after a change (see Viewer._force_redraw)
_ANCHOR = "carve:bounds"
_IBL_INTENSITY = 22000.0   # Filament units; with post-processing off, what keeps a lit white below 1
_SUN_INTENSITY = 65000.0
_KEY_LIGHT = np.array([-0.45, -0.75, -0.9])  # towards the key light, first camera's axes (as offscreen.shade)
_app_ready = False


def _application():
    """Open3D's GUI application, initialised once per process."""
    global _app_ready
    import open3d.visualization.gui as gui

    app = gui.Application.instance
    if not _app_ready:
        steady_mmap_threshold()
        with stdout_to_devnull():
            app.initialize()
        _app_ready = True
    return app


def _software_renderer() -> bool:
    """Whether OpenGL is Mesa's software rasteriser (llvmpipe, softpipe), as the display check found."""
    renderer = (gl_renderer() or "").lower()
    return any(name in renderer for name in ("llvmpipe", "softpipe", "software"))


def _photo_material(texture: np.ndarray):
    import open3d as o3d

    mat = o3d.visualization.rendering.MaterialRecord()
    mat.shader = "defaultUnlit"
    mat.base_color = [1.0, 1.0, 1.0, 1.0]
    mat.albedo_img = srgb_texture(texture)
    return mat


def _texture_material(mesh):
    import open3d as o3d

    mat = o3d.visualization.rendering.MaterialRecord()
    mat.shader = "defaultLit"
    mat.base_color = [1.0, 1.0, 1.0, 1.0]
    mat.albedo_img = srgb_texture(np.asarray(mesh.textures[0]))
    return mat


def _guarded(action):
    """The action as an O3DVisualizer callback: an exception would abort the process from C++."""
    def callback(_window):
        try:
            action()
        except Exception as err:  # report and keep the window alive
            print(f"carve viewer: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
    return callback


class Viewer:
    """An open ``O3DVisualizer`` window on a :class:`Scene`; :func:`show` makes one and runs it.

    Tests and benchmarks drive it a tick at a time: :meth:`tick`, :meth:`home`,
    :meth:`look_through`, :meth:`show_group`, :meth:`set_view`, :meth:`view_matrix`, :meth:`close`.

    Attributes:
        scene: the scene drawn. window: the ``open3d.visualization.O3DVisualizer``.
        camera: the index of the camera looked through, or None (the first view or the user's).
        first_frame_s: seconds from the start of ``__init__`` to the first frame of the first view.
    """

    def __init__(self, scene: Scene, title: str = "carve", size: tuple[int, int] = (1024, 768)):
        import open3d as o3d
        import open3d.visualization as vis

        start = time.perf_counter()
        self.scene, self.title, self.camera = scene, str(title), None
        self.app = _application()
        with stdout_to_devnull():  # Filament prints its start-up lines on stdout
            self.window = w = vis.O3DVisualizer(self.title, int(size[0]), int(size[1]))
        w.set_background(np.array([*srgb(BACKGROUND), 1.0], np.float32), None)  # Filament reads it as sRGB
        w.show_skybox(False)
        w.show_settings = True
        self._photos = {e.camera: e for e in scene.entries if e.group == "images"}
        for e in scene.entries:
            material = None if e.texture is None else _photo_material(e.texture)
            if material is None and isinstance(e.geometry, o3d.geometry.TriangleMesh) and e.geometry.has_textures():
                material = _texture_material(e.geometry)  # a baked texture, lit
            w.add_geometry(e.name, e.geometry, material, e.group, 0.0, e.group not in scene.hidden)
        self._add_anchor(o3d)
        w.add_action("Reset view", _guarded(self.home))
        if scene.cameras is not None:
            w.add_action("Previous camera", _guarded(lambda: self.step_camera(-1)))
            w.add_action("Next camera", _guarded(lambda: self.step_camera(1)))
        for group in scene.groups():
            w.add_action(f"Toggle {group}", _guarded(lambda g=group: self.show_group(g, None)))
        w.add_action("Controls", _guarded(self.show_controls))
        self.is_open = True
        w.set_on_close(self._on_close)
        self._labels, self._redraws = None, 0
        with stdout_to_devnull():
            self.app.add_window(w)
            # lays the window out (the 3-D view's size is known from here); a camera set up in the
            # first tick or two leaves llvmpipe drawing at full speed for good (Open3D 0.20, Xvfb)
            for _ in range(_SETTLE_TICKS):
                self.app.run_one_tick()
        self._panel = self._measure_panel()
        self._light()
        self.home()
        self.tick()
        self.first_frame_s = time.perf_counter() - start

    # ------------------------------------------------------------------ state
    def _add_anchor(self, o3d) -> None:
        """The hidden two-point cloud that sets Open3D's scene box (see the module notes)."""
        lo, hi = self.scene.bounds()
        centre = (self.scene.lo + self.scene.hi) / 2
        reach = np.maximum(np.abs(lo - centre), np.abs(hi - centre))
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.stack([centre - reach, centre + reach])))
        material = o3d.visualization.rendering.MaterialRecord()
        material.shader = "defaultUnlit"
        self.window.scene.add_geometry(_ANCHOR, cloud, material)
        self.window.scene.show_geometry(_ANCHOR, False)

    def _light(self) -> None:
        """Colours as given (post-processing off: no tone mapping, the background exact, faster in
        software) under a sun over the first view's shoulder, like the snapshots' key light."""
        view = self.window.scene.view
        view.set_post_processing(False)
        view.set_shadowing(False, view.ShadowType.PCF)  # shadows cost frames in software rendering
        if _software_renderer():
            view.set_sample_count(1)  # 4x MSAA halves llvmpipe's frame rate (0.5 -> 0.23 s at 1080x810)
        R = self.scene.first_camera(self.viewport())[0].R[0]
        key = R.T @ _KEY_LIGHT
        world = self.window.scene.scene
        world.set_indirect_light_intensity(_IBL_INTENSITY)
        world.set_sun_light((-key / np.linalg.norm(key)).astype(np.float32), np.ones(3, np.float32), _SUN_INTENSITY)

    def _measure_panel(self) -> int:
        """Width in pixels of the settings panel: the window's width less the 3-D view's, whose
        aspect Open3D's projection holds after the first layout."""
        P = np.asarray(self.window.scene.camera.get_projection_matrix(), np.float64)
        rect = self.window.content_rect
        view_width = int(round(rect.height * P[1, 1] / P[0, 0])) if P[0, 0] > 0 else rect.width
        return max(0, rect.width - view_width)

    def viewport(self) -> tuple[int, int]:
        """(width, height) in pixels of the 3-D view: the window's content less the panel."""
        rect = self.window.content_rect
        panel = self._panel if self.window.show_settings else 0
        return max(16, rect.width - panel), max(16, rect.height)

    def view_matrix(self) -> np.ndarray:
        """(4, 4) Open3D's view matrix (world to OpenGL camera axes: x right, y up, z backwards);
        for an OpenCV pose [R | T] it is ``diag(1, -1, -1, 1) @ [[R, T], [0, 1]]``."""
        return np.asarray(self.window.scene.camera.get_view_matrix(), np.float64)

    def visible(self, name: str) -> bool:
        """Whether the named geometry is drawn now (its checkbox, its group's, the actions)."""
        return bool(self.window.scene.geometry_is_visible(name))

    # ------------------------------------------------------------------ views
    def set_view(self, cam: Camera) -> None:
        """Look from a one-camera ``cam`` whose size is the 3-D view's (see :meth:`viewport`)."""
        K = cam.K[0].copy()
        K[:2, 2] += 0.5  # Open3D puts the image corner at 0, we put the first pixel centre there
        extrinsic = np.eye(4)
        extrinsic[:3, :3], extrinsic[:3, 3] = cam.R[0], cam.T[0]
        self.window.setup_camera(K, extrinsic, int(cam.width), int(cam.height))
        self.redraw()

    def redraw(self) -> None:
        """Render the 3-D view again over the next ticks (see :meth:`_force_redraw`)."""
        self._redraws = _REDRAW_TICKS
        self._force_redraw()

    def _force_redraw(self) -> None:
        """Ask Open3D to render the 3-D view on the next tick. The view is cached: rendered only
        when Open3D forces it, which neither ``setup_camera`` with intrinsics nor the scene's own
        calls do (``show_skybox`` does, and re-asserting it costs nothing else). And Filament drops
        a frame while the previous one is still being drawn, so one forced frame may never show:
        :meth:`tick` forces a few."""
        self.window.show_skybox(False)
        self.window.post_redraw()

    def _set_title(self, title: str) -> None:
        if title != self.window.title:
            self.window.title = title

    def _set_photo(self, i: int | None, full: bool) -> None:
        entry = self._photos.get(i)
        if entry is None:
            return
        texture = self.scene.photos[i] if full else entry.texture
        self.window.scene.modify_geometry_material(entry.name, _photo_material(texture))  # see the notes
        self.redraw()

    def home(self) -> None:
        """Back to the first view (:meth:`Scene.first_camera` at the 3-D view's current size)."""
        self._set_photo(self.camera, full=False)
        self.camera = None
        self.set_view(self.scene.first_camera(self.viewport())[0])
        self._set_title(self.title)
        self._labels = None

    def look_through(self, i: int) -> None:
        """Move the viewpoint to camera ``i``: its pose and intrinsics, its photograph in front."""
        cams = self.scene.cameras
        if cams is None:
            raise ValueError("look_through needs a scene with cameras, got one without")
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(cams):
            raise ValueError(f"i must be a camera index in [0, {len(cams)}), got {i!r}")
        self._set_photo(self.camera, full=False)
        self.camera = int(i)
        self.set_view(fit_camera(cams[self.camera], self.viewport()))  # Open3D would stretch it
        self._set_photo(self.camera, full=True)
        self._set_title(f"{self.title}: camera {self.scene.label(self.camera)} ({self.camera + 1}/{len(cams)})")
        self._labels = None

    def step_camera(self, step: int) -> None:
        """Look through the next (``step`` 1) or previous (-1) camera; from the first view, the first
        or the last."""
        n = len(self.scene.cameras)
        if self.camera is None:
            self.look_through(0 if step > 0 else n - 1)
        else:
            self.look_through((self.camera + step) % n)

    def show_group(self, group: str, visible: bool | None) -> None:
        """Show (True) or hide (False) every geometry of a group; None flips it (hides it when any
        of it is shown, else shows it)."""
        names = [e.name for e in self.scene.entries if e.group == group]
        if not names:
            raise ValueError(f"group must be one of the scene's groups {self.scene.groups()}, got {group!r}")
        if visible is None:
            visible = not any(self.visible(n) for n in names)
        for n in names:
            self.window.show_geometry(n, bool(visible))
        self._labels = None

    def show_controls(self) -> None:
        """A dialog with :data:`CONTROLS`."""
        import open3d.visualization.gui as gui

        em = int(round(16 * self.window.scaling))
        dialog = gui.Dialog("Controls")
        layout = gui.Vert(em // 2, gui.Margins(em, em, em, em))
        layout.add_child(gui.Label(CONTROLS))
        close = gui.Button("Close")
        close.set_on_clicked(self.window.close_dialog)
        layout.add_child(close)
        dialog.add_child(layout)
        self.window.show_dialog(dialog)

    def _sync_labels(self) -> None:
        """View names beside the frustums that are shown (not the one looked through)."""
        scene = self.scene
        if scene.cameras is None:
            return
        shown = tuple(self.visible(e.name) and e.camera != self.camera for e in scene.entries
                      if e.group == "cameras")
        if shown == self._labels:
            return
        self.window.clear_3d_labels()
        for i, on in enumerate(shown):
            if on:
                self.window.add_3d_label(scene.label_position(i).astype(np.float32), scene.label(i))
        self._labels = shown

    # ------------------------------------------------------------------ loop
    def _on_close(self) -> bool:
        self.is_open = False
        return True

    def tick(self) -> bool:
        """Process the window's events and draw once if needed; False once it is closed."""
        if not self.is_open:
            return False
        alive = self.app.run_one_tick()
        if alive and self.is_open:
            self._sync_labels()
            if self._redraws > 0:
                self._redraws -= 1
                self._force_redraw()
        return bool(alive and self.is_open)

    def close(self) -> None:
        """Close the window and let Open3D finish closing it."""
        if self.is_open:
            self.window.close()
            for _ in range(100):
                if not self.app.run_one_tick():
                    break
        self.is_open = False

    def run(self, close_after: float | None = None) -> None:
        """Tick until the window is closed (or ``close_after`` seconds passed); Ctrl+C closes it and
        raises ``KeyboardInterrupt``."""
        deadline = None if close_after is None else time.monotonic() + close_after
        try:
            while True:
                start = time.perf_counter()
                if not self.tick():
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if time.perf_counter() - start < 0.002:
                    time.sleep(_IDLE_SLEEP)  # nothing to do: do not spin
        except KeyboardInterrupt:
            self.close()
            raise
        self.close()


def show(*items, cameras: Camera | None = None, title: str = "carve", size=None, view=None,
         up=(0.0, 0.0, 1.0), names=None, photos=None, flagged=None, hide=(), close_after: float | None = None) -> None:
    """Open a window (Open3D's ``O3DVisualizer``) on the items and cameras; returns when it is closed.

    Args:
        *items: what to draw (see :func:`carve.viz.to_open3d_geometry`).
        cameras: a :class:`geometry.Camera` batch (with size) drawn as frustums sized to the scene,
            each labelled with its view name.
        title: the window's title.
        size: (width, height) of the window, the panel on the right included (about 256 pixels);
            default: up to 1280 x 960, fitted to the screen (within 85 % of it), with the aspect of a
            Camera ``view``.
        view: the first view. None: a 3/4 view from above framed on the items (not the cameras), the
            items spanning 60 % of the 3-D view's width or height. A one-camera :class:`geometry.Camera`:
            look through it (its pose and vertical field of view; e.g. the camera of a depth map, with
            ``up=(0, -1, 0)``). Or ``dict(eye=, target=, up=, fov=)`` as for :func:`carve.viz.snapshot`.
        up: (3,) world up of the default view (z up; pass (0, -1, 0) for an OpenCV camera's frame).
        names: one view name per camera (default "0000", ...), shown beside its frustum.
        photos: one (H, W, 3) uint8 photograph per camera, of the cameras' size: drawn on the
            frustums' image planes, and in front of the view when looking through a camera.
        flagged: the views a reconstruction flagged (indices or a (B,) bool mask, e.g.
            :func:`carve.viz.scene.flagged_from_report` of ``NAME_views.json``): their frustums are
            red, the others green.
        hide: groups hidden at first (mesh, grid, points, lines, cameras, images).
        close_after: close the window this many seconds after its first frame (tests, benchmarks).

    Controls (:data:`CONTROLS`, also behind the window's "Controls" action): left drag rotates, ctrl
    + left drag or right drag pans, the wheel zooms; the panel's checkboxes show and hide each group
    and geometry; the actions Reset view (back to the first view), Previous / Next camera (look
    through it) and Toggle GROUP; the close button, File > Close Window, or Ctrl+C in the terminal
    closes.

    Raises:
        RuntimeError: no display (:func:`carve.viz.display.display_problem`: on Linux no reachable X
            server that accepts us, or no working OpenGL driver on it); use :func:`carve.viz.snapshot`.
        KeyboardInterrupt: Ctrl+C in the terminal, after the window is closed.
    """
    if size is not None:
        size, _ = check_size(size)
    if title is None or not str(title).strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    if close_after is not None and (isinstance(close_after, bool) or not isinstance(close_after, (int, float))
                                    or not math.isfinite(close_after) or close_after < 0):
        raise ValueError(f"close_after must be None or a number of seconds >= 0, got {close_after!r}")
    scene = build_scene(items, cameras, names=names, photos=photos, flagged=flagged, hide=hide, view=view, up=up)
    problem = display_problem()
    if problem:
        raise RuntimeError(f"{problem}; {_USE_SNAPSHOT}")
    if size is None:
        aspect = view.width / view.height if isinstance(view, Camera) and view.has_size else 4 / 3
        size = window_size(screen_size(), aspect)
    Viewer(scene, title, size).run(close_after)
