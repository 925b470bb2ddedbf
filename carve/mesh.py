"""Surfaces of voxel grids: marching cubes on the occupancy, vertex colours from the images, decimation.

Convention:
    A grid here is anything with ``occupancy`` ((nx, ny, nz) bool, indexed [x, y, z]), ``lo`` ((3,)
    world corner) and ``voxel_size``: a :class:`carve.grid.VoxelGrid`. Mesh vertices are world
    positions of the voxel-centre lattice ``lo + (index + 0.5) * voxel_size``; faces are wound
    counter-clockwise seen from outside, so a closed mesh has a positive volume.
"""
from __future__ import annotations

import numpy as np

__all__ = ["voxel_surface", "lattice_surface", "vertex_colors", "decimate", "surface_distance", "checked_images", "raycasting_scene", "unoccluded",
           "UNSEEN_GREY"]

#: the colour of vertices no view sees, RGB
UNSEEN_GREY = 128


def voxel_surface(grid, smooth: float = 0.0, repair: bool = True):
    """The surface of the occupied voxels by marching cubes, in world units.

    The occupied region is padded by empty voxels so the mesh is closed (watertight where the
    object does not touch the box's faces). Without ``smooth`` the mesh is
    :func:`carve.marching.binary_surface`'s: vertices on the midpoints of the lattice edges, cost
    in proportion to the surface, 2-manifold, and the topology of the voxels with faces as the only
    contacts (the (6, 26) pair: voxels that touch only along an edge or at a corner are not joined).
    With ``smooth``, marching cubes (scikit-image) runs on the blurred occupancy at level 1/2.

    Args:
        grid: a :class:`carve.grid.VoxelGrid`.
        smooth: Gaussian smoothing of the occupancy before meshing, in voxels (0: the exact voxel
            surface, a staircase; about 1 gives a smooth surface).
        repair: mesh :func:`carve.topology.repair` of the occupancy: without the islands and handles
            thinner than three voxels that carving at a fine resolution leaves (False: every voxel).

    Returns:
        ``trimesh.Trimesh`` with (V, 3) float64 vertices and (F, 3) faces; an empty one for an empty grid.

    Example:
        >>> from carve.grid import VoxelGrid
        >>> occ = np.zeros((4, 4, 4), bool); occ[1:3, 1:3, 1:3] = True
        >>> mesh = voxel_surface(VoxelGrid(occ, [0, 0, 0], 0.5))
        >>> mesh.is_watertight, mesh.bounds.tolist()
        (True, [[0.5, 0.5, 0.5], [1.5, 1.5, 1.5]])
    """
    import trimesh

    if isinstance(smooth, bool) or not np.isscalar(smooth) or not np.isfinite(smooth) or smooth < 0:
        raise ValueError(f"smooth must be a number >= 0 (voxels), got {smooth!r}")
    _check_repair(repair)
    if smooth == 0:
        return lattice_surface(grid, repair)[0]
    occupancy = grid.occupancy
    idx = [np.flatnonzero(occupancy.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    if not len(idx[0]):
        return trimesh.Trimesh()
    start = np.array([i[0] for i in idx])  # blur and mesh the occupied voxels' box only
    stop = np.array([i[-1] + 1 for i in idx])
    occupancy = occupancy[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
    if repair:
        from carve.topology import repair as repaired

        clean = repaired(occupancy)
        occupancy = clean if clean.any() else occupancy
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    s = grid.voxel_size
    pad = 1 + int(np.ceil(3 * smooth))  # room for the blur to fall to 0
    volume = gaussian_filter(np.pad(occupancy, pad).astype(np.float32), float(smooth))
    verts, faces, _, _ = marching_cubes(volume, level=0.5, allow_degenerate=False)
    verts = verts * s + (grid.lo + (start - pad + 0.5) * s)
    # skimage winds faces clockwise seen from the high side of the level set (the inside here)
    return trimesh.Trimesh(vertices=verts, faces=faces[:, ::-1], process=False)


def lattice_surface(grid, repair: bool = True):
    """:func:`voxel_surface` without smoothing, and the occupied end of each vertex's lattice edge.

    It works on the occupancy's run-length rows (``grid.runs``, :mod:`carve.runlength`): the grid's
    own when it holds them (as carving returns it), else one pass reads the dense array, eight voxels
    at a time inside runs; the repair and the marching cubes after it cost in proportion to the
    surface, and no array of the lattice's size is made.

    Returns:
        (``trimesh.Trimesh``, (V,) int8 axis from each vertex to its edge's occupied voxel: 1, 2, 3
        for +x, +y, +z, negative the other way, what :func:`carve.surface.snap_to_hull` takes).
    """
    import trimesh

    from carve.marching import binary_surface
    from carve.topology import repair_runs

    _check_repair(repair)
    runs = grid.runs
    if repair:
        clean = repair_runs(runs)
        runs = clean if len(clean.toggles) else runs  # nothing but islands: they are the hull
    verts, faces, axis = binary_surface(runs)
    if not len(faces):
        return trimesh.Trimesh(), np.zeros(0, np.int8)
    s = grid.voxel_size
    return trimesh.Trimesh(vertices=verts * s + (grid.lo + 0.5 * s), faces=faces, process=False), axis


def _check_repair(repair):
    if not isinstance(repair, (bool, np.bool_)):
        raise TypeError(f"repair must be True or False, got {repair!r}")


def vertex_colors(mesh, images, cameras, voxel_size: float, progress: bool | None = None) -> np.ndarray:
    """The colour of every vertex: the average over the views that see it, weighted by how frontally.

    A view sees a vertex when the vertex is in front of the camera, projects into the image, faces
    the camera and no part of the mesh lies between them. Vertices no view sees are grey.

    Args:
        mesh: a ``trimesh.Trimesh`` (V vertices) in world units.
        images: B RGB images, uint8 or float in [0, 1]: a (B, H, W, 3) array or a list (see
            :func:`data.images.rgb_images`); each must have its camera's size when that is set.
        cameras: the :class:`geometry.Camera` of the B images.
        voxel_size: the scale of the surface's detail; the occlusion rays start half of it off the
            surface.
        progress: show a progress bar over the views (None: :func:`data.progress.progress`'s rule).

    Returns:
        (V, 4) uint8 RGBA, alpha 255.

    Example:
        >>> import trimesh
        >>> from geometry import Camera
        >>> box = trimesh.creation.box((1.0, 1.0, 1.0))
        >>> cam = Camera.look_at([0.0, 0.0, 5.0], [0.0, 0.0, 0.0], up=(0, 1, 0), fov=40, width=32, height=32)
        >>> red = np.zeros((1, 32, 32, 3), np.uint8); red[..., 0] = 255
        >>> colors = vertex_colors(box, red, cam, 0.1, progress=False)
        >>> colors[box.vertices[:, 2] > 0, :3].tolist()[0], colors[box.vertices[:, 2] < 0, :3].tolist()[0]
        ([255, 0, 0], [128, 128, 128])
    """
    from data.progress import progress as progress_bar
    from geometry import Camera

    if not isinstance(cameras, Camera):
        raise TypeError(f"cameras must be a geometry.Camera, got {type(cameras).__name__}")
    cameras = cameras.numpy()
    rgb = checked_images(images, cameras)
    verts = np.asarray(mesh.vertices)
    normals = np.asarray(mesh.vertex_normals)
    scene = raycasting_scene(verts, np.asarray(mesh.faces))
    total = np.zeros((len(verts), 3))
    weight = np.zeros(len(verts))
    for b in progress_bar(range(len(cameras)), desc="colouring", enabled=progress, unit="view"):
        seen, rows, cols, w = _visible(scene, verts, normals, cameras[b], rgb[b].shape[:2], voxel_size)
        total[seen] += w[:, None] * rgb[b][rows, cols]
        weight[seen] += w
    colors = np.full((len(verts), 4), 255, np.uint8)
    colors[:, :3] = UNSEEN_GREY
    ok = weight > 0
    colors[ok, :3] = np.clip(np.round(total[ok] / weight[ok, None]), 0, 255).astype(np.uint8)
    return colors


def checked_images(images, cameras) -> list:
    """B (H, W, 3) uint8 images, one per camera, each of its camera's size when that is set."""
    from data.images import rgb_images

    rgb = rgb_images(images, "images")
    if len(rgb) != len(cameras):
        raise ValueError(f"images must hold one image per camera ({len(cameras)}), got {len(rgb)}")
    if cameras.has_size:
        for b, im in enumerate(rgb):
            if im.shape[:2] != (cameras.height, cameras.width):
                raise ValueError(f"images must be {cameras.height} x {cameras.width} (H x W) like the cameras, got "
                                 f"{im.shape[0]} x {im.shape[1]} for images[{b}]")
    return rgb


def raycasting_scene(verts, faces):
    """An Open3D raycasting scene of the (V, 3) vertices and (F, 3) faces."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    return scene


def _visible(scene, verts, normals, camera, size, voxel_size):
    """The vertices one camera sees: (indices (n,), their pixel rows (n,) and columns (n,), weights (n,)).

    verts, normals: (V, 3); camera: one numpy :class:`geometry.Camera`; size: (H, W) of its image.
    The weight is the cosine between the vertex normal and the direction to the camera.
    """
    from geometry import pixel_index, project

    H, W = size
    uv, _, valid = project(verts, camera)
    uv, valid = uv[0], valid[0]
    rows, cols = pixel_index(uv)
    valid &= (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
    to_cam = camera.center[0] - verts
    dist = np.linalg.norm(to_cam, axis=1)
    cos = np.einsum("ij,ij->i", normals, to_cam) / np.maximum(dist, 1e-12)
    valid &= cos > 0
    cand = np.flatnonzero(valid)
    seen = cand[unoccluded(scene, verts[cand], camera.center[0], voxel_size)]
    return seen, rows[seen], cols[seen], cos[seen]


def unoccluded(scene, points, eye, voxel_size: float) -> np.ndarray:
    """(N,) bool: whether the segment from each of the (N, 3) surface ``points`` to ``eye`` (3,) misses
    the mesh of the raycasting ``scene``; each ray starts half a ``voxel_size`` off the surface it
    starts on, so that the point does not hide itself."""
    import open3d as o3d

    if len(points) == 0:
        return np.zeros(0, bool)
    to_eye = eye - points
    dist = np.linalg.norm(to_eye, axis=1, keepdims=True)
    direction = to_eye / np.maximum(dist, 1e-30)
    rays = np.concatenate([points + 0.5 * voxel_size * direction, direction * (dist - 0.5 * voxel_size)], 1)
    hit = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()
    return ~(hit < 1.0)


def decimate(mesh, faces: int | None = None, *, max_error: float | None = None):
    """Quadric-error decimation (Garland and Heckbert 1997, Open3D's) to fewer triangles.

    Give ``faces``, the target count, or ``max_error``, the largest distance (world units) the
    surface may move: then the fewest triangles within it are found by bisection on the count.
    Vertex colours are carried along.

    Args:
        mesh: a ``trimesh.Trimesh``.
        faces: the target number of triangles (>= 4).
        max_error: the allowed :func:`surface_distance` to the input (> 0).

    Returns:
        (the decimated ``trimesh.Trimesh``, its :func:`surface_distance` to the input).

    Example:
        >>> import trimesh
        >>> ball = trimesh.creation.icosphere(subdivisions=4)
        >>> small, error = decimate(ball, 500)
        >>> len(small.faces) <= 500, small.is_watertight, bool(error < 0.05)
        (True, True, True)
    """
    if (faces is None) == (max_error is None):
        raise ValueError("decimate needs exactly one of faces or max_error, got "
                         + ("both" if faces is not None else "neither"))
    if faces is not None and (isinstance(faces, bool) or not isinstance(faces, (int, np.integer)) or faces < 4):
        raise ValueError(f"faces must be an integer >= 4 (a tetrahedron), got {faces!r}")
    if max_error is not None and not (np.isscalar(max_error) and np.isfinite(max_error) and max_error > 0):
        raise ValueError(f"max_error must be a distance > 0 in world units, got {max_error!r}")
    if faces is not None:
        small = _quadric(mesh, int(faces))
        return small, surface_distance(small, mesh)
    best = (mesh.copy(), 0.0)
    low, high = 4, len(mesh.faces)  # the answer's face count lies in (low, high]
    while high - low > max(4, high // 50):  # within 2% of the fewest: each try costs a decimation
        mid = (low + high) // 2
        small = _quadric(mesh, mid)
        error = surface_distance(small, mesh)
        if error <= max_error:
            best, high = (small, error), mid
        else:
            low = mid
    return best


def surface_distance(a, b) -> float:
    """The symmetric Hausdorff distance between two meshes, measured at their vertices: the largest
    distance from a vertex of either to the other's surface (world units)."""
    import open3d as o3d

    def one_way(src, dst):
        if not len(src.vertices):
            return 0.0
        scene = raycasting_scene(np.asarray(dst.vertices), np.asarray(dst.faces))
        points = o3d.core.Tensor(np.asarray(src.vertices, np.float32))
        return float(scene.compute_distance(points).numpy().max())

    return max(one_way(a, b), one_way(b, a))


def _quadric(mesh, faces: int):
    """Open3D's quadric decimation of ``mesh`` to at most ``faces`` triangles, colours kept."""
    import open3d as o3d
    import trimesh

    o = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(mesh.vertices, np.float64)),
                                  o3d.utility.Vector3iVector(np.asarray(mesh.faces, np.int32)))
    colors = getattr(mesh.visual, "vertex_colors", None) if mesh.visual.kind == "vertex" else None
    if colors is not None:
        o.vertex_colors = o3d.utility.Vector3dVector(np.asarray(colors)[:, :3] / 255.0)
    d = o.simplify_quadric_decimation(target_number_of_triangles=int(faces))
    out = trimesh.Trimesh(np.asarray(d.vertices), np.asarray(d.triangles), process=False)
    if colors is not None and d.has_vertex_colors():
        rgb = np.clip(np.round(np.asarray(d.vertex_colors) * 255), 0, 255).astype(np.uint8)
        out.visual.vertex_colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], 1)
    return out

