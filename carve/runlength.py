"""Run-length rows of a binary occupancy: the sparse form that topology repair and meshing share.

A (nx, ny, nz) occupancy is held as its *toggles*: for each (x, y) row, the z positions where it
switches between empty and occupied. The rows are padded by an empty layer all around (row
``r = X * NY + Y`` with ``X = x + 1`` in [0, nx + 1], ``NY = ny + 2``) and so are the positions (a
toggle at ``Z = z + 1`` says voxels z - 1 and z differ), so every row starts and ends empty and
its toggles come in pairs: occupied runs ``[toggles[2 q], toggles[2 q + 1])`` in padded units.

Reading a dense occupancy into this form is the only pass over the lattice, and it skips eight
equal bytes at a time; everything after costs in proportion to the surface (the toggles) plus the
rows (1/nz of the lattice). :func:`combine` computes a row's runs from its neighbours' (erosion,
dilation, differences), :func:`covers` tests one position.
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

__all__ = ["Runs", "occupancy_runs", "from_blocks", "combine", "covers", "csr", "packed"]


class Runs(NamedTuple):
    """The run-length form of an occupancy (see the module notes).

    Attributes:
        shape: (nx, ny, nz) of the occupancy.
        start: ((nx + 2) * (ny + 2) + 1,) int64 offsets: row r's toggles are toggles[start[r]:start[r + 1]].
        toggles: (T,) int32 padded z positions, increasing within a row, an even number per row.
    """

    shape: tuple
    start: np.ndarray
    toggles: np.ndarray

    def count(self) -> int:
        """Number of occupied voxels."""
        t = self.toggles.astype(np.int64)
        return int(t[1::2].sum() - t[0::2].sum())

    def to_occupancy(self) -> np.ndarray:
        """The (nx, ny, nz) bool occupancy."""
        nx, ny, nz = self.shape
        occ = np.zeros(self.shape, np.bool_)
        _fill(self.start, self.toggles, nx, ny, occ)
        return occ


# words of 8 equal bool bytes; uint64 on both sides (a mixed int64 comparison goes through float64
# and misses a lone differing byte)
_EIGHT_ONES = np.uint64(0x0101010101010101)
_EIGHT_ZEROS = np.uint64(0)


@numba.njit(cache=True, inline="always")
def _row_scan(flat, words, begin, n, out, at):
    """Toggles of the n bools flat[begin:begin + n] (padded Z: a toggle at the end closes an
    occupied run); written to out[at:] when out is not empty. Returns their number.

    words is the same buffer as uint64: a word of 8 equal bytes that continues the state is skipped
    whole, so runs cost an eighth."""
    state = 0
    count = 0
    z = 0
    while z < n:
        p = begin + z
        if p % 8 == 0 and z + 8 <= n:
            w = words[p // 8]
            if w == (_EIGHT_ONES if state else _EIGHT_ZEROS):
                z += 8
                continue
        v = 1 if flat[p] else 0
        if v != state:
            if out.shape[0]:
                out[at + count] = z + 1
            count += 1
            state = v
        z += 1
    if state:
        if out.shape[0]:
            out[at + count] = n + 1
        count += 1
    return count


@numba.njit(cache=True, parallel=True)
def _toggle_counts(flat, words, nx, ny, nz):
    """(NX * NY,) toggles per padded row of the (nx, ny, nz) occupancy ``flat`` (C order)."""
    NY = ny + 2
    counts = np.zeros((nx + 2) * NY, np.int64)
    none = np.empty(0, np.int32)
    for x in numba.prange(nx):
        for y in range(ny):
            counts[(x + 1) * NY + y + 1] = _row_scan(flat, words, (x * ny + y) * nz, nz, none, 0)
    return counts


@numba.njit(cache=True, parallel=True)
def _toggle_fill(flat, words, nx, ny, nz, start, tz):
    NY = ny + 2
    for x in numba.prange(nx):
        for y in range(ny):
            _row_scan(flat, words, (x * ny + y) * nz, nz, tz, start[(x + 1) * NY + y + 1])


@numba.njit(cache=True, parallel=True)
def _fill(start, tz, nx, ny, occ):
    NY = ny + 2
    for x in numba.prange(nx):
        for y in range(ny):
            r = (x + 1) * NY + y + 1
            for q in range(start[r], start[r + 1], 2):
                occ[x, y, tz[q] - 1:tz[q + 1] - 1] = True


def csr(counts: np.ndarray) -> np.ndarray:
    """(n + 1,) offsets of n consecutive blocks of the given sizes."""
    start = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=start[1:])
    return start


@numba.njit(cache=True, parallel=True)
def _pack(roomy, room, written, start, out):
    n = written.shape[0]
    step = max(1, int(np.sqrt(n)))  # a task per band of rows
    for chunk in numba.prange((n + step - 1) // step):
        for r in range(chunk * step, min(n, (chunk + 1) * step)):
            for t in range(written[r]):
                for c in range(out.shape[1]):
                    out[start[r] + t, c] = roomy[room[r] + t, c]


def packed(roomy: np.ndarray, room: np.ndarray, written: np.ndarray) -> np.ndarray:
    """The items of n rows written with room to spare, packed: row r wrote ``written[r]`` items
    (leading-axis entries) of ``roomy`` from ``room[r]`` ((n + 1,) offsets); they come out one row
    after the other. One pass that writes into room, then this, costs less than one pass that counts
    and another that writes."""
    out = np.empty((int(written.sum()),) + roomy.shape[1:], roomy.dtype)
    if len(out):
        width = int(np.prod(roomy.shape[1:]))  # items as rows of scalars
        _pack(roomy.reshape(len(roomy), width), room, written, csr(written), out.reshape(len(out), width))
    return out


def occupancy_runs(occupancy: np.ndarray) -> Runs:
    """The :class:`Runs` of a (nx, ny, nz) bool occupancy: one pass over it, 8 voxels at a time inside runs.

    Example:
        >>> occ = np.zeros((2, 2, 5), bool); occ[0, 1, 1:3] = True; occ[0, 1, 4] = True
        >>> runs = occupancy_runs(occ)
        >>> runs.toggles.tolist(), runs.count(), bool((runs.to_occupancy() == occ).all())
        ([2, 4, 5, 6], 3, True)
    """
    occ = np.asarray(occupancy)
    if occ.ndim != 3 or occ.dtype != np.bool_:
        raise ValueError(f"occupancy must be an (nx, ny, nz) bool array, got {occ.dtype} of shape {occ.shape}")
    occ = np.ascontiguousarray(occ)
    nx, ny, nz = occ.shape
    flat = occ.reshape(-1)
    words = flat[: flat.size // 8 * 8].view(np.uint64) if flat.size >= 8 else np.zeros(1, np.uint64)
    start = csr(_toggle_counts(flat, words, nx, ny, nz))
    toggles = np.empty(start[-1], np.int32)
    _toggle_fill(flat, words, nx, ny, nz, start, toggles)
    return Runs((int(nx), int(ny), int(nz)), start, toggles)


@numba.njit(cache=True, inline="always")
def covers(tz, s, e, Z):
    """Whether padded position Z lies in an occupied run of the row whose toggles are tz[s:e]."""
    lo, hi = s, e
    while lo < hi:  # how many toggles are <= Z: odd inside a run
        m = (lo + hi) // 2
        if tz[m] <= Z:
            lo = m + 1
        else:
            hi = m
    return (lo - s) % 2 == 1


_END = np.int64(1) << 40  # past every position


@numba.njit(cache=True, inline="always")
def _next_run(tz, q, e, ds, de):
    """From toggle q of a row ending at e, the next run moved by (ds, de) and merged with those it
    then overlaps or touches: (start, end, next q); (_END, _END, e) when none is left."""
    while q < e:
        s, t = tz[q] + ds, tz[q + 1] + de
        q += 2
        if s < t:
            while q < e and tz[q] + ds <= t:
                t = max(t, tz[q + 1] + de)
                q += 2
            return s, t, q
    return _END, _END, e


@numba.njit(cache=True)
def combine(tz, lo, hi, shift, n, low, high, out, at, scratch):
    """The runs where between ``low`` and ``high`` of n rows cover a position: their toggles, written
    to out[at:] when out is not empty. Returns how many.

    Row q's toggles are tz[lo[q]:hi[q]], its runs moved by shift[q] at both ends (-1: shrunk by one
    voxel a side, +1: grown; shrunk runs that vanish are dropped, grown ones that meet are merged).
    So an erosion is n = 5 rows (the row itself shifted -1, its four neighbours 0) and low = high =
    5; a dilation, low = 1, high = 5 with +1; a difference A - B (B within A), low = high = 1.
    ``scratch``: (4, n) int64, the caller's (an allocation per call would serialise parallel callers
    on the allocator)."""
    s, t, q, inside = scratch[0], scratch[1], scratch[2], scratch[3]
    for i in range(n):
        inside[i] = 0
        s[i], t[i], q[i] = _next_run(tz, lo[i], hi[i], -shift[i], shift[i])
    count = 0
    written = 0
    state = False
    while True:
        p = _END
        for i in range(n):
            p = min(p, t[i] if inside[i] else s[i])
        if p >= _END:
            break
        for i in range(n):  # every event at p; after one, a row's next event lies beyond p
            if inside[i] and t[i] == p:
                inside[i] = 0
                count -= 1
                s[i], t[i], q[i] = _next_run(tz, q[i], hi[i], -shift[i], shift[i])
            if not inside[i] and s[i] == p:
                inside[i] = 1
                count += 1
        now = low <= count <= high
        if now != state:
            if out.shape[0]:
                out[at + written] = p
            written += 1
            state = now
    return written


# ------------------------------------------------------------------- from coarse-to-fine blocks
@numba.njit(cache=True)
def _blocks_by_x(nx, nz, bi, bk, size):
    """(start, ids): the blocks that cover each x in order of their z, ``ids[start[x]:start[x + 1]]``."""
    by_z = np.zeros(nz + 1, np.int64)  # a counting sort of the blocks by z
    for t in range(bk.shape[0]):
        by_z[bk[t] + 1] += 1
    for z in range(nz):
        by_z[z + 1] += by_z[z]
    sorted_ids = np.empty(bk.shape[0], np.int64)
    for t in range(bk.shape[0]):
        sorted_ids[by_z[bk[t]]] = t
        by_z[bk[t]] += 1
    start = np.zeros(nx + 1, np.int64)
    for t in range(bi.shape[0]):
        for x in range(bi[t], min(bi[t] + size[t], nx)):
            start[x + 1] += 1
    for x in range(nx):
        start[x + 1] += start[x]
    ids = np.empty(start[nx], np.int64)
    at = start[:nx].copy()
    for t in sorted_ids:
        for x in range(bi[t], min(bi[t] + size[t], nx)):
            ids[at[x]] = t
            at[x] += 1
    return start, ids


@numba.njit(cache=True, inline="always")
def _close(y, cs, ce, n, toggles, at):
    """Close row y's open run (cs, ce), if any: its two toggles written from ``at`` when toggles is not
    empty, and counted in n[y]."""
    if cs[y] >= 0:
        if toggles.shape[0]:
            toggles[at + n[y]], toggles[at + n[y] + 1] = cs[y] + 1, ce[y] + 1
        n[y] += 2


@numba.njit(cache=True, inline="always")
def _extend(y, s, e, cs, ce, n, toggles, at):
    """Add the interval [s, e) to row y's open run (cs, ce) when it continues it, else close that run
    and open this one."""
    if cs[y] >= 0 and s == ce[y]:
        ce[y] = e
        return
    _close(y, cs, ce, n, toggles, at)
    cs[y], ce[y] = s, e


@numba.njit(cache=True, parallel=True)
def _slab_rows(nx, ny, nz, bi, bj, bk, full, bits, size, xstart, xids, tstart, toggles, counts):
    """Toggles of every row from the blocks, slab by slab of x: the blocks that cover x, in order of
    their z (``xids[xstart[x]:xstart[x + 1]]``), give each row its intervals in order (blocks do not
    overlap), so runs that meet merge as they come. Counted into ``counts`` when toggles is empty
    (``tstart`` is then read but not used), else written at ``tstart``."""
    NY = ny + 2
    for x in numba.prange(nx):
        cs = np.full(ny, -1, np.int64)
        ce = np.zeros(ny, np.int64)
        n = np.zeros(ny, np.int64)
        base = (x + 1) * NY + 1
        for q in range(xstart[x], xstart[x + 1]):
            t = xids[q]
            j1 = min(bj[t] + size[t], ny)
            if full[t]:
                k1 = min(bk[t] + size[t], nz)
                for y in range(bj[t], j1):
                    _extend(y, bk[t], k1, cs, ce, n, toggles, tstart[base + y])
                continue
            a = x - bi[t]
            for y in range(bj[t], j1):  # the runs of the leaf word's column (a, y - bj)
                column = (bits[t] >> np.uint64((a * 4 + y - bj[t]) * 4)) & np.uint64(15)
                c = 0
                while column:
                    e = c
                    while column & np.uint64(1):
                        column >>= np.uint64(1)
                        e += 1
                    if e > c:
                        _extend(y, bk[t] + c, bk[t] + e, cs, ce, n, toggles, tstart[base + y])
                    else:
                        column >>= np.uint64(1)
                        e += 1
                    c = e
        for y in range(ny):
            _close(y, cs, ce, n, toggles, tstart[base + y])
            if not toggles.shape[0]:
                counts[base + y] = n[y]


def from_blocks(shape, levels) -> Runs:
    """The :class:`Runs` of an occupancy given as the blocks a coarse-to-fine carving decided.

    Args:
        shape: (nx, ny, nz) of the occupancy.
        levels: per level, (bi, bj, bk, full, bits, size): the blocks' base voxels ((n,) ints), whether
            each is full ((n,) uint8) and otherwise its voxels as a 4 x 4 x 4 word ((n,) uint64, voxel
            (bi + a, bj + b, bk + c) at bit (4 a + b) 4 + c), and the level's side in voxels (blocks
            are clipped at the grid's end). Blocks do not overlap.

    Example:
        >>> one = np.ones(1, np.int64)
        >>> levels = [(0 * one, 0 * one, 0 * one, one.astype(np.uint8), 0 * one.astype(np.uint64), 2),
        ...           (0 * one, 0 * one, 2 * one, 0 * one.astype(np.uint8), np.array([0b1101], np.uint64), 4)]
        >>> runs = from_blocks((2, 2, 8), levels)
        >>> runs.to_occupancy()[0, 0].astype(int).tolist(), runs.count()
        ([1, 1, 1, 0, 1, 1, 0, 0], 11)
    """
    nx, ny, nz = (int(n) for n in shape)
    parts = [np.concatenate([np.asarray(level[a]) for level in levels]) if levels else np.zeros(0, np.int64)
             for a in range(5)]
    bi, bj, bk = (p.astype(np.int64) for p in parts[:3])
    full, bits = parts[3].astype(np.uint8), parts[4].astype(np.uint64)
    size = np.concatenate([np.full(len(level[0]), level[5], np.int64) for level in levels]) if levels \
        else np.zeros(0, np.int64)
    xstart, xids = _blocks_by_x(nx, nz, bi, bk, size)
    counts = np.zeros((nx + 2) * (ny + 2), np.int64)
    none = np.zeros(0, np.int32)
    _slab_rows(nx, ny, nz, bi, bj, bk, full, bits, size, xstart, xids, counts, none, counts)  # counts first
    tstart = csr(counts)
    toggles = np.empty(tstart[-1], np.int32)
    _slab_rows(nx, ny, nz, bi, bj, bk, full, bits, size, xstart, xids, tstart, toggles, counts)
    return Runs((nx, ny, nz), tstart, toggles)
