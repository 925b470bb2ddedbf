"""Sub-voxel surfaces: marching-cubes vertices moved onto the visual hull's own surface.

Marching cubes on the binary occupancy puts every vertex at the midpoint of a lattice edge whose
one end (a voxel centre) is in the hull and whose other end is not, so the mesh sits on the voxel
lattice: its error scales with the voxel, not with the images. Following Mercier and Meneveaux
("Shape from silhouette: image pixels for marching cubes", WSCG 2005), each vertex is instead found
on its edge by bisection against the silhouettes: a point is in the hull when it is in front of
every camera and projects into every silhouette. The silhouettes are read at sub-pixel precision:
each mask is sampled bilinearly (pixel centres at integers) and a point is inside a view when the
sample is at least one half, which puts the contour midway between an object pixel's centre and a
background pixel's centre, as marching squares does. So vertices lie on the hull's true surface up
to the masks' own precision, and the mesh keeps the topology and faces of the binary surface.

Views whose silhouette touches the image border (the object leaves the frame) keep what lies
outside the image (``outside="keep"``), as in carving; the others carve it.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["BISECTION_STEPS", "snap_to_hull"]

#: halvings of each lattice edge: 2**-12 of a voxel, far below any mask's precision (a voxel is
#: rarely smaller than a tenth of a pixel), at a cost of 12 hull tests per vertex
BISECTION_STEPS = 12
#: depth below which a point counts as at or behind a camera (the carving rule's)
_EPS = 1e-9


@numba.njit(cache=True, inline="always")
def _in_view(x, y, z, P, masks, b):
    """True when (x, y, z) is in front of camera b and samples at least 1/2 in its padded mask."""
    _, hp, wp = masks.shape
    d = P[b, 2, 0] * x + P[b, 2, 1] * y + P[b, 2, 2] * z + P[b, 2, 3]
    if not d > _EPS:
        return False
    # +1: the masks carry a one-pixel border holding the view's outside policy
    u = (P[b, 0, 0] * x + P[b, 0, 1] * y + P[b, 0, 2] * z + P[b, 0, 3]) / d + 1.0
    v = (P[b, 1, 0] * x + P[b, 1, 1] * y + P[b, 1, 2] * z + P[b, 1, 3]) / d + 1.0
    u = min(max(u, 0.0), wp - 1.0)  # beyond the border: the border's value
    v = min(max(v, 0.0), hp - 1.0)
    if not (u == u and v == v):  # NaN (an overflowing projection): not inside
        return False
    i0 = min(int(v), hp - 2)
    j0 = min(int(u), wp - 2)
    fv = v - i0
    fu = u - j0
    top = masks[b, i0, j0] * (1.0 - fu) + masks[b, i0, j0 + 1] * fu
    bottom = masks[b, i0 + 1, j0] * (1.0 - fu) + masks[b, i0 + 1, j0 + 1] * fu
    return top * (1.0 - fv) + bottom * fv >= 0.5


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


@numba.njit(cache=True)
def _first_rejecting(x, y, z, P, masks, hint):
    """A view that rejects (x, y, z), tried from ``hint`` on (the last one found: neighbouring
    vertices tend to leave the hull through the same view), or -1 when every view holds it."""
    n_views = masks.shape[0]
    for i in range(n_views):
        v = (hint + i) % n_views
        if not _in_view(x, y, z, P, masks, v):
            return v
    return -1


@numba.njit(cache=True, parallel=True)
def _bisect(inner, outer, P, masks, steps, out):
    """For each of the V segments inner[k] (in the hull) -> outer[k] (not), the crossing point, or the
    midpoint where the bisection finds no point of the segment in the hull at sub-pixel precision.

    Between two voxel centres a point leaves the hull where it leaves the first of the views, and
    generically a view the outer end is outside of is left once. So the bisection runs against one
    view that rejects the outer end, and its inner point is then checked in every view: when all
    hold it, that view is left first and the point is the hull's. Where another rejects it (a
    concavity finer than a voxel), the bisection runs again in all views. That costs one pass over
    the views, not three (inner end, outer end, result) as testing every view at both ends would."""
    n_views = masks.shape[0]
    every = np.arange(n_views)
    n = inner.shape[0]
    chunk = 256  # vertices in a row of the surface: consecutive ones share their rejecting view
    for c in numba.prange((n + chunk - 1) // chunk):
        hint = 0
        one = np.empty(1, np.int64)
        for k in range(c * chunk, min(n, (c + 1) * chunk)):
            a = (inner[k, 0], inner[k, 1], inner[k, 2])
            b = (outer[k, 0], outer[k, 1], outer[k, 2])
            v = _first_rejecting(b[0], b[1], b[2], P, masks, hint)
            if v >= 0:
                hint = v
                one[0] = v
                lo, hi = _crossing(a, b, P, masks, one, 1, steps)
                if not _in_views(lo[0], lo[1], lo[2], P, masks, every, n_views):
                    if _in_views(a[0], a[1], a[2], P, masks, every, n_views):
                        lo, hi = _crossing(a, b, P, masks, every, n_views, steps)
                    else:  # the inner end is not in the hull at sub-pixel precision: no bracket
                        lo, hi = a, b
                a, b = lo, hi
            out[k, 0] = 0.5 * (a[0] + b[0])
            out[k, 1] = 0.5 * (a[1] + b[1])
            out[k, 2] = 0.5 * (a[2] + b[2])


def snap_to_hull(mesh, grid, masks, cameras, outside="auto", steps: int = BISECTION_STEPS):
    """Move the vertices of ``grid``'s marching-cubes surface onto the hull of ``masks`` seen by ``cameras``.

    Args:
        mesh: the ``trimesh.Trimesh`` from :func:`carve.mesh.voxel_surface` (``smooth=0``) of ``grid``:
            every vertex at the midpoint of a lattice edge between an occupied and an empty voxel.
        grid: the :class:`carve.grid.VoxelGrid` it was made from.
        masks: B (H, W) bool silhouettes (a (B, H, W) array or a list), the ones carved.
        cameras: the :class:`geometry.Camera` of the B views (their P is used as it is).
        outside: the carving's outside policy: "carve", "keep", "auto" (keep for views whose mask
            touches its border) or one of "carve"/"keep" per view.
        steps: bisection steps (each halves the interval; 12 reach 1/4096 voxel).

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
    P, stack = _views(masks, cameras)
    keep = _keeps_outside(outside, stack)
    # uint8, not float: the views' masks are read at random, a quarter of the bytes stays in cache
    padded = np.empty((len(P), stack.shape[1] + 2, stack.shape[2] + 2), np.uint8)
    for b in range(len(P)):  # the border holds what lies outside the image: kept (1) or carved (0)
        padded[b] = np.pad(stack[b], 1, constant_values=keep[b])
    inner, outer = _edge_ends(verts, grid)
    out = np.empty_like(verts)
    _bisect(inner, outer, np.ascontiguousarray(P, np.float64), padded, int(steps), out)
    return trimesh.Trimesh(vertices=out, faces=np.asarray(mesh.faces), process=False)


def _views(masks, cameras) -> tuple[np.ndarray, np.ndarray]:
    """(B, 3, 4) float64 projections and (B, H, W) bool masks, checked against each other."""
    from geometry import Camera

    if not isinstance(cameras, Camera):
        raise TypeError(f"cameras must be a geometry.Camera, got {type(cameras).__name__}")
    stack = np.asarray([np.asarray(m) for m in masks] if isinstance(masks, (list, tuple)) else masks)
    if stack.ndim != 3 or len(stack) != len(cameras) or stack.dtype not in (np.bool_, np.uint8):
        raise ValueError(f"masks must be {len(cameras)} (H, W) bool masks, one per camera, got "
                         f"{stack.dtype} of shape {stack.shape}")
    if cameras.has_size and stack.shape[1:] != (cameras.height, cameras.width):
        raise ValueError(f"masks must be {cameras.height} x {cameras.width} (H x W) like the cameras, got "
                         f"{stack.shape[1]} x {stack.shape[2]}")
    return np.ascontiguousarray(cameras.numpy().P, np.float64), stack > 0


def _keeps_outside(outside, stack: np.ndarray) -> np.ndarray:
    """(B,) bool: the views that keep what lies outside their image ("keep", or "auto" and the mask
    touches the image border: the object leaves the frame there)."""
    policies = [outside] * len(stack) if isinstance(outside, str) else list(outside)
    if len(policies) != len(stack) or any(p not in ("carve", "keep", "auto") for p in policies):
        raise ValueError(f"outside must be 'carve', 'keep', 'auto' or one of them per view ({len(stack)}), "
                         f"got {outside!r}")
    border = stack[:, [0, -1], :].any(axis=(1, 2)) | stack[:, :, [0, -1]].any(axis=(1, 2))
    return np.array([p == "keep" or (p == "auto" and bool(t)) for p, t in zip(policies, border)])


@numba.njit(cache=True, parallel=True)
def _edge_ends_kernel(verts, occ, lo, s, inner, outer):
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
        if not (0 <= i < nx and 0 <= j < ny and 0 <= m < nz and occ[i, j, m]):  # the upper end is the inner one
            i, j, m, di, dj, dm = i + di, j + dj, m + dm, -di, -dj, -dm
        inner[k, 0], inner[k, 1], inner[k, 2] = lo[0] + (i + 0.5) * s, lo[1] + (j + 0.5) * s, lo[2] + (m + 0.5) * s
        outer[k, 0] = lo[0] + (i + di + 0.5) * s
        outer[k, 1] = lo[1] + (j + dj + 0.5) * s
        outer[k, 2] = lo[2] + (m + dm + 0.5) * s


def _edge_ends(verts: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
    """The two voxel centres of each vertex's lattice edge: (occupied end (V, 3), empty end (V, 3))."""
    inner, outer = np.empty_like(verts), np.empty_like(verts)
    _edge_ends_kernel(verts, np.ascontiguousarray(grid.occupancy), np.asarray(grid.lo, np.float64),
                      float(grid.voxel_size), inner, outer)
    return inner, outer
