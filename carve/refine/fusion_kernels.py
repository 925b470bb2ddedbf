"""The TSDF integration of depth fusion (:mod:`carve.refine.fusion`): our Numba kernel, and Open3D's
``UniformTSDFVolume`` on the same voxels, the reference it is tested and timed against."""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from carve.grid import VoxelGrid
from geometry import Camera

__all__ = ["fusion_kernel", "tsdf_open3d"]


@njit(parallel=True, cache=True, fastmath=False)
def fusion_kernel(flat, ny, nz, lo, size, P, depth, used, trunc, hit_t, tol, tsdf, weight):  # pragma: no cover
    """The TSDF of the voxels ``flat`` (N,) int64 flat indices of a grid (.., ny, nz) at ``lo``,
    voxel ``size``, seen by the views ``used`` (B,) bool with P (B, 3, 4) float64 and ``depth``
    (B, H, W) float32 (0 = none), truncated at ``trunc`` (world units).

    A view counts only where the voxel's centre is at most ``tol`` behind ``hit_t`` (B, H, W) float64,
    the depth where its pixel's ray enters the current volume (:class:`carve.refine.ItemBuffers`):
    where the view sees the voxel. +inf everywhere gives the plain TSDF. Writes ``tsdf`` (N,)
    float32 (1 where no view integrates) and ``weight`` (N,) int32, the views that integrate each
    voxel (the rule: :mod:`carve.refine.fusion`)."""
    B, H, W = depth.shape
    for n in prange(len(flat)):
        f = flat[n]
        x = lo[0] + (f // (ny * nz) + 0.5) * size
        y = lo[1] + ((f // nz) % ny + 0.5) * size
        z = lo[2] + (f % nz + 0.5) * size
        total, count = 0.0, 0
        for b in range(B):
            if not used[b]:
                continue
            w = P[b, 2, 0] * x + P[b, 2, 1] * y + P[b, 2, 2] * z + P[b, 2, 3]
            if w <= 1e-9:
                continue
            u = (P[b, 0, 0] * x + P[b, 0, 1] * y + P[b, 0, 2] * z + P[b, 0, 3]) / w
            v = (P[b, 1, 0] * x + P[b, 1, 1] * y + P[b, 1, 2] * z + P[b, 1, 3]) / w
            c, r = math.floor(u + 0.5), math.floor(v + 0.5)
            if c < 0 or r < 0 or c >= W or r >= H:
                continue
            d = depth[b, int(r), int(c)]
            if not d > 0 or w > hit_t[b, int(r), int(c)] + tol:
                continue  # no depth there, or the view does not see this voxel
            sdf = (d - w) / trunc
            if sdf <= -1.0:
                continue  # hidden behind the surface this view sees
            total += 1.0 if sdf >= 1.0 else sdf
            count += 1
        weight[n] = count
        tsdf[n] = total / count if count > 0 else 1.0


def tsdf_open3d(grid: VoxelGrid, cameras: Camera, depth: np.ndarray, truncation: float) -> tuple[np.ndarray, np.ndarray]:
    """The TSDF of ``grid``'s occupied voxels by Open3D's ``UniformTSDFVolume``: the reference that
    :func:`fusion_kernel` is timed against.

    A cube of ``max(grid.shape)`` voxels on ``grid``'s lattice integrates ``depth`` (B, H, W) float32
    (0 = none) from the B ``cameras`` (no skew) with ``truncation`` (world units). Returns tsdf and
    weight (N,) float32 of the N occupied voxels in :meth:`VoxelGrid.points` order; on the mug's
    hull the weights equal ours on 99 % of the voxels, the carving decisions on 99.95 %.
    """
    import open3d as o3d

    cam = cameras.numpy()
    n = max(grid.shape)
    volume = o3d.pipelines.integration.UniformTSDFVolume(
        length=n * grid.voxel_size, resolution=n, sdf_trunc=float(truncation),
        color_type=o3d.pipelines.integration.TSDFVolumeColorType.NoColor, origin=grid.lo.reshape(3, 1))
    H, W = cam.height, cam.width
    colour = o3d.geometry.Image(np.zeros((H, W, 3), np.uint8))
    for b in range(len(cam)):
        K = cam.K[b]
        intrinsic = o3d.camera.PinholeCameraIntrinsic(W, H, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
        extrinsic = np.eye(4)
        extrinsic[:3, :3], extrinsic[:3, 3] = cam.R[b], cam.T[b]
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            colour, o3d.geometry.Image(np.ascontiguousarray(depth[b], np.float32)), depth_scale=1.0,
            depth_trunc=1e9, convert_rgb_to_intensity=False)
        volume.integrate(rgbd, intrinsic, extrinsic)
    values = np.asarray(volume.extract_volume_tsdf()).reshape(n, n, n, 2)  # Open3D indexes x * n * n + y * n + z
    idx = np.argwhere(grid.occupancy)
    tsdf, weight = values[idx[:, 0], idx[:, 1], idx[:, 2]].T
    return tsdf.astype(np.float32), weight.astype(np.float32)
