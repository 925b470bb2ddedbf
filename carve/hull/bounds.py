"""``bounds="auto"``: a box that holds every voxel the carving can keep, found from the data.

The cones through the silhouettes' (or depth maps') bounding rectangles give a first box by linear
programming; coarse carving with a per-cell test that is conservative for every point of a cell then
tightens it. Nothing here can cut the object, at any resolution.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from geometry.arrays import is_tensor

from carve.hull.rule import error_bounds

__all__ = ["AUTO_COARSE_RESOLUTION", "AUTO_FIRST_PASS_RESOLUTION", "UnboundedRegionError", "auto_bounds", "silhouette_cones", "depth_cones"]


class UnboundedRegionError(ValueError):
    """``bounds="auto"`` found no finite region that the constraining views (with the tolerance) pin down."""

#: cells along the longest side of the last coarse pass of ``bounds="auto"``: the box ends within one
#: such cell (plus the final margin) of the cells that may hold the object
AUTO_COARSE_RESOLUTION = 64
#: cells along the longest side of the first pass, which only cuts the loose corners of the cones' box:
#: 64x fewer cells than the last pass, and the last pass then tightens the box just as far
AUTO_FIRST_PASS_RESOLUTION = 16


def auto_bounds(P: np.ndarray, tables, cones: list, carve_out: np.ndarray, tol: int, resolution: int):
    """The box ``(lo, hi)`` of ``bounds="auto"``: one that holds every voxel the carving can keep.

    1. The region every constraining view sees: the bounding box of the intersection of the cones
       through the silhouettes' bounding rectangles (linear programs), over the views with
       outside="carve" (with tolerance k, the union of such boxes over subsets of views that every
       surviving point must lie in).
    2. That box is carved coarsely with a conservative per-cell test (a cell is dropped only if no
       point of it can survive), twice (:data:`AUTO_FIRST_PASS_RESOLUTION`, then
       :data:`AUTO_COARSE_RESOLUTION` cells a side), each time tightening the box around the cells
       that may hold the object.
    3. A margin of one final voxel is added on every side.

    The tests are conservative for every point of a cell, so the box cannot cut the object at any
    resolution.

    Args:
        P: (B, 3, 4) float64 projection matrices.
        tables: a callable returning the :class:`carve.hull.numba_kernels.Tables` of the views
            (called only when the cones leave a region to carve).
        cones: per view, (cmin, cmax, rmin, rmax, wmin): the pixel rectangle that can keep a centre
            and the smallest depth a kept centre has (or None), from :func:`silhouette_cones` or
            :func:`depth_cones`.
        carve_out: (B,) bool, the views with outside="carve". tol: the tolerance.
        resolution: voxels along the longest side of the final grid (sets the margin).

    Returns:
        lo, hi: (3,) float64; (None, None) when no point can survive the carving.
    """
    lo, hi = _cone_box(P, cones, carve_out, tol)
    if lo is None:
        return None, None
    from carve.hull.numba_kernels import carve_cells

    numba_tables = tables()
    carve_np = np.ascontiguousarray(carve_out, dtype=np.bool_)
    for cells_a_side in (AUTO_FIRST_PASS_RESOLUTION, AUTO_COARSE_RESOLUTION):
        size = float(np.max(hi - lo)) / cells_a_side
        n = np.maximum(np.ceil((hi - lo) / size - 1e-9).astype(np.int64), 1)
        edges = [lo[a] + np.arange(n[a] + 1) * size for a in range(3)]
        bnd = error_bounds(P, lo, lo + n * size, size)
        cells = carve_cells(P, *edges, numba_tables, carve_np, tol, bnd)
        if not cells.any():
            return None, None
        idx = [np.flatnonzero(cells.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
        lo = np.array([edges[a][idx[a][0]] for a in range(3)])
        hi = np.array([edges[a][idx[a][-1] + 1] for a in range(3)])
    extent = float(np.max(hi - lo))
    pad = extent / (resolution - 2) if resolution > 2 else 0.0
    return lo - pad, hi + pad


def silhouette_cones(sil) -> list:
    """Per view the bounding rectangle of the object pixels, (cmin, cmax, rmin, rmax, None).

    sil: (B, H, W) uint8 masks (array or tensor), each with an object pixel.

    Example:
        >>> sil = np.zeros((1, 4, 5), np.uint8); sil[0, 1:3, 2] = 1
        >>> [tuple(int(v) for v in cone[:4]) for cone in silhouette_cones(sil)]
        [(2, 2, 1, 2)]
    """
    if is_tensor(sil):
        cols = (sil != 0).any(1).cpu().numpy()
        rows = (sil != 0).any(2).cpu().numpy()
    else:
        cols = sil.any(axis=1)
        rows = sil.any(axis=2)
    cones = []
    for c, r in zip(cols, rows):
        ci, ri = np.flatnonzero(c), np.flatnonzero(r)
        cones.append((ci[0], ci[-1], ri[0], ri[-1], None))
    return cones


def depth_cones(valid: np.ndarray, E: np.ndarray, missing: str) -> list:
    """Per view: the rectangle of pixels that can keep a centre and the smallest depth a kept centre has.

    valid: (B, H, W) bool, pixels with a depth; E: (B, H, W) float64 effective depths; missing:
    "carve" (pixels without depth keep nothing) or "keep" (the whole image can keep a centre).

    Example:
        >>> E = np.full((1, 3, 4), np.inf); E[0, 1, 1:3] = 2.0
        >>> [(tuple(int(v) for v in c[:4]), c[4]) for c in depth_cones(np.isfinite(E), E, "carve")]
        [((1, 2, 1, 1), 2.0)]
    """
    cones = []
    H, W = valid.shape[1:]
    for v, e in zip(valid, E):
        if missing == "carve":
            ci, ri = np.flatnonzero(v.any(0)), np.flatnonzero(v.any(1))
            rect = (ci[0], ci[-1], ri[0], ri[-1])
        else:
            rect = (0, W - 1, 0, H - 1)
        low = float(np.min(e))
        cones.append(rect + ((low if np.isfinite(low) and low > 0 else None),))
    return cones


def _cone_constraints(P, cone):
    """Rows (g, g0) with g @ X + g0 >= 0 for every point the view can keep (the cone of its rectangle)."""
    cmin, cmax, rmin, rmax, wmin = cone
    slack = 1e-6
    p0, p1, p2 = P
    rows = [p2, p0 - (cmin - 0.5 - slack) * p2, (cmax + 0.5 + slack) * p2 - p0,
            p1 - (rmin - 0.5 - slack) * p2, (rmax + 0.5 + slack) * p2 - p1]
    if wmin is not None:
        rows.append(p2 - np.array([0, 0, 0, wmin * (1 - 1e-9)]))
    return np.array(rows)


def _lp_box(constraints):
    """Bounding box of {X : g @ X + g0 >= 0 for all rows}: (lo, hi), or 'empty', or 'unbounded'."""
    from scipy.optimize import linprog

    G = np.concatenate(constraints)
    G = G / np.linalg.norm(G[:, :3], axis=1, keepdims=True)
    A, b = -G[:, :3], G[:, 3]
    lo, hi = np.empty(3), np.empty(3)
    for axis in range(3):
        for sign, out in ((1.0, lo), (-1.0, hi)):
            c = np.zeros(3)
            c[axis] = sign
            res = linprog(c, A_ub=A, b_ub=b, bounds=[(None, None)] * 3, method="highs")
            if res.status == 2:
                return "empty"
            if res.status == 3 or not res.success:
                return "unbounded"
            out[axis] = res.x[axis]
    return lo, hi


def _cone_box(P, cones, carve_out, tol):
    """Bounding box of the points that at most ``tol`` of the constraining views can reject."""
    views = np.flatnonzero(carve_out)
    if len(views) - tol < 1:
        raise UnboundedRegionError("bounds='auto' needs views with outside='carve' to find the object, got "
                                   f"{len(views)} such views with tolerance={tol}; pass bounds=(lo, hi)")
    rows = {b: _cone_constraints(P[b], cones[b]) for b in views}
    if tol == 0:
        subsets = [tuple(views)]
    else:
        size = 3
        m = min(len(views), tol + size)
        if math.comb(m, m - tol) > 64:
            size, m = 2, min(len(views), tol + 2)
        chosen = _diverse_views(P, views, m)
        subsets = list(itertools.combinations(chosen, max(m - tol, 1)))
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for subset in subsets:
        box = _lp_box([rows[b] for b in subset])
        if isinstance(box, str) and box == "unbounded":
            raise UnboundedRegionError("bounds='auto' found no finite region seen by every constraining view (the views do "
                             "not surround the object, or too few carve with the tolerance); pass bounds=(lo, hi)")
        if isinstance(box, str):
            continue  # this subset of cones has no common point
        lo, hi = np.minimum(lo, box[0]), np.maximum(hi, box[1])
    if not np.all(lo < hi):
        return None, None
    pad = 1e-6 * float(np.max(hi - lo))
    return lo - pad, hi + pad


def _diverse_views(P, views, m):
    """m of ``views`` with viewing directions spread out (greedy farthest point on the sphere)."""
    axes = P[views, 2, :3] / np.linalg.norm(P[views, 2, :3], axis=1, keepdims=True)
    chosen = [0]
    while len(chosen) < m:
        sim = np.max(axes @ axes[chosen].T, axis=1)
        sim[chosen] = np.inf
        chosen.append(int(np.argmin(sim)))
    return [views[c] for c in chosen]
