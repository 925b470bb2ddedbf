"""Numba kernel for fused projection: one pass over the points, K [R|T] folded into one 3x4 matrix.

Projection reads 12 bytes and writes about 13 per point, so it is memory-bound: the kernel keeps the
twelve matrix entries in registers, never builds a homogeneous (N, 4) copy or an (N, 3) camera-frame
intermediate, and is branch-free in its inner loop (selects, one reciprocal) so that LLVM vectorises
it; threads take chunks of points. Arithmetic is in the points' precision: P and the constants come in
the points' dtype, so float32 points run twice as many lanes per vector as float64 ones.
"""
import numpy as np
from numba import njit, prange

import geometry.parallel  # noqa: F401  (threading layer, before any parallel launch)

_CHUNK = 4096  # points per task: large enough to vectorise, small enough to balance the threads


def constants(dtype, width, height, eps):
    """(eps, u_max, v_max, -0.5, 0, 1, bounded) in ``dtype``: typed constants keep float32 math float32."""
    bounded = width is not None and width > 0
    return np.array([eps, (width or 0) - 0.5, (height or 0) - 0.5, -0.5, 0.0, 1.0, bounded], dtype)


@njit(parallel=True, cache=True, fastmath=False)
def project_kernel(points, P, consts, uv, depth, valid):  # pragma: no cover - compiled
    """points (Bp, N, C), Bp in {1, B}, C in {3, 4}; P (B, 3, 4) and consts in the points' dtype."""
    n_points = points.shape[1]
    homogeneous = points.shape[2] == 4
    eps, u_max, v_max, lo, zero, one = consts[0], consts[1], consts[2], consts[3], consts[4], consts[5]
    unbounded = consts[6] == zero
    n_chunks = (n_points + _CHUNK - 1) // _CHUNK
    for b in range(P.shape[0]):
        pb = 0 if points.shape[0] == 1 else b
        p00, p01, p02, p03 = P[b, 0, 0], P[b, 0, 1], P[b, 0, 2], P[b, 0, 3]
        p10, p11, p12, p13 = P[b, 1, 0], P[b, 1, 1], P[b, 1, 2], P[b, 1, 3]
        p20, p21, p22, p23 = P[b, 2, 0], P[b, 2, 1], P[b, 2, 2], P[b, 2, 3]
        for c in prange(n_chunks):
            for n in range(c * _CHUNK, min((c + 1) * _CHUNK, n_points)):
                x = points[pb, n, 0]
                y = points[pb, n, 1]
                z = points[pb, n, 2]
                w = points[pb, n, 3] if homogeneous else one
                hx = p00 * x + p01 * y + p02 * z + p03 * w
                hy = p10 * x + p11 * y + p12 * z + p13 * w
                hz = p20 * x + p21 * y + p22 * z + p23 * w
                d = hz
                if homogeneous:  # depth of X / w; a point at infinity (w = 0) has none: invalid
                    at_infinity = w == zero
                    d = zero if at_infinity else hz / (one if at_infinity else w)
                front = d > eps
                inv = one / (hz if front else one)  # never divide by a depth at or behind the camera
                u = hx * inv if front else zero
                v = hy * inv if front else zero
                inside = (u >= lo) & (u < u_max) & (v >= lo) & (v < v_max)
                uv[b, n, 0] = u
                uv[b, n, 1] = v
                depth[b, n] = d
                valid[b, n] = front & (inside | unbounded)
