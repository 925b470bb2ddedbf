"""What the viewer draws: every kind of item as an Open3D geometry, and cameras as frustums.

Items are trimesh meshes and point clouds, Open3D geometries, ``(N, 3)`` arrays of points,
``(points, colors)`` pairs, voxel grids (:class:`carve.VoxelGrid` or anything with
``to_mesh``/``to_open3d``) and file paths; see :func:`to_open3d_geometry`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from data.files import MESH_SUFFIXES
from geometry import Camera, unproject
from geometry.arrays import to_numpy

__all__ = ["to_open3d_geometry", "convert_items", "load_item", "camera_frustums", "frustum_scale", "as_camera",
           "MESH_COLOR", "POINT_COLOR", "FRUSTUM_COLOR", "MESH_SUFFIXES", "POINT_SUFFIXES", "DRAWABLE_SUFFIXES"]

MESH_COLOR = (0.78, 0.80, 0.85)
POINT_COLOR = (0.16, 0.36, 0.66)
FRUSTUM_COLOR = (0.85, 0.33, 0.10)
#: point-cloud file extensions read through Open3D (meshes: :data:`data.files.MESH_SUFFIXES`, via trimesh)
POINT_SUFFIXES = (".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
#: every file extension the viewer reads: meshes, point clouds and voxel grids (.npz)
DRAWABLE_SUFFIXES = MESH_SUFFIXES + POINT_SUFFIXES + (".npz",)


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
            - a path (str or ``pathlib.Path``): see :func:`load_item`.
        name: how errors call the item (``snapshot`` passes ``"items[2]"``).

    Returns:
        ``open3d.geometry.TriangleMesh`` (with vertex normals and colours), ``PointCloud`` (with
        colours) or ``LineSet``; None for an empty item.

    Example:
        >>> import numpy as np
        >>> cloud = to_open3d_geometry(np.zeros((5, 3)))
        >>> type(cloud).__name__, len(cloud.points)
        ('PointCloud', 5)
        >>> to_open3d_geometry(np.zeros((0, 3))) is None
        True
    """
    import open3d as o3d

    g = o3d.geometry
    if isinstance(item, (str, os.PathLike)):
        return to_open3d_geometry(load_item(Path(item), name), name)
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
    converted = _from_trimesh(item, name)
    if converted is not NotImplemented:
        return converted
    if isinstance(item, tuple) and len(item) == 2:
        return _points_to_open3d(item[0], item[1], name)
    if isinstance(item, np.ndarray) or type(item).__module__.startswith("torch"):
        return _points_to_open3d(item, None, name)
    kind = type(item).__qualname__
    if type(item).__module__ != "builtins":
        kind = f"{type(item).__module__}.{kind}"
    raise TypeError(f"{name} must be a mesh, point cloud, voxel grid, (N, 3) array, (points, colors) pair "
                    f"or file path, got {kind}")


def _from_trimesh(item, name: str):
    """A trimesh Scene, Trimesh or PointCloud converted; NotImplemented for anything else."""
    trimesh = sys.modules.get("trimesh")  # an item can only be a trimesh object once trimesh is imported
    if trimesh is None:
        return NotImplemented
    if isinstance(item, trimesh.Scene):
        geometry = item.to_geometry() if hasattr(item, "to_geometry") else item.dump(concatenate=True)
        return to_open3d_geometry(geometry, name)
    if isinstance(item, trimesh.Trimesh):
        return _trimesh_to_open3d(item, name)
    if isinstance(item, trimesh.PointCloud):
        colors = np.asarray(item.colors) if len(getattr(item, "colors", ())) else None
        return _points_to_open3d(np.asarray(item.vertices), colors, name)
    return NotImplemented


def convert_items(items) -> list:
    """The non-empty Open3D geometries of a sequence of items; errors name ``items[i]``."""
    geometries = []
    for i, item in enumerate(items):
        geom = to_open3d_geometry(item, name=f"items[{i}]")
        if geom is not None:
            geometries.append(geom)
    return geometries


def load_item(path: Path, name: str = "path"):
    """Read a file to draw: a trimesh object, an Open3D point cloud or a :class:`carve.VoxelGrid`.

    Meshes (:data:`data.files.MESH_SUFFIXES`: ``.ply .obj .glb .gltf .stl .off``) go through trimesh
    (a .ply without faces is a point cloud), point clouds (:data:`POINT_SUFFIXES`: ``.pcd .xyz .xyzn
    .xyzrgb .pts``) through Open3D, ``.npz`` through :meth:`carve.VoxelGrid.load`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DRAWABLE_SUFFIXES:
        raise ValueError(f"{name} must be a file ending in {', '.join(DRAWABLE_SUFFIXES)}, got {str(path)!r}")
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
    """(N, 3|4) float [0, 1] or uint8 colours -> (N, 3) float64 in [0, 1]."""
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
    image = _texture_image(visual) if kind == "texture" else None
    if image is not None:  # a baked texture (carve.texture): drawn as such, not as vertex colours
        uv = np.asarray(visual.uv, np.float64)[np.asarray(mesh.faces)].reshape(-1, 2)
        out.triangle_uvs = o3d.utility.Vector2dVector(uv)
        out.triangle_material_ids = o3d.utility.IntVector(np.zeros(len(mesh.faces), np.int32))
        out.textures = [o3d.geometry.Image(image)]
        out.paint_uniform_color([1.0, 1.0, 1.0])  # the renderers multiply the texture by the vertex colours
        return _finish_mesh(out)
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


def _texture_image(visual):
    """(H, W, 3) uint8 RGB of a trimesh ``TextureVisuals``' material image, or None when it has
    none (or no uv)."""
    material = getattr(visual, "material", None)
    image = getattr(material, "image", None) or getattr(material, "baseColorTexture", None)
    if image is None or getattr(visual, "uv", None) is None:
        return None
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


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
    idx = np.array([v.grid_index for v in voxels], dtype=np.int64)                 # (M, 3)
    colors = np.array([v.color for v in voxels], dtype=np.float64)
    if not grid.has_colors():
        colors = np.broadcast_to(MESH_COLOR, idx.shape)
    local = idx - (idx.min(0) - 1)  # a free layer on every side
    occupied = np.zeros(local.max(0) + 2, dtype=bool)
    occupied[tuple(local.T)] = True
    origin, s = np.asarray(grid.origin, dtype=np.float64), float(grid.voxel_size)
    verts, tris, vcols, normals = [], [], [], []
    n = 0  # vertices so far
    for direction, corners in _FACES.items():
        exposed = ~occupied[tuple((local + np.array(direction)).T)]
        m = int(exposed.sum())
        if not m:
            continue
        quad = (idx[exposed][:, None, :] + np.array(corners)[None]) * s + origin  # (m, 4, 3)
        first = n + 4 * np.arange(m)[:, None]
        verts.append(quad.reshape(-1, 3))
        vcols.append(np.repeat(colors[exposed], 4, axis=0))
        normals.append(np.broadcast_to(np.array(direction, np.float64), (4 * m, 3)))
        tris.append(np.concatenate([first + [0, 1, 2], first + [0, 2, 3]]))
        n += 4 * m
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.concatenate(verts)),
                                     o3d.utility.Vector3iVector(np.concatenate(tris).astype(np.int32)))
    mesh.vertex_colors = o3d.utility.Vector3dVector(np.concatenate(vcols))
    mesh.vertex_normals = o3d.utility.Vector3dVector(np.concatenate(normals))
    return mesh


# ---------------------------------------------------------------------------------------- cameras
def as_camera(cameras, name: str) -> Camera:
    """``cameras`` as a numpy :class:`geometry.Camera`; TypeError naming ``name`` for anything else."""
    if not isinstance(cameras, Camera):
        raise TypeError(f"{name} must be a geometry.Camera, got {type(cameras).__name__}")
    return cameras.numpy() if cameras.is_torch else cameras


def frustum_scale(centers: np.ndarray, scene_center=None, scene_radius=None) -> float:
    """Depth of the drawn frustums: a fraction of the camera spacing, capped by the scene's distance.

    Args:
        centers: (B, 3) camera centres. scene_center: (3,) or None. scene_radius: float or None.

    Example:
        >>> import numpy as np
        >>> frustum_scale(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
        0.6
    """
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


def camera_frustums(cameras: Camera, scale: float | None = None, color=FRUSTUM_COLOR):
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

    Example:
        >>> from geometry import Camera
        >>> cams = Camera.look_at([[3.0, 0, 1], [0, 3.0, 1]], fov=50, width=64, height=48)
        >>> lines = camera_frustums(cams, scale=0.5)
        >>> len(lines.points), len(lines.lines)
        (10, 16)
    """
    import open3d as o3d

    cam = as_camera(cameras, "cameras")
    if not cam.has_size:
        raise ValueError("cameras must have width and height set to draw frustums, got cameras with no size")
    n = len(cam)
    if scale is None:
        scale = frustum_scale(cam.center)
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
