"""The opening of an occupancy by the cross of seven voxels, on its run-length rows.

An erosion then a dilation, each row from its own runs and its four neighbours' (:func:`carve.runlength.combine`,
or a closed form when each of the five rows holds one run): no array of the lattice's size, and the cost
follows the rows and their toggles. :func:`carve.topology.repair` starts from it.
"""
from __future__ import annotations

import numba
import numpy as np

from carve.runlength import Runs, combine, csr, packed

__all__ = ["opening_runs"]


@numba.njit(cache=True, parallel=True)
def _row_op(start, tz, NX, NY, grow, ostart, otz, counts):
    """Erosion (grow False) or dilation (True) of every row by the cross of seven voxels: the row
    moved by one voxel a side and its four neighbours, combined. Toggles written at ``ostart`` into
    ``otz`` (when not empty), how many per row into ``counts`` (zeros where nothing is written)."""
    for X in numba.prange(1, NX - 1):
        lo = np.empty(5, np.int64)
        hi = np.empty(5, np.int64)
        shift = np.zeros(5, np.int64)
        shift[0] = 1 if grow else -1
        starts = np.empty(5, np.int64)
        ends = np.empty(5, np.int64)
        scratch = np.empty((4, 5), np.int64)
        for Y in range(1, NY - 1):
            r = X * NY + Y
            rows = (r, r - NY, r + NY, r - 1, r + 1)
            empty = 0
            for i in range(5):
                lo[i], hi[i] = start[rows[i]], start[rows[i] + 1]
                if lo[i] == hi[i]:
                    empty += 1
            if empty == 5 or (not grow and lo[0] == hi[0]):
                continue
            single = True
            for i in range(5):
                single &= hi[i] - lo[i] == 2 or (grow and i > 0 and lo[i] == hi[i])
            if single:  # one run a row, the common case: the intersection or union in closed form
                n = _single_runs(tz, lo, hi, grow, starts, ends, otz, ostart[r] if otz.shape[0] else 0)
            else:
                n = combine(tz, lo, hi, shift, 5, 1 if grow else 5, 5, otz, ostart[r] if otz.shape[0] else 0, scratch)
            counts[r] = n


@numba.njit(cache=True, inline="always")
def _single_runs(tz, lo, hi, grow, starts, ends, out, at):
    """:func:`combine` of the cross's five rows when each holds one run or (dilating, a neighbour) none:
    the intersection of the runs, the centre's shrunk by one a side (erosion), or the union, the
    centre's grown by one a side, runs that meet merged (dilation). Toggles to out[at:] when out is not
    empty; returns how many. ``starts``, ``ends``: (5,) scratch."""
    s0, e0 = tz[lo[0]], tz[lo[0] + 1]
    if not grow:
        s, e = s0 + 1, e0 - 1
        for i in range(1, 5):
            s, e = max(s, tz[lo[i]]), min(e, tz[lo[i] + 1])
        if s >= e:
            return 0
        if out.shape[0]:
            out[at], out[at + 1] = s, e
        return 2
    starts[0], ends[0] = s0 - 1, e0 + 1
    m = 1
    for i in range(1, 5):  # insertion by start
        if lo[i] == hi[i]:
            continue
        a, b = tz[lo[i]], tz[lo[i] + 1]
        j = m
        while j > 0 and starts[j - 1] > a:
            starts[j], ends[j] = starts[j - 1], ends[j - 1]
            j -= 1
        starts[j], ends[j] = a, b
        m += 1
    written = 0
    cs, ce = starts[0], ends[0]
    for i in range(1, m + 1):
        if i < m and starts[i] <= ce:
            ce = max(ce, ends[i])
            continue
        if out.shape[0]:
            out[at + written], out[at + written + 1] = cs, ce
        written += 2
        if i < m:
            cs, ce = starts[i], ends[i]
    return written


def _apply(runs_start, runs_tz, NX, NY, grow):
    """(start, toggles) of the rows' erosion or dilation by the cross (:func:`_row_op`). Each row
    writes into room for the toggles of its cross's five rows: an intersection or a union of runs
    has no more runs than its operands together."""
    own = np.diff(runs_start).reshape(NX, NY)
    cross = own.copy()
    cross[1:] += own[:-1]
    cross[:-1] += own[1:]
    cross[:, 1:] += own[:, :-1]
    cross[:, :-1] += own[:, 1:]
    room = csr(cross.ravel())
    roomy = np.empty(room[-1], np.int32)
    counts = np.zeros(NX * NY, np.int64)
    _row_op(runs_start, runs_tz, NX, NY, grow, room, roomy, counts)
    return csr(counts), packed(roomy, room, counts)


def opening_runs(runs: Runs) -> Runs:
    """The opening of an occupancy by the cross of seven voxels, on its run-length rows: an erosion
    and a dilation of every row from its four neighbours'."""
    nx, ny, _ = runs.shape
    e_start, e_tz = _apply(runs.start, runs.toggles, nx + 2, ny + 2, grow=False)
    return Runs(runs.shape, *_apply(e_start, e_tz, nx + 2, ny + 2, grow=True))
