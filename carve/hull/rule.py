"""The carving rule's backend-neutral parts: box classes, the depth threshold, error margins, tables.

Both kernels (:mod:`carve.hull.numba_kernels` on the CPU, :mod:`carve.hull.torch_kernels` on any
device) import their constants and the pure-numpy preparation from here, so that they cannot drift
apart: they must agree voxel for voxel.

Convention:
    In view ``b`` a voxel centre ``(x, y, z)`` is projected as

        h_r = ((P[b, r, 0] * x + P[b, r, 1] * y) + P[b, r, 3]) + P[b, r, 2] * z      (r = 0, 1, 2)

    in float64, in exactly that order (both backends use it, so ties agree bit for bit). ``w = h_2``
    is the depth; ``w <= EPS_DEPTH`` means "at or behind the camera". Otherwise the pixel is
    ``col = floor(h_0 / w + 0.5)``, ``row = floor(h_1 / w + 0.5)``. A box of voxels is classified per
    view as :data:`REJECT`, :data:`ACCEPT` or :data:`MIXED` from the pixel rectangle that bounds the
    projections of its corners, widened by :data:`REL_ERROR` times the :func:`error_bounds`.
"""
from __future__ import annotations

import numpy as np

from geometry.projection import DEFAULT_EPS as EPS_DEPTH  # at or behind the camera, as in geometry.project

__all__ = ["REJECT", "ACCEPT", "MIXED", "EPS_DEPTH", "REL_ERROR", "OCTREE_LEAF", "error_bounds",
           "depth_pyramids", "top_block_size", "dilate_masks"]

#: what one view does to every centre of a box of voxels: rejects all, accepts all, or either
REJECT, ACCEPT, MIXED = 0, 1, 2
#: relative error allowance of the float64 projection (a few ulp would do; 1e-13 is 450 ulp)
REL_ERROR = 1e-13
#: side, in voxels, of the octree's leaf blocks (evaluated centre by centre)
OCTREE_LEAF = 4


def error_bounds(P: np.ndarray, lo: np.ndarray, hi: np.ndarray, pad: float) -> np.ndarray:
    """Per view, per row r of P: ``sum_j |P[b, r, j]| * max|coord_j| + |P[b, r, 3]|``.

    It bounds the magnitude of every term of the projection of any point of the box ``[lo, hi]``
    widened by ``pad``, hence the floating-point error of ``h_r`` (a few ulp of it).

    Args:
        P: (B, 3, 4) float64 projection matrices. lo, hi: (3,) corners of the box. pad: widening.

    Returns:
        (B, 3) float64.

    Example:
        >>> P = np.array([[[1.0, 0, 0, 0], [0, -2.0, 0, 0], [0, 0, 1.0, 4.0]]])
        >>> error_bounds(P, np.array([-1.0, -1, -1]), np.array([2.0, 1, 1]), 0.0).tolist()
        [[2.0, 2.0, 5.0]]
    """
    m = np.maximum(np.abs(lo), np.abs(hi)) + pad
    with np.errstate(over="ignore"):  # an overflow is an infinite bound: every test there is uncertain, the safe side
        return np.abs(P[:, :, :3]) @ m + np.abs(P[:, :, 3])


def depth_pyramids(E: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Min and max pyramids of the effective depth maps, for conservative rectangle queries.

    Args:
        E: (B, H, W) float64, the depth below which a centre is rejected (may hold +-inf).

    Returns:
        pmin, pmax: (B, total) float64, levels stored one after the other, row-major; level l has
            cells of 2**l x 2**l pixels (ceil-divided, padded with the neutral value).
        offsets: (L,) int64 start of each level; shapes: (L, 2) int64 (rows, cols) of each level.
        The last level has at most 2 x 2 cells, so any rectangle is covered by <= 4 cells of a level.

    Example:
        >>> pmin, pmax, offsets, shapes = depth_pyramids(np.arange(12.0).reshape(1, 3, 4))
        >>> offsets.tolist(), shapes.tolist(), pmin[0, 12:].tolist(), pmax[0, 12:].tolist()
        ([0, 12], [[3, 4], [2, 2]], [0.0, 2.0, 8.0, 10.0], [5.0, 7.0, 9.0, 11.0])
    """
    B, H, W = E.shape
    mins, maxs, offsets, shapes = [E.reshape(B, -1)], [E.reshape(B, -1)], [0], [(H, W)]
    lo, hi = E, E
    total = H * W
    while lo.shape[1] > 2 or lo.shape[2] > 2:
        h, w = lo.shape[1], lo.shape[2]
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        pad_lo = np.full((B, 2 * h2, 2 * w2), np.inf)
        pad_hi = np.full((B, 2 * h2, 2 * w2), -np.inf)
        pad_lo[:, :h, :w] = lo
        pad_hi[:, :h, :w] = hi
        lo = pad_lo.reshape(B, h2, 2, w2, 2).min(axis=(2, 4))
        hi = pad_hi.reshape(B, h2, 2, w2, 2).max(axis=(2, 4))
        offsets.append(total)
        shapes.append((h2, w2))
        total += h2 * w2
        mins.append(lo.reshape(B, -1))
        maxs.append(hi.reshape(B, -1))
    return (np.ascontiguousarray(np.concatenate(mins, axis=1)), np.ascontiguousarray(np.concatenate(maxs, axis=1)),
            np.array(offsets, np.int64), np.array(shapes, np.int64))


def top_block_size(shape: tuple[int, int, int], leaf: int = OCTREE_LEAF) -> int:
    """Side of the coarsest octree blocks: leaf * 2**m, the smallest with at most 4 blocks along every axis.

    Example:
        >>> top_block_size((86, 114, 128)), top_block_size((3, 3, 3))
        (32, 4)
    """
    size = leaf
    while size * 4 < max(shape):
        size *= 2
    return size


def dilate_masks(masks: np.ndarray, slack: float) -> np.ndarray:
    """The masks grown by ``slack`` pixels: the carving rule with ``slack`` on the original masks.

    A pixel is object in the result when the Euclidean distance from its centre to the centre of an
    object pixel is at most ``slack`` (exact: squared distances between pixel centres are integers,
    compared with ``slack**2``). So a centre survives a view with slack iff its pixel lies within
    ``slack`` px of the silhouette; pixels outside the image are not added (the ``outside`` policy
    still decides for centres that project there).

    Args:
        masks: (B, H, W) bool or uint8 numpy masks (non-zero = object), each with an object pixel.
        slack: pixels, >= 0.

    Returns:
        (B, H, W) bool numpy array.

    Example:
        >>> m = np.zeros((1, 5, 5), bool); m[0, 2, 2] = True
        >>> int(dilate_masks(m, 1.0).sum()), int(dilate_masks(m, 1.5).sum())
        (5, 9)
    """
    import cv2

    out = np.empty(masks.shape, bool)
    for b in range(len(masks)):
        background = np.ascontiguousarray(masks[b] == 0, dtype=np.uint8)
        dist = cv2.distanceTransform(background, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        # squared distances are integers; float32 distances round-trip them exactly at image sizes
        out[b] = np.rint(dist.astype(np.float64) ** 2) <= slack * slack
    return out
