"""Numba kernel for fused projection: one pass over the points, K [R|T] folded into one 3x4 matrix.

Projection reads 12 bytes and writes about 13 per point, so it is memory-bound: the kernel keeps the
twelve matrix entries in registers, computes in float64 whatever the storage type, never builds a
homogeneous (N, 4) copy or an (N, 3) camera-frame intermediate, and is branch-free in its inner loop
(selects, one reciprocal) so that LLVM vectorises it; threads take chunks of points.
"""
import numpy as np
from numba import njit, prange

_CHUNK = 4096  # points per task: large enough to vectorise, small enough to balance two threads


@njit(parallel=True, cache=True, fastmath=False)
def project_kernel(points, P, width, height, eps, uv, depth, valid):  # pragma: no cover - compiled
    """points (Bp, N, C), Bp in {1, B}, C in {3, 4}; P (B, 3, 4) float64; fills uv, depth, valid.

    width <= 0 means the camera has no image bounds.
    """
    n_points = points.shape[1]
    homogeneous = points.shape[2] == 4
    bounded = width > 0
    u_max = width - 0.5
    v_max = height - 0.5
    n_chunks = (n_points + _CHUNK - 1) // _CHUNK
    for b in range(P.shape[0]):
        pb = 0 if points.shape[0] == 1 else b
        p00, p01, p02, p03 = P[b, 0, 0], P[b, 0, 1], P[b, 0, 2], P[b, 0, 3]
        p10, p11, p12, p13 = P[b, 1, 0], P[b, 1, 1], P[b, 1, 2], P[b, 1, 3]
        p20, p21, p22, p23 = P[b, 2, 0], P[b, 2, 1], P[b, 2, 2], P[b, 2, 3]
        for c in prange(n_chunks):
            for n in range(c * _CHUNK, min((c + 1) * _CHUNK, n_points)):
                x = np.float64(points[pb, n, 0])
                y = np.float64(points[pb, n, 1])
                z = np.float64(points[pb, n, 2])
                w = np.float64(points[pb, n, 3]) if homogeneous else 1.0
                hx = p00 * x + p01 * y + p02 * z + p03 * w
                hy = p10 * x + p11 * y + p12 * z + p13 * w
                hz = p20 * x + p21 * y + p22 * z + p23 * w
                d = hz
                if homogeneous:  # depth of X / w; a point at infinity (w = 0) has none: invalid
                    at_infinity = w == 0.0
                    d = 0.0 if at_infinity else hz / (1.0 if at_infinity else w)
                front = d > eps
                inv = 1.0 / (hz if front else 1.0)  # never divide by a depth at or behind the camera
                u = hx * inv if front else 0.0
                v = hy * inv if front else 0.0
                inside = (u >= -0.5) & (u < u_max) & (v >= -0.5) & (v < v_max)
                uv[b, n, 0] = u
                uv[b, n, 1] = v
                depth[b, n] = d
                valid[b, n] = front & (inside | (not bounded))
