"""Which views can bound a vertex's lattice edge: the snap (:mod:`carve.surface`) solves only those.

Of the B views, a vertex's edge can leave the silhouettes of few: those whose contour passes near it.
Two tests, both exact (a view they skip has no exit on the edge), keep the others out:

- per block of :data:`BLOCK_VOXELS` voxels, a view whose mask holds the image of the whole block (a
  table of :data:`TILE` x :data:`TILE`-pixel tiles of object pixels only) holds every edge in it;
- per edge, a view whose mask, eroded by a small square, holds both ends' pixels holds the edge.

On the bunny at 512 a block keeps about 9 of its 36 views and the edge test leaves under 2 to solve.
Masks here are the snap's padded uint8 masks (a one-pixel border holds what lies outside the image).
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["EPS_DEPTH", "BLOCK_VOXELS", "TILE", "MAX_DEEP_RADIUS", "vertex_views", "holds_edge", "deep_radius",
           "deep_interior"]

#: depth below which a point counts as at or behind a camera (the carving rule's)
EPS_DEPTH = 1e-9
#: voxels a side of the blocks whose views are sorted once for all their vertices: a view whose mask
#: holds the image of a whole block (one voxel wider, for the edges' outer ends) is not asked again
#: for any point in it. A vertex then checks the few views whose contour passes near it, not all
BLOCK_VOXELS = 8
#: pixels a side of the mask tiles that test whether a view holds a block: the table is 1/16 of the
#: masks (a full-resolution one costs more to allocate than the whole snap saves), and a block's
#: rectangle grows by at most 3 pixels a side
TILE = 4
#: the largest neighbourhood radius (pixels) of the deep-interior test: an edge whose image is longer
#: (a coarse grid seen up close) is solved exactly in every view of its block, as without the test
MAX_DEEP_RADIUS = 8


@numba.njit(cache=True, inline="always")
def holds_edge(a, b, P, deep, radius, view):
    """True when the view holds every point of the segment a -> b: both ends in front of the camera and
    every pixel that a bilinear read along its image takes within ``radius`` of a pixel whose
    (2 radius + 1)-square neighbourhood is all object (``deep``: the masks eroded so). A cheap test
    (two projections, one byte) that spares the exact exit, which most views of a vertex do not have."""
    _, hp, wp = deep.shape
    wa = P[view, 2, 0] * a[0] + P[view, 2, 1] * a[1] + P[view, 2, 2] * a[2] + P[view, 2, 3]
    wb = P[view, 2, 0] * b[0] + P[view, 2, 1] * b[1] + P[view, 2, 2] * b[2] + P[view, 2, 3]
    if not (wa > EPS_DEPTH and wb > EPS_DEPTH):
        return False
    ua = (P[view, 0, 0] * a[0] + P[view, 0, 1] * a[1] + P[view, 0, 2] * a[2] + P[view, 0, 3]) / wa + 1.0
    ub = (P[view, 0, 0] * b[0] + P[view, 0, 1] * b[1] + P[view, 0, 2] * b[2] + P[view, 0, 3]) / wb + 1.0
    umin, umax = min(ua, ub), max(ua, ub)
    if not (umin >= 0.0 and umax <= wp - 1.0):  # (also NaN)
        return False
    va = (P[view, 1, 0] * a[0] + P[view, 1, 1] * a[1] + P[view, 1, 2] * a[2] + P[view, 1, 3]) / wa + 1.0
    vb = (P[view, 1, 0] * b[0] + P[view, 1, 1] * b[1] + P[view, 1, 2] * b[2] + P[view, 1, 3]) / wb + 1.0
    vmin, vmax = min(va, vb), max(va, vb)
    if not (vmin >= 0.0 and vmax <= hp - 1.0):
        return False
    # a read at u takes columns int(u) and int(u) + 1; the segment's image lies in the hull of its ends
    c0, r0 = int(umin), int(vmin)
    if int(umax) + 1 - c0 > 2 * radius or int(vmax) + 1 - r0 > 2 * radius:
        return False  # longer than the neighbourhood: solved exactly instead
    return deep[view, min(r0 + radius, hp - 1), min(c0 + radius, wp - 1)] != 0


@numba.njit(cache=True)
def _holds_box(P, b, x0, x1, y0, y1, z0, z1, sat, tile, hp, wp):
    """True when view b holds every point of the box: in front of the camera, and every pixel of every
    bilinear read lies in a tile of object pixels only (``sat``: :func:`_full_tiles` of the (hp, wp)
    padded masks)."""
    umin = vmin = np.inf
    umax = vmax = -np.inf
    for c in range(8):
        x = x1 if c & 1 else x0
        y = y1 if c & 2 else y0
        z = z1 if c & 4 else z0
        w = P[b, 2, 0] * x + P[b, 2, 1] * y + P[b, 2, 2] * z + P[b, 2, 3]
        if not w > 2.0 * EPS_DEPTH:
            return False
        u = (P[b, 0, 0] * x + P[b, 0, 1] * y + P[b, 0, 2] * z + P[b, 0, 3]) / w + 1.0
        v = (P[b, 1, 0] * x + P[b, 1, 1] * y + P[b, 1, 2] * z + P[b, 1, 3]) / w + 1.0
        umin, umax = min(umin, u), max(umax, u)
        vmin, vmax = min(vmin, v), max(vmax, v)
    # a box in front of the camera projects into the hull of its corners' images; the margin covers
    # the rounding of the per-point projection (1e-12 of a pixel) many times over
    mu = 1e-6 * (1.0 + max(abs(umin), abs(umax)))
    mv = 1e-6 * (1.0 + max(abs(vmin), abs(vmax)))
    if not (umin - mu >= 0.0 and vmin - mv >= 0.0 and umax + mu + 1.0 <= wp - 1.0 and vmax + mv + 1.0 <= hp - 1.0):
        return False  # (also NaN) reads near the padded edge are clamped: not simply bilinear
    c0, c1 = int(umin - mu) // tile, (int(umax + mu) + 1) // tile  # a read at u takes columns int(u), int(u) + 1
    r0, r1 = int(vmin - mv) // tile, (int(vmax + mv) + 1) // tile
    full = sat[b, r1 + 1, c1 + 1] - sat[b, r0, c1 + 1] - sat[b, r1 + 1, c0] + sat[b, r0, c0]
    return full == (r1 - r0 + 1) * (c1 - c0 + 1)


@numba.njit(cache=True, parallel=True)
def _block_views(blocks, lo, s, side, P, sat, tile, hp, wp, views, n_views):
    """For each block (i, j, k) of ``blocks`` (N, 3), the views that do not hold its voxel centres
    from (side * i - 1) to (side * i + side) on each axis: ``views[t, :n_views[t]]``."""
    for t in numba.prange(blocks.shape[0]):
        x0, x1 = lo[0] + (side * blocks[t, 0] - 0.5) * s, lo[0] + (side * blocks[t, 0] + side + 0.5) * s
        y0, y1 = lo[1] + (side * blocks[t, 1] - 0.5) * s, lo[1] + (side * blocks[t, 1] + side + 0.5) * s
        z0, z1 = lo[2] + (side * blocks[t, 2] - 0.5) * s, lo[2] + (side * blocks[t, 2] + side + 0.5) * s
        n = 0
        for b in range(P.shape[0]):
            if not _holds_box(P, b, x0, x1, y0, y1, z0, z1, sat, tile, hp, wp):
                views[t, n] = b
                n += 1
        n_views[t] = n


@numba.njit(cache=True, parallel=True)
def _full_tiles(masks, tile, sat):
    """The summed-area table of the tiles of ``tile`` x ``tile`` pixels of each mask that hold object
    pixels only: sat[b, i, j] = how many of tiles [:i, :j] are full (those at the edge: the pixels they have)."""
    _, hp, wp = masks.shape
    for b in numba.prange(masks.shape[0]):
        sat[b, 0, :] = 0
        for ti in range(sat.shape[1] - 1):
            row = 0
            sat[b, ti + 1, 0] = 0
            for tj in range(sat.shape[2] - 1):
                full = 1
                for i in range(ti * tile, min((ti + 1) * tile, hp)):
                    for j in range(tj * tile, min((tj + 1) * tile, wp)):
                        if masks[b, i, j] == 0:
                            full = 0
                            break
                    if full == 0:
                        break
                row += full
                sat[b, ti + 1, tj + 1] = sat[b, ti, tj + 1] + row


@numba.njit(cache=True, parallel=True)
def _blocks_of(inner, lo, s, side, shape):
    """The blocks of ``side`` voxels that hold the occupied ends ``inner`` (V, 3): (blocks (N, 3) int64
    in index order, (V,) block of each vertex, (V,) the vertices grouped by block, in order within
    each: a block's vertices then read the same few pixels of its views, which stay in cache)."""
    n = inner.shape[0]
    key = np.empty(n, np.int64)
    slot = np.full(shape[0] * shape[1] * shape[2] + 1, -1, np.int64)
    for k in numba.prange(n):
        key[k] = 0
        for a in range(3):  # centres sit at (index + 1/2) s
            c = min(max(int(np.floor((inner[k, a] - lo[a]) / s)) // side, 0), shape[a] - 1)
            key[k] = key[k] * shape[a] + c
        slot[key[k]] = 0  # (threads that meet here write the same value)
    count = 0
    for t in range(slot.shape[0] - 1):
        if slot[t] == 0:
            slot[t] = count
            count += 1
    blocks = np.empty((count, 3), np.int64)
    start = np.zeros(count + 1, np.int64)
    block_of = np.empty(n, np.int64)
    for k in numba.prange(n):
        block_of[k] = slot[key[k]]
    for t in range(slot.shape[0] - 1):
        if slot[t] >= 0:
            blocks[slot[t], 0] = t // (shape[1] * shape[2])
            blocks[slot[t], 1] = t // shape[2] % shape[1]
            blocks[slot[t], 2] = t % shape[2]
    for k in range(n):
        start[block_of[k] + 1] += 1
    for t in range(count):
        start[t + 1] += start[t]
    order = np.empty(n, np.int64)
    for k in range(n):
        order[start[block_of[k]]] = k
        start[block_of[k]] += 1
    return blocks, block_of, order


def vertex_views(inner, grid, P, padded):
    """Per vertex, the views that may reject a point of its edge: (views (N, B) int64, counts (N,)
    int64) per block of :data:`BLOCK_VOXELS` voxels that holds a vertex, the (V,) block of each
    vertex (the block of its edge's occupied voxel) and the (V,) vertices in block order."""
    lo, s = np.asarray(grid.lo, np.float64), float(grid.voxel_size)
    shape = -(-np.asarray(grid.shape, np.int64) // BLOCK_VOXELS)  # blocks a side: 1/512 of the voxels
    blocks, block_of, order = _blocks_of(inner, lo, s, BLOCK_VOXELS, shape)
    sat = np.empty((padded.shape[0], -(-padded.shape[1] // TILE) + 1, -(-padded.shape[2] // TILE) + 1), np.int32)
    _full_tiles(padded, TILE, sat)
    views = np.empty((len(blocks), len(P)), np.int64)
    counts = np.empty(len(blocks), np.int64)
    _block_views(blocks, lo, s, BLOCK_VOXELS, P, sat, TILE, padded.shape[1], padded.shape[2], views, counts)
    return views, counts, block_of, order


def deep_radius(inner, outer, P) -> int:
    """The neighbourhood radius (pixels) of the deep-interior test: large enough that the image of a
    typical edge (the median over a sample of edges and views) fits in it, at most
    :data:`MAX_DEEP_RADIUS`. Any radius is exact; this one lets the cheap test decide most views."""
    sample = slice(None, None, max(1, len(inner) // 256))
    a, b = inner[sample], outer[sample]
    ends = np.stack([np.einsum("vij,nj->vni", P[:, :, :3], x) + P[:, None, :, 3] for x in (a, b)])
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = ends[..., :2] / ends[..., 2:]
        extent = np.abs(uv[0] - uv[1]).max(axis=-1)
    extent = extent[np.isfinite(extent) & (ends[..., 2] > EPS_DEPTH).all(axis=0)]
    if not len(extent):
        return 1
    # an image of extent e covers at most floor(e) + 2 pixel columns of reads, which 2 radius + 1 holds
    return int(min(MAX_DEEP_RADIUS, max(1, np.ceil((np.median(extent) + 1.0) / 2.0))))


def deep_interior(padded, radius: int) -> np.ndarray:
    """(B, hp, wp) uint8: 1 where the (2 radius + 1)-square neighbourhood of the pixel in the padded
    mask is all object (pixels beyond the padded image count as background)."""
    import cv2

    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    deep = np.empty_like(padded)
    for b in range(len(padded)):
        cv2.erode(padded[b], kernel, dst=deep[b], borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return deep
