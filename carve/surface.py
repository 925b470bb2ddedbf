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


@numba.njit(cache=True, parallel=True)
def _bisect(inner, outer, P, masks, steps, out):
    """For each of the V segments inner[k] (in the hull) -> outer[k] (not), the crossing point, or the
    midpoint where the two ends do not bracket the surface at sub-pixel precision.

    The bisection tests only the views that reject the outer end: between two voxel centres the
    others would need a concavity finer than a voxel to reject a point. The crossing's inner point is
    then checked in every view, and where one rejects it, the bisection runs again in all of them."""
    n_views = masks.shape[0]
    every = np.arange(n_views)
    for k in numba.prange(inner.shape[0]):
        a = (inner[k, 0], inner[k, 1], inner[k, 2])
        b = (outer[k, 0], outer[k, 1], outer[k, 2])
        if _in_views(a[0], a[1], a[2], P, masks, every, n_views):
            rejecting = np.empty(n_views, np.int64)
            n = 0
            for v in range(n_views):
                if not _in_view(b[0], b[1], b[2], P, masks, v):
                    rejecting[n] = v
                    n += 1
            if n:
                lo, hi = _crossing(a, b, P, masks, rejecting, n, steps)
                if not _in_views(lo[0], lo[1], lo[2], P, masks, every, n_views):
                    lo, hi = _crossing(a, b, P, masks, every, n_views, steps)
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
    padded = np.empty((len(P), stack.shape[1] + 2, stack.shape[2] + 2), np.float32)
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


def _edge_ends(verts: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
    """The two voxel centres of each vertex's lattice edge: (occupied end (V, 3), empty end (V, 3))."""
    s = grid.voxel_size
    q = (verts - grid.lo) / s - 0.5  # lattice coordinates: integers but on the edge's axis (x.5)
    axis = np.argmax(np.abs(q - np.round(q)), axis=1)
    rows = np.arange(len(q))
    lower = np.round(q).astype(np.int64)
    lower[rows, axis] = np.floor(q[rows, axis]).astype(np.int64)
    upper = lower.copy()
    upper[rows, axis] += 1
    occ = grid.occupancy
    shape = np.array(occ.shape)

    def occupied(idx):
        ok = np.all((idx >= 0) & (idx < shape), axis=1)
        hit = np.zeros(len(idx), bool)
        hit[ok] = occ[idx[ok, 0], idx[ok, 1], idx[ok, 2]]
        return hit

    lower_in = occupied(lower)[:, None]
    inner = np.where(lower_in, lower, upper)
    outer = np.where(lower_in, upper, lower)
    return grid.lo + (inner + 0.5) * s, grid.lo + (outer + 0.5) * s
