"""Numba kernel for fused projection: one pass over the points, K [R|T] folded into one 3x4 matrix.

Projection reads 12 bytes and writes about 13 per point, so it is memory-bound: the kernel keeps the
twelve matrix entries in registers, never builds a homogeneous (N, 4) copy or an (N, 3) camera-frame
intermediate, and is branch-free in its inner loop (selects, one reciprocal) so that LLVM vectorises
it; threads take chunks of points. Arithmetic is in the points' precision: P and the constants come in
the points' dtype, so float32 points run twice as many lanes per vector as float64 ones.

What vectorisation needs here (each was measured to block it): every inner loop indexes flat views
that start at 0 (a loop from a run-time start keeps Numba's negative-index wraparound, a gather), the
(N, 3) and (N, 4) layouts get a loop each (a conditional load of w does not vectorise), and the
"numpy" error model (no ZeroDivisionError branch on the reciprocal).
"""
import numpy as np
from numba import njit, prange

import geometry.parallel  # noqa: F401  (threading layer, before any parallel launch)

_CHUNK = 4096  # points per task: large enough to vectorise, small enough to balance the threads


def constants(dtype, width, height, eps):
    """(eps, u_max, v_max, -0.5, 0, 1, bounded, inf) in ``dtype``: typed constants keep float32 math float32."""
    bounded = width is not None and width > 0
    return np.array([eps, (width or 0) - 0.5, (height or 0) - 0.5, -0.5, 0.0, 1.0, bounded, np.inf], dtype)


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _project_point(x, y, z, w, p, consts, homogeneous):  # pragma: no cover - compiled
    """(u, v, depth, valid) of one point (x, y, z, w); p: the 12 entries of P, row-major.

    Non-finite results (NaN or inf points, or finite ones whose arithmetic overflows) are invalid
    and come back as uv = 0 and, for a non-finite depth, depth = 0: every output is finite.
    """
    eps, u_max, v_max, lo, zero, one, bounded, inf = consts
    hx = p[0] * x + p[1] * y + p[2] * z + p[3] * w
    hy = p[4] * x + p[5] * y + p[6] * z + p[7] * w
    hz = p[8] * x + p[9] * y + p[10] * z + p[11] * w
    d = hz
    if homogeneous:  # depth of X / w; a point at infinity (w = 0) has none: invalid
        at_infinity = w == zero
        d = zero if at_infinity else hz / (one if at_infinity else w)
    inv = one / (hz if d > eps else one)  # never divide by a depth at or behind the camera
    u = hx * inv
    v = hy * inv
    # |x| < inf is False for NaN and +-inf alike. A non-finite input always reaches u or v
    # (inf * 0 and inf - inf are NaN), so this also catches NaN / inf points.
    finite_d = abs(d) < inf
    ok = (d > eps) & finite_d & (abs(u) < inf) & (abs(v) < inf)
    u = u if ok else zero
    v = v if ok else zero
    inside = (u >= lo) & (u < u_max) & (v >= lo) & (v < v_max)
    return u, v, (d if finite_d else zero), ok & (inside | (bounded == zero))


@njit(parallel=True, cache=True, fastmath=False, error_model="numpy")
def project_kernel(points, P, consts, uv, depth, valid):  # pragma: no cover - compiled
    """points (Bp, N, C), Bp in {1, B}, C in {3, 4}; P (B, 3, 4) and consts in the points' dtype.

    All arrays C-contiguous; writes uv (B, N, 2), depth (B, N), valid (B, N) (see :func:`_project_point`).
    """
    n_points, cols = points.shape[1], points.shape[2]
    homogeneous = cols == 4
    k = (consts[0], consts[1], consts[2], consts[3], consts[4], consts[5], consts[6], consts[7])
    one = consts[5]
    n_chunks = (n_points + _CHUNK - 1) // _CHUNK
    for b in range(P.shape[0]):
        pts = points[0 if points.shape[0] == 1 else b].reshape(-1)
        uvb = uv[b].reshape(-1)
        p = (P[b, 0, 0], P[b, 0, 1], P[b, 0, 2], P[b, 0, 3], P[b, 1, 0], P[b, 1, 1], P[b, 1, 2], P[b, 1, 3],
             P[b, 2, 0], P[b, 2, 1], P[b, 2, 2], P[b, 2, 3])
        for c in prange(n_chunks):
            start = c * _CHUNK
            stop = min(start + _CHUNK, n_points)
            pc, uc = pts[cols * start:cols * stop], uvb[2 * start:2 * stop]
            dc, vc = depth[b, start:stop], valid[b, start:stop]
            if homogeneous:
                for n in range(stop - start):
                    u, v, d, ok = _project_point(pc[4 * n], pc[4 * n + 1], pc[4 * n + 2], pc[4 * n + 3], p, k, True)
                    uc[2 * n], uc[2 * n + 1], dc[n], vc[n] = u, v, d, ok
            else:
                for n in range(stop - start):
                    u, v, d, ok = _project_point(pc[3 * n], pc[3 * n + 1], pc[3 * n + 2], one, p, k, False)
                    uc[2 * n], uc[2 * n + 1], dc[n], vc[n] = u, v, d, ok
