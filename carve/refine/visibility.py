"""Per-view item buffers of a voxel grid: which voxel each pixel sees first, kept up to date while carving.

The kernels are in :mod:`carve.refine.photo_kernels`; :func:`depth_maps` is the grid's depth as each
camera sees it (what the depth route aligns monocular depth to).
"""
from __future__ import annotations

import numpy as np

from carve.grid import VoxelGrid
from geometry import Camera

__all__ = ["ItemBuffers", "depth_maps"]

#: candidates tested per kernel call: bounds the (chunk, views, 6) float32 work space
_CHUNK = 16384


class ItemBuffers:
    """Item buffers of every view over a grid that is being carved, and the photo-consistency test.

    Args:
        occ_flat: (nx * ny * nz,) uint8 view of ``grid.occupancy`` (carving writes through it).
        grid: the :class:`carve.VoxelGrid` carved.
        cameras: :class:`geometry.Camera` of B views, with their size.
        images: (B, H, W, 3) float32 in 0..255 for :meth:`test`, or None.

    Attributes:
        hit_t: (B, H, W) float64 depth (camera z) at which each pixel's ray enters its first
            occupied voxel, inf where it meets none. hit_id: (B, H, W) int64 flat index of that voxel, -1
            where none.
    """

    def __init__(self, occ_flat, grid: VoxelGrid, cameras: Camera, images: np.ndarray | None):
        from carve.refine import photo_kernels as k

        self.k = k
        cam = cameras.numpy()
        B, H, W = len(cam), cam.height, cam.width
        self.occ, self.grid = occ_flat, grid
        self.M = np.ascontiguousarray(np.swapaxes(cam.R, 1, 2) @ np.linalg.inv(cam.K), dtype=np.float64)
        self.C = np.ascontiguousarray(cam.center, dtype=np.float64)
        self.P = np.ascontiguousarray(cam.P, dtype=np.float64)
        self.focal = np.ascontiguousarray(0.5 * (cam.K[:, 0, 0] + cam.K[:, 1, 1]), dtype=np.float64)
        self.images = None if images is None else np.ascontiguousarray(images)
        self.hit_t = np.zeros((B, H, W))
        self.hit_id = np.full((B, H, W), k.UNTRACED, np.int64)
        self.changed = np.zeros((B, H, W), np.uint8)
        # the ray through the pixel of a centre passes within half a pixel of it, and the voxel it
        # enters first there is then the voxel itself or a neighbour on the same surface: about one
        # voxel of depth either way
        self.tol = grid.voxel_size

    def _trace(self) -> None:
        nx, ny, nz = self.grid.shape
        self.k.trace(self.occ, nx, ny, nz, self.grid.lo, self.grid.voxel_size, self.M, self.C, self.hit_t,
                     self.hit_id, self.changed)

    def update(self) -> np.ndarray:
        """Walk every ray (the first time); returns the voxels some view sees."""
        self._trace()
        ids = self.hit_id[self.changed.view(bool)]
        return np.unique(ids[ids >= 0])

    def carve(self, gone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Carve the voxels ``gone``, but keep those whose loss would empty a ray that hit the volume.

        The start's silhouettes are kept: a pixel whose ray met the volume still meets it, so the
        result never carves what the silhouettes saw (the thin edges of a part, where the views see
        two faces and disagree, are such voxels).

        Returns:
            (kept: the voxels of ``gone`` put back, visible: the voxels some view now sees anew).
        """
        before_t, before_id = self.hit_t.copy(), self.hit_id.copy()
        self.occ[gone] = 0
        self._trace()
        lost = self.changed.view(bool) & (self.hit_id == self.k.MISS)
        kept = np.unique(before_id[lost])
        if len(kept):
            self.occ[kept] = 1
            moved = self.changed.view(bool)  # walk again from where each changed ray stood before
            self.hit_t[moved], self.hit_id[moved] = before_t[moved], before_id[moved]
            self._trace()
            self.changed |= moved
        ids = self.hit_id[self.changed.view(bool)]
        return kept, np.unique(ids[ids >= 0])

    def test(self, cand: np.ndarray, threshold: float, spread_weight: float, quorum: float, min_views: int,
             highlight: float) -> tuple:
        """(inconsistent (N,) bool, seen (N,) int32 views, colour (N, 3) float32) of the voxels ``cand``,
        by the test of :mod:`carve.refine.photo` with its constants."""
        nx, ny, nz = self.grid.shape
        n = len(cand)
        bad = np.zeros(n, np.uint8)
        seen = np.zeros(n, np.int32)
        color = np.zeros((n, 3), np.float32)
        scratch = np.empty((min(n, _CHUNK), len(self.P), 6), np.float32)
        for a in range(0, n, _CHUNK):
            b = min(a + _CHUNK, n)
            self.k.consistency(cand[a:b], self.occ, nx, ny, nz, self.grid.lo, self.grid.voxel_size, self.P, self.C, self.focal,
                               self.images, self.hit_t, self.tol, float(threshold), float(spread_weight), float(quorum), int(min_views),
                               float(highlight),
                               scratch[:b - a], seen[a:b], bad[a:b], color[a:b])
        return bad.view(bool), seen, color




def depth_maps(grid: VoxelGrid, cameras: Camera) -> np.ndarray:
    """The grid's depth seen by each camera: (B, H, W) float32, camera z where the ray through a
    pixel's centre enters the first occupied voxel, 0 where it meets none (as :func:`data.render`).

    Example:
        >>> occ = np.ones((4, 4, 4), bool)
        >>> cam = Camera.look_at([[0.0, 0.0, 5.0]], up=(0, 1, 0), fov=30, width=8, height=8)
        >>> d = depth_maps(VoxelGrid(occ, [-1, -1, -1], 0.5), cam)
        >>> round(float(d[0, 4, 4]), 3)  # the cube's top face, z = 1, seen from z = 5
        4.0
    """
    if not isinstance(grid, VoxelGrid):
        raise TypeError(f"grid must be a carve.VoxelGrid, got {type(grid).__name__}")
    if not isinstance(cameras, Camera) or not cameras.has_size:
        raise TypeError(f"cameras must be a geometry.Camera with width and height, got {cameras!r}")
    occ = np.ascontiguousarray(grid.occupancy).reshape(-1).view(np.uint8)
    buffers = ItemBuffers(occ, grid, cameras, None)
    buffers.update()
    depth = buffers.hit_t.astype(np.float32)
    depth[~np.isfinite(depth)] = 0
    return depth
