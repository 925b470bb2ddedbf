"""Numba kernels of the carving engine: lookup tables, dense carving, coarse-to-fine (octree) carving.

Everything here is internal; :func:`carve.hull.carve` validates the inputs and calls in. The rule and
the order of the float64 projection are in :mod:`carve.hull.rule` (shared with the torch backend):
a centre behind the camera or whose pixel falls outside the image is "outside" the view, and the
view's ``outside`` policy decides (carve: the view rejects it; keep: the view ignores it). An inside
centre is rejected by a silhouette view when its pixel is background, and by a depth view when
``w < E[row, col]`` (E: the observed depth minus the margin, +inf or -inf where there is no depth).
A voxel is kept iff at most ``tolerance`` views reject it.

Coarse to fine: a box of voxels is classified per view from the pixel rectangle that bounds the
projections of its 8 extreme centres, widened by a rigorous floating-point margin; a summed-area table
(silhouettes) or min/max pyramids (depth maps) then tell whether every centre in the box is rejected,
accepted, or either ("mixed"). Views that accept or reject a box are not looked at again inside it.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

import geometry.parallel  # noqa: F401  (threading layer, before any parallel launch)
from carve.hull.rule import ACCEPT, EPS_DEPTH, MIXED, OCTREE_LEAF, REJECT, REL_ERROR, depth_pyramids, \
    error_bounds, top_block_size
from carve.runlength import from_blocks


# ------------------------------------------------------------------------------------------ tables
@njit(parallel=True, cache=True, fastmath=False)
def silhouette_tables(sil, sat, counts, values):  # pragma: no cover - compiled
    """One pass over the masks: summed-area tables, object-pixel counts and the values seen.

    sil: (B, H, W) uint8 (a bool array viewed as uint8 works); non-zero is object.
    sat: (B, H + 1, W + 1) int32 output, ``sat[b, r, c]`` = object pixels in rows < r, cols < c.
    counts: (B,) int64 output, object pixels per view.
    values: (B, 3) bool output: the view holds a 1, a 255, another non-zero value.
    """
    B, H, W = sil.shape
    for b in prange(B):
        has1 = False
        has255 = False
        other = False
        for c in range(W + 1):
            sat[b, 0, c] = 0
        for r in range(H):
            sat[b, r + 1, 0] = 0
            acc = 0
            for c in range(W):
                s = sil[b, r, c]
                if s != 0:
                    acc += 1
                    if s == 1:
                        has1 = True
                    elif s == 255:
                        has255 = True
                    else:
                        other = True
                sat[b, r + 1, c + 1] = sat[b, r, c + 1] + acc
        counts[b] = sat[b, H, W]
        values[b, 0] = has1
        values[b, 1] = has255
        values[b, 2] = other


# ------------------------------------------------------------------------------------- primitives
@njit(cache=True, fastmath=False, inline="always")
def _h(P, b, r, x, y, z):
    """Row r of ``P[b] @ [x, y, z, 1]`` in the engine's fixed order of operations."""
    return ((P[b, r, 0] * x + P[b, r, 1] * y) + P[b, r, 3]) + P[b, r, 2] * z


@njit(cache=True, fastmath=False, inline="always")
def _rejects_h(b, hu, hv, w, H, W, carve_b, sil, E, depth_mode):
    """True if view b rejects the centre whose homogeneous image coordinates are (hu, hv, w)."""
    if not w > EPS_DEPTH:
        return carve_b
    cu = hu / w + 0.5
    if not (cu >= 0.0 and cu < W):
        return carve_b
    cv = hv / w + 0.5
    if not (cv >= 0.0 and cv < H):
        return carve_b
    if depth_mode:
        return w < E[b, int(cv), int(cu)]
    return sil[b, int(cv), int(cu)] == 0


@njit(cache=True, fastmath=False, inline="always")
def _rejects(P, b, x, y, z, H, W, carve_b, sil, E, depth_mode):
    """True if view b rejects the centre (x, y, z)."""
    return _rejects_h(b, _h(P, b, 0, x, y, z), _h(P, b, 1, x, y, z), _h(P, b, 2, x, y, z), H, W, carve_b, sil,
                      E, depth_mode)


@njit(cache=True, fastmath=False)
def _classify_box(P, b, x0, x1, y0, y1, z0, z1, H, W, carve_b, sat, pmin, pmax, poff, pshape,
                  depth_mode, bnd):  # pragma: no cover - compiled
    """REJECT / ACCEPT / MIXED: what view b does to every point of the box [x0,x1]x[y0,y1]x[z0,z1].

    Conservative: REJECT (ACCEPT) only when the per-centre rule rejects (accepts) every float64 point
    of the box, whatever rounding the per-centre projection suffers.
    """
    outside_all = REJECT if carve_b else ACCEPT
    ew = REL_ERROR * bnd[b, 2]
    wmin = np.inf
    wmax = -np.inf
    for c in range(8):
        x = x1 if c & 1 else x0
        y = y1 if c & 2 else y0
        z = z1 if c & 4 else z0
        w = _h(P, b, 2, x, y, z)
        wmin = min(wmin, w)
        wmax = max(wmax, w)
    if wmax + 2.0 * ew <= EPS_DEPTH:
        return outside_all  # every point is at or behind the camera
    if wmin - 2.0 * ew <= EPS_DEPTH:
        return MIXED  # the box reaches the camera plane: its projection is unbounded
    # a second pass for (u, v): measured faster than one pass that also divides, since the exits
    # above skip the divisions for boxes behind or straddling the camera plane
    umin = np.inf
    umax = -np.inf
    vmin = np.inf
    vmax = -np.inf
    for c in range(8):
        x = x1 if c & 1 else x0
        y = y1 if c & 2 else y0
        z = z1 if c & 4 else z0
        w = _h(P, b, 2, x, y, z)
        u = _h(P, b, 0, x, y, z) / w
        v = _h(P, b, 1, x, y, z) / w
        umin = min(umin, u)
        umax = max(umax, u)
        vmin = min(vmin, v)
        vmax = max(vmax, v)
    # every centre's computed (u, v) lies within these margins of the corners' hull
    wlow = wmin - 2.0 * ew
    uabs = max(abs(umin), abs(umax))
    vabs = max(abs(vmin), abs(vmax))
    mu = 2.0 * REL_ERROR * (bnd[b, 0] + uabs * bnd[b, 2]) / wlow + REL_ERROR * uabs + 1e-9
    mv = 2.0 * REL_ERROR * (bnd[b, 1] + vabs * bnd[b, 2]) / wlow + REL_ERROR * vabs + 1e-9
    xlo = umin - mu + 0.5
    xhi = umax + mu + 0.5
    ylo = vmin - mv + 0.5
    yhi = vmax + mv + 0.5
    if xhi < 0.0 or xlo >= W or yhi < 0.0 or ylo >= H:
        return outside_all
    inside = xlo >= 0.0 and xhi < W and ylo >= 0.0 and yhi < H
    c0 = int(xlo) if xlo >= 0.0 else 0
    c1 = int(xhi) if xhi < W else W - 1
    r0 = int(ylo) if ylo >= 0.0 else 0
    r1 = int(yhi) if yhi < H else H - 1
    if depth_mode:
        lvl = 0
        while (r1 >> lvl) - (r0 >> lvl) > 1 or (c1 >> lvl) - (c0 >> lvl) > 1:
            lvl += 1
        off = poff[lvl]
        wl = pshape[lvl, 1]
        emin = np.inf
        emax = -np.inf
        for rr in range(r0 >> lvl, (r1 >> lvl) + 1):
            for cc in range(c0 >> lvl, (c1 >> lvl) + 1):
                emin = min(emin, pmin[b, off + rr * wl + cc])
                emax = max(emax, pmax[b, off + rr * wl + cc])
        none_kept = emin > wmax + 2.0 * ew  # every inside centre has w < E
        all_kept = emax <= wlow  # every inside centre has w >= E
    else:
        cnt = sat[b, r1 + 1, c1 + 1] - sat[b, r0, c1 + 1] - sat[b, r1 + 1, c0] + sat[b, r0, c0]
        none_kept = cnt == 0
        all_kept = cnt == (r1 - r0 + 1) * (c1 - c0 + 1)
    if none_kept:
        return REJECT if (carve_b or inside) else MIXED
    if all_kept:
        return ACCEPT if (inside or not carve_b) else MIXED
    return MIXED


# ------------------------------------------------------------------------------------------- dense
@njit(parallel=True, cache=True, fastmath=False)
def dense_kernel(P, xs, ys, zs, H, W, carve_out, tol, sil, E, depth_mode, occ):  # pragma: no cover
    """Every voxel, every view, early exit at the (tol + 1)-th rejecting view; writes occ (nx, ny, nz)."""
    B = P.shape[0]
    nx, ny, nz = xs.shape[0], ys.shape[0], zs.shape[0]
    for ij in prange(nx * ny):
        i = ij // ny
        j = ij - i * ny
        x = xs[i]
        y = ys[j]
        for k in range(nz):
            z = zs[k]
            n_rej = 0
            for b in range(B):
                if _rejects(P, b, x, y, z, H, W, carve_out[b], sil, E, depth_mode):
                    n_rej += 1
                    if n_rej > tol:
                        break
            occ[i, j, k] = n_rej <= tol


# ------------------------------------------------------------------------------------------ octree
@njit(parallel=True, cache=True, fastmath=False)
def octree_level(bi, bj, bk, rej, masks, size, leaf, xs, ys, zs, P, H, W, carve_out, tol, sil, E,
                 depth_mode, sat, pmin, pmax, poff, pshape, bnd, scratch, column, full, bits,
                 new_rej, new_masks, n_child):  # pragma: no cover - compiled
    """Decide the blocks of one level.

    Blocks: base voxel (bi, bj, bk) (n,) int32, side ``size`` voxels (clipped at the grid's end),
    ``rej`` (n,) views already known to reject the whole block, ``masks`` (n, ceil(B / 64)) uint64 the
    views still undecided for it. Empty blocks are dropped, full ones flagged in ``full`` (n,) uint8;
    at the leaf level (``leaf`` <= 4) the undecided blocks are evaluated centre by centre into
    ``bits`` (n,) uint64, voxel (i0 + a, j0 + b, k0 + c) at bit (4 a + b) 4 + c; above it they get
    ``n_child`` children (the octants that lie inside the grid), with ``new_rej`` / ``new_masks`` to
    pass down.
    ``scratch``: (threads, B) int32, each thread's list of undecided views; ``column``: (threads, B,
    3) float64, each thread's per-view partial projections of one column of a leaf block.
    """
    n = bi.shape[0]
    nw = masks.shape[1]
    nx, ny, nz = xs.shape[0], ys.shape[0], zs.shape[0]
    half = size // 2
    one = np.uint64(1)
    for t in prange(n):
        tid = numba.get_thread_id()
        i0 = bi[t]
        j0 = bj[t]
        k0 = bk[t]
        i1 = min(i0 + size, nx) - 1
        j1 = min(j0 + size, ny) - 1
        k1 = min(k0 + size, nz) - 1
        n_rej = rej[t]
        n_mixed = 0
        for wd in range(nw):
            new_masks[t, wd] = np.uint64(0)
        for wd in range(nw):
            m = masks[t, wd]
            bit = 0
            while m != 0 and n_rej <= tol:
                if m & one:
                    b = wd * 64 + bit
                    s = _classify_box(P, b, xs[i0], xs[i1], ys[j0], ys[j1], zs[k0], zs[k1], H, W,
                                      carve_out[b], sat, pmin, pmax, poff, pshape, depth_mode, bnd)
                    if s == REJECT:
                        n_rej += 1
                    elif s == MIXED:
                        new_masks[t, wd] |= one << np.uint64(bit)
                        scratch[tid, n_mixed] = b
                        n_mixed += 1
                m >>= one
                bit += 1
        new_rej[t] = n_rej
        n_child[t] = 0
        full[t] = 0
        bits[t] = np.uint64(0)
        if n_rej > tol:
            continue  # empty
        if n_rej + n_mixed <= tol:  # full: no centre can be rejected more than tol times
            full[t] = 1
            continue
        if size <= leaf:
            word = np.uint64(0)
            for i in range(i0, i1 + 1):
                x = xs[i]
                for j in range(j0, j1 + 1):
                    y = ys[j]
                    # (P0 x + P1 y) + P3 of each undecided view, shared along the column
                    for q in range(n_mixed):
                        b = scratch[tid, q]
                        for r in range(3):
                            column[tid, q, r] = (P[b, r, 0] * x + P[b, r, 1] * y) + P[b, r, 3]
                    for k in range(k0, k1 + 1):
                        z = zs[k]
                        cnt = n_rej
                        for q in range(n_mixed):
                            b = scratch[tid, q]
                            if _rejects_h(b, column[tid, q, 0] + P[b, 0, 2] * z, column[tid, q, 1] + P[b, 1, 2] * z,
                                          column[tid, q, 2] + P[b, 2, 2] * z, H, W, carve_out[b], sil, E,
                                          depth_mode):
                                cnt += 1
                                if cnt > tol:
                                    break
                        if cnt <= tol:
                            word |= one << np.uint64(((i - i0) * 4 + j - j0) * 4 + k - k0)
            bits[t] = word
            continue
        ci = 2 if i0 + half < nx else 1
        cj = 2 if j0 + half < ny else 1
        ck = 2 if k0 + half < nz else 1
        n_child[t] = ci * cj * ck


@njit(parallel=True, cache=True, fastmath=False)
def octree_split(bi, bj, bk, n_child, offsets, half, nx, ny, nz, new_rej, new_masks,
                 out_i, out_j, out_k, out_rej, out_masks):  # pragma: no cover - compiled
    """Write the children of the blocks with ``n_child > 0`` at ``offsets`` (exclusive prefix sum)."""
    nw = new_masks.shape[1]
    for t in prange(bi.shape[0]):
        if n_child[t] == 0:
            continue
        o = offsets[t]
        for di in range(2):
            ci = bi[t] + di * half
            if ci >= nx:
                continue
            for dj in range(2):
                cj = bj[t] + dj * half
                if cj >= ny:
                    continue
                for dk in range(2):
                    ck = bk[t] + dk * half
                    if ck >= nz:
                        continue
                    out_i[o] = ci
                    out_j[o] = cj
                    out_k[o] = ck
                    out_rej[o] = new_rej[t]
                    for wd in range(nw):
                        out_masks[o, wd] = new_masks[t, wd]
                    o += 1


#: cells a side of the blocks :func:`possible_cells` classifies first: a block that views reject (or
#: all accept) decides its 64 cells with one test per view; the others are tested cell by cell (4
#: measured 3-6x faster than cell by cell, and 1.5x faster than 8, on the bunny and rendered objects)
CELL_BLOCK = 4


@njit(parallel=True, cache=True, fastmath=False)
def possible_cells(P, ex, ey, ez, H, W, carve_out, tol, depth_mode, sat, pmin, pmax, poff, pshape,
                   bnd, block, scratch, out):  # pragma: no cover - compiled
    """out[i, j, k] = False where no point of cell [ex[i], ex[i+1]] x ... can survive the carving.

    Conservative per cell (not per centre): used to find a box that holds the hull at any resolution.
    Blocks of ``block`` cells a side are classified first; a view that rejects (accepts) a block rejects
    (accepts) each of its cells, whose pixel rectangles lie inside the block's, so only the views mixed
    on the block are asked again per cell: the same ``out`` as ``block=1``. ``scratch``: (threads, B) int32.
    """
    B = P.shape[0]
    nx, ny, nz = ex.shape[0] - 1, ey.shape[0] - 1, ez.shape[0] - 1
    mx, my, mz = (nx + block - 1) // block, (ny + block - 1) // block, (nz + block - 1) // block
    for t in prange(mx * my * mz):
        tid = numba.get_thread_id()
        i0 = (t // (my * mz)) * block
        j0 = ((t // mz) % my) * block
        k0 = (t % mz) * block
        i1 = min(i0 + block, nx)
        j1 = min(j0 + block, ny)
        k1 = min(k0 + block, nz)
        n_rej = 0
        n_mixed = 0
        for b in range(B):
            s = _classify_box(P, b, ex[i0], ex[i1], ey[j0], ey[j1], ez[k0], ez[k1], H, W, carve_out[b], sat,
                              pmin, pmax, poff, pshape, depth_mode, bnd)
            if s == REJECT:
                n_rej += 1
                if n_rej > tol:
                    break
            elif s == MIXED:
                scratch[tid, n_mixed] = b
                n_mixed += 1
        if n_rej > tol or n_rej + n_mixed <= tol:
            for i in range(i0, i1):
                for j in range(j0, j1):
                    for k in range(k0, k1):
                        out[i, j, k] = n_rej <= tol
            continue
        for i in range(i0, i1):
            for j in range(j0, j1):
                for k in range(k0, k1):
                    cnt = n_rej
                    for q in range(n_mixed):
                        b = scratch[tid, q]
                        s = _classify_box(P, b, ex[i], ex[i + 1], ey[j], ey[j + 1], ez[k], ez[k + 1], H, W,
                                          carve_out[b], sat, pmin, pmax, poff, pshape, depth_mode, bnd)
                        if s == REJECT:
                            cnt += 1
                            if cnt > tol:
                                break
                    out[i, j, k] = cnt <= tol


# ------------------------------------------------------------------------------------------ driver
class Tables:
    """The per-view lookup data of one carving call, in the layout the kernels take.

    Silhouette mode: ``sil`` (B, H, W) uint8 and ``sat`` (B, H+1, W+1) int32; depth mode: ``E``
    (B, H, W) float64 and its pyramids. The unused mode's arrays are 1-element placeholders.
    """

    def __init__(self, sil=None, sat=None, E=None, pyramids=None):
        self.depth_mode = E is not None
        self.sil = sil if sil is not None else np.zeros((1, 1, 1), np.uint8)
        self.sat = sat if sat is not None else np.zeros((1, 1, 1), np.int32)
        self.E = E if E is not None else np.zeros((1, 1, 1), np.float64)
        if pyramids is None:
            pyramids = (np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1, np.int64), np.ones((1, 2), np.int64))
        self.pmin, self.pmax, self.poff, self.pshape = pyramids
        src = self.E if self.depth_mode else self.sil
        self.H, self.W = int(src.shape[1]), int(src.shape[2])

    @classmethod
    def from_silhouettes(cls, sil_u8):
        """Tables of (B, H, W) uint8 masks; also returns the object-pixel counts and the values seen."""
        B, H, W = sil_u8.shape
        sat = np.empty((B, H + 1, W + 1), np.int32)
        counts = np.empty(B, np.int64)
        values = np.empty((B, 3), np.bool_)
        silhouette_tables(sil_u8, sat, counts, values)
        return cls(sil=sil_u8, sat=sat), counts, values

    @classmethod
    def from_depth(cls, E):
        return cls(E=E, pyramids=depth_pyramids(E))


def carve_dense(P, xs, ys, zs, tables, carve_out, tol):
    """Dense carving. P (B, 3, 4) float64; xs, ys, zs centre coordinates; returns occ (nx, ny, nz) bool."""
    occ = np.empty((len(xs), len(ys), len(zs)), np.bool_)
    dense_kernel(P, xs, ys, zs, tables.H, tables.W, carve_out, tol, tables.sil, tables.E,
                 tables.depth_mode, occ)
    return occ


def carve_octree(P, xs, ys, zs, tables, carve_out, tol, bnd, leaf=OCTREE_LEAF):
    """Coarse-to-fine carving, the same occupancy as :func:`carve_dense` voxel for voxel, as its
    run-length rows (:class:`carve.runlength.Runs`): no array of the lattice's size is made.

    bnd: (B, 3) :func:`error_bounds` of the grid's box. leaf: side of the blocks evaluated per centre
    (at most 4: a leaf's voxels are the bits of one word).
    """
    if not 1 <= leaf <= 4:
        raise ValueError(f"leaf must be 1 to 4 voxels (a leaf block is one 64-bit word), got {leaf}")
    nx, ny, nz = len(xs), len(ys), len(zs)
    B = P.shape[0]
    nw = (B + 63) // 64
    decided = []  # per level: (bi, bj, bk, full, bits, size)
    size = top_block_size((nx, ny, nz), leaf)
    gi, gj, gk = np.meshgrid(np.arange(0, nx, size, dtype=np.int32), np.arange(0, ny, size, dtype=np.int32),
                             np.arange(0, nz, size, dtype=np.int32), indexing="ij")
    bi, bj, bk = gi.ravel(), gj.ravel(), gk.ravel()
    rej = np.zeros(len(bi), np.int32)
    masks = np.zeros((len(bi), nw), np.uint64)
    for wd in range(nw):
        n_bits = min(64, B - 64 * wd)
        masks[:, wd] = np.uint64(2**64 - 1) if n_bits == 64 else np.uint64((1 << n_bits) - 1)
    scratch = np.empty((numba.get_num_threads(), B), np.int32)
    column = np.empty((numba.get_num_threads(), B, 3), np.float64)
    while len(bi):
        n = len(bi)
        new_rej = np.empty(n, np.int32)
        new_masks = np.empty((n, nw), np.uint64)
        n_child = np.empty(n, np.int64)
        full = np.empty(n, np.uint8)
        bits = np.empty(n, np.uint64)
        octree_level(bi, bj, bk, rej, masks, size, leaf, xs, ys, zs, P, tables.H, tables.W, carve_out, tol,
                     tables.sil, tables.E, tables.depth_mode, tables.sat, tables.pmin, tables.pmax,
                     tables.poff, tables.pshape, bnd, scratch, column, full, bits, new_rej, new_masks, n_child)
        keep = (full != 0) | (bits != 0)
        decided.append((bi[keep], bj[keep], bk[keep], full[keep], bits[keep], size))
        if size <= leaf:
            break
        ends = np.cumsum(n_child)
        total = int(ends[-1])
        half = size // 2
        out_i = np.empty(total, np.int32)
        out_j = np.empty(total, np.int32)
        out_k = np.empty(total, np.int32)
        out_rej = np.empty(total, np.int32)
        out_masks = np.empty((total, nw), np.uint64)
        octree_split(bi, bj, bk, n_child, ends - n_child, half, nx, ny, nz, new_rej, new_masks,
                     out_i, out_j, out_k, out_rej, out_masks)
        bi, bj, bk, rej, masks, size = out_i, out_j, out_k, out_rej, out_masks, half
    return from_blocks((nx, ny, nz), decided)


def carve_cells(P, ex, ey, ez, tables, carve_out, tol, bnd, block=CELL_BLOCK):
    """(len(ex) - 1, len(ey) - 1, len(ez) - 1) bool: cells that may hold a surviving point."""
    out = np.empty((len(ex) - 1, len(ey) - 1, len(ez) - 1), np.bool_)
    scratch = np.empty((numba.get_num_threads(), P.shape[0]), np.int32)
    possible_cells(P, ex, ey, ez, tables.H, tables.W, carve_out, tol, tables.depth_mode, tables.sat,
                   tables.pmin, tables.pmax, tables.poff, tables.pshape, bnd, block, scratch, out)
    return out


def warm_up():
    """Compile (or load from cache) every kernel on a tiny problem, so first real calls are not slow."""
    P = np.array([[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]]])
    sil = np.ones((1, 4, 4), np.uint8)
    xs = np.array([0.0, 1.0])
    tables, _, _ = Tables.from_silhouettes(sil)
    carve_out = np.ones(1, np.bool_)
    bnd = error_bounds(P, np.zeros(3), np.ones(3), 1.0)
    carve_dense(P, xs, xs, xs, tables, carve_out, 0)
    carve_octree(P, xs, xs, xs, tables, carve_out, 0, bnd, leaf=1)
    carve_cells(P, xs, xs, xs, tables, carve_out, 0, bnd)
    depth_tables = Tables.from_depth(np.zeros((1, 4, 4)))
    carve_dense(P, xs, xs, xs, depth_tables, carve_out, 0)
    carve_octree(P, xs, xs, xs, depth_tables, carve_out, 0, bnd, leaf=1)
