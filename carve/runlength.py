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

__all__ = ["Runs", "occupancy_runs", "combine", "covers", "csr"]


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
