"""Sub-voxel surfaces: marching-cubes vertices moved onto the visual hull's own surface.

Marching cubes on the binary occupancy puts every vertex at the midpoint of a lattice edge whose
one end (a voxel centre) is in the hull and whose other end is not, so the mesh sits on the voxel
lattice: its error scales with the voxel, not with the images. Following Mercier and Meneveaux
("Shape from silhouette: image pixels for marching cubes", WSCG 2005), each vertex is instead found
on its edge where the edge first leaves the hull, solved against the silhouettes: a point is in the
hull when it is in front of every camera and projects into every silhouette. The silhouettes are
read at sub-pixel precision: each mask is sampled bilinearly (pixel centres at integers) and a point
is inside a view when the sample is at least one half, which puts the contour midway between an
object pixel's centre and a background pixel's centre, as marching squares does. So vertices lie on the hull's true surface up
to the masks' own precision, and the mesh keeps the topology and faces of the binary surface.

Views whose silhouette touches the image border (the object leaves the frame) keep what lies
outside the image (``outside="keep"``), as in carving; the others carve it.
"""
from __future__ import annotations

import numba
import numpy as np

from carve.nearby_views import EPS_DEPTH, deep_interior, deep_radius, holds_edge, vertex_views

__all__ = ["BISECTION_STEPS", "snap_to_hull"]

#: precision of each vertex on its lattice edge, as halvings: 2**-12 of a voxel, far below any mask's
#: precision (a voxel is rarely smaller than a tenth of a pixel); each view's exit is solved exactly,
#: so this bounds only the bisection where the image plane cannot tell (an end behind a camera)
BISECTION_STEPS = 12


@numba.njit(cache=True, inline="always")
def _sample(masks, b, u, v):
    """Mask b read bilinearly at (u, v) in padded pixel coordinates, within [0, W+1] x [0, H+1]."""
    _, hp, wp = masks.shape
    i0 = min(int(v), hp - 2)
    j0 = min(int(u), wp - 2)
    fv = v - i0
    fu = u - j0
    top = masks[b, i0, j0] * (1.0 - fu) + masks[b, i0, j0 + 1] * fu
    bottom = masks[b, i0 + 1, j0] * (1.0 - fu) + masks[b, i0 + 1, j0 + 1] * fu
    return top * (1.0 - fv) + bottom * fv


@numba.njit(cache=True, inline="always")
def _in_view(x, y, z, P, masks, b):
    """True when (x, y, z) is in front of camera b and samples at least 1/2 in its padded mask."""
    _, hp, wp = masks.shape
    d = P[b, 2, 0] * x + P[b, 2, 1] * y + P[b, 2, 2] * z + P[b, 2, 3]
    if not d > EPS_DEPTH:
        return False
    # +1: the masks carry a one-pixel border holding the view's outside policy
    u = (P[b, 0, 0] * x + P[b, 0, 1] * y + P[b, 0, 2] * z + P[b, 0, 3]) / d + 1.0
    v = (P[b, 1, 0] * x + P[b, 1, 1] * y + P[b, 1, 2] * z + P[b, 1, 3]) / d + 1.0
    u = min(max(u, 0.0), wp - 1.0)  # beyond the border: the border's value
    v = min(max(v, 0.0), hp - 1.0)
    if not (u == u and v == v):  # NaN (an overflowing projection): not inside
        return False
    return _sample(masks, b, u, v) >= 0.5


@numba.njit(cache=True)
def _cell_root(c00, c01, c10, c11, fu0, fv0, du, dv, s0, s1):
    """The s in [s0, s1] where the bilinear patch (corners c00 c01 / c10 c11) is 1/2 along the line
    (fu0 + s du, fv0 + s dv), given that it is >= 1/2 at s0 and < 1/2 at s1: a quadratic in s."""
    e = c00 - c01 - c10 + c11
    a2 = e * du * dv
    a1 = (c01 - c00) * du + (c10 - c00) * dv + e * (fu0 * dv + fv0 * du)
    a0 = c00 + (c01 - c00) * fu0 + (c10 - c00) * fv0 + e * fu0 * fv0 - 0.5
    if a2 != 0.0:  # the root of a2 s^2 + a1 s + a0 in [s0, s1], in the form that loses no digits
        disc = a1 * a1 - 4.0 * a2 * a0
        if disc >= 0.0:
            q = -0.5 * (a1 + np.sqrt(disc) if a1 >= 0.0 else a1 - np.sqrt(disc))
            for r in (q / a2, a0 / q if q != 0.0 else np.inf):
                if s0 <= r <= s1:
                    return r
    elif a1 != 0.0:
        r = -a0 / a1
        if s0 <= r <= s1:
            return r
    for _ in range(60):  # rounding put the root a hair outside: bisect the polynomial (registers only)
        m = 0.5 * (s0 + s1)
        if m <= s0 or m >= s1:
            break
        if (a2 * m + a1) * m + a0 >= 0.0:
            s0 = m
        else:
            s1 = m
    return 0.5 * (s0 + s1)


@numba.njit(cache=True)
def _exit_in_view(a, b, P, masks, view):
    """Where the segment a -> b first leaves view's silhouette: its parameter t in [0, 1] (exact,
    cell by cell of the bilinear mask along the segment's image), -1 when a is not inside the view,
    or -2 when the image plane cannot tell (an end behind the camera or beyond the padded image)."""
    _, hp, wp = masks.shape
    wa = P[view, 2, 0] * a[0] + P[view, 2, 1] * a[1] + P[view, 2, 2] * a[2] + P[view, 2, 3]
    wb = P[view, 2, 0] * b[0] + P[view, 2, 1] * b[1] + P[view, 2, 2] * b[2] + P[view, 2, 3]
    if not (wa > EPS_DEPTH and wb > EPS_DEPTH):
        return -2.0
    ua = (P[view, 0, 0] * a[0] + P[view, 0, 1] * a[1] + P[view, 0, 2] * a[2] + P[view, 0, 3]) / wa + 1.0
    va = (P[view, 1, 0] * a[0] + P[view, 1, 1] * a[1] + P[view, 1, 2] * a[2] + P[view, 1, 3]) / wa + 1.0
    ub = (P[view, 0, 0] * b[0] + P[view, 0, 1] * b[1] + P[view, 0, 2] * b[2] + P[view, 0, 3]) / wb + 1.0
    vb = (P[view, 1, 0] * b[0] + P[view, 1, 1] * b[1] + P[view, 1, 2] * b[2] + P[view, 1, 3]) / wb + 1.0
    if not (0.0 <= ua <= wp - 1.0 and 0.0 <= ub <= wp - 1.0 and 0.0 <= va <= hp - 1.0 and 0.0 <= vb <= hp - 1.0):
        return -2.0  # (also NaN) clamped reads are not bilinear along the line
    if _sample(masks, view, ua, va) < 0.5:
        return -1.0
    du, dv = ub - ua, vb - va
    i, j = min(int(va), hp - 2), min(int(ua), wp - 2)
    s = 0.0
    while True:  # the cells between pixel centres that the image of the segment crosses, in order
        su = (j + 1 - ua) / du if du > 0 else ((j - ua) / du if du < 0 else np.inf)
        sv = (i + 1 - va) / dv if dv > 0 else ((i - va) / dv if dv < 0 else np.inf)
        s1 = min(su, sv, 1.0)
        c00, c01 = float(masks[view, i, j]), float(masks[view, i, j + 1])
        c10, c11 = float(masks[view, i + 1, j]), float(masks[view, i + 1, j + 1])
        fu0, fv0 = ua - j, va - i
        fu, fv = fu0 + s1 * du, fv0 + s1 * dv
        if (c00 * (1 - fu) + c01 * fu) * (1 - fv) + (c10 * (1 - fu) + c11 * fu) * fv < 0.5:
            s = _cell_root(c00, c01, c10, c11, fu0, fv0, du, dv, s, s1)
            return s * wa / ((1.0 - s) * wb + s * wa)  # the image's s back to the segment's t
        if s1 >= 1.0:
            return 1.0  # in this view's bilinear mask all along (b's rejection was at its 1/2 exactly)
        if su <= sv:
            j += 1 if du > 0 else -1
        else:
            i += 1 if dv > 0 else -1
        if not (0 <= i <= hp - 2 and 0 <= j <= wp - 2):
            return 1.0
        s = s1


@numba.njit(cache=True, inline="always")
def _in_views(x, y, z, P, masks, views, n):
    """True when (x, y, z) is inside each of the first n views of ``views``."""
    for i in range(n):
        if not _in_view(x, y, z, P, masks, views[i]):
            return False
    return True


@numba.njit(cache=True)
def _crossing(a, b, P, masks, views, n, steps):
    """Bisect from a (inside) to b (outside) against the first n views of ``views``: the final bracket."""
    ax, ay, az = a
    bx, by, bz = b
    for _ in range(steps):
        mx, my, mz = 0.5 * (ax + bx), 0.5 * (ay + by), 0.5 * (az + bz)
        if _in_views(mx, my, mz, P, masks, views, n):
            ax, ay, az = mx, my, mz
        else:
            bx, by, bz = mx, my, mz
    return (ax, ay, az), (bx, by, bz)


#: vertices per parallel task of the snap: each task has its own list of the views it solves
SNAP_CHUNK = 1024


@numba.njit(cache=True, parallel=True)
def _snap_vertices(inner, outer, P, masks, deep, radius, steps, views, counts, block_of, order, out):
    """For each of the V segments inner[k] (in the hull) -> outer[k] (not), the point where it first
    leaves the hull, or the midpoint where no point of the segment is in the hull at sub-pixel precision
    (or no view rejects the outer end there either).

    A segment leaves the hull where it first leaves one of the views. Each view's first exit is solved
    exactly (along the segment's image the bilinear mask is a quadratic in each pixel cell) and the
    earliest is the hull's, also where a view is left and entered again within the edge (a concavity
    finer than a voxel). Only the views of the vertex's block are asked,
    ``views[block_of[k], :counts[block_of[k]]]``: the others hold the whole edge; of those, a view
    that :func:`carve.nearby_views.holds_edge` (``deep``, ``radius``) has no exit either, and is left
    out of every later test of a point of the edge too. Where the image plane cannot tell (an end
    behind a camera or beyond the padded image) the edge is bisected in the views left instead,
    ``steps`` halvings. The vertices are visited in ``order`` (block by block)."""
    n = inner.shape[0]
    half = 0.5 ** (steps + 1)
    for chunk in numba.prange((n + SNAP_CHUNK - 1) // SNAP_CHUNK):
        todo = np.empty(views.shape[1], np.int64)  # the views of a vertex that do not hold its edge
        for i in range(chunk * SNAP_CHUNK, min(n, (chunk + 1) * SNAP_CHUNK)):
            k = order[i]
            a = (inner[k, 0], inner[k, 1], inner[k, 2])
            b = (outer[k, 0], outer[k, 1], outer[k, 2])
            mine, n_mine = views[block_of[k]], counts[block_of[k]]
            first = 1.0  # the earliest exit of the views that hold the inner end; 1: none before the outer end
            solvable = steps > 0
            inside = True  # whether every view holds the inner end
            m = 0
            for q in range(n_mine):
                if not solvable:  # (the views after one that cannot tell are bisected, not solved)
                    todo[m] = mine[q]
                    m += 1
                    continue
                if holds_edge(a, b, P, deep, radius, mine[q]):
                    continue
                todo[m] = mine[q]
                m += 1
                t = _exit_in_view(a, b, P, masks, mine[q])
                if t == -2.0:
                    solvable = False
                elif t == -1.0:
                    inside = False
                else:
                    first = min(first, t)
            lo, hi = a, b
            t0, t1 = max(first - half, 0.0), min(first + half, 1.0)  # the bracket bisection would reach
            if solvable and (first < 1.0 or not _in_views(b[0], b[1], b[2], P, masks, todo, m)):
                lo = (a[0] + t0 * (b[0] - a[0]), a[1] + t0 * (b[1] - a[1]), a[2] + t0 * (b[2] - a[2]))
                hi = (a[0] + t1 * (b[0] - a[0]), a[1] + t1 * (b[1] - a[1]), a[2] + t1 * (b[2] - a[2]))
                # with the inner end outside a view (kept by the carving's nearest pixel), the edge may
                # enter that view further on: the earliest exit counts where the hull holds the point
                if not inside and not _in_views(lo[0], lo[1], lo[2], P, masks, todo, m):
                    lo, hi = a, b
            elif not solvable and steps > 0 and _in_views(a[0], a[1], a[2], P, masks, todo, m):
                if not _in_views(b[0], b[1], b[2], P, masks, todo, m):
                    lo, hi = _crossing(a, b, P, masks, todo, m, steps)
            out[k, 0] = 0.5 * (lo[0] + hi[0])
            out[k, 1] = 0.5 * (lo[1] + hi[1])
            out[k, 2] = 0.5 * (lo[2] + hi[2])


def snap_to_hull(mesh, grid, masks, cameras, outside="auto", steps: int = BISECTION_STEPS, occupied_axis=None):
    """Move the vertices of ``grid``'s marching-cubes surface onto the hull of ``masks`` seen by ``cameras``.

    Args:
        mesh: the ``trimesh.Trimesh`` from :func:`carve.mesh.voxel_surface` (``smooth=0``) of ``grid``:
            every vertex at the midpoint of a lattice edge between an occupied and an empty voxel.
        grid: the :class:`carve.grid.VoxelGrid` it was made from.
        masks: B (H, W) bool silhouettes (a (B, H, W) array or a list), the ones carved.
        cameras: the :class:`geometry.Camera` of the B views (their P is used as it is).
        outside: the carving's outside policy: "carve", "keep", "auto" (keep for views whose mask
            touches its border) or one of "carve"/"keep" per view.
        steps: the precision, as halvings of the edge (12: 1/4096 voxel); 0 leaves the lattice midpoints.
        occupied_axis: optional (V,) int8 axis from each vertex to its edge's occupied voxel (1, 2, 3 for
            +x, +y, +z, negative the other way), as :func:`carve.mesh.lattice_surface` returns it;
            without it the edge ends are looked up in ``grid.occupancy``.

    Returns:
        a new ``trimesh.Trimesh`` with the same faces and the moved (V, 3) vertices.

    Example:
        >>> import data, carve
        >>> views = data.synthetic("sphere", views=12, size=(96, 72))
        >>> grid = carve.carve(views.silhouettes, views.cameras, resolution=16, bounds="auto")
        >>> coarse = grid.to_mesh(smooth=0)
        >>> fine = snap_to_hull(coarse, grid, views.silhouettes, views.cameras)
        >>> def error(mesh):  # the sphere's radius is 0.8: mean distance of the vertices to it
        ...     return np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.8).mean()
        >>> bool(error(fine) < 0.5 * error(coarse))
        True
    """
    import trimesh

    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 0 <= steps <= 52:
        raise ValueError(f"steps must be an integer in [0, 52] (float64 has 52 bits to halve), got {steps!r}")
    verts = np.asarray(mesh.vertices, np.float64)
    if not len(verts):
        return trimesh.Trimesh()
    P, padded = _padded_masks(masks, cameras, outside)
    inner, outer = _edge_ends(verts, grid, occupied_axis)
    views, counts, block_of, order = vertex_views(inner, grid, P, padded)
    radius = deep_radius(inner, outer, P)
    deep = deep_interior(padded, radius)
    out = np.empty_like(verts)
    _snap_vertices(inner, outer, P, padded, deep, radius, int(steps), views, counts, block_of, order, out)
    return trimesh.Trimesh(vertices=out, faces=np.asarray(mesh.faces), process=False)


def _padded_masks(masks, cameras, outside) -> tuple[np.ndarray, np.ndarray]:
    """(B, 3, 4) float64 projections and the (B, H + 2, W + 2) uint8 masks (1: object) with a one-pixel
    border that holds what lies outside each image: kept (1) where the view keeps it ("keep", or
    "auto" and the mask touches its border: the object leaves the frame there), else carved (0).
    uint8, not float: the masks are read at random, and a quarter of the bytes stays in cache."""
    from geometry import Camera

    if not isinstance(cameras, Camera):
        raise TypeError(f"cameras must be a geometry.Camera, got {type(cameras).__name__}")
    views = [np.asarray(m) for m in masks] if isinstance(masks, (list, tuple)) else np.asarray(masks)
    shapes = {m.shape for m in views}
    dtypes = {m.dtype for m in views}
    if len(views) != len(cameras) or len(shapes) != 1 or len(next(iter(shapes))) != 2 \
            or not dtypes <= {np.dtype(np.bool_), np.dtype(np.uint8)}:
        got = np.shape(views) if len(shapes) == 1 else f"{len(views)} masks of shapes {sorted(shapes)}"
        raise ValueError(f"masks must be {len(cameras)} (H, W) bool masks, one per camera, got "
                         f"{', '.join(str(d) for d in dtypes) or 'nothing'} of shape {got}")
    H, W = next(iter(shapes))
    if cameras.has_size and (H, W) != (cameras.height, cameras.width):
        raise ValueError(f"masks must be {cameras.height} x {cameras.width} (H x W) like the cameras, got {H} x {W}")
    policies = [outside] * len(views) if isinstance(outside, str) else list(outside)
    if len(policies) != len(views) or any(p not in ("carve", "keep", "auto") for p in policies):
        raise ValueError(f"outside must be 'carve', 'keep', 'auto' or one of them per view ({len(views)}), "
                         f"got {outside!r}")
    padded = np.empty((len(views), H + 2, W + 2), np.uint8)
    for b, (mask, policy) in enumerate(zip(views, policies)):
        inside = padded[b, 1:-1, 1:-1]
        if mask.dtype == np.bool_:
            inside[...] = mask.view(np.uint8)
        else:
            np.not_equal(mask, 0, out=inside, casting="unsafe")
        leaves = bool(inside[[0, -1]].any() or inside[:, [0, -1]].any())
        keep = policy == "keep" or (policy == "auto" and leaves)
        padded[b, [0, -1], :] = keep
        padded[b, :, [0, -1]] = keep
    return np.ascontiguousarray(cameras.numpy().P, np.float64), padded


@numba.njit(cache=True, parallel=True)
def _edge_ends_kernel(verts, axis, occ, lo, s, inner, outer):
    """The voxel centres at both ends of each vertex's lattice edge, the occupied one first: from
    ``axis`` (see :func:`snap_to_hull`) when it is not empty, else from the occupancy."""
    nx, ny, nz = occ.shape
    for k in numba.prange(verts.shape[0]):
        # lattice coordinates: integers but on the edge's axis, where the vertex is at a half
        qx = (verts[k, 0] - lo[0]) / s - 0.5
        qy = (verts[k, 1] - lo[1]) / s - 0.5
        qz = (verts[k, 2] - lo[2]) / s - 0.5
        dx, dy, dz = abs(qx - np.round(qx)), abs(qy - np.round(qy)), abs(qz - np.round(qz))
        i, j, m = int(np.round(qx)), int(np.round(qy)), int(np.round(qz))
        di = dj = dm = 0
        if dx >= dy and dx >= dz:
            i, di = int(np.floor(qx)), 1
        elif dy >= dz:
            j, dj = int(np.floor(qy)), 1
        else:
            m, dm = int(np.floor(qz)), 1
        if axis.shape[0]:
            upper = axis[k] > 0  # the occupied end lies up the edge's axis
        else:
            upper = not (0 <= i < nx and 0 <= j < ny and 0 <= m < nz and occ[i, j, m])
        if upper:
            i, j, m, di, dj, dm = i + di, j + dj, m + dm, -di, -dj, -dm
        inner[k, 0], inner[k, 1], inner[k, 2] = lo[0] + (i + 0.5) * s, lo[1] + (j + 0.5) * s, lo[2] + (m + 0.5) * s
        outer[k, 0] = lo[0] + (i + di + 0.5) * s
        outer[k, 1] = lo[1] + (j + dj + 0.5) * s
        outer[k, 2] = lo[2] + (m + dm + 0.5) * s


def _edge_ends(verts: np.ndarray, grid, occupied_axis=None) -> tuple[np.ndarray, np.ndarray]:
    """The two voxel centres of each vertex's lattice edge: (occupied end (V, 3), empty end (V, 3))."""
    inner, outer = np.empty_like(verts), np.empty_like(verts)
    if occupied_axis is None:
        axis, occ = np.zeros(0, np.int8), np.ascontiguousarray(grid.occupancy)
    else:
        axis = np.asarray(occupied_axis)
        if axis.shape != (len(verts),) or axis.dtype.kind not in "iu" or not np.isin(axis, (-3, -2, -1, 1, 2, 3)).all():
            raise ValueError(f"occupied_axis must be one of -3 .. -1, 1 .. 3 per vertex ({len(verts)}), got "
                             f"{axis.dtype} of shape {axis.shape}")
        axis, occ = axis.astype(np.int8), np.zeros((0, 0, 0), np.bool_)
    _edge_ends_kernel(verts, axis, occ, np.asarray(grid.lo, np.float64), float(grid.voxel_size), inner, outer)
    return inner, outer
