"""Surfaces of voxel grids: marching cubes on the occupancy, and vertex colours from the images.

Convention:
    A grid here is anything with ``occupancy`` ((nx, ny, nz) bool, indexed [x, y, z]), ``lo`` ((3,)
    world corner) and ``voxel_size``: a :class:`carve.grid.VoxelGrid`. Mesh vertices are world
    positions of the voxel-centre lattice ``lo + (index + 0.5) * voxel_size``; faces are wound
    counter-clockwise seen from outside, so a closed mesh has a positive volume.
"""
from __future__ import annotations

import numpy as np

__all__ = ["voxel_surface", "vertex_colors"]

#: the colour of vertices no view sees, RGB
UNSEEN_GREY = 128


def voxel_surface(grid, smooth: float = 0.0):
    """The surface of the occupied voxels by marching cubes (level 0.5), in world units.

    The occupied region is padded by empty voxels so the mesh is closed (watertight where the
    object does not touch the box's faces).

    Args:
        grid: a :class:`carve.grid.VoxelGrid`.
        smooth: Gaussian smoothing of the occupancy before meshing, in voxels (0: the exact voxel
            surface, a staircase; about 1 gives a smooth surface).

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
    from skimage.measure import marching_cubes

    if isinstance(smooth, bool) or not np.isscalar(smooth) or not np.isfinite(smooth) or smooth < 0:
        raise ValueError(f"smooth must be a number >= 0 (voxels), got {smooth!r}")
    occupancy = grid.occupancy
    if not occupancy.any():
        return trimesh.Trimesh()
    # crop to the occupied voxels, pad by empty voxels so the surface closes
    idx = [np.flatnonzero(occupancy.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    start = np.array([i[0] for i in idx])
    stop = np.array([i[-1] + 1 for i in idx])
    sub = occupancy[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
    pad = 1 + int(np.ceil(3 * smooth))  # room for the blur to fall to 0
    volume = np.pad(sub, pad).astype(np.float32)
    if smooth > 0:
        from scipy.ndimage import gaussian_filter

        volume = gaussian_filter(volume, float(smooth))
    s = grid.voxel_size
    verts, faces, _, _ = marching_cubes(volume, level=0.5, spacing=(s, s, s), allow_degenerate=False)
    verts = verts + (grid.lo + (start - pad + 0.5) * s)
    # skimage winds faces clockwise seen from the high side of the level set (the inside here)
    return trimesh.Trimesh(vertices=verts, faces=faces[:, ::-1], process=False)


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
    rgb = _checked_images(images, cameras)
    verts = np.asarray(mesh.vertices)
    normals = np.asarray(mesh.vertex_normals)
    scene = _raycasting_scene(verts, np.asarray(mesh.faces))
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


def _checked_images(images, cameras) -> list:
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


def _raycasting_scene(verts, faces):
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
    import open3d as o3d

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
    direction = to_cam[cand] / dist[cand, None]
    origin = verts[cand] + 0.5 * voxel_size * direction  # step off the surface the ray starts on
    rays = np.concatenate([origin, direction * (dist[cand, None] - 0.5 * voxel_size)], 1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy() if len(cand) else np.zeros(0, np.float32)
    seen = cand[~(hit < 1.0)]
    return seen, rows[seen], cols[seen], cos[seen]
