"""Numba kernels of space carving: per-view item buffers by ray marching, and the photo-consistency test.

Everything here is internal; :func:`carve.refine.space_carve` checks the inputs and calls in.

Item buffers: for every pixel of every view, the first occupied voxel along the ray through the
pixel's centre (Amanatides and Woo's voxel walk) and the depth ``t`` at which the ray enters it. The
ray is ``C + t R^T K^-1 [u, v, 1]``, whose camera-frame z is 1, so ``t`` is the camera-frame depth
(as in :mod:`data.renderer`). Carving only removes voxels, so when a pixel's voxel is carved its walk
resumes where it stopped: over a whole run each ray is walked about once, not once per sweep.

Photo-consistency of a voxel: in each view that sees it (its pixel's ray enters it within ``tol``
of its centre's depth, or the ray to the centre itself is free), the mean colour and spread of a
3 x 3 bilinear window as wide as the voxel's footprint, centred on the projection of the centre of
the voxel's exposed face (no occupied neighbour) that faces the view most. The views of each face
are tested alone: a view agrees when its colour is within ``tau_abs + tau_rel * spread`` of the
per-channel median over that face's views (after taking away the common offset of a view brighter
by at least ``highlight * tau_abs`` in every channel), and the face disagrees when fewer than
``quorum`` of them agree. The voxel is inconsistent when every face seen by at least ``min_views``
views disagrees, or, where no face is, when the views together disagree. The reasons for the
numbers are in :mod:`carve.refine.photo`.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

import geometry.parallel  # noqa: F401  (threading layer, before any parallel launch)
from geometry.projection import DEFAULT_EPS as EPS_DEPTH

#: item-buffer ids: a pixel whose ray has not been walked yet, and one whose ray hits nothing
UNTRACED, MISS = -2, -1


@njit(cache=True, fastmath=False)
def _walk(occ, nx, ny, nz, ox, oy, oz, dx, dy, dz, t_start):  # pragma: no cover - compiled
    """(t, flat index) where the ray ``o + t d`` (grid units) first enters an occupied voxel at t >= t_start,
    or (inf, MISS)."""
    t0 = t_start
    t1 = np.inf
    o = (ox, oy, oz)
    d = (dx, dy, dz)
    n = (nx, ny, nz)
    for a in range(3):
        if d[a] == 0.0:
            if o[a] < 0.0 or o[a] > n[a]:
                return np.inf, MISS
        else:
            ta = (0.0 - o[a]) / d[a]
            tb = (n[a] - o[a]) / d[a]
            if ta > tb:
                ta, tb = tb, ta
            t0 = max(t0, ta)
            t1 = min(t1, tb)
    if t0 >= t1:
        return np.inf, MISS
    px, py, pz = ox + t0 * dx, oy + t0 * dy, oz + t0 * dz
    i = min(max(int(np.floor(px)), 0), nx - 1)
    j = min(max(int(np.floor(py)), 0), ny - 1)
    k = min(max(int(np.floor(pz)), 0), nz - 1)
    si = 1 if dx > 0 else -1
    sj = 1 if dy > 0 else -1
    sk = 1 if dz > 0 else -1
    tmx = ((i + (dx > 0)) - ox) / dx if dx != 0.0 else np.inf
    tmy = ((j + (dy > 0)) - oy) / dy if dy != 0.0 else np.inf
    tmz = ((k + (dz > 0)) - oz) / dz if dz != 0.0 else np.inf
    tdx = abs(1.0 / dx) if dx != 0.0 else np.inf
    tdy = abs(1.0 / dy) if dy != 0.0 else np.inf
    tdz = abs(1.0 / dz) if dz != 0.0 else np.inf
    t = t0
    while True:
        flat = (i * ny + j) * nz + k
        if occ[flat]:
            return t, flat
        if tmx <= tmy and tmx <= tmz:
            t = tmx
            tmx += tdx
            i += si
            if i < 0 or i >= nx:
                return np.inf, MISS
        elif tmy <= tmz:
            t = tmy
            tmy += tdy
            j += sj
            if j < 0 or j >= ny:
                return np.inf, MISS
        else:
            t = tmz
            tmz += tdz
            k += sk
            if k < 0 or k >= nz:
                return np.inf, MISS


@njit(parallel=True, cache=True, fastmath=False)
def trace(occ, nx, ny, nz, lo, s, M, C, hit_t, hit_id, changed):  # pragma: no cover - compiled
    """Bring the item buffers up to date with ``occ`` after voxels were carved.

    occ: (nx * ny * nz,) uint8, flat occupancy (C order of [x, y, z]); lo (3,), s: the grid's corner
    and voxel size. M: (B, 3, 3) ``R^T K^-1`` (pixel to world ray direction); C: (B, 3) camera centres.
    hit_t: (B, H, W) float64 and hit_id: (B, H, W) int64, updated in place: pixels marked UNTRACED are
    walked from the camera, pixels whose voxel is no longer occupied resume from where they stopped.
    changed: (B, H, W) uint8 output, 1 where the pixel's voxel changed.
    """
    B, H, W = hit_id.shape
    for r in prange(B * H):
        b = r // H
        row = r - b * H
        cx = (C[b, 0] - lo[0]) / s
        cy = (C[b, 1] - lo[1]) / s
        cz = (C[b, 2] - lo[2]) / s
        for col in range(W):
            h = hit_id[b, row, col]
            if h == MISS or (h >= 0 and occ[h]):
                changed[b, row, col] = 0
                continue
            start = 0.0 if h == UNTRACED else hit_t[b, row, col]
            u = float(col)
            v = float(row)
            dx = (M[b, 0, 0] * u + M[b, 0, 1] * v + M[b, 0, 2]) / s
            dy = (M[b, 1, 0] * u + M[b, 1, 1] * v + M[b, 1, 2]) / s
            dz = (M[b, 2, 0] * u + M[b, 2, 1] * v + M[b, 2, 2]) / s
            t, flat = _walk(occ, nx, ny, nz, cx, cy, cz, dx, dy, dz, start)
            hit_t[b, row, col] = t
            hit_id[b, row, col] = flat
            changed[b, row, col] = 1


@njit(cache=True, fastmath=False)
def _bilinear(img, b, u, v, c):  # pragma: no cover - compiled
    """Channel c of view b at sub-pixel (u, v) (column, row), clamped to the image."""
    H = img.shape[1]
    W = img.shape[2]
    u = min(max(u, 0.0), W - 1.0)
    v = min(max(v, 0.0), H - 1.0)
    c0 = min(int(u), W - 2) if W > 1 else 0
    r0 = min(int(v), H - 2) if H > 1 else 0
    fu = u - c0
    fv = v - r0
    c1 = min(c0 + 1, W - 1)
    r1 = min(r0 + 1, H - 1)
    top = img[b, r0, c0, c] * (1 - fu) + img[b, r0, c1, c] * fu
    bottom = img[b, r1, c0, c] * (1 - fu) + img[b, r1, c1, c] * fu
    return top * (1 - fv) + bottom * fv


@njit(cache=True, fastmath=False)
def _median(values, n):  # pragma: no cover - compiled
    """Median of values[:n] (sorted in place; n >= 1)."""
    for a in range(1, n):
        x = values[a]
        b = a - 1
        while b >= 0 and values[b] > x:
            values[b + 1] = values[b]
            b -= 1
        values[b + 1] = x
    half = n // 2
    return values[half] if n % 2 else 0.5 * (values[half - 1] + values[half])


@njit(cache=True, fastmath=False)
def _disagree(sc, m, group, tau_abs, tau_rel, quorum, highlight):  # pragma: no cover - compiled
    """(views, whether fewer than ``quorum`` of them agree with their median colour) over the first m
    rows of sc (view colour 0..2, spread 3, work 4, face 5) whose face is ``group`` (-1: all). A view
    brighter than the median by at least ``highlight * tau_abs`` in every channel is compared after
    taking that common (white) offset away."""
    ref = np.empty(4)  # the median colour, then the median spread
    count = 0
    for c in range(4):
        count = 0
        for a in range(m):
            if group < 0 or sc[a, 5] == group:
                sc[count, 4] = sc[a, c]
                count += 1
        if count == 0:
            return 0, False
        ref[c] = _median(sc[:, 4], count)
    spread_median = ref[3]
    agree = 0
    for a in range(m):
        if group < 0 or sc[a, 5] == group:
            white = min(sc[a, 0] - ref[0], sc[a, 1] - ref[1], sc[a, 2] - ref[2])
            if white < highlight * tau_abs:
                white = 0.0
            dev = 0.0
            for c in range(3):
                dev = max(dev, abs(sc[a, c] - ref[c] - white))
            if dev <= tau_abs + tau_rel * max(sc[a, 3], spread_median):
                agree += 1
    return count, agree < quorum * count


@njit(cache=True, fastmath=False)
def _facing(exposed, dx, dy, dz):  # pragma: no cover - compiled
    """The exposed face (bit f of ``exposed``, faces -x, +x, -y, +y, -z, +z) whose outward normal is
    closest to the direction (dx, dy, dz) towards the camera; 6 when no face is exposed."""
    face = 6
    best = -np.inf
    for f in range(6):
        if exposed >> f & 1:
            d = dx if f < 2 else (dy if f < 4 else dz)
            d = d if f % 2 else -d
            if d > best:
                best = d
                face = f
    return face


@njit(parallel=True, cache=True, fastmath=False)
def consistency(cand, occ, nx, ny, nz, lo, s, P, C, focal, images, hit_t, tol, tau_abs, tau_rel, quorum, min_views,
                highlight, scratch, seen, inconsistent, color):  # pragma: no cover - compiled
    """Photo-consistency of the candidate voxels ``cand`` (N,) (flat indices) against the item buffers.

    P: (B, 3, 4) projection matrices; focal: (B,) mean focal length in pixels (the footprint's size);
    images: (B, H, W, 3) float32; hit_t: (B, H, W) the item buffers' depths; tol: depth tolerance
    (world units) for "in front"; tau_abs, tau_rel, min_views, highlight: the test (module docstring).
    scratch: (N, B, 6) float32 work space. Outputs: seen (N,) int32 views that see the voxel;
    inconsistent (N,) uint8; color (N, 3) float32, the median colour of those views (0 when none).
    """
    N = cand.shape[0]
    B, H, W = hit_t.shape
    for n in prange(N):
        flat = cand[n]
        i = flat // (ny * nz)
        j = (flat // nz) % ny
        k = flat % nz
        x = lo[0] + (i + 0.5) * s
        y = lo[1] + (j + 0.5) * s
        z = lo[2] + (k + 0.5) * s
        # bit f: face f (-x, +x, -y, +y, -z, +z) has no occupied neighbour
        exposed = ((i == 0 or occ[flat - ny * nz] == 0) | (i == nx - 1 or occ[flat + ny * nz] == 0) << 1
                   | (j == 0 or occ[flat - nz] == 0) << 2 | (j == ny - 1 or occ[flat + nz] == 0) << 3
                   | (k == 0 or occ[flat - 1] == 0) << 4 | (k == nz - 1 or occ[flat + 1] == 0) << 5)
        m = 0
        faces_seen = 0  # bit f: some view sees face f (6: none exposed)
        for b in range(B):
            w = P[b, 2, 0] * x + P[b, 2, 1] * y + P[b, 2, 3] + P[b, 2, 2] * z
            if w <= EPS_DEPTH:
                continue
            u = (P[b, 0, 0] * x + P[b, 0, 1] * y + P[b, 0, 3] + P[b, 0, 2] * z) / w
            v = (P[b, 1, 0] * x + P[b, 1, 1] * y + P[b, 1, 3] + P[b, 1, 2] * z) / w
            col = int(np.floor(u + 0.5))
            row = int(np.floor(v + 0.5))
            if col < 0 or col >= W or row < 0 or row >= H:
                continue
            ht = hit_t[b, row, col]
            if ht > w + tol:  # the pixel's ray passes beside the voxel: its colour is of what lies behind
                continue
            if ht < w - tol:  # something is in front along the pixel's ray: is the centre's own ray free?
                t, first = _walk(occ, nx, ny, nz, (C[b, 0] - lo[0]) / s, (C[b, 1] - lo[1]) / s, (C[b, 2] - lo[2]) / s,
                                 (x - C[b, 0]) / s, (y - C[b, 1]) / s, (z - C[b, 2]) / s, 0.0)
                if first != flat:
                    continue
            face = _facing(exposed, C[b, 0] - x, C[b, 1] - y, C[b, 2] - z)
            if face < 6:  # read the colour where the surface is, on that face, not half a voxel behind it
                fx, fy, fz = x, y, z
                half = 0.5 * s if face % 2 else -0.5 * s
                if face < 2:
                    fx += half
                elif face < 4:
                    fy += half
                else:
                    fz += half
                w = P[b, 2, 0] * fx + P[b, 2, 1] * fy + P[b, 2, 3] + P[b, 2, 2] * fz
                u = (P[b, 0, 0] * fx + P[b, 0, 1] * fy + P[b, 0, 3] + P[b, 0, 2] * fz) / w
                v = (P[b, 1, 0] * fx + P[b, 1, 1] * fy + P[b, 1, 3] + P[b, 1, 2] * fz) / w
            r = 0.5 * s * focal[b] / w  # half the voxel's footprint, pixels
            total = 0.0
            for c in range(3):
                acc = 0.0
                acc2 = 0.0
                for a in range(-1, 2):
                    for e in range(-1, 2):
                        val = _bilinear(images, b, u + a * r, v + e * r, c)
                        acc += val
                        acc2 += val * val
                mean = acc / 9.0
                scratch[n, m, c] = mean
                total += max(acc2 / 9.0 - mean * mean, 0.0)
            scratch[n, m, 3] = np.sqrt(total / 3.0)
            scratch[n, m, 5] = face
            faces_seen |= 1 << face
            m += 1
        seen[n] = m
        inconsistent[n] = 0
        if m == 0:
            for c in range(3):
                color[n, c] = 0.0
            continue
        for c in range(3):  # the median colour, also the reference the views are compared with
            for a in range(m):
                scratch[n, a, 4] = scratch[n, a, c]
            color[n, c] = _median(scratch[n, :, 4], m)
        if m < min_views:
            continue
        # each face's views alone where enough see it (a Lambertian face has one colour in all of
        # them, two faces of an edge need not); inconsistent when every such face disagrees, or,
        # where no face has enough views, when all the views together do
        faces = 0
        bad = 0
        for f in range(7):
            if not faces_seen >> f & 1:
                continue
            count, out = _disagree(scratch[n], m, f, tau_abs, tau_rel, quorum, highlight)
            if count >= min_views:
                faces += 1
                bad += out
        if faces:
            inconsistent[n] = bad == faces
        else:
            inconsistent[n] = _disagree(scratch[n], m, -1, tau_abs, tau_rel, quorum, highlight)[1]


def warm_up() -> None:
    """Compile (or load from cache) every kernel on a tiny problem."""
    occ = np.ones(8, np.uint8)
    lo = np.zeros(3)
    M = np.eye(3)[None].copy()
    C = np.array([[0.5, 0.5, -2.0]])
    hit_t = np.zeros((1, 2, 2))
    hit_id = np.full((1, 2, 2), UNTRACED, np.int64)
    changed = np.zeros((1, 2, 2), np.uint8)
    trace(occ, 2, 2, 2, lo, 1.0, M, C, hit_t, hit_id, changed)
    P = np.concatenate([np.eye(3), [[0.0], [0.0], [2.0]]], axis=1)[None]
    cand = np.arange(2, dtype=np.int64)
    consistency(cand, occ, 2, 2, 2, lo, 1.0, P, C, np.ones(1), np.zeros((1, 2, 2, 3), np.float32), hit_t, 1.0, 8.0, 1.0, 0.5, 3, 3.0,
                np.zeros((2, 1, 6), np.float32), np.zeros(2, np.int32), np.zeros(2, np.uint8),
                np.zeros((2, 3), np.float32))
