"""Headless rendering: PNG snapshots and in-memory pictures through Open3D's OffscreenRenderer.

- :func:`snapshot` writes PNGs with ``open3d.visualization.rendering.OffscreenRenderer`` (Filament),
  from a default 3/4 view that frames everything, from a :class:`geometry.Camera`, or from an
  ``eye``/``target``/``up`` dict; ``turntable=N`` writes N frames around the ``up`` axis.
  :func:`render` returns the picture as an array instead.
- :func:`check_headless` says, without risking the interpreter, whether rendering works here.

Headless rendering (measured with Open3D 0.20.0 and Mesa 22.3.6 on Debian 12, 2 cores, no GPU)
-----------------------------------------------------------------------------------------------
- Open3D 0.20 runs Filament on Vulkan when there is no display; without a GPU that is Mesa's
  software driver (lavapipe, on llvmpipe). Debian packages: ``libvulkan1 mesa-vulkan-drivers``
  (and ``libusb-1.0-0`` to import open3d at all). No environment variable is needed, and none is
  set: ``EGL_PLATFORM=surfaceless`` and ``OPEN3D_CPU_RENDERING=true`` (the EGL recipes of Open3D's
  "CPU rendering" page for older releases) change nothing in 0.20, which picks Vulkan by itself.
- Where no Vulkan driver is installed, creating an ``OffscreenRenderer`` aborts the whole
  interpreter (a Filament C++ panic, SIGABRT) that no ``try`` can catch. So :func:`check_headless`
  first renders a 16 x 16 picture in a child process (about 1 s, once per process) and turns a
  failure there into a ``RuntimeError`` that says what to install.
- One renderer at a time: a second live ``OffscreenRenderer`` is very slow and deleting the pair
  aborts the interpreter. Renderers are made under a lock, their scene is cleared before they are
  dropped, and all frames of one call (a turntable) share one renderer.
- Filament's own lit material is slow in software: the first frame of a renderer with
  ``defaultLit`` (or ``defaultUnlit``) takes seconds of CPU (7-9 s for a 960 x 720 view of a mesh;
  later frames of the same renderer are fast, so this is per-renderer shader work), while Open3D's
  small materials (``normals``, ``unlitPolygonOffset``, ``unlitSolidColor``, ``unlitLine``) cost
  about 0.1 s. So a frame is two cheap passes, colours (unlit, per vertex) then world normals, and
  the lighting (hemisphere ambient, a key and a fill light over the viewer's shoulder, a little
  specular) is done in numpy by :func:`shade`; points and lines are not shaded. A 960 x 720
  snapshot of a mesh takes about 0.3-1 s including the renderer's start.
- Screen-space ambient occlusion (on by default), post-processing (tone mapping, FXAA), MSAA and
  shadows are off: frames are deterministic and do not depend on the viewport size.
- Filament reads background and ``unlitSolidColor`` colours as sRGB and writes linear values, while
  vertex colours pass unchanged; :func:`srgb` pre-encodes the former so every colour comes out as
  given.
- Open3D builds its projection with the image corner at 0 (pixel centres at +0.5), while ours puts
  the top-left pixel centre at (0, 0): the principal point is shifted by +0.5 before rendering, so a
  point lands on the pixel :func:`geometry.project` names (tested to a tenth of a pixel).
- Filament prints start-up lines on stdout; they go to /dev/null while a renderer is created.
- Filament connects to ``DISPLAY`` when it starts, and waits for good on an X server that accepts
  and never answers (a stale ssh -X forward): where the display check finds the display broken,
  ``DISPLAY`` is hidden while the renderer starts (:func:`without_broken_display`).
- In one process, snapshots may come before windows, not after: an OffscreenRenderer made while
  an Open3D window is open aborts the process when it is destroyed (Open3D 0.20).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from carve.viz.display import display_problem
from carve.viz.framing import check_size, turntable as turntable_cameras
from carve.viz.scene import Scene, build_scene
from data.files import new_folders
from data.images import write_image
from geometry import Camera, pixel_rays

__all__ = ["snapshot", "render", "render_scene", "check_headless", "shade", "stdout_to_devnull", "without_broken_display", "srgb", "srgb_texture",
           "BACKGROUND"]

BACKGROUND = (0.96, 0.965, 0.97)

_render_lock = threading.Lock()
_headless = None       # None: not probed yet; else (ok, reason)


_PROBE = r"""
import sys
import numpy as np
import open3d as o3d
R = o3d.visualization.rendering
r = R.OffscreenRenderer(16, 16)
box = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1.0)
box.translate([-0.5, -0.5, -0.5])
mat = R.MaterialRecord()
mat.shader = "defaultUnlit"
mat.base_color = [0.0, 0.0, 0.0, 1.0]
r.scene.set_background([1.0, 1.0, 1.0, 1.0])
r.scene.add_geometry("box", box, mat)
r.setup_camera(60.0, [0.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0])
img = np.asarray(r.render_to_image())
r.scene.clear_geometry()
ok = img.shape == (16, 16, 3) and img[8, 8].max() < 128 and img[0, 0].min() > 128
sys.stdout.write("\nCARVE_VIZ_PROBE " + ("ok" if ok else "wrong-picture") + "\n")
sys.stdout.flush()
"""

_INSTALL_HINT = ("on Debian/Ubuntu install libvulkan1 and mesa-vulkan-drivers (software Vulkan), or a GPU "
                 "driver with Vulkan support")


def _probe(timeout: float) -> tuple[bool, str]:
    """(ok, why not): render the 16 x 16 test picture in a child process."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return False, (f"Open3D's OffscreenRenderer did not finish a 16 x 16 test render in {timeout:.0f} s; "
                       f"{_INSTALL_HINT}")
    if proc.returncode == 0 and "CARVE_VIZ_PROBE ok" in proc.stdout:
        return True, ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stderr.strip() or proc.stdout.strip())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = " / ".join(lines[-3:])[-300:] or "no output"
    if proc.returncode == 0:
        status = "it rendered a wrong picture"
    elif proc.returncode < 0:
        status = f"killed by signal {-proc.returncode}"
    else:
        status = f"exit status {proc.returncode}"
    return False, f"Open3D's OffscreenRenderer cannot render here ({status}: {detail}); {_INSTALL_HINT}"


def check_headless(timeout: float = 180.0) -> None:
    """Raise RuntimeError unless Open3D's OffscreenRenderer can render in this environment.

    The check renders a 16 x 16 picture in a child process, because where rendering is impossible
    Open3D aborts the process instead of raising. The answer is cached for the life of the process.

    Example:
        >>> try:
        ...     check_headless()
        ... except RuntimeError as err:  # no Vulkan driver here
        ...     assert "mesa-vulkan-drivers" in str(err)
    """
    global _headless
    if _headless is None:
        with without_broken_display():
            _headless = _probe(timeout)
    if not _headless[0]:
        raise RuntimeError(_headless[1])


@contextlib.contextmanager
def without_broken_display():
    """Hide ``DISPLAY`` while Open3D starts its renderer when it names a display that does not work
    (:func:`carve.viz.display.display_problem`): Filament connects to it, and an X server that
    accepts the connection and never answers would hold the renderer's start for good."""
    display = os.environ.get("DISPLAY")
    if not display or display_problem() is None:
        yield
        return
    os.environ.pop("DISPLAY", None)
    try:
        yield
    finally:
        os.environ["DISPLAY"] = display


@contextlib.contextmanager
def stdout_to_devnull():
    """Send the process's stdout (fd 1, where Filament prints its start-up lines) to /dev/null."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def srgb(color) -> list:
    """The value Filament must be given for a background ``color`` to come out unchanged.

    Filament reads background (and ``unlitSolidColor``) colours as sRGB and writes linear values
    (post-processing is off), while vertex colours pass through as they are.
    """
    c = np.clip(np.asarray(color, np.float64), 0, 1)
    return [float(x) for x in np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)]


_SRGB_LUT = np.round(255 * np.array(srgb(np.arange(256) / 255.0))).astype(np.uint8)


def srgb_texture(image) -> "o3d.geometry.Image":
    """An Open3D image of the (H, W, 3) uint8 ``image`` that Filament draws unchanged: it reads
    textures as sRGB and, with post-processing off, writes linear values (128 would come out 54)."""
    import open3d as o3d

    return o3d.geometry.Image(np.ascontiguousarray(_SRGB_LUT[np.asarray(image, np.uint8)]))


def _materials(entry, size):
    """(colour-pass material, normal-pass material) for one :class:`carve.viz.scene.Entry`."""
    import open3d as o3d

    rendering = o3d.visualization.rendering
    geometry = entry.geometry
    color, normal = rendering.MaterialRecord(), rendering.MaterialRecord()
    color.base_color = [1.0, 1.0, 1.0, 1.0]  # colours come from the vertices
    normal.shader = "unlitSolidColor"          # black: "not a surface, do not shade"
    normal.base_color = [0.0, 0.0, 0.0, 1.0]
    if entry.texture is not None:  # a photograph: unlit, never shaded
        color.shader = "defaultUnlit"
        color.albedo_img = srgb_texture(entry.texture)
    elif isinstance(geometry, o3d.geometry.TriangleMesh) and geometry.has_textures():  # a baked texture
        color.shader = "defaultUnlit"
        color.albedo_img = srgb_texture(np.asarray(geometry.textures[0]))
        normal.shader = "normals"
    elif isinstance(geometry, o3d.geometry.TriangleMesh):
        color.shader = "unlitPolygonOffset"  # unlit vertex colours (cheap, see the module docstring)
        normal.shader = "normals"
    elif isinstance(geometry, o3d.geometry.PointCloud):
        color.shader = "unlitPolygonOffset"
        color.point_size = normal.point_size = float(max(2, round(min(size) / 300)))
    else:  # LineSet
        color.shader = "unlitLine"
        color.line_width = normal.line_width = float(max(1.5, min(size) / 400))
        normal.shader = "unlitLine"
    return color, normal


def shade(albedo: np.ndarray, normal_rgb: np.ndarray, cam: Camera, up: np.ndarray) -> np.ndarray:
    """Light the colour pass with the normal pass: hemisphere ambient, a key and a fill light, a
    little specular. Pixels with no surface normal (background, points, lines) keep their colour.

    Args:
        albedo: (H, W, 3) uint8. normal_rgb: (H, W, 3) uint8 world normals as (n + 1) / 2, black where
            there is no surface. cam: the one camera of the frame. up: (3,) world up.
    """
    surface = normal_rgb.max(axis=-1) > 24  # unit normals never encode to near-black
    if not surface.any():
        return albedo
    n = normal_rgb[surface].astype(np.float64) / 127.5 - 1.0
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    R = cam.R[0]
    rays = pixel_rays(cam)[1][0][surface]  # (M, 3) world directions through the surface pixels
    to_eye = -rays / np.linalg.norm(rays, axis=1, keepdims=True)
    n *= np.where(np.sum(n * to_eye, axis=1, keepdims=True) < 0, -1.0, 1.0)  # back faces face the viewer
    key = R.T @ np.array([-0.45, -0.75, -0.9])  # from the viewer's upper left, in front of the object
    fill = R.T @ np.array([0.7, 0.2, -0.5])     # weaker, from the right
    key, fill = key / np.linalg.norm(key), fill / np.linalg.norm(fill)
    half = key + to_eye
    half /= np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-9)
    light = (0.34 + 0.08 * (n @ up)
             + 0.62 * np.clip(n @ key, 0, None)
             + 0.18 * np.clip(n @ fill, 0, None))
    specular = 0.10 * np.clip(np.sum(n * half, axis=1), 0, None) ** 32
    color = albedo[surface].astype(np.float64) * light[:, None] + 255.0 * specular[:, None]
    out = albedo.copy()
    out[surface] = np.clip(np.rint(color), 0, 255).astype(np.uint8)
    return out


def _quiet_view(renderer) -> None:
    """Turn off what makes frames slow in software or dependent on the viewport (see the notes above)."""
    view = renderer.scene.view
    view.set_post_processing(False)
    view.set_antialiasing(False)
    view.set_ambient_occlusion(False)
    view.set_shadowing(False)
    view.set_sample_count(1)


def _frames(renderer, cams: list[Camera]) -> list[np.ndarray]:
    """One (H, W, 3) uint8 picture per one-camera view, with the scene as it is now."""
    out = []
    for cam in cams:
        K = cam.K[0].copy()
        K[:2, 2] += 0.5  # Open3D puts the image corner at 0, we put the first pixel centre there
        extrinsic = np.eye(4)
        extrinsic[:3, :3], extrinsic[:3, 3] = cam.R[0], cam.T[0]
        renderer.setup_camera(K, extrinsic, cam.width, cam.height)
        out.append(np.array(renderer.render_to_image())[:, :, :3])
    return out


def _render_frames(entries, cams: list[Camera], up: np.ndarray) -> list[np.ndarray]:
    """Render each one-camera view of the scene entries, (H, W, 3) uint8 each, with one renderer.

    Two passes per frame with Open3D's cheap materials (colour, then world normals) and the
    lighting done by :func:`shade`.
    """
    import open3d as o3d

    check_headless()
    W, H = cams[0].width, cams[0].height
    verbosity = o3d.utility.get_verbosity_level()
    with _render_lock:
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
        renderer = world = None
        try:
            with stdout_to_devnull(), without_broken_display():
                renderer = o3d.visualization.rendering.OffscreenRenderer(W, H)
            _quiet_view(renderer)
            world = renderer.scene
            materials = [_materials(e, (W, H)) for e in entries]
            for i, (e, (color, _)) in enumerate(zip(entries, materials)):
                world.add_geometry(f"g{i}", e.geometry, color)
            world.set_background([*srgb(BACKGROUND), 1.0])
            albedo = _frames(renderer, cams)
            for i, (_, normal) in enumerate(materials):
                world.modify_geometry_material(f"g{i}", normal)
            world.set_background([0.0, 0.0, 0.0, 1.0])
            normals = _frames(renderer, cams)
            return [shade(a, n, cam, up) for a, n, cam in zip(albedo, normals, cams)]
        finally:
            if renderer is not None:
                # the last references: Filament's engine goes here, on the thread that made it (a
                # gc.collect() would cost 0.1 s in a process that has imported torch, and nothing
                # here is in a reference cycle)
                renderer.scene.clear_geometry()
                world = renderer = None
            o3d.utility.set_verbosity_level(verbosity)


def render_scene(scene: Scene, size: tuple[int, int] | None = None, view: Camera | None = None) -> np.ndarray:
    """Render a :class:`carve.viz.scene.Scene` as the window first shows it: its visible groups,
    from its first view (or from the one-camera ``view``, e.g. ``scene.cameras[i]``), at ``size``
    (default 960 x 720; a Camera ``view`` defaults to its own size).

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    size, given = check_size(size)
    if view is not None:
        scene = dataclasses.replace(scene, view=view)
    cam, _ = scene.snapshot_camera(size, given)
    return _render_frames(_drawable(scene), [cam], scene.up)[0]


def _drawable(scene: Scene) -> list:
    entries = scene.visible()
    if not entries:
        raise ValueError(f"hide must leave something to draw, got every group hidden ({', '.join(scene.groups())})")
    return entries


def render(*items, size: tuple[int, int] | None = None, view=None, cameras: Camera | None = None,
           up=(0.0, 0.0, 1.0), names=None, photos=None, flagged=None, hide=()) -> np.ndarray:
    """Render the items to an image in memory (no window, no file): what :func:`snapshot` writes.

    Args: as :func:`snapshot`.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    size, given = check_size(size)
    scene = build_scene(items, cameras, names=names, photos=photos, flagged=flagged, hide=hide, view=view, up=up)
    cam, _ = scene.snapshot_camera(size, given)
    return _render_frames(_drawable(scene), [cam], scene.up)[0]


def snapshot(*items, path: str | os.PathLike, size: tuple[int, int] | None = None, view=None,
             cameras: Camera | None = None, turntable: int = 0, up=(0.0, 0.0, 1.0), names=None, photos=None,
             flagged=None, hide=()) -> Path | list[Path]:
    """Render the items headlessly to PNG file(s): the scene the window (:func:`carve.viz.show`)
    shows first, with the same framing and the same groups hidden.

    Args:
        *items: what to draw (see :func:`carve.viz.to_open3d_geometry`).
        path: output ``.png``; its directory is created when missing. With ``turntable=N`` the frames
            go to ``<stem>_000.png``, ``<stem>_001.png``, ... beside it.
        size: (width, height) in pixels, default (960, 720); with a Camera ``view`` the default is the
            camera's own size, and another size renders the camera resized.
        view: None for the window's first view: a 3/4 view from above framed on the items (not the
            cameras), the object spanning :data:`carve.viz.framing.WINDOW_FILL` of the picture; a
            one-camera :class:`geometry.Camera` (its K, R, T and size); or ``dict(eye=, target=, up=,
            fov=)`` (target defaults to the centre of the items, fov is horizontal in degrees, default 40).
        cameras: a :class:`geometry.Camera` batch (with size) drawn as frustums.
        turntable: N > 0 renders N frames turning the view around the ``up`` axis through the centre
            of the items (or the view's target).
        up: world up direction for the default view and the turntable axis (z up by default; pass
            (0, -1, 0) for a y-down OpenCV world).
        names, photos, flagged, hide: as for :func:`carve.viz.show` (view names are not drawn in
            snapshots; photographs, frustum colours and hidden groups are).

    Returns:
        ``pathlib.Path`` of the PNG; with ``turntable=N``, a list of the N paths.

    Files are written whole or not at all (a temporary file renamed into place); every frame is
    rendered before any is written. Raises RuntimeError when headless rendering is unavailable here.

    Example (needs a Vulkan driver, see :func:`check_headless`):
        >>> import trimesh, tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "ball.png"
        >>> snapshot(trimesh.creation.icosphere(), path=out, size=(64, 48)) == out
        True
    """

    targets = _png_paths(path, turntable)
    size, given = check_size(size)
    scene = build_scene(items, cameras, names=names, photos=photos, flagged=flagged, hide=hide, view=view, up=up)
    entries = _drawable(scene)
    cam, centre = scene.snapshot_camera(size, given)
    cams = turntable_cameras(cam, centre, scene.up, int(turntable)) if turntable else [cam]
    images = _render_frames(entries, cams, scene.up)
    with new_folders(targets[0].parent):
        for target, image in zip(targets, images):
            write_image(target, image)  # encoded in memory: cv2.imwrite reports no short write
    return targets if turntable else targets[0]


def _png_paths(path, turntable: int) -> list[Path]:
    """The files :func:`snapshot` writes: [path], or ``<stem>_000.png``... for a turntable (checked)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or pathlib.Path ending in .png, got {type(path).__name__}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    if isinstance(turntable, bool) or not isinstance(turntable, (int, np.integer)) or not 0 <= turntable <= 3600:
        raise ValueError(f"turntable must be an integer number of frames in [0, 3600], got {turntable!r}")
    if path.parent.exists() and not path.parent.is_dir():
        raise ValueError(f"path must be inside a directory, got {str(path)!r} whose parent is a file")
    if not turntable:
        return [path]
    digits = max(3, len(str(turntable - 1)))
    return [path.with_name(f"{path.stem}_{i:0{digits}d}{path.suffix}") for i in range(turntable)]
