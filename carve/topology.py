"""Topological repair of an occupancy: drop the handles and islands thinner than the voxels resolve.

A visual hull carved from finite views at a fine resolution grows sub-voxel artefacts: islands of a
few voxels that every silhouette happens to cover, and one-voxel bridges that close spurious handles
(the torus hull at 256 from 64 views has nine islands and one extra handle). The voxels are right,
those points do project inside every mask, but the object has no such parts, and a mesh of them has
the wrong genus.

:func:`repair` keeps everything but those parts. It opens the occupancy by the 6-neighbourhood (a
voxel stays when some cross of seven occupied voxels covers it), which removes every structure less
than three voxels thick, then puts back, one at a time, each removed voxel that is *simple*: one whose
addition changes no component, handle or cavity. What stays out is the least that has to: islands
of fewer than :data:`ISLAND_VOXELS` voxels and the voxel that closes each thin handle; thin spikes,
fins and edges attached to the body come back whole, and so does a larger component thin all
through (a sheet, a wire), unrepaired.

Convention: foreground 6-connected, background 26-connected (Bertrand and Malandain's (6, 26)
pair), the topology :func:`carve.mesh.voxel_surface` meshes (marching cubes just above level 1/2
separates voxels that touch only along an edge or at a corner).
"""
from __future__ import annotations

import numba
import numpy as np

from carve.opening import opening_runs
from carve.runlength import Runs, covers, csr, occupancy_runs, packed

__all__ = ["repair", "repair_runs", "is_simple", "ISLAND_VOXELS"]

#: a component that the opening erases entirely is an island (dropped) below this many voxels, the
#: 27 of the 3 x 3 x 3 block the opening tests; a larger one is a thin part of its own (a sheet or a
#: wire two voxels thick) and is kept whole
ISLAND_VOXELS = 27


#: the 26 neighbour offsets in the order the neighbourhoods are read: x-major, then y, then z
_OFFS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)],
                 np.int64)

# The 3 x 3 x 3 block as the bits of one integer, bit (a + 1) 9 + (b + 1) 3 + (c + 1) for offset
# (a, b, c): a component is grown by shifts and masks, a few dozen operations instead of a graph search
_ALL = (1 << 27) - 1
_CENTRE = 1 << 13


def _cube_bits(keep):
    """The bits of the block whose offset (a, b, c) satisfies keep(a, b, c)."""
    return sum(1 << ((a + 1) * 9 + (b + 1) * 3 + c + 1) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)
               if keep(a, b, c))


_Z_LOW, _Z_HIGH = _cube_bits(lambda a, b, c: c == -1), _cube_bits(lambda a, b, c: c == 1)
_Y_LOW, _Y_HIGH = _cube_bits(lambda a, b, c: b == -1), _cube_bits(lambda a, b, c: b == 1)
_FACE_BITS = _cube_bits(lambda a, b, c: abs(a) + abs(b) + abs(c) == 1)
_CORNER_BITS = _cube_bits(lambda a, b, c: abs(a) + abs(b) + abs(c) == 3)


@numba.njit(cache=True, inline="always")
def _grow6(S):
    """The block's bits 6-adjacent to S, or in it."""
    return (S | ((S & ~_Z_HIGH) << 1) | ((S & ~_Z_LOW) >> 1) | ((S & ~_Y_HIGH) << 3) | ((S & ~_Y_LOW) >> 3)
            | ((S << 9) & _ALL) | (S >> 9))


@numba.njit(cache=True, inline="always")
def _grow26(S):
    """The block's bits 26-adjacent to S, or in it (the box dilation, one axis at a time)."""
    S = S | ((S & ~_Z_HIGH) << 1) | ((S & ~_Z_LOW) >> 1)
    S = S | ((S & ~_Y_HIGH) << 3) | ((S & ~_Y_LOW) >> 3)
    return S | ((S << 9) & _ALL) | (S >> 9)


@numba.njit(cache=True, inline="always")
def _one_component(member, seeds, six):
    """Whether the members' components (6- or 26-adjacent, within the block) that hold a seed are
    exactly one."""
    todo = member & seeds
    if todo == 0:
        return False
    part = todo & -todo
    while True:
        grown = (_grow6(part) if six else _grow26(part)) & member
        if grown == part:
            break
        part = grown
    return (todo & ~part) == 0


@numba.njit(cache=True)
def _simple_bits(occupied):
    """Whether a voxel is simple under the (6, 26) pair given its occupied neighbours as block bits
    (the centre's own bit ignored): its occupied 18-neighbours form one 6-component that touches it
    (holds a face neighbour), and its empty 26-neighbours one 26-component that touches it (the empty
    neighbours that touch no face neighbour would make a cavity of their own). The test is the same
    for adding and removing."""
    fg = occupied & ~_CORNER_BITS & ~_CENTRE & _ALL
    bg = ~occupied & ~_CENTRE & _ALL
    return _one_component(fg, _FACE_BITS, True) and _one_component(bg, bg, False)


# voxel states while repairing
_EMPTY, _IN, _OUT, _QUEUED = 0, 1, 2, 3  # _OUT: removed by the opening, a candidate to put back


@numba.njit(cache=True, parallel=True)
def _removed_counts(start, tz, dstart, dtz, NR, counts):
    """Voxels per row in the occupancy (start, tz) but not in its opening (dstart, dtz)."""
    for r in numba.prange(NR):
        n = 0
        # the opening lies within the occupancy: its positions inside runs, less its own runs
        for q in range(start[r], start[r + 1], 2):
            n += tz[q + 1] - tz[q]
        for q in range(dstart[r], dstart[r + 1], 2):
            n -= dtz[q + 1] - dtz[q]
        counts[r] = n


@numba.njit(cache=True, parallel=True)
def _removed_fill(start, tz, dstart, dtz, NX, NY, bstart, bx, by, bz):
    """The band: every voxel of the occupancy not in its opening, row by row, z increasing."""
    for X in numba.prange(NX):
        for Y in range(NY):
            r = X * NY + Y
            at = bstart[r]
            if at == bstart[r + 1]:
                continue
            j = dstart[r]
            for q in range(start[r], start[r + 1], 2):
                for Z in range(tz[q], tz[q + 1]):
                    while j < dstart[r + 1] and dtz[j + 1] <= Z:
                        j += 2
                    if j < dstart[r + 1] and dtz[j] <= Z:
                        continue  # in the opening's run j
                    bx[at], by[at], bz[at] = X, Y, Z
                    at += 1


# ------------------------------------------------------------------ the band's states, looked up
@numba.njit(cache=True)
def _neighbourhood(b, NY, dstart, dtz, bstart, bx, by, bz, bstate, states, ids):
    """The states and band ids (or -1) of band voxel b's 26 neighbours, in :data:`_OFFS` order: a band
    voxel's own state, else ``_IN`` in the opening, else ``_EMPTY``; one search of the band and one of
    the opening per row of three."""
    n = 0
    for dx in range(-1, 2):
        for dy in range(-1, 2):
            r = (bx[b] + dx) * NY + by[b] + dy
            Z = bz[b] - 1
            # the band voxels of the row from Z on: the first at or after Z
            lo, hi = bstart[r], bstart[r + 1]
            while lo < hi:
                m = (lo + hi) // 2
                if bz[m] < Z:
                    lo = m + 1
                else:
                    hi = m
            # the opening's toggles up to Z: odd inside a run
            d0, d1 = dstart[r], dstart[r + 1]
            tlo, thi = d0, d1
            while tlo < thi:
                m = (tlo + thi) // 2
                if dtz[m] <= Z:
                    tlo = m + 1
                else:
                    thi = m
            for dz in range(3):
                while tlo < d1 and dtz[tlo] <= Z + dz:
                    tlo += 1
                if lo < bstart[r + 1] and bz[lo] == Z + dz:
                    if dx == 0 and dy == 0 and dz == 1:
                        lo += 1
                        continue  # the voxel itself
                    states[n], ids[n] = bstate[lo], lo
                    lo += 1
                else:
                    states[n], ids[n] = (_IN if (tlo - d0) % 2 == 1 else _EMPTY), -1
                n += 1


@numba.njit(cache=True)
def _band_simple(b, NY, dstart, dtz, bstart, bx, by, bz, bstate, states, ids):
    """Whether band voxel b is simple for the voxels ``_IN`` now (its neighbours' states and band ids
    are left in ``states``, ``ids``)."""
    _neighbourhood(b, NY, dstart, dtz, bstart, bx, by, bz, bstate, states, ids)
    occupied = 0
    for n in range(26):
        if states[n] == _IN:
            occupied |= 1 << (n if n < 13 else n + 1)  # the block's bits skip the centre's
    return _simple_bits(occupied)


@numba.njit(cache=True, inline="always")
def _find(parent, a):
    """The root of a in the union-find forest ``parent``, halving the path on the way."""
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@numba.njit(cache=True, inline="always")
def _band_at(bz, q, end, Z):
    """Advance the pointer q of a band row (ending at end) to the first voxel at or past Z."""
    while q < end and bz[q] < Z:
        q += 1
    return q


@numba.njit(cache=True)
def _keep_thin_parts(NY, dstart, dtz, bstart, bx, by, bz, bstate, min_voxels):
    """Put the band voxels that form a 6-component of their own (no face neighbour in the opening) of
    at least ``min_voxels`` back as they are (``_IN``): a sheet or a wire, not an island.

    One pass in band order (rows, then z) joins each voxel to its band neighbours below it in z, y
    and x (union-find: the rows r - 1 and r - NY are walked alongside row r) and notes whether it
    touches the opening; the components are then the trees."""
    n = bx.shape[0]
    parent = np.arange(n)
    touches = np.zeros(n, np.bool_)
    for r in range(bstart.shape[0] - 1):
        b0, b1 = bstart[r], bstart[r + 1]
        if b0 == b1:
            continue
        qy, qx = bstart[r - 1], bstart[r - NY]  # the band rows at y - 1 and x - 1
        for b in range(b0, b1):
            Z = bz[b]
            if b > b0 and bz[b - 1] == Z - 1:
                parent[_find(parent, b)] = _find(parent, b - 1)
            qy = _band_at(bz, qy, bstart[r], Z)
            if qy < bstart[r] and bz[qy] == Z:
                parent[_find(parent, b)] = _find(parent, qy)
            qx = _band_at(bz, qx, bstart[r - NY + 1], Z)
            if qx < bstart[r - NY + 1] and bz[qx] == Z:
                parent[_find(parent, b)] = _find(parent, qx)
            d0, d1 = dstart[r], dstart[r + 1]
            touches[b] = (covers(dtz, d0, d1, Z - 1) or covers(dtz, d0, d1, Z + 1)
                          or covers(dtz, dstart[r - 1], dstart[r], Z) or covers(dtz, dstart[r + 1], dstart[r + 2], Z)
                          or covers(dtz, dstart[r - NY], dstart[r - NY + 1], Z)
                          or covers(dtz, dstart[r + NY], dstart[r + NY + 1], Z))
    size = np.zeros(n, np.int64)
    attached = np.zeros(n, np.bool_)
    for b in range(n):
        root = _find(parent, b)
        size[root] += 1
        attached[root] |= touches[b]
    for b in range(n):
        root = _find(parent, b)
        if not attached[root] and size[root] >= min_voxels:
            bstate[b] = _IN


@numba.njit(cache=True)
def _put_back(NY, dstart, dtz, bstart, bx, by, bz, bstate):
    """Set each ``_OUT`` band voxel that is simple to ``_IN``, until none is left; a voxel refused is
    tried again when a neighbour goes in. Returns how many went in."""
    stack = []
    for r in range(bx.shape[0] - 1, -1, -1):
        if bstate[r] == _OUT:
            bstate[r] = _QUEUED
            stack.append(r)
    states = np.empty(26, np.uint8)
    ids = np.empty(26, np.int64)
    added = 0
    while len(stack):
        c = stack.pop()
        if not _band_simple(c, NY, dstart, dtz, bstart, bx, by, bz, bstate, states, ids):
            bstate[c] = _OUT
            continue
        bstate[c] = _IN
        added += 1
        for m in range(26):  # the neighbours' simplicity may have changed (states: as they were before c)
            if states[m] == _OUT:
                bstate[ids[m]] = _QUEUED
                stack.append(ids[m])
    return added


@numba.njit(cache=True, inline="always")
def _union_row(dtz, d0, d1, bz, bstate, b0, b1, out, at):
    """The runs of the opening's row dtz[d0:d1] together with its band voxels bz[b0:b1] that are
    ``_IN``, coalesced: toggles written to out[at:] when out is not empty. Returns how many."""
    i, j = d0, b0
    written = 0
    cs, ce = -1, -1
    while True:
        while j < b1 and bstate[j] != _IN:
            j += 1
        if i >= d1 and j >= b1:
            break
        if j >= b1 or (i < d1 and dtz[i] < bz[j]):
            s, e = dtz[i], dtz[i + 1]
            i += 2
        else:
            s, e = bz[j], bz[j] + 1
            j += 1
        if cs >= 0 and s <= ce:
            ce = max(ce, e)
            continue
        if cs >= 0:
            if out.shape[0]:
                out[at + written], out[at + written + 1] = cs, ce
            written += 2
        cs, ce = s, e
    if cs >= 0:
        if out.shape[0]:
            out[at + written], out[at + written + 1] = cs, ce
        written += 2
    return written


@numba.njit(cache=True, parallel=True)
def _union(dstart, dtz, bstart, bz, bstate, NR, room, roomy, counts):
    """Each row's :func:`_union_row`, written into ``roomy`` from ``room[r]``, how many into ``counts``."""
    for r in numba.prange(NR):
        counts[r] = _union_row(dtz, dstart[r], dstart[r + 1], bz, bstate, bstart[r], bstart[r + 1], roomy, room[r])


def is_simple(occupancy: np.ndarray, index) -> bool:
    """Whether adding the empty voxel ``index`` to ``occupancy`` ((nx, ny, nz) bool) changes no
    component, handle or cavity, under the (6, 26) pair (see the module notes).

    Example:
        >>> occ = np.zeros((5, 5, 5), bool); occ[1:4, 1:4, 2] = True; occ[2, 2, 2] = False  # a ring
        >>> is_simple(occ, (2, 2, 2)), is_simple(occ, (1, 1, 3))  # filling the hole closes it
        (False, True)
    """
    padded = np.pad(np.asarray(occupancy, bool), 1)
    i, j, k = (int(v) + 1 for v in index)
    if padded[i, j, k]:
        raise ValueError(f"index must name an empty voxel, got {tuple(index)}, which is occupied")
    occupied = sum(1 << ((a + 1) * 9 + (b + 1) * 3 + c + 1) for a, b, c in _OFFS if padded[i + a, j + b, k + c])
    return bool(_simple_bits(occupied))


def repair_runs(runs: Runs) -> Runs:
    """:func:`repair` on the run-length form: the cost follows the surface, and no array of the
    lattice's size is made.

    The opening is an erosion and a dilation of the rows by the cross (each row from its four
    neighbours'); the voxels it removes, the band, are the only ones whose state is kept, looked up
    by row; the put-back then runs over the band alone.
    """
    nx, ny, nz = runs.shape
    NX, NY = nx + 2, ny + 2
    if not len(runs.toggles):
        return runs
    _, dstart, dtz = opening_runs(runs)
    counts = np.empty(NX * NY, np.int64)
    _removed_counts(runs.start, runs.toggles, dstart, dtz, NX * NY, counts)
    bstart = csr(counts)
    size = int(bstart[-1])
    if not size:
        return runs  # the opening keeps everything: a solid shape
    bx, by, bz = (np.empty(size, np.int32) for _ in range(3))
    _removed_fill(runs.start, runs.toggles, dstart, dtz, NX, NY, bstart, bx, by, bz)
    bstate = np.full(size, _OUT, np.uint8)
    _keep_thin_parts(NY, dstart, dtz, bstart, bx, by, bz, bstate, ISLAND_VOXELS)
    _put_back(NY, dstart, dtz, bstart, bx, by, bz, bstate)
    # a row of the union has no more runs than the opening's row and its band voxels, one run each
    room = csr(np.diff(dstart) + 2 * np.diff(bstart))
    roomy = np.empty(room[-1], np.int32)
    _union(dstart, dtz, bstart, bz, bstate, NX * NY, room, roomy, counts)
    return Runs(runs.shape, csr(counts), packed(roomy, room, counts))


def repair(occupancy: np.ndarray) -> np.ndarray:
    """The occupancy without its islands and handles thinner than three voxels (see the module notes).

    Args:
        occupancy: (nx, ny, nz) bool.

    Returns:
        (nx, ny, nz) bool, a subset of ``occupancy``: the opening by the 6-neighbourhood with every
        removed voxel put back whose return changes no topology, and the components thin all through
        of at least :data:`ISLAND_VOXELS` voxels. Solid shapes come back unchanged. (:func:`repair_runs` is the same on run-length rows.)

    Example:
        >>> occ = np.zeros((12, 9, 9), bool); occ[1:6, 1:8, 1:8] = True  # a box: its edges come back
        >>> occ[3, 4, 8] = True                   # a one-voxel bump: kept
        >>> ring = np.zeros_like(occ); ring[10, 2:7, 2:7] = True; ring[10, 3:6, 3:6] = False
        >>> clean = repair(occ | ring)            # a thin ring beside the box: an island, dropped
        >>> bool(clean[3, 4, 8]), int((occ & ~clean).sum()), int((ring & clean).sum())
        (True, 0, 0)
    """
    occ = np.asarray(occupancy)
    if occ.ndim != 3 or occ.dtype != np.bool_:
        raise ValueError(f"occupancy must be an (nx, ny, nz) bool array, got {occ.dtype} of shape {occ.shape}")
    return repair_runs(occupancy_runs(occ)).to_occupancy()
