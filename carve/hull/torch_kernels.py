"""torch kernels of the carving engine: the same rule and the same coarse-to-fine algorithm as
:mod:`carve.hull.numba_kernels`, on tensors of any device (CPU or CUDA, unchanged).

Everything here is internal; :func:`carve.hull.carve` validates the inputs and calls in. The
projection uses the engine's fixed float64 order of operations (see :mod:`carve.hull.rule`), as
separate elementwise ops (no matmul, no fused multiply-add), so both backends decide every centre,
ties included, identically. Work is chunked so memory stays bounded whatever the grid size.

The octree runs level by level over (block, undecided view) pairs: each level classifies every pair
from the summed-area tables (or depth pyramids), drops empty blocks, marks full ones in a per-level
block grid, and splits the rest; the leaf level tests the centres of the remaining blocks against
their undecided views only. Everything is tensor code on the tables' device. The summed-area tables
come from ``torch.cumsum`` (:meth:`Tables.from_silhouettes`), or ready-made (:meth:`Tables.from_sat`:
on a CPU the caller builds them with the Numba kernel, about 50x faster than ``torch.cumsum`` there).
"""
from __future__ import annotations

import numpy as np
import torch

from carve.hull.rule import ACCEPT, EPS_DEPTH, MIXED, OCTREE_LEAF, REJECT, REL_ERROR, top_block_size

# elements per temporary tensor: small enough to stay in cache on a CPU, large enough to fill a GPU
_CPU_CHUNK = 1 << 18
_GPU_CHUNK = 1 << 22


def _chunk(device) -> int:
    return _GPU_CHUNK if torch.device(device).type == "cuda" else _CPU_CHUNK


class Tables:
    """Per-view lookup data on one device.

    Silhouette mode: ``sil`` (B, H, W) uint8 and flat summed-area tables ``sat``; depth mode: ``E``
    (B, H, W) float64 and its min/max pyramids. :meth:`set_outside` then builds ``lookup``: the
    per-view image padded by one pixel whose border holds the view's outside policy (silhouettes: 0 =
    reject where the view carves, 1 otherwise; depth: +inf / -inf), flattened, so that a centre is
    tested with a single gather after clamping its pixel to the padded image.
    """

    def __init__(self, H, W, device, sil=None, sat=None, E=None, pyramids=None):
        self.H, self.W, self.device = int(H), int(W), torch.device(device)
        self.depth_mode = E is not None
        self.sil = sil  # (B, H, W) uint8
        self.sat = sat  # (B * (H + 1) * (W + 1),) int32
        self.E = E  # (B, H, W) float64
        self.lookup = None
        if pyramids is not None:
            pmin, pmax, poff, pshape = pyramids
            self.pmin = torch.as_tensor(pmin, device=device)
            self.pmax = torch.as_tensor(pmax, device=device)
            self.poff = torch.as_tensor(poff, device=device)
            self.pwidth = torch.as_tensor(pshape[:, 1], device=device)
            self.plevels = len(poff)

    @classmethod
    def from_silhouettes(cls, sil_u8, check_values=True):
        """Tables of (B, H, W) uint8 masks (non-zero = object) on their device, by ``torch.cumsum``.

        Returns the tables, the object-pixel counts (B,) and the values seen (B, 3) [a 1, a 255,
        another non-zero value] as numpy arrays, for the engine's validation; with
        ``check_values=False`` (bool input) the values are not looked at (all False).
        """
        B, H, W = sil_u8.shape
        obj = (sil_u8 != 0).to(torch.int32)
        sat = torch.zeros(B, H + 1, W + 1, dtype=torch.int32, device=sil_u8.device)
        sat[:, 1:, 1:] = obj.cumsum(2, dtype=torch.int32).cumsum(1, dtype=torch.int32)
        counts = sat[:, H, W].cpu().numpy().astype("int64")
        if check_values:
            values = torch.stack([(sil_u8 == 1).flatten(1).any(1), (sil_u8 == 255).flatten(1).any(1),
                                  ((sil_u8 - 2) < 253).flatten(1).any(1)], dim=1).cpu().numpy()
        else:
            values = np.zeros((B, 3), bool)
        return cls.from_sat(sil_u8, sat), counts, values

    @classmethod
    def from_sat(cls, sil_u8, sat):
        """Tables of (B, H, W) uint8 masks and their (B, H + 1, W + 1) int32 summed-area tables.

        ``sat[b, r, c]`` counts the object pixels in rows < r, cols < c (a tensor, or a numpy array
        whose memory is shared when the masks are on the CPU); it is moved to the masks' device.
        """
        B, H, W = sil_u8.shape
        sat = torch.as_tensor(sat).to(sil_u8.device)
        return cls(H, W, sil_u8.device, sil=sil_u8, sat=sat.reshape(-1))

    @classmethod
    def from_depth(cls, E, pyramids, device):
        """Tables of (B, H, W) float64 effective depth maps and their numpy pyramids."""
        B, H, W = E.shape
        E = torch.as_tensor(E, dtype=torch.float64, device=device)
        return cls(H, W, device, E=E, pyramids=pyramids)

    def set_outside(self, carve_out):
        """Build the padded lookup for the views' outside policy, carve_out: (B,) bool tensor."""
        src = self.E if self.depth_mode else self.sil
        B = src.shape[0]
        if self.depth_mode:
            border = torch.where(carve_out, float("inf"), float("-inf")).to(torch.float64)
        else:
            border = (~carve_out).to(torch.uint8)
        lookup = border[:, None, None].expand(B, self.H + 2, self.W + 2).clone()
        lookup[:, 1:-1, 1:-1] = src
        self.lookup = lookup.reshape(-1)
        return self


# ------------------------------------------------------------------------------------- primitives
def _columns(P):
    """(3, 4, B) contiguous: ``cols[r, c][view]`` gathers P[view, r, c] as a contiguous vector."""
    return P.permute(1, 2, 0).contiguous()


def _h(cols, r, view, x, y, z):
    """Row r of the projection in the engine's order: ((P0 * x + P1 * y) + P3) + P2 * z.

    cols: :func:`_columns` of P; view: an int or an int64 tensor broadcasting against x, y, z.
    """
    p = cols[r]
    return ((p[0][view] * x + p[1][view] * y) + p[3][view]) + p[2][view] * z


def _rejects_h(h0, h1, w, base, tables):
    """Bool tensor: the view rejects the centres of homogeneous coordinates (h0, h1, w).

    base: float64 flat offset of each element's view in ``tables.lookup`` (broadcasting, see
    :func:`_view_base`). A centre at or behind the camera, or off the image, lands on the padded
    border, which holds the view's policy. So does a non-finite pixel coordinate (an overflowing
    projection, inf / inf): NaN goes to -1 before the clamp, which keeps every index in range (on
    CUDA an out-of-range one is a device-side assert), as the Numba kernel's range test does. The
    pixel arithmetic stays in float64 (exact: every value is an integer far below 2**53) so that a
    single conversion makes the index.
    """
    H, W = tables.H, tables.W
    # NaN depth for centres at or behind the camera: one select, then NaN means "off the image"
    front_w = torch.where(w > EPS_DEPTH, w, float("nan"))
    cu = (h0 / front_w + 0.5).nan_to_num_(-1.0).clamp_(-1.0, float(W)).floor_()
    cv = (h1 / front_w + 0.5).nan_to_num_(-1.0).clamp_(-1.0, float(H)).floor_()
    value = tables.lookup[(cv.mul_(W + 2).add_(cu).add_(base)).to(torch.int64)]
    if tables.depth_mode:  # a NaN depth is behind the camera, as in the Numba kernel: -inf < border
        return torch.nan_to_num(w, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf")) < value
    return value == 0


def _view_base(view, tables):
    """Offset of pixel (-1, -1) of ``view`` in the padded lookup plus the (+1, +1) of the padding, float64."""
    base = view * ((tables.H + 2) * (tables.W + 2)) + (tables.W + 2) + 1
    return base.to(torch.float64) if torch.is_tensor(base) else float(base)


def _rejects(cols, view, x, y, z, tables):
    """Bool tensor: view ``view`` (int or tensor) rejects the centres (x, y, z), all broadcasting."""
    return _rejects_h(_h(cols, 0, view, x, y, z), _h(cols, 1, view, x, y, z), _h(cols, 2, view, x, y, z),
                      _view_base(view, tables), tables)


def _corner_h(cols, r, view, x01, y01, z01):
    """Row r of the projection of the 8 corners of m boxes, (m, 8), in the engine's order.

    x01, y01, z01: (m, 2) low and high coordinates; the products are shared between corners.
    """
    p = cols[r]
    a = p[0][view][:, None] * x01
    b = p[1][view][:, None] * y01
    c = p[2][view][:, None] * z01
    base = (a[:, :, None] + b[:, None, :]) + p[3][view][:, None, None]
    return (base[..., None] + c[:, None, None, :]).reshape(len(view), 8)


def _classify_boxes(cols, view, x01, y01, z01, tables, carve_out, bnd):
    """REJECT / ACCEPT / MIXED per (box, view) pair, as the Numba kernel ``_classify_box``.

    cols: :func:`_columns` of P; view: (m,) int64; x01, y01, z01: (m, 2) float64 low and high
    corner coordinates; returns (m,) int8.
    """
    device = view.device
    H, W = tables.H, tables.W
    w = _corner_h(cols, 2, view, x01, y01, z01)
    ew = REL_ERROR * bnd[view, 2]
    wmin = w.amin(1)
    wmax = w.amax(1)
    behind = wmax + 2.0 * ew <= EPS_DEPTH
    straddle = ~behind & (wmin - 2.0 * ew <= EPS_DEPTH)
    u = _corner_h(cols, 0, view, x01, y01, z01) / w
    v = _corner_h(cols, 1, view, x01, y01, z01) / w
    umin, umax = u.amin(1), u.amax(1)
    vmin, vmax = v.amin(1), v.amax(1)
    wlow = wmin - 2.0 * ew
    uabs = torch.maximum(umin.abs(), umax.abs())
    vabs = torch.maximum(vmin.abs(), vmax.abs())
    mu = 2.0 * REL_ERROR * (bnd[view, 0] + uabs * bnd[view, 2]) / wlow + REL_ERROR * uabs + 1e-9
    mv = 2.0 * REL_ERROR * (bnd[view, 1] + vabs * bnd[view, 2]) / wlow + REL_ERROR * vabs + 1e-9
    xlo = umin - mu + 0.5
    xhi = umax + mu + 0.5
    ylo = vmin - mv + 0.5
    yhi = vmax + mv + 0.5
    projected = ~behind & ~straddle
    out_all = behind | (projected & ((xhi < 0.0) | (xlo >= W) | (yhi < 0.0) | (ylo >= H)))
    query = projected & ~out_all
    inside = (xlo >= 0.0) & (xhi < W) & (ylo >= 0.0) & (yhi < H)
    zero = torch.zeros((), dtype=torch.float64, device=device)

    def pixel(value, size, nan):  # floor(value) clamped to [0, size - 1]; unused pairs -> 0
        # an overflowing projection gives NaN bounds: read as the widest rectangle (a low bound's
        # NaN as 0, a high one's as size - 1), as the Numba kernel's range tests do, so the result
        # stays conservative and every index provably in range (clamp alone lets NaN through)
        value = torch.where(query, value.nan_to_num(nan=nan), zero)
        return value.clamp(0.0, size - 1.0).floor().to(torch.int64)

    c0, c1, r0, r1 = pixel(xlo, W, 0.0), pixel(xhi, W, W - 1.0), pixel(ylo, H, 0.0), pixel(yhi, H, H - 1.0)
    if tables.depth_mode:
        lvl = torch.zeros_like(view)
        for _ in range(tables.plevels):
            wide = ((r1 >> lvl) - (r0 >> lvl) > 1) | ((c1 >> lvl) - (c0 >> lvl) > 1)
            if not bool(wide.any()):
                break
            lvl = lvl + wide.to(torch.int64)
        base = view * tables.pmin.shape[1] + tables.poff[lvl]
        wl = tables.pwidth[lvl]
        emin = torch.full_like(wmin, float("inf"))
        emax = torch.full_like(wmin, float("-inf"))
        flat_min, flat_max = tables.pmin.reshape(-1), tables.pmax.reshape(-1)
        for rr in (r0 >> lvl, r1 >> lvl):
            for cc in (c0 >> lvl, c1 >> lvl):
                idx = base + rr * wl + cc
                emin = torch.minimum(emin, flat_min[idx])
                emax = torch.maximum(emax, flat_max[idx])
        none_kept = emin > wmax + 2.0 * ew
        all_kept = emax <= wlow
    else:
        stride = (H + 1) * (W + 1)
        sat = tables.sat
        b0 = view * stride
        cnt = (sat[b0 + (r1 + 1) * (W + 1) + c1 + 1] - sat[b0 + r0 * (W + 1) + c1 + 1]
               - sat[b0 + (r1 + 1) * (W + 1) + c0] + sat[b0 + r0 * (W + 1) + c0])
        none_kept = cnt == 0
        all_kept = cnt == (r1 - r0 + 1) * (c1 - c0 + 1)
    carve_v = carve_out[view]
    status = torch.full_like(view, MIXED, dtype=torch.int8)
    status[query & none_kept & (carve_v | inside)] = REJECT
    status[query & ~none_kept & all_kept & (inside | ~carve_v)] = ACCEPT
    status[out_all] = torch.where(carve_v[out_all], REJECT, ACCEPT).to(torch.int8)
    return status


# ------------------------------------------------------------------------------------------- dense
def carve_dense(P, xs, ys, zs, tables, carve_out, tol):
    """Dense carving: (nx, ny, nz) bool tensor; a voxel leaves the candidate set at its (tol+1)-th rejection.

    P: (B, 3, 4) float64; xs, ys, zs: (n,) float64 centre coordinates; carve_out: (B,) bool; all on
    one device.
    """
    nx, ny, nz = len(xs), len(ys), len(zs)
    device = xs.device
    total = nx * ny * nz
    occ = torch.zeros(total, dtype=torch.bool, device=device)
    n_views = P.shape[0]
    cols = _columns(P)
    tables.set_outside(carve_out)
    chunk = _chunk(device) * 4
    for start in range(0, total, chunk):
        idx = torch.arange(start, min(start + chunk, total), device=device)
        x, y, z = xs[idx // (ny * nz)], ys[(idx // nz) % ny], zs[idx % nz]
        n_rej = torch.zeros(len(idx), dtype=torch.int32, device=device)
        for b in range(n_views):
            n_rej += _rejects(cols, b, x, y, z, tables).to(torch.int32)
            alive = n_rej <= tol
            if not bool(alive.all()):  # drop the voxels already carved
                idx, x, y, z, n_rej = idx[alive], x[alive], y[alive], z[alive], n_rej[alive]
            if len(idx) == 0:
                break
        occ[idx] = True
    return occ.reshape(nx, ny, nz)


# ------------------------------------------------------------------------------------------ octree
def carve_octree(P, xs, ys, zs, tables, carve_out, tol, bnd, leaf=OCTREE_LEAF, top=None):
    """Coarse-to-fine carving: the same (nx, ny, nz) bool occupancy as :func:`carve_dense`.

    bnd: (B, 3) float64 error bounds (:func:`carve.hull.rule.error_bounds`); leaf: side of the
    blocks tested centre by centre; top: side of the coarsest blocks (default: as the Numba backend).
    """
    device = xs.device
    nx, ny, nz = len(xs), len(ys), len(zs)
    n_views = P.shape[0]
    dims = torch.tensor([nx, ny, nz], device=device)
    size = top or top_block_size((nx, ny, nz), leaf)
    chunk = _chunk(device)
    cols = _columns(P)
    tables.set_outside(carve_out)

    grid_shape = [-(-n // size) for n in (nx, ny, nz)]
    gi, gj, gk = torch.meshgrid(*(torch.arange(g, device=device) * size for g in grid_shape), indexing="ij")
    base = torch.stack([gi.reshape(-1), gj.reshape(-1), gk.reshape(-1)], 1)  # (n, 3) block base voxels
    rej = torch.zeros(len(base), dtype=torch.int32, device=device)
    pair_block = torch.arange(len(base), device=device).repeat_interleave(n_views)  # undecided (block, view)
    pair_view = torch.arange(n_views, device=device).repeat(len(base))
    full_grid = torch.zeros(grid_shape, dtype=torch.bool, device=device)  # full blocks of this level
    occ = None

    while True:
        n = len(base)
        if n == 0:  # everything decided above the leaf level
            return _upsample(full_grid, size, (nx, ny, nz))
        top_idx = torch.minimum(base + size, dims) - 1
        status = torch.empty(len(pair_block), dtype=torch.int8, device=device)
        for s in range(0, len(pair_block), chunk):
            pb, pv = pair_block[s:s + chunk], pair_view[s:s + chunk]
            lo_i, hi_i = base[pb], top_idx[pb]
            x01 = torch.stack([xs[lo_i[:, 0]], xs[hi_i[:, 0]]], 1)
            y01 = torch.stack([ys[lo_i[:, 1]], ys[hi_i[:, 1]]], 1)
            z01 = torch.stack([zs[lo_i[:, 2]], zs[hi_i[:, 2]]], 1)
            status[s:s + chunk] = _classify_boxes(cols, pv, x01, y01, z01, tables, carve_out, bnd)
        rej = rej + torch.bincount(pair_block[status == REJECT], minlength=n).to(torch.int32)
        mixed = status == MIXED
        n_mixed = torch.bincount(pair_block[mixed], minlength=n).to(torch.int32)
        full = (rej <= tol) & (rej + n_mixed <= tol)
        split = (rej <= tol) & ~full
        cells = base[full] // size
        full_grid[cells[:, 0], cells[:, 1], cells[:, 2]] = True
        # undecided pairs of the blocks that go on, renumbered among those blocks
        keep_pair = mixed & split[pair_block]
        new_index = torch.cumsum(split, 0) - 1
        pair_block, pair_view = new_index[pair_block[keep_pair]], pair_view[keep_pair]
        base, rej = base[split], rej[split]

        if size <= leaf:
            occ = _upsample(full_grid, size, (nx, ny, nz))
            _evaluate_leaves(cols, xs, ys, zs, tables, tol, base, rej, pair_block, pair_view, size, occ, chunk)
            return occ
        half = size // 2
        full_grid = _upsample(full_grid, 2, [-(-n // half) for n in (nx, ny, nz)])
        # children: 8 octants per block, those starting inside the grid
        offsets = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], device=device) * half
        child = (base[:, None, :] + offsets[None]).reshape(-1, 3)
        inside = (child < dims).all(1)
        child_index = torch.cumsum(inside, 0) - 1
        base = child[inside]
        rej = rej.repeat_interleave(8)[inside]
        cp = (pair_block[:, None] * 8 + torch.arange(8, device=device)[None]).reshape(-1)
        cv = pair_view.repeat_interleave(8)
        ok = inside[cp]
        pair_block, pair_view = child_index[cp[ok]], cv[ok]
        size = half


def _upsample(grid, factor, shape):
    """Repeat every cell of a (a, b, c) bool grid ``factor`` times per axis, cropped to ``shape``."""
    for axis in range(3):
        grid = grid.repeat_interleave(factor, dim=axis).narrow(axis, 0, shape[axis])
    return grid.contiguous()


def _evaluate_leaves(cols, xs, ys, zs, tables, tol, base, rej, pair_block, pair_view, size, occ, chunk):
    """Test the centres of the undecided leaf blocks against their undecided views; set kept ones in occ.

    The centres of a block form a size^3 lattice, so each row of the projection is built from
    per-axis products shared along the lattice, in the engine's order ((P0 x + P1 y) + P3) + P2 z.
    """
    device = xs.device
    n = len(base)
    if n == 0:
        return
    nx, ny, nz = len(xs), len(ys), len(zs)
    r = torch.arange(size, device=device)
    counts = rej[:, None].repeat(1, size ** 3)  # (n, size^3) rejections so far
    step = max(1, chunk // size ** 3)
    for s in range(0, len(pair_block), step):
        pb, view = pair_block[s:s + step], pair_view[s:s + step]
        b = base[pb]
        # clipped blocks: out-of-grid offsets repeat the last voxel; they are dropped below
        x = xs[(b[:, 0:1] + r).clamp_(max=nx - 1)]
        y = ys[(b[:, 1:2] + r).clamp_(max=ny - 1)]
        z = zs[(b[:, 2:3] + r).clamp_(max=nz - 1)]
        h = []
        for row in range(3):
            p = cols[row]
            xy = ((p[0][view][:, None] * x)[:, :, None] + (p[1][view][:, None] * y)[:, None, :]) \
                + p[3][view][:, None, None]
            h.append(xy[..., None] + (p[2][view][:, None] * z)[:, None, None, :])
        vbase = _view_base(view, tables)[:, None, None, None]
        hit = _rejects_h(h[0], h[1], h[2], vbase, tables)
        counts.index_add_(0, pb, hit.reshape(len(pb), -1).to(counts.dtype))
    kept = counts <= tol
    blk, off = torch.nonzero(kept, as_tuple=True)
    vox = base[blk] + torch.stack([off // (size * size), (off // size) % size, off % size], 1)
    vox = vox[(vox[:, 0] < nx) & (vox[:, 1] < ny) & (vox[:, 2] < nz)]
    occ[vox[:, 0], vox[:, 1], vox[:, 2]] = True
