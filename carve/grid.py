"""A dense voxel occupancy grid in world units: counting, centres, meshing, colouring, Open3D, files.

Convention:
    The grid is the axis-aligned box ``[lo, hi]`` cut into cubes of side ``voxel_size``; voxel
    (i, j, k) has centre ``lo + (idx + 0.5) * voxel_size`` and ``occupancy`` is indexed [i, j, k] =
    [x, y, z]. ``hi = lo + shape * voxel_size`` (the grid may overhang a requested box by less than a
    voxel).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

__all__ = ["VoxelGrid"]

_FORMAT = "carve3d.VoxelGrid/1"


class VoxelGrid:
    """Occupancy of a box of cubic voxels.

    Args:
        occupancy: (nx, ny, nz) bool, indexed [x, y, z].
        lo: (3,) world position of the box's minimum corner.
        voxel_size: side of a voxel in world units (> 0).

    Example:
        >>> import numpy as np
        >>> occ = np.zeros((4, 4, 4), bool); occ[1:3, 1:3, 1:3] = True
        >>> grid = VoxelGrid(occ, lo=[0, 0, 0], voxel_size=0.5)
        >>> grid.count(), grid.hi.tolist(), grid.points()[0].tolist()
        (8, [2.0, 2.0, 2.0], [0.75, 0.75, 0.75])
    """

    def __init__(self, occupancy, lo, voxel_size):
        occupancy = np.asarray(occupancy)
        if occupancy.ndim != 3:
            raise ValueError(f"occupancy must have shape (nx, ny, nz), got {occupancy.shape}")
        if occupancy.dtype != bool:
            raise TypeError(f"occupancy must be a bool array, got dtype {occupancy.dtype}; use occupancy > 0.5 or != 0")
        lo = np.asarray(lo, dtype=np.float64)
        if lo.shape != (3,) or not np.isfinite(lo).all():
            raise ValueError(f"lo must be 3 finite numbers, got {lo.tolist()}")
        if isinstance(voxel_size, bool) or not np.isscalar(voxel_size) or not np.isfinite(voxel_size) \
                or voxel_size <= 0:
            raise ValueError(f"voxel_size must be a finite number > 0, got {voxel_size!r}")
        self.occupancy = occupancy
        self.lo = lo
        self.voxel_size = float(voxel_size)

    # --------------------------------------------------------------------------------------- basics
    @property
    def shape(self) -> tuple:
        """(nx, ny, nz)."""
        return tuple(int(n) for n in self.occupancy.shape)

    @property
    def hi(self) -> np.ndarray:
        """(3,) maximum corner of the box, ``lo + shape * voxel_size``."""
        return self.lo + np.array(self.shape) * self.voxel_size

    def count(self) -> int:
        """Number of occupied voxels."""
        return int(np.count_nonzero(self.occupancy))

    def points(self) -> np.ndarray:
        """Centres of the occupied voxels, (M, 3) float64 world coordinates, in [x, y, z] index order."""
        idx = np.argwhere(self.occupancy)
        return self.lo + (idx + 0.5) * self.voxel_size

    def __repr__(self) -> str:
        nx, ny, nz = self.shape
        return (f"VoxelGrid({nx} x {ny} x {nz}, voxel_size={self.voxel_size:.6g}, occupied={self.count()}, "
                f"lo={np.round(self.lo, 6).tolist()}, hi={np.round(self.hi, 6).tolist()})")

    # -------------------------------------------------------------------------------------- meshing
    def to_mesh(self, images=None, cameras=None, smooth=0.0, progress=None):
        """The surface of the occupied voxels by marching cubes, in world units.

        The grid is padded by one empty voxel so the mesh is closed (watertight where the object does
        not touch the box's faces); vertex positions are world positions of the voxel-centre lattice
        ``lo + (index + 0.5) * voxel_size``; faces are wound counter-clockwise seen from outside.

        Args:
            images: optional (B, H, W, 3) RGB images (uint8, or float in [0, 1]) or a list of them, to
                colour the vertices: each vertex gets the average colour of the views that see it
                (in front, inside the image, facing the camera, not occluded by the mesh), weighted by
                how frontally they see it; vertices no view sees are grey.
            cameras: the :class:`geometry.Camera` of the B images (needed with ``images``).
            smooth: Gaussian smoothing of the occupancy before meshing, in voxels (0: the exact
                voxel surface, a staircase; about 1 gives a smooth surface).
            progress: show a progress bar while colouring (default: when stderr is a terminal).

        Returns:
            ``trimesh.Trimesh`` (with ``visual.vertex_colors`` (V, 4) uint8 when images are given); an
            empty one for an empty grid.
        """
        import trimesh
        from skimage.measure import marching_cubes

        if (images is None) != (cameras is None):
            raise ValueError("images and cameras must be given together to colour the mesh, got only "
                             + ("images" if cameras is None else "cameras"))
        if isinstance(smooth, bool) or not np.isscalar(smooth) or not np.isfinite(smooth) or smooth < 0:
            raise ValueError(f"smooth must be a number >= 0 (voxels), got {smooth!r}")
        if not self.occupancy.any():
            return trimesh.Trimesh()
        # crop to the occupied voxels, pad by one empty voxel so the surface closes
        idx = [np.flatnonzero(self.occupancy.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
        start = np.array([i[0] for i in idx])
        stop = np.array([i[-1] + 1 for i in idx])
        sub = self.occupancy[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
        pad = 1 + int(np.ceil(3 * smooth))  # room for the blur to fall to 0
        volume = np.pad(sub, pad).astype(np.float32)
        if smooth > 0:
            from scipy.ndimage import gaussian_filter

            volume = gaussian_filter(volume, float(smooth))
        s = self.voxel_size
        verts, faces, _, _ = marching_cubes(volume, level=0.5, spacing=(s, s, s), allow_degenerate=False)
        verts = verts + (self.lo + (start - pad + 0.5) * s)
        # skimage winds faces clockwise seen from the high side of the level set (the inside here)
        mesh = trimesh.Trimesh(vertices=verts, faces=faces[:, ::-1], process=False)
        if images is not None:
            mesh.visual.vertex_colors = _vertex_colors(mesh, images, cameras, s, progress)
        return mesh

    # -------------------------------------------------------------------------------------- Open3D
    def to_open3d(self, surface_only=False, color=None):
        """An ``open3d.geometry.VoxelGrid`` with the same origin, voxel size and occupied voxels.

        Args:
            surface_only: keep only occupied voxels with an empty 6-neighbour (far fewer to draw).
            color: optional RGB in [0, 1] for every voxel.
        """
        import open3d as o3d

        occ = self.occupancy
        if surface_only:
            occ = occ & ~_interior(occ)
        pcd = o3d.geometry.PointCloud()
        pts = self.lo + (np.argwhere(occ) + 0.5) * self.voxel_size
        pcd.points = o3d.utility.Vector3dVector(pts)
        if color is not None:
            color = np.asarray(color, dtype=np.float64)
            if color.shape != (3,) or not np.all((color >= 0) & (color <= 1)):
                raise ValueError(f"color must be 3 numbers in [0, 1], got {color.tolist()}")
            pcd.colors = o3d.utility.Vector3dVector(np.broadcast_to(color, pts.shape).copy())
        return o3d.geometry.VoxelGrid.create_from_point_cloud_within_bounds(pcd, self.voxel_size, self.lo, self.hi)

    # ---------------------------------------------------------------------------------------- files
    def save(self, path) -> Path:
        """Write the grid to a compressed ``.npz`` (bit-packed occupancy); returns the path written.

        ``.npz`` is appended when the name lacks it. The file is written to a temporary name and
        renamed, so a failure leaves no partial file.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        if not path.parent.is_dir():
            raise ValueError(f"path must be in an existing directory, got {str(path)!r}")
        from carve.files import atomic_path

        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, format=np.array(_FORMAT), shape=np.array(self.shape, np.int64),
                                lo=self.lo, voxel_size=np.array(self.voxel_size),
                                occupancy_bits=np.packbits(self.occupancy.reshape(-1)))
        return path

    @classmethod
    def load(cls, path) -> "VoxelGrid":
        """Read a grid written by :meth:`save`."""
        path = Path(path)
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            if not path.exists():
                raise FileNotFoundError(f"path must name an existing .npz file, got {str(path)!r}") from None
            raise ValueError(f"path must be a VoxelGrid .npz file, got {str(path)!r} ({err})") from None
        with data:
            keys = {"format", "shape", "lo", "voxel_size", "occupancy_bits"}
            if not keys <= set(data.files) or str(data["format"]) != _FORMAT:
                raise ValueError(f"path must be a VoxelGrid .npz file ({_FORMAT}), got {str(path)!r} "
                                 f"holding {sorted(data.files)}")
            shape = tuple(int(n) for n in data["shape"])
            bits = data["occupancy_bits"]
            n = int(np.prod(shape)) if len(shape) == 3 else -1
            if n < 0 or bits.dtype != np.uint8 or bits.size != (n + 7) // 8:
                raise ValueError(f"path must be a VoxelGrid .npz file, got {str(path)!r} with inconsistent "
                                 f"shape {shape} and {bits.size} occupancy bytes")
            occ = np.unpackbits(bits, count=n).reshape(shape).astype(bool)
            return cls(occ, data["lo"], float(data["voxel_size"]))


# ---------------------------------------------------------------------------------------- helpers
def _interior(occ):
    """Occupied voxels whose 6 neighbours are all occupied (voxels on the grid's faces are not interior)."""
    inner = np.zeros_like(occ)
    core = occ[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for shift in (-1, 1):
            core &= np.roll(occ, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    inner[1:-1, 1:-1, 1:-1] = core
    return inner


def _image_stack(images, n_views, size):
    """(B, H, W, 3) uint8 from uint8 or [0, 1] float RGB images, with named errors."""
    from geometry.arrays import is_tensor

    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(i.detach().cpu() if is_tensor(i) else i) for i in images])
    elif is_tensor(images):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (3, 4):
        raise ValueError(f"images must have shape (B, H, W, 3), got {images.shape}")
    if images.shape[0] != n_views:
        raise ValueError(f"images must hold one image per camera ({n_views}), got {images.shape[0]}")
    if size is not None and images.shape[1:3] != (size[1], size[0]):
        raise ValueError(f"images must be {size[1]} x {size[0]} (H x W) like the cameras, got "
                         f"{images.shape[1]} x {images.shape[2]}")
    images = images[..., :3]
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        if not (np.nanmin(images) >= 0 and np.nanmax(images) <= 1):
            raise ValueError("images of a float dtype must hold values in [0, 1]")
        return np.round(images * 255).astype(np.uint8)
    raise TypeError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")


def _vertex_colors(mesh, images, cameras, voxel_size, progress):
    """(V, 4) uint8 colours: the visibility-weighted average over the views that see each vertex."""
    import open3d as o3d
    from tqdm import tqdm

    from geometry import Camera, pixel_index, project

    if not isinstance(cameras, Camera):
        raise TypeError(f"cameras must be a geometry.Camera, got {type(cameras).__name__}")
    cameras = cameras.numpy()
    size = (cameras.width, cameras.height) if cameras.has_size else None
    rgb = _image_stack(images, len(cameras), size)
    H, W = rgb.shape[1:3]
    verts = np.asarray(mesh.vertices)
    normals = np.asarray(mesh.vertex_normals)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts.astype(np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces).astype(np.uint32)))
    total = np.zeros((len(verts), 3))
    weight = np.zeros(len(verts))
    centres = cameras.center
    show = progress if progress is not None else sys.stderr.isatty()
    for b in tqdm(range(len(cameras)), desc="colouring", unit="view", disable=not show):
        uv, depth, valid = project(verts, cameras[b])
        uv, valid = uv[0], valid[0]
        rows, cols = pixel_index(uv)
        valid &= (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
        to_cam = centres[b] - verts
        dist = np.linalg.norm(to_cam, axis=1)
        cos = np.einsum("ij,ij->i", normals, to_cam) / np.maximum(dist, 1e-12)
        valid &= cos > 0
        cand = np.flatnonzero(valid)
        if len(cand) == 0:
            continue
        direction = to_cam[cand] / dist[cand, None]
        origin = verts[cand] + 0.5 * voxel_size * direction  # step off the surface the ray starts on
        rays = np.concatenate([origin, direction * (dist[cand, None] - 0.5 * voxel_size)], 1).astype(np.float32)
        hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
        seen = cand[~(hit < 1.0)]
        w = cos[seen]
        total[seen] += w[:, None] * rgb[b, rows[seen], cols[seen]]
        weight[seen] += w
    colors = np.full((len(verts), 4), 255, np.uint8)
    colors[:, :3] = 128
    ok = weight > 0
    colors[ok, :3] = np.clip(np.round(total[ok] / weight[ok, None]), 0, 255).astype(np.uint8)
    return colors
