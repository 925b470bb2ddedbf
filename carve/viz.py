"""Open3D viewer: an interactive window, headless PNG snapshots, and camera frustums.

Every function takes the same kinds of items (see :func:`to_open3d_geometry`): trimesh meshes and point
clouds, Open3D geometries, ``(N, 3)`` arrays of points, ``(points, colors)`` pairs, voxel grids
(:class:`carve.VoxelGrid` or anything with ``to_mesh``/``to_open3d``) and file paths.

- :func:`show` opens a window (Open3D's classic ``Visualizer``); with no display it raises a
  ``RuntimeError`` that points to :func:`snapshot`.
- :func:`snapshot` writes PNGs with ``open3d.visualization.rendering.OffscreenRenderer`` (Filament),
  from a default 3/4 view that frames everything, from a :class:`geometry.Camera`, or from an
  ``eye``/``target``/``up`` dict; ``turntable=N`` writes N frames around the ``up`` axis.
  :func:`render` returns the picture as an array instead.
- :func:`camera_frustums` draws a batch of cameras as pyramids (an Open3D ``LineSet``).

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
  specular) is done in numpy by :func:`_shade`; points and lines are not shaded. A 960 x 720
  snapshot of a mesh takes about 0.3-1 s including the renderer's start.
- Screen-space ambient occlusion (on by default), post-processing (tone mapping, FXAA), MSAA and
  shadows are off: frames are deterministic and do not depend on the viewport size.
- Filament reads background and ``unlitSolidColor`` colours as sRGB and writes linear values, while
  vertex colours pass unchanged; :func:`_srgb` pre-encodes the former so every colour comes out as
  given.
- Open3D builds its projection with the image corner at 0 (pixel centres at +0.5), while ours puts
  the top-left pixel centre at (0, 0): the principal point is shifted by +0.5 before rendering, so a
  point lands on the pixel :func:`geometry.project` names (tested to a tenth of a pixel).
- Filament prints start-up lines on stdout; they go to /dev/null while a renderer is created.
"""
from __future__ import annotations

import contextlib
import gc
import math
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from geometry import Camera, intrinsics_from_fov, unproject
from geometry.arrays import to_numpy

__all__ = ["show", "snapshot", "render", "camera_frustums", "to_open3d_geometry", "check_headless"]

BACKGROUND = (0.96, 0.965, 0.97)
MESH_COLOR = (0.78, 0.80, 0.85)
POINT_COLOR = (0.16, 0.36, 0.66)
FRUSTUM_COLOR = (0.85, 0.33, 0.10)
DEFAULT_SIZE = (960, 720)
MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".stl", ".off")
POINT_SUFFIXES = (".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
_FOV = 40.0            # horizontal field of view of the default view, degrees
_AZIMUTH = -55.0       # default view: degrees around `up`, from the first horizontal axis
_ELEVATION = 28.0      # default view: degrees above the horizontal plane

_render_lock = threading.Lock()
_headless = None       # None: not probed yet; else (ok, reason)


# ------------------------------------------------------------------------------------- conversion
def to_open3d_geometry(item, name: str = "item"):
    """One item as an Open3D geometry ready to draw, or None when it holds nothing.

    Args:
        item: one of
            - ``trimesh.Trimesh`` (vertex, face or texture colours become vertex colours),
              ``trimesh.PointCloud``, ``trimesh.Scene`` (concatenated);
            - ``open3d.geometry.TriangleMesh``, ``PointCloud``, ``LineSet``, ``VoxelGrid`` (drawn as
              cubes); the caller's object is never modified;
            - a voxel grid with ``to_mesh()`` (:class:`carve.VoxelGrid`: drawn as its marching-cubes
              surface) or only ``to_open3d()`` (drawn as cubes);
            - points: an ``(N, 3)`` array (numpy or torch), or a ``(points, colors)`` pair with colors
              ``(N, 3)`` in [0, 1] (float) or [0, 255] (uint8);
            - a path (str or ``pathlib.Path``): ``.ply .obj .glb .gltf .stl .off`` through trimesh (a
              .ply without faces is a point cloud), ``.pcd .xyz .xyzn .xyzrgb .pts`` through Open3D,
              ``.npz`` through :meth:`carve.VoxelGrid.load`.
        name: how errors call the item (``snapshot`` passes ``"items[2]"``).

    Returns:
        ``open3d.geometry.TriangleMesh`` (with vertex normals and colours), ``PointCloud`` (with
        colours) or ``LineSet``; None for an empty item.
    """
    import open3d as o3d

    g = o3d.geometry
    if isinstance(item, (str, os.PathLike)):
        return to_open3d_geometry(_load(Path(item), name), name)
    if isinstance(item, g.TriangleMesh):
        return _finish_mesh(g.TriangleMesh(item))
    if isinstance(item, g.PointCloud):
        return _finish_points(g.PointCloud(item))
    if isinstance(item, g.LineSet):
        return g.LineSet(item) if len(item.points) and len(item.lines) else None
    if isinstance(item, g.VoxelGrid):
        return _voxels_to_mesh(item)
    if isinstance(item, Camera):
        raise TypeError(f"{name} must be something to draw, got a geometry.Camera; pass cameras=... to draw "
                        f"cameras as frustums")
    if hasattr(item, "to_mesh") and hasattr(item, "to_open3d"):  # carve.VoxelGrid
        if hasattr(item, "count") and item.count() == 0:
            return None
        return to_open3d_geometry(item.to_mesh(), name)
    if hasattr(item, "to_open3d"):
        return to_open3d_geometry(item.to_open3d(), name)
    trimesh = sys.modules.get("trimesh")
    if trimesh is not None:
        if isinstance(item, trimesh.Scene):
            geometry = item.to_geometry() if hasattr(item, "to_geometry") else item.dump(concatenate=True)
            return to_open3d_geometry(geometry, name)
        if isinstance(item, trimesh.Trimesh):
            return _trimesh_to_open3d(item, name)
        if isinstance(item, trimesh.PointCloud):
            colors = np.asarray(item.colors) if len(getattr(item, "colors", ())) else None
            return _points_to_open3d(np.asarray(item.vertices), colors, name)
    if isinstance(item, tuple) and len(item) == 2:
        return _points_to_open3d(item[0], item[1], name)
    if isinstance(item, np.ndarray) or type(item).__module__.startswith("torch"):
        return _points_to_open3d(item, None, name)
    kind = type(item).__qualname__
    if type(item).__module__ != "builtins":
        kind = f"{type(item).__module__}.{kind}"
    raise TypeError(f"{name} must be a mesh, point cloud, voxel grid, (N, 3) array, (points, colors) pair "
                    f"or file path, got {kind}")


def _load(path: Path, name: str):
    suffix = path.suffix.lower()
    known = MESH_SUFFIXES + POINT_SUFFIXES + (".npz",)
    if suffix not in known:
        raise ValueError(f"{name} must be a file ending in {', '.join(known)}, got {str(path)!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{name} must name an existing file, got {str(path)!r}")
    if suffix == ".npz":
        from carve.grid import VoxelGrid

        return VoxelGrid.load(path)
    if suffix in POINT_SUFFIXES:
        import open3d as o3d

        return o3d.io.read_point_cloud(str(path))
    import trimesh

    try:
        return trimesh.load(str(path))
    except Exception as err:  # trimesh raises many types for corrupt files
        raise ValueError(f"{name} must be a readable {suffix} file, got {str(path)!r} ({err})") from None


def _colors01(colors, n: int, name: str) -> np.ndarray:
    arr = to_numpy(colors, f"{name} colors", dtype=None)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] not in (3, 4):
        raise ValueError(f"{name} colors must have shape ({n}, 3) to match the points, got {arr.shape}")
    arr = arr[:, :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all() or arr.min(initial=0) < 0 or arr.max(initial=0) > 1:
        raise ValueError(f"{name} colors must be floats in [0, 1] or uint8 in [0, 255], got values in "
                         f"[{arr.min():.3g}, {arr.max():.3g}]")
    return arr


def _points_to_open3d(points, colors, name: str):
    import open3d as o3d

    pts = to_numpy(points, name)
    if pts.ndim != 2 or pts.shape[1] != 3:
        hint = "; did you pass points.T?" if pts.ndim == 2 and pts.shape[0] == 3 else ""
        raise ValueError(f"{name} must have shape (N, 3) to be drawn as points, got {pts.shape}{hint}")
    if not np.isfinite(pts).all():
        raise ValueError(f"{name} must hold finite points, got NaN or inf")
    if len(pts) == 0:
        return None
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    if colors is not None:
        pcd.colors = o3d.utility.Vector3dVector(_colors01(colors, len(pts), name))
    return _finish_points(pcd)


def _trimesh_to_open3d(mesh, name: str):
    import open3d as o3d

    if len(mesh.faces) == 0:
        if len(mesh.vertices) == 0:
            return None
        return _points_to_open3d(np.asarray(mesh.vertices), None, name)
    out = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(mesh.vertices, np.float64)),
                                    o3d.utility.Vector3iVector(np.asarray(mesh.faces, np.int32)))
    visual = mesh.visual
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        try:
            visual = visual.to_color()
            kind = "vertex"
        except Exception:  # a material without a usable image: draw it plain
            kind = None
    if kind in ("vertex", "face"):
        colors = np.asarray(visual.vertex_colors)  # trimesh averages face colours onto vertices
        if colors.shape[:1] == (len(mesh.vertices),):
            out.vertex_colors = o3d.utility.Vector3dVector(colors[:, :3].astype(np.float64) / 255.0)
    return _finish_mesh(out)


def _finish_mesh(mesh):
    if len(mesh.triangles) == 0:
        return None
    if not mesh.has_vertex_normals():
        mesh.compute_vertex_normals()
    if not mesh.has_vertex_colors():
        mesh.paint_uniform_color(MESH_COLOR)
    return mesh


def _finish_points(pcd):
    if len(pcd.points) == 0:
        return None
    if not pcd.has_colors():
        pcd.paint_uniform_color(POINT_COLOR)
    return pcd


# Each voxel face as 4 corner offsets (counter-clockwise seen from outside) for the 6 directions.
_FACES = {
    (-1, 0, 0): [(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0)],
    (1, 0, 0): [(1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1)],
    (0, -1, 0): [(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)],
    (0, 1, 0): [(0, 1, 0), (0, 1, 1), (1, 1, 1), (1, 1, 0)],
    (0, 0, -1): [(0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0)],
    (0, 0, 1): [(0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)],
}


def _voxels_to_mesh(grid):
    """The exposed faces of an Open3D VoxelGrid as a flat-shaded TriangleMesh (voxel colours kept)."""
    import open3d as o3d

    voxels = grid.get_voxels()
    if not voxels:
        return None
    idx = np.array([v.grid_index for v in voxels], dtype=np.int64)
    colors = np.array([v.color for v in voxels], dtype=np.float64)
    if not grid.has_colors():
        colors = np.broadcast_to(MESH_COLOR, idx.shape)
    base = idx.min(0) - 1
    local = idx - base
    occupied = np.zeros(local.max(0) + 2, dtype=bool)
    occupied[tuple(local.T)] = True
    origin = np.asarray(grid.origin, dtype=np.float64)
    s = float(grid.voxel_size)
    verts, tris, vcols, normals = [], [], [], []
    n = 0
    for direction, corners in _FACES.items():
        nb = local + np.array(direction)
        exposed = ~occupied[tuple(nb.T)]
        if not exposed.any():
            continue
        cells = idx[exposed]
        m = len(cells)
        quad = (cells[:, None, :] + np.array(corners)[None]) * s + origin  # (m, 4, 3)
        verts.append(quad.reshape(-1, 3))
        vcols.append(np.repeat(colors[exposed], 4, axis=0))
        normals.append(np.broadcast_to(np.array(direction, np.float64), (4 * m, 3)))
        first = n + 4 * np.arange(m)[:, None]
        tris.append(np.concatenate([first + [0, 1, 2], first + [0, 2, 3]]))
        n += 4 * m
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.concatenate(verts)),
                                     o3d.utility.Vector3iVector(np.concatenate(tris).astype(np.int32)))
    mesh.vertex_colors = o3d.utility.Vector3dVector(np.concatenate(vcols))
    mesh.vertex_normals = o3d.utility.Vector3dVector(np.concatenate(normals))
    return mesh


def _convert_items(items):
    geometries = []
    for i, item in enumerate(items):
        geom = to_open3d_geometry(item, name=f"items[{i}]")
        if geom is not None:
            geometries.append(geom)
    return geometries


# ---------------------------------------------------------------------------------------- cameras
def _as_camera(cameras, name: str) -> Camera:
    if not isinstance(cameras, Camera):
        raise TypeError(f"{name} must be a geometry.Camera, got {type(cameras).__name__}")
    return cameras.numpy() if cameras.is_torch else cameras


def _frustum_scale(centers: np.ndarray, scene_center=None, scene_radius=None) -> float:
    """Depth of the drawn frustums: a fraction of the camera spacing, capped by the scene's distance."""
    candidates = []
    if len(centers) >= 2:
        from scipy.spatial import cKDTree

        nearest = cKDTree(centers).query(centers, k=2)[0][:, 1]
        spacing = float(np.median(nearest))
        if spacing > 0:
            candidates.append(0.6 * spacing)
    if scene_center is not None:
        dist = float(np.median(np.linalg.norm(centers - scene_center, axis=1)))
        if dist > 0:
            candidates.append(0.25 * dist)
        if scene_radius:
            candidates.append(0.5 * float(scene_radius))
    elif not candidates:
        dist = float(np.linalg.norm(centers[0]))
        candidates.append(0.1 * dist if dist > 0 else 1.0)
    return min(candidates) if candidates else 1.0


def camera_frustums(cameras, scale=None, color=FRUSTUM_COLOR):
    """Camera pyramids as one Open3D LineSet in world coordinates.

    Each camera gives 5 points, its centre then the image corners (top-left, top-right, bottom-right,
    bottom-left) unprojected to depth ``scale``, and 8 lines: 4 from the centre to the corners and
    the 4 sides of the image. Pixel corners sit at (-0.5, -0.5) and (W - 0.5, H - 0.5).

    Args:
        cameras: a :class:`geometry.Camera` batch of B cameras with width and height set.
        scale: depth of the image rectangle in world units (default: 0.6 x the median distance from
            a camera to its nearest neighbour; one camera: a tenth of its distance to the origin).
        color: RGB in [0, 1], (3,) for all cameras or (B, 3) one per camera.

    Returns:
        ``open3d.geometry.LineSet`` with 5B points and 8B lines; points[5 i] is camera i's centre.
    """
    import open3d as o3d

    cam = _as_camera(cameras, "cameras")
    if not cam.has_size:
        raise ValueError("cameras must have width and height set to draw frustums, got cameras with no size")
    n = len(cam)
    if scale is None:
        scale = _frustum_scale(cam.center)
    if isinstance(scale, bool) or not np.isscalar(scale) or not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0 (world units), got {scale!r}")
    col = to_numpy(color, "color")
    if col.shape not in ((3,), (n, 3)) or not np.all((col >= 0) & (col <= 1)):
        raise ValueError(f"color must be RGB in [0, 1] with shape (3,) or ({n}, 3), got shape {col.shape}")
    W, H = cam.width, cam.height
    uv = np.array([[-0.5, -0.5], [W - 0.5, -0.5], [W - 0.5, H - 0.5], [-0.5, H - 0.5]])
    corners = unproject(uv, np.full(4, float(scale)), cam)  # (B, 4, 3)
    points = np.concatenate([cam.center[:, None, :], corners], axis=1).reshape(-1, 3)
    one = np.array([[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [2, 3], [3, 4], [4, 1]])
    lines = (one[None] + 5 * np.arange(n)[:, None, None]).reshape(-1, 2)
    ls = o3d.geometry.LineSet(o3d.utility.Vector3dVector(points), o3d.utility.Vector2iVector(lines.astype(np.int32)))
    ls.colors = o3d.utility.Vector3dVector(np.broadcast_to(col, (n, 3)).repeat(8, axis=0).astype(np.float64))
    return ls


def _bounds(geometries):
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for g in geometries:
        box = g.get_axis_aligned_bounding_box()
        lo = np.minimum(lo, box.min_bound)
        hi = np.maximum(hi, box.max_bound)
    return lo, hi


def _scene(items, cameras, name="items"):
    """Open3D geometries for the items plus frustums, and the bounding box of everything."""
    geometries = _convert_items(items)
    if cameras is not None:
        cam = _as_camera(cameras, "cameras")
        centre = radius = None
        if geometries:
            lo, hi = _bounds(geometries)
            centre, radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo)) / 2
        scale = _frustum_scale(cam.center, centre, radius)
        geometries.append(camera_frustums(cam, scale=scale))
    if not geometries:
        raise ValueError(f"{name} must hold something to draw, got {len(items)} empty item(s) and no cameras")
    return geometries, _bounds(geometries)


# ------------------------------------------------------------------------------------------ views
def _check_up(up) -> np.ndarray:
    u = to_numpy(up, "up")
    if u.shape != (3,) or not np.isfinite(u).all() or np.linalg.norm(u) < 1e-12:
        raise ValueError(f"up must be a non-zero 3-vector, got {np.asarray(up).tolist()}")
    return u / np.linalg.norm(u)


def _horizontal_axes(up: np.ndarray):
    ref = np.eye(3)[0] if abs(up[0]) < 0.9 else np.eye(3)[1]
    e1 = ref - ref.dot(up) * up
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(up, e1)


def _default_camera(lo, hi, up, size) -> Camera:
    """A 3/4 view from above of the box lo..hi, as close as it can be with all 8 corners in frame."""
    W, H = size
    target = (lo + hi) / 2
    K = intrinsics_from_fov(_FOV, W, H)
    e1, e2 = _horizontal_axes(up)
    az, el = math.radians(_AZIMUTH), math.radians(_ELEVATION)
    direction = math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * up
    R = Camera.look_at(target + direction, target, up, K=K).R[0]
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    local = (corners - target) @ R.T  # camera axes: right, down, forward
    tan_x, tan_y = 0.92 * (W / 2) / K[0, 0], 0.92 * (H / 2) / K[1, 1]  # keep an 8 % margin
    # a corner at (x, y, z) fits when |x| <= tan_x * (dist + z) and |y| <= tan_y * (dist + z)
    need = np.concatenate([np.abs(local[:, 0]) / tan_x, np.abs(local[:, 1]) / tan_y]) - np.tile(local[:, 2], 2)
    radius = float(np.linalg.norm(hi - lo)) / 2
    dist = max(float(need.max()), 1.05 * radius, 1e-6)  # and never inside the bounding sphere
    return Camera.look_at(target + dist * direction, target, up, K=K, width=W, height=H)


def _view_camera(view, lo, hi, up, size, size_given) -> tuple[Camera, np.ndarray]:
    """The camera to render from and the point a turntable turns around."""
    centre = (lo + hi) / 2
    if view is None:
        return _default_camera(lo, hi, up, size), centre
    if isinstance(view, Camera):
        cam = view.numpy() if view.is_torch else view
        if len(cam) != 1:
            raise ValueError(f"view must be a single camera, got a batch of {len(cam)}; pass cameras[i]")
        if not cam.has_size:
            if not size_given:
                raise ValueError("view must be a camera with width and height set (or pass size=), "
                                 "got one with no size")
            cam = Camera(cam.K, cam.R, cam.T, *size)
        elif size_given and (cam.width, cam.height) != tuple(size):
            cam = cam.resized(*size)
        return cam, centre
    if isinstance(view, dict):
        unknown = set(view) - {"eye", "target", "up", "fov"}
        if "eye" not in view or unknown:
            raise ValueError(f"view must be a dict with 'eye' and optional 'target', 'up', 'fov' (horizontal "
                             f"degrees), got keys {sorted(view)}")
        target = to_numpy(view.get("target", centre), "view['target']")
        view_up = _check_up(view.get("up", up))
        cam = Camera.look_at(to_numpy(view["eye"], "view['eye']"), target, view_up,
                             fov=view.get("fov", _FOV), width=size[0], height=size[1])
        return cam, target
    raise TypeError(f"view must be None, a geometry.Camera or a dict(eye=, target=, up=), got {type(view).__name__}")


def _turntable(cam: Camera, centre: np.ndarray, up: np.ndarray, frames: int) -> list[Camera]:
    """``frames`` copies of a one-camera ``cam`` turned around the axis ``up`` through ``centre``."""
    from scipy.spatial.transform import Rotation

    out = []
    C = cam.center[0]
    for i in range(frames):
        Q = Rotation.from_rotvec(up * (2 * math.pi * i / frames)).as_matrix()
        C_i = Q @ (C - centre) + centre
        R_i = cam.R[0] @ Q.T
        out.append(Camera(cam.K[0], R_i, -R_i @ C_i, cam.width, cam.height))
    return out


def _check_size(size):
    if size is None:
        return DEFAULT_SIZE, False
    ok = (isinstance(size, (tuple, list)) and len(size) == 2
          and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 16 <= s <= 8192 for s in size))
    if not ok:
        raise ValueError(f"size must be (width, height) in pixels, two integers in [16, 8192], got {size!r}")
    return (int(size[0]), int(size[1])), True


# -------------------------------------------------------------------------------------- rendering
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


def check_headless(timeout: float = 180.0) -> None:
    """Raise RuntimeError unless Open3D's OffscreenRenderer can render in this environment.

    The check renders a 16 x 16 picture in a child process, because where rendering is impossible
    Open3D aborts the process instead of raising. The answer is cached for the life of the process.
    """
    global _headless
    if _headless is None:
        try:
            proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                                  timeout=timeout, env=os.environ.copy())
            ok = proc.returncode == 0 and "CARVE_VIZ_PROBE ok" in proc.stdout
            if ok:
                _headless = (True, "")
            else:
                text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stderr.strip() or proc.stdout.strip())
                lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
                detail = " / ".join(lines[-3:])[-300:] or "no output"
                status = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
                          else f"exit status {proc.returncode}")
                if proc.returncode == 0:
                    status = "it rendered a wrong picture"
                _headless = (False, f"Open3D's OffscreenRenderer cannot render here ({status}: {detail}); "
                                    f"{_INSTALL_HINT}")
        except subprocess.TimeoutExpired:
            _headless = (False, f"Open3D's OffscreenRenderer did not finish a 16 x 16 test render in "
                                f"{timeout:.0f} s; {_INSTALL_HINT}")
    if not _headless[0]:
        raise RuntimeError(_headless[1])


@contextlib.contextmanager
def _stdout_to_devnull():
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


def _srgb(color) -> list:
    """The value Filament must be given for a background ``color`` to come out unchanged.

    Filament reads background (and ``unlitSolidColor``) colours as sRGB and writes linear values
    (post-processing is off), while vertex colours pass through as they are.
    """
    c = np.clip(np.asarray(color, np.float64), 0, 1)
    return [float(x) for x in np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)]


def _materials(geometry, size):
    """(colour-pass material, normal-pass material) for one geometry."""
    import open3d as o3d

    rendering = o3d.visualization.rendering
    color, normal = rendering.MaterialRecord(), rendering.MaterialRecord()
    color.base_color = [1.0, 1.0, 1.0, 1.0]  # colours come from the vertices
    normal.shader = "unlitSolidColor"          # black: "not a surface, do not shade"
    normal.base_color = [0.0, 0.0, 0.0, 1.0]
    if isinstance(geometry, o3d.geometry.TriangleMesh):
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


def _shade(albedo: np.ndarray, normal_rgb: np.ndarray, cam: Camera, up: np.ndarray) -> np.ndarray:
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
    rows, cols = np.nonzero(surface)
    K, R = cam.K[0], cam.R[0]
    rays = np.stack([cols, rows, np.ones_like(cols)], axis=1) @ np.linalg.inv(K).T @ R  # world directions
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


def _render_frames(geometries, cams: list[Camera], up: np.ndarray) -> list[np.ndarray]:
    """Render each one-camera view of the geometries, (H, W, 3) uint8 each, with one renderer.

    Two passes per frame with Open3D's cheap materials (colour, then world normals) and the
    lighting done by :func:`_shade`.
    """
    import open3d as o3d

    check_headless()
    rendering = o3d.visualization.rendering
    W, H = cams[0].width, cams[0].height
    verbosity = o3d.utility.get_verbosity_level()
    with _render_lock:
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
        renderer = None
        try:
            with _stdout_to_devnull():
                renderer = rendering.OffscreenRenderer(W, H)
            scene = renderer.scene
            view = scene.view
            view.set_post_processing(False)
            view.set_antialiasing(False)
            view.set_ambient_occlusion(False)
            view.set_shadowing(False)
            view.set_sample_count(1)
            materials = [_materials(g, (W, H)) for g in geometries]
            for i, (g, (color, _)) in enumerate(zip(geometries, materials)):
                scene.add_geometry(f"g{i}", g, color)

            def frames():
                out = []
                for cam in cams:
                    K = cam.K[0].copy()
                    K[:2, 2] += 0.5  # Open3D puts the image corner at 0, we put the first pixel centre there
                    extrinsic = np.eye(4)
                    extrinsic[:3, :3], extrinsic[:3, 3] = cam.R[0], cam.T[0]
                    renderer.setup_camera(K, extrinsic, W, H)
                    out.append(np.array(renderer.render_to_image())[:, :, :3])
                return out

            scene.set_background([*_srgb(BACKGROUND), 1.0])
            albedo = frames()
            for i, (_, normal) in enumerate(materials):
                scene.modify_geometry_material(f"g{i}", normal)
            scene.set_background([0.0, 0.0, 0.0, 1.0])
            normals = frames()
            return [_shade(a, n, cam, up) for a, n, cam in zip(albedo, normals, cams)]
        finally:
            if renderer is not None:
                renderer.scene.clear_geometry()
                del renderer
                gc.collect()
            o3d.utility.set_verbosity_level(verbosity)


def render(*items, size=None, view=None, cameras=None, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Render the items to an image in memory (no window, no file): what :func:`snapshot` writes.

    Args: as :func:`snapshot`.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    size, given = _check_size(size)
    up = _check_up(up)
    geometries, (lo, hi) = _scene(items, cameras)
    cam, _ = _view_camera(view, lo, hi, up, size, given)
    return _render_frames(geometries, [cam], up)[0]


def snapshot(*items, path, size=None, view=None, cameras=None, turntable=0, up=(0.0, 0.0, 1.0)):
    """Render the items headlessly to PNG file(s).

    Args:
        *items: what to draw (see :func:`to_open3d_geometry`).
        path: output ``.png``; its directory is created when missing. With ``turntable=N`` the frames
            go to ``<stem>_000.png``, ``<stem>_001.png``, ... beside it.
        size: (width, height) in pixels, default (960, 720); with a Camera ``view`` the default is the
            camera's own size, and another size renders the camera resized.
        view: None for a 3/4 view from above framing everything; a one-camera
            :class:`geometry.Camera` (its K, R, T and size); or ``dict(eye=, target=, up=, fov=)``
            (target defaults to the centre of the items, fov is horizontal in degrees, default 40).
        cameras: a :class:`geometry.Camera` batch (with size) drawn as frustums.
        turntable: N > 0 renders N frames turning the view around the ``up`` axis through the centre
            of the items (or the view's target).
        up: world up direction for the default view and the turntable axis (z up by default; pass
            (0, -1, 0) for a y-down OpenCV world).

    Returns:
        ``pathlib.Path`` of the PNG; with ``turntable=N``, a list of the N paths.

    Files are written whole or not at all (a temporary file renamed into place); every frame is
    rendered before any is written. Raises RuntimeError when headless rendering is unavailable here.

    Example:
        >>> import trimesh, tempfile, pathlib  # doctest: +SKIP
        >>> snapshot(trimesh.creation.icosphere(), path=pathlib.Path(tempfile.mkdtemp()) / "ball.png")
    """
    import cv2

    from carve.files import atomic_path

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or pathlib.Path ending in .png, got {type(path).__name__}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    if isinstance(turntable, bool) or not isinstance(turntable, (int, np.integer)) or not 0 <= turntable <= 3600:
        raise ValueError(f"turntable must be an integer number of frames in [0, 3600], got {turntable!r}")
    if path.parent.exists() and not path.parent.is_dir():
        raise ValueError(f"path must be inside a directory, got {str(path)!r} whose parent is a file")
    size, given = _check_size(size)
    up = _check_up(up)
    geometries, (lo, hi) = _scene(items, cameras)
    cam, centre = _view_camera(view, lo, hi, up, size, given)
    cams = _turntable(cam, centre, up, int(turntable)) if turntable else [cam]
    images = _render_frames(geometries, cams, up)
    path.parent.mkdir(parents=True, exist_ok=True)
    if turntable:
        digits = max(3, len(str(turntable - 1)))
        targets = [path.with_name(f"{path.stem}_{i:0{digits}d}{path.suffix}") for i in range(turntable)]
    else:
        targets = [path]
    for target, image in zip(targets, images):
        with atomic_path(target) as tmp:
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(image[:, :, ::-1])):
                raise OSError(f"could not write a PNG to {str(target)!r}")
    return targets if turntable else targets[0]


# ------------------------------------------------------------------------------------------ window
def _display_problem() -> str | None:
    """Why no window can open here, or None when a display looks available."""
    if not sys.platform.startswith("linux"):
        return None
    display, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
    if wayland:
        return None
    if not display:
        return "no display is available (DISPLAY and WAYLAND_DISPLAY are unset)"
    host, _, number = display.partition(":")
    if host in ("", "unix") and number:
        socket = Path("/tmp/.X11-unix") / f"X{number.split('.')[0]}"
        if not socket.exists():
            return f"no display is available (DISPLAY={display}, but no X server listens at {socket})"
    return None


def show(*items, cameras=None, title: str = "carve", size=(1280, 960), up=(0.0, 0.0, 1.0)) -> None:
    """Open an Open3D window with the items (and camera frustums); returns when it is closed.

    Args:
        *items: what to draw (see :func:`to_open3d_geometry`).
        cameras: a :class:`geometry.Camera` batch (with size) drawn as frustums.
        title: window title. size: window (width, height). up: world up for the initial 3/4 view.

    Raises:
        RuntimeError: no display (on Linux: DISPLAY and WAYLAND_DISPLAY unset, or no X server), or the
            window could not open; use :func:`snapshot` instead.
    """
    import open3d as o3d

    problem = _display_problem()
    if problem:
        raise RuntimeError(f"{problem}; use carve.viz.snapshot(..., path='view.png') to render a PNG instead")
    size, _ = _check_size(size)
    up = _check_up(up)
    geometries, (lo, hi) = _scene(items, cameras)
    cam = _default_camera(lo, hi, up, size)
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(window_name=str(title), width=size[0], height=size[1]):
        raise RuntimeError("could not open an Open3D window; use carve.viz.snapshot(..., path='view.png') "
                           "to render a PNG instead")
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
