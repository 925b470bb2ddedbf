"""The run-length kernels of :func:`binary_surface`: toggles, row-pair XOR runs, vertices, cubes.

See :mod:`carve.marching` for the idea; the case table is :mod:`carve.marching.table`.
"""
from __future__ import annotations

import numba
import numpy as np

from carve.marching.table import COUNTS, CUTS, TRIANGLES
from carve.runlength import Runs, csr, occupancy_runs, packed

__all__ = ["binary_surface"]


# ------------------------------------------------------------------- the x- and y-edges it cuts


@numba.njit(cache=True)
def _xor_runs(tz, a0, a1, b0, b1, ia, ib, at):
    """The runs [s, e) where two rows differ, from their toggles tz[a0:a1] and tz[b0:b1] (merged; a
    position in both cancels). Written to ia/ib from ``at`` when they are not empty. Returns
    (runs, cut positions)."""
    i, j = a0, b0
    runs = 0
    cut = 0
    open_at = -1
    while i < a1 or j < b1:
        if j >= b1 or (i < a1 and tz[i] < tz[j]):
            t = tz[i]
            i += 1
        elif i >= a1 or tz[j] < tz[i]:
            t = tz[j]
            j += 1
        else:  # both toggle here: the difference does not
            i += 1
            j += 1
            continue
        if open_at < 0:
            open_at = t
        else:
            if ia.shape[0]:
                ia[at + runs] = open_at
                ib[at + runs] = t
            runs += 1
            cut += t - open_at
            open_at = -1
    return runs, cut


@numba.njit(cache=True, parallel=True)
def _pair_counts(tstart, tz, NX, NY, step):
    """Runs and cut positions of every pair of rows (r, r + step) (step NY: x-pairs, 1: y-pairs)."""
    n = NX * NY
    runs = np.zeros(n, np.int64)
    cuts = np.zeros(n, np.int64)
    none = np.empty(0, np.int32)
    for X in numba.prange(NX):
        for Y in range(NY):
            r = X * NY + Y
            if (step == 1 and Y == NY - 1) or (step != 1 and X == NX - 1):
                continue
            s = r + step
            if tstart[r] == tstart[r + 1] and tstart[s] == tstart[s + 1]:
                continue
            runs[r], cuts[r] = _xor_runs(tz, tstart[r], tstart[r + 1], tstart[s], tstart[s + 1], none, none, 0)
    return runs, cuts


@numba.njit(cache=True, parallel=True)
def _pair_fill(tstart, tz, NX, NY, step, rstart, ia, ib):
    for X in numba.prange(NX):
        for Y in range(NY):
            r = X * NY + Y
            if rstart[r] == rstart[r + 1]:
                continue
            s = r + step
            _xor_runs(tz, tstart[r], tstart[r + 1], tstart[s], tstart[s + 1], ia, ib, rstart[r])


# -------------------------------------------------------------------------------- the vertices


@numba.njit(cache=True, parallel=True)
def _vertices(tstart, tz, NX, NY, xr, xa, xb, xv, yr, ya, yb, yv, verts, inner):
    """Every cut edge's midpoint (padded index units) and the signed axis (1, 2, 3 for +x, +y, +z;
    negative: the other way) from it to the edge's occupied end. Vertex ids: the z-edges first in
    toggle order, then the x-edges' runs, then the y-edges'."""
    for X in numba.prange(NX):
        for Y in range(NY):
            r = X * NY + Y
            for k in range(tstart[r], tstart[r + 1]):
                v = k
                verts[v, 0] = X
                verts[v, 1] = Y
                verts[v, 2] = tz[k] - 0.5
                inner[v] = 3 if (k - tstart[r]) % 2 == 0 else -3  # even toggles start a run
            for axis in range(2):
                rs = xr if axis == 0 else yr
                ra = xa if axis == 0 else ya
                rb = xb if axis == 0 else yb
                rv = xv if axis == 0 else yv
                if rs[r] == rs[r + 1]:
                    continue
                k = tstart[r]  # this row's toggles, to know which of the pair is occupied
                v = rv[r]
                for q in range(rs[r], rs[r + 1]):
                    for Z in range(ra[q], rb[q]):
                        while k < tstart[r + 1] and tz[k] <= Z:
                            k += 1
                        mine = (k - tstart[r]) % 2 == 1
                        verts[v, 0] = X + 0.5 if axis == 0 else X
                        verts[v, 1] = Y + 0.5 if axis == 1 else Y
                        verts[v, 2] = Z
                        inner[v] = -(axis + 1) if mine else axis + 1
                        v += 1


# ----------------------------------------------------------------------------------- the cubes


@numba.njit(cache=True)
def _row_at(tz, base, end, k, Z):
    """Advance the toggle pointer k of a row to Z: returns (k, occupied at Z, occupied at Z + 1,
    id of the vertex on the edge Z -> Z + 1 or -1)."""
    while k < end and tz[k] <= Z:
        k += 1
    here = (k - base) % 2 == 1
    if k < end and tz[k] == Z + 1:
        return k, here, not here, k
    return k, here, here, -1


@numba.njit(cache=True)
def _run_at(ra, rb, first, q, end, h):
    """Advance the run pointer q of a pair to height h: returns (q, vertex id at h or -1)."""
    while q < end and rb[q] <= h:
        q += 1
    if q < end and ra[q] <= h:
        return q, first[q] + h - ra[q]
    return q, -1


@numba.njit(cache=True)
def _run_firsts(rs, ra, rb, rv, first):
    """first[q]: the vertex id of run q's lowest position (runs numbered in order after the pair's
    base id rv)."""
    for r in range(rs.shape[0] - 1):
        v = rv[r]
        for q in range(rs[r], rs[r + 1]):
            first[q] = v
            v += rb[q] - ra[q]


@numba.njit(cache=True)
def _cube_row(X, Y, NY, tstart, tz, xr, xa, xb, xf, yr, ya, yb, yf, counts, cuts, table, faces, at, scratch, low, high):
    """The triangles of the crossed cubes of cube row (X, Y): counted, and written to faces[at:] when
    faces is not empty. Returns their number. scratch: (48,) int64 and low, high: (4,) bool work
    space."""
    rows = scratch[0:4]  # corners (dx, dy) = (0,0), (1,0), (0,1), (1,1)
    rows[0] = X * NY + Y
    rows[1] = rows[0] + NY
    rows[2] = rows[0] + 1
    rows[3] = rows[1] + 1
    if (tstart[rows[0]] == tstart[rows[0] + 1] and tstart[rows[1]] == tstart[rows[1] + 1]
            and tstart[rows[2]] == tstart[rows[2] + 1] and tstart[rows[3]] == tstart[rows[3] + 1]):
        return 0
    # the 8 sources of crossed cubes, each sorted: 4 rows' toggles t (cube t - 1), 4 pairs' runs
    # [a, b) (cubes a - 1 .. b - 1): pairs x at dy = 0, 1 and y at dx = 0, 1
    pairs = scratch[4:8]
    pairs[0] = rows[0]
    pairs[1] = rows[2]
    pairs[2] = rows[0]
    pairs[3] = rows[1]
    ptr = scratch[8:16]
    end = scratch[16:24]
    for i in range(4):
        ptr[i] = tstart[rows[i]]
        end[i] = tstart[rows[i] + 1]
        rs = xr if i < 2 else yr
        ptr[4 + i] = rs[pairs[i]]
        end[4 + i] = rs[pairs[i] + 1]
    # walking pointers: toggles per row, runs per pair at heights Z and Z + 1
    k = scratch[24:28]
    for i in range(4):
        k[i] = tstart[rows[i]]
    q = scratch[28:36]
    for i in range(4):
        q[2 * i] = ptr[4 + i]
        q[2 * i + 1] = ptr[4 + i]
    ids = scratch[36:48]
    written = 0
    cs, ce = -1, -1  # the merged span of cubes being gathered
    while True:
        best, bs, be = -1, 0, 0
        for i in range(8):
            if ptr[i] < end[i]:
                if i < 4:
                    s, e = tz[ptr[i]] - 1, tz[ptr[i]]
                else:
                    ra = xa if i < 6 else ya
                    rb = xb if i < 6 else yb
                    s, e = ra[ptr[i]] - 1, rb[ptr[i]]
                if best < 0 or s < bs:
                    best, bs, be = i, s, e
        if best >= 0 and cs >= 0 and bs <= ce:
            ce = max(ce, be)
            ptr[best] += 1
            continue
        for Z in range(cs, ce):  # flush the gathered span (empty on the first pass)
            for i in range(4):
                k[i], low[i], high[i], ids[8 + i] = _row_at(tz, tstart[rows[i]], tstart[rows[i] + 1], k[i], Z)
            case = 0
            for i in range(4):
                if low[i]:
                    case |= 1 << i
                if high[i]:
                    case |= 16 << i
            n = counts[case]
            if n == 0:
                continue
            if faces.shape[0]:
                # the x- and y-edges the case cuts (ids of the others are not read); x at dy = 0, 1:
                # edges dy + 2 dz, y at dx = 0, 1: edges 4 + dx + 2 dz; pointers q per edge
                cut = cuts[case]
                if cut & 1:
                    q[0], ids[0] = _run_at(xa, xb, xf, q[0], end[4], Z)
                if cut & 4:
                    q[1], ids[2] = _run_at(xa, xb, xf, q[1], end[4], Z + 1)
                if cut & 2:
                    q[2], ids[1] = _run_at(xa, xb, xf, q[2], end[5], Z)
                if cut & 8:
                    q[3], ids[3] = _run_at(xa, xb, xf, q[3], end[5], Z + 1)
                if cut & 16:
                    q[4], ids[4] = _run_at(ya, yb, yf, q[4], end[6], Z)
                if cut & 64:
                    q[5], ids[6] = _run_at(ya, yb, yf, q[5], end[6], Z + 1)
                if cut & 32:
                    q[6], ids[5] = _run_at(ya, yb, yf, q[6], end[7], Z)
                if cut & 128:
                    q[7], ids[7] = _run_at(ya, yb, yf, q[7], end[7], Z + 1)
                for t in range(n):
                    for c in range(3):
                        faces[at + written + t, c] = ids[table[case, t, c]]
            written += n
        if best < 0:
            break
        cs, ce = bs, be
        ptr[best] += 1
    return written


@numba.njit(cache=True, parallel=True)
def _cube_fill(NX, NY, tstart, tz, xr, xa, xb, xf, yr, ya, yb, yf, counts, cuts, table, room, faces):
    """The triangles of every cube row (X, Y), written to faces from room[X * NY + Y] (room enough
    for each: :func:`_cube_room`). Returns how many each row wrote."""
    written = np.zeros(NX * NY, np.int64)
    for X in numba.prange(NX - 1):
        scratch = np.empty(48, np.int64)
        low = np.empty(4, np.bool_)
        high = np.empty(4, np.bool_)
        for Y in range(NY - 1):
            r = X * NY + Y
            if room[r] < room[r + 1]:
                written[r] = _cube_row(X, Y, NY, tstart, tz, xr, xa, xb, xf, yr, ya, yb, yf, counts, cuts, table, faces,
                                       room[r], scratch, low, high)
    return written


def _cube_room(tstart, xv, yv, NX, NY):
    """(NX * NY + 1,) offsets with room for the triangles of each cube row (X, Y). A cube emits at most
    as many triangles as it has cut edges (true of every case of the table); a cut z-edge is in one
    cube of the row, a cut x- or y-edge in two. So a row's room is the cut z-edges of its 4 voxel rows
    plus twice the cut edges of its 4 row pairs: 4 V in all for V vertices, about twice the triangles."""
    z = np.diff(tstart).reshape(NX, NY)
    x = np.diff(xv).reshape(NX, NY)  # pair (X, Y) - (X + 1, Y)
    y = np.diff(yv).reshape(NX, NY)  # pair (X, Y) - (X, Y + 1)
    room = np.zeros((NX, NY), np.int64)
    room[:-1, :-1] = (z[:-1, :-1] + z[1:, :-1] + z[:-1, 1:] + z[1:, 1:]
                      + 2 * (x[:-1, :-1] + x[:-1, 1:] + y[:-1, :-1] + y[1:, :-1]))
    return csr(room.ravel())


def binary_surface(occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (6, 26) marching-cubes surface of a binary occupancy, closed by empty voxels around it.

    Args:
        occupancy: (nx, ny, nz) bool, indexed [x, y, z], or its :class:`carve.runlength.Runs`.

    Returns:
        (vertices (V, 3) float64 in index units: the midpoints of the cut lattice edges, one
        coordinate at a half; faces (F, 3) int64, counter-clockwise seen from the empty side;
        inner (V,) int8: the axis from each vertex to its edge's occupied end, 1, 2, 3 for +x, +y,
        +z and negative the other way). Empty arrays for an empty occupancy.

    Example:
        >>> occ = np.zeros((3, 3, 3), bool); occ[1, 1, 1] = True
        >>> verts, faces, inner = binary_surface(occ)
        >>> len(verts), len(faces), sorted(set(inner.tolist()))
        (6, 8, [-3, -2, -1, 1, 2, 3])
    """
    runs = occupancy if isinstance(occupancy, Runs) else occupancy_runs(occupancy)
    nx, ny, nz = runs.shape
    NX, NY = nx + 2, ny + 2
    tstart, tz = runs.start, runs.toggles
    blocks = []
    base = len(tz)  # vertex ids: the z-edges (one per toggle), then the x-edges, then the y-edges
    for step in (NY, 1):
        pair_runs, cuts = _pair_counts(tstart, tz, NX, NY, step)
        rs = csr(pair_runs)
        ra = np.empty(rs[-1], np.int32)
        rb = np.empty(rs[-1], np.int32)
        _pair_fill(tstart, tz, NX, NY, step, rs, ra, rb)
        rv = base + csr(cuts)
        first = np.empty(rs[-1], np.int64)
        _run_firsts(rs, ra, rb, rv, first)
        blocks.append((rs, ra, rb, rv, first))
        base = rv[-1]
    (xr, xa, xb, xv, xf), (yr, ya, yb, yv, yf) = blocks
    verts = np.empty((base, 3), np.float64)
    inner = np.empty(base, np.int8)
    _vertices(tstart, tz, NX, NY, xr, xa, xb, xv, yr, ya, yb, yv, verts, inner)
    # one walk over the crossed cubes, each row writing into room of its own, then packed: a pass
    # that counted the triangles first would walk them twice
    room = _cube_room(tstart, xv, yv, NX, NY)
    roomy = np.empty((room[-1], 3), np.int64)
    written = _cube_fill(NX, NY, tstart, tz, xr, xa, xb, xf, yr, ya, yb, yf, COUNTS, CUTS, TRIANGLES, room, roomy)
    faces = packed(roomy, room, written)
    verts -= 1.0  # padded to plain index units
    return verts, faces, inner
