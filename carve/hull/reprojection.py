"""The hull seen from each camera: which pixels' rays meet an occupied voxel, and per-voxel rejections.

Convention:
    A voxel is the closed cube ``[lo + idx * s, lo + (idx + 1) * s]``. Pixel (row, col) of view b is
    covered when the ray from the camera centre through the pixel's centre ``(col, row)`` (OpenCV:
    the ray ``X(t) = C + t * M^-1 (col, row, 1)``, ``P = [M | p]``, ``t > 0`` in front) meets an
    occupied cube: the exact silhouette of the union of cubes, by a ray-box test per pixel.
    Only the voxels with an empty 26-neighbour (or on the grid's border) are tested: the first
    occupied voxel a ray meets is one of them, so the coverage is the same.
"""
from __future__ import annotations

import numba
import numpy as np

from carve.grid import VoxelGrid
from carve.hull.rule import EPS_DEPTH

__all__ = ["reproject", "surface_voxels", "rejections", "pixel_of"]


def surface_voxels(occupancy: np.ndarray) -> np.ndarray:
    """(N, 3) int64 indices of the occupied voxels with an empty 26-neighbour or on the grid's border.

    Example:
        >>> occ = np.ones((3, 3, 3), bool)
        >>> len(surface_voxels(occ))  # all but the centre
        26
    """
    from scipy.ndimage import binary_erosion

    occ = np.asarray(occupancy, bool)
    inner = binary_erosion(occ, structure=np.ones((3, 3, 3), bool), border_value=0)
    return np.argwhere(occ & ~inner).astype(np.int64)


def reproject(grid: VoxelGrid, P: np.ndarray, height: int, width: int) -> np.ndarray:
    """The exact silhouette of a voxel grid in every view.

    Args:
        grid: a :class:`carve.grid.VoxelGrid`.
        P: (B, 3, 4) float64 projection matrices (``geometry.Camera.P``).
        height, width: image size in pixels.

    Returns:
        (B, H, W) bool: True where the pixel centre's ray meets an occupied voxel in front of the camera.

    Example:
        >>> from geometry import Camera
        >>> cam = Camera(np.diag([10.0, 10.0, 1.0]) + [[0, 0, 4.5], [0, 0, 4.5], [0, 0, 0]], np.eye(3), [0, 0, 5.0])
        >>> grid = VoxelGrid(np.ones((1, 1, 1), bool), lo=[-0.5, -0.5, -0.5], voxel_size=1.0)
        >>> reproject(grid, cam.P, 10, 10)[0].sum()  # the cube's front face spans 10/5.5..10/4.5 px
        np.int64(4)
    """
    P = np.ascontiguousarray(P, dtype=np.float64)
    out = np.zeros((len(P), int(height), int(width)), bool)
    idx = surface_voxels(grid.occupancy)
    if len(idx) == 0:
        return out
    M = P[:, :, :3]
    Minv = np.ascontiguousarray(np.linalg.inv(M))
    C = np.ascontiguousarray(-np.einsum("bij,bj->bi", Minv, P[:, :, 3]))
    _cover(P, Minv, C, np.asarray(grid.lo, np.float64), grid.voxel_size, idx, out)
    return out


@numba.njit(parallel=True, cache=True)
def _cover(P, Minv, C, lo, size, idx, out):  # pragma: no cover - compiled
    B, H, W = out.shape
    for b in numba.prange(B):
        for n in range(idx.shape[0]):
            a0 = lo[0] + idx[n, 0] * size
            a1 = lo[1] + idx[n, 1] * size
            a2 = lo[2] + idx[n, 2] * size
            umin, umax, vmin, vmax = 1e300, -1e300, 1e300, -1e300
            behind = False
            for c in range(8):
                x = a0 + size * (c & 1)
                y = a1 + size * ((c >> 1) & 1)
                z = a2 + size * ((c >> 2) & 1)
                w = P[b, 2, 0] * x + P[b, 2, 1] * y + P[b, 2, 2] * z + P[b, 2, 3]
                if w <= EPS_DEPTH:
                    behind = True
                    break
                u = (P[b, 0, 0] * x + P[b, 0, 1] * y + P[b, 0, 2] * z + P[b, 0, 3]) / w
                v = (P[b, 1, 0] * x + P[b, 1, 1] * y + P[b, 1, 2] * z + P[b, 1, 3]) / w
                umin, umax = min(umin, u), max(umax, u)
                vmin, vmax = min(vmin, v), max(vmax, v)
            if behind:  # a cube at the camera plane: test every pixel (rare)
                c0, c1, r0, r1 = 0, W - 1, 0, H - 1
            else:  # pixel centres within the corners' rectangle, one pixel of margin for rounding
                c0 = max(int(np.floor(umin)) - 1, 0)
                c1 = min(int(np.ceil(umax)) + 1, W - 1)
                r0 = max(int(np.floor(vmin)) - 1, 0)
                r1 = min(int(np.ceil(vmax)) + 1, H - 1)
            for r in range(r0, r1 + 1):
                for col in range(c0, c1 + 1):
                    if out[b, r, col]:
                        continue
                    tnear, tfar = 0.0, 1e300  # t > 0: in front of the camera
                    hit = True
                    for k in range(3):
                        d = Minv[b, k, 0] * col + Minv[b, k, 1] * r + Minv[b, k, 2]
                        lo_k = lo[k] + idx[n, k] * size
                        if d == 0.0:
                            if C[b, k] < lo_k or C[b, k] > lo_k + size:
                                hit = False
                                break
                            continue
                        t1 = (lo_k - C[b, k]) / d
                        t2 = (lo_k + size - C[b, k]) / d
                        if t1 > t2:
                            t1, t2 = t2, t1
                        tnear = max(tnear, t1)
                        tfar = min(tfar, t2)
                        if tnear > tfar:
                            hit = False
                            break
                    if hit:
                        out[b, r, col] = True


def rejections(points: np.ndarray, masks: np.ndarray, P: np.ndarray, carve_out: np.ndarray,
               chunk: int = 1 << 18) -> np.ndarray:
    """Which views reject which points, by the carving rule (:mod:`carve.hull.carving`).

    Args:
        points: (N, 3) float64 world points (voxel centres).
        masks: (B, H, W) bool silhouettes. P: (B, 3, 4) float64. carve_out: (B,) bool, the views with
            outside="carve".
        chunk: points per batch (bounds the temporaries).

    Returns:
        (N, B) bool, True where view b rejects point n.

    Example:
        >>> P = np.array([[[1.0, 0, 0, 1], [0, 1.0, 0, 1], [0, 0, 0, 1]]])  # pixel (x + 1, y + 1)
        >>> masks = np.zeros((1, 3, 3), bool); masks[0, 1, 1] = True
        >>> rejections(np.array([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]]), masks, P, np.array([True])).ravel().tolist()
        [False, True, True]
    """
    B, H, W = masks.shape
    out = np.empty((len(points), B), bool)
    for s in range(0, len(points), chunk):
        x, y, z = (points[s:s + chunk, a] for a in range(3))
        for b in range(B):
            h = [((P[b, r, 0] * x + P[b, r, 1] * y) + P[b, r, 3]) + P[b, r, 2] * z for r in range(3)]
            col, row, inside = pixel_of(h, H, W)
            out[s:s + chunk, b] = np.where(inside, ~masks[b, row, col], carve_out[b])
    return out


def pixel_of(h, H: int, W: int):
    """(col, row, inside) of homogeneous projections ``h = (h0, h1, w)`` (each (N,)), by the carving rule;
    col and row are 0 where ``inside`` is False."""
    w = h[2]
    front = w > EPS_DEPTH
    safe = np.where(front, w, 1.0)
    cu = np.floor(h[0] / safe + 0.5)
    cv = np.floor(h[1] / safe + 0.5)
    inside = front & (cu >= 0) & (cu < W) & (cv >= 0) & (cv < H)
    return np.where(inside, cu, 0).astype(np.int64), np.where(inside, cv, 0).astype(np.int64), inside
