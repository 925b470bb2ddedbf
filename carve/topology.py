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

__all__ = ["repair", "is_simple", "ISLAND_VOXELS"]

#: a component that the opening erases entirely is an island (dropped) below this many voxels, the
#: 27 of the 3 x 3 x 3 block the opening tests; a larger one is a thin part of its own (a sheet or a
#: wire two voxels thick) and is kept whole
ISLAND_VOXELS = 27


def _offsets():
    """The 26 neighbour offsets, and per pair whether they are 6-adjacent (share a face) or
    26-adjacent (touch at all)."""
    offs = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)],
                    np.int64)
    diff = np.abs(offs[:, None, :] - offs[None, :, :])
    adj6 = diff.sum(-1) == 1
    adj26 = diff.max(-1) == 1
    return offs, adj6, adj26


_OFFS, _ADJ6, _ADJ26 = _offsets()
_IN18 = np.abs(_OFFS).sum(1) <= 2  # the 18-neighbourhood: not a corner
_FACE = np.abs(_OFFS).sum(1) == 1  # the 6 face neighbours


@numba.njit(cache=True)
def _components(member, adj, seeds_only, seeds):
    """Number of components of the members (a (26,) bool) under ``adj``; with ``seeds_only``, only
    those holding a seed."""
    seen = np.zeros(26, np.bool_)
    stack = np.empty(26, np.int64)
    count = 0
    for s in range(26):
        if not member[s] or seen[s] or (seeds_only and not seeds[s]):
            continue
        count += 1
        seen[s] = True
        top = 0
        stack[0] = s
        while top >= 0:
            a = stack[top]
            top -= 1
            for b in range(26):
                if member[b] and not seen[b] and adj[a, b]:
                    seen[b] = True
                    top += 1
                    stack[top] = b
    return count


# voxel states while repairing
_EMPTY, _IN, _OUT, _QUEUED = 0, 1, 2, 3  # _OUT: removed by the opening, a candidate to put back
_SEEN = 4  # _OUT, visited by the island search


@numba.njit(cache=True)
def _simple(state, i, j, k, offs, adj6, adj26, in18, face):
    """Whether voxel (i, j, k) is simple for the voxels ``_IN`` in ``state`` under the (6, 26) pair:
    its occupied 18-neighbours 6-adjacent to it form one 6-component, its empty 26-neighbours one
    26-component (the voxel itself does not count: the test is the same for adding and removing).
    The caller keeps (i, j, k) one voxel inside every face of ``state``."""
    fg = np.empty(26, np.bool_)
    bg = np.empty(26, np.bool_)
    for n in range(26):
        v = state[i + offs[n, 0], j + offs[n, 1], k + offs[n, 2]] == _IN
        fg[n] = v and in18[n]
        bg[n] = not v
    return _components(fg, adj6, True, face) == 1 and _components(bg, adj26, False, face) == 1


@numba.njit(cache=True, inline="always")
def _core(occ, i, j, k):
    """Whether the cross of seven voxels centred on (i, j, k) is occupied."""
    return (occ[i, j, k] and occ[i - 1, j, k] and occ[i + 1, j, k] and occ[i, j - 1, k] and occ[i, j + 1, k]
            and occ[i, j, k - 1] and occ[i, j, k + 1])


@numba.njit(cache=True, parallel=True)
def _open(occ, state):
    """Fill ``state``: ``_IN`` for the voxels the opening by the cross keeps, ``_OUT`` for the
    occupied ones it removes (no occupied cross covers them); ``occ`` is padded by two empty voxels.
    Returns the number removed per x slice."""
    nx, ny, nz = occ.shape
    removed = np.zeros(nx, np.int64)
    for i in numba.prange(2, nx - 2):
        for j in range(2, ny - 2):
            for k in range(2, nz - 2):
                if not occ[i, j, k]:
                    continue
                if (_core(occ, i, j, k) or _core(occ, i - 1, j, k) or _core(occ, i + 1, j, k)
                        or _core(occ, i, j - 1, k) or _core(occ, i, j + 1, k) or _core(occ, i, j, k - 1)
                        or _core(occ, i, j, k + 1)):
                    state[i, j, k] = _IN
                else:
                    state[i, j, k] = _OUT
                    removed[i] += 1
    return removed


@numba.njit(cache=True)
def _removed(state, counts):
    """(R, 3) indices of the ``_OUT`` voxels, ``counts`` of them per x slice."""
    out = np.empty((counts.sum(), 3), np.int64)
    n = 0
    nx, ny, nz = state.shape
    for i in range(nx):
        if counts[i] == 0:
            continue
        for j in range(ny):
            for k in range(nz):
                if state[i, j, k] == _OUT:
                    out[n, 0], out[n, 1], out[n, 2] = i, j, k
                    n += 1
    return out


@numba.njit(cache=True)
def _keep_thin_parts(state, removed, offs, adjacent, min_voxels):
    """Put the removed voxels that form a 6-component of their own (nothing of it kept) of at
    least ``min_voxels`` back as they are (``_IN``): a sheet or a wire, not an island. ``adjacent``
    (26,) bool: the neighbours that connect."""
    for r in range(removed.shape[0]):
        i, j, k = removed[r, 0], removed[r, 1], removed[r, 2]
        if state[i, j, k] != _OUT:
            continue
        state[i, j, k] = _SEEN
        head, attached = 0, False
        cells = [(i, j, k)]
        while head < len(cells):
            a, b, c = cells[head]
            head += 1
            for n in range(26):
                if not adjacent[n]:
                    continue
                x, y, z = a + offs[n, 0], b + offs[n, 1], c + offs[n, 2]
                s = state[x, y, z]
                if s == _IN:
                    attached = True
                elif s == _OUT:
                    state[x, y, z] = _SEEN
                    cells.append((x, y, z))
        back = _IN if (not attached and len(cells) >= min_voxels) else _OUT
        for a, b, c in cells:
            state[a, b, c] = back


@numba.njit(cache=True)
def _put_back(state, removed, offs, adj6, adj26, in18, face):
    """Set each ``_OUT`` voxel of ``removed`` (R, 3) that is simple to ``_IN``, until none is left; a
    voxel refused is tried again when a neighbour goes in. Returns how many went in."""
    stack = []
    for r in range(removed.shape[0] - 1, -1, -1):
        i, j, k = removed[r, 0], removed[r, 1], removed[r, 2]
        if state[i, j, k] == _OUT:
            state[i, j, k] = _QUEUED
            stack.append((i, j, k))
    added = 0
    while len(stack):
        i, j, k = stack.pop()
        if not _simple(state, i, j, k, offs, adj6, adj26, in18, face):
            state[i, j, k] = _OUT
            continue
        state[i, j, k] = _IN
        added += 1
        for m in range(26):  # the neighbours' simplicity may have changed
            x, y, z = i + offs[m, 0], j + offs[m, 1], k + offs[m, 2]
            if state[x, y, z] == _OUT:
                state[x, y, z] = _QUEUED
                stack.append((x, y, z))
    return added


def is_simple(occupancy: np.ndarray, index) -> bool:
    """Whether adding the empty voxel ``index`` to ``occupancy`` ((nx, ny, nz) bool) changes no
    component, handle or cavity, under the (6, 26) pair (see the module notes).

    Example:
        >>> occ = np.zeros((5, 5, 5), bool); occ[1:4, 1:4, 2] = True; occ[2, 2, 2] = False  # a ring
        >>> is_simple(occ, (2, 2, 2)), is_simple(occ, (1, 1, 3))  # filling the hole closes it
        (False, True)
    """
    state = np.pad(np.asarray(occupancy, bool), 1).astype(np.uint8)  # _IN where occupied
    i, j, k = (int(v) + 1 for v in index)
    if state[i, j, k]:
        raise ValueError(f"index must name an empty voxel, got {tuple(index)}, which is occupied")
    return bool(_simple(state, i, j, k, _OFFS, _ADJ6, _ADJ26, _IN18, _FACE))


def repair(occupancy: np.ndarray) -> np.ndarray:
    """The occupancy without its islands and handles thinner than three voxels (see the module notes).

    Args:
        occupancy: (nx, ny, nz) bool.

    Returns:
        (nx, ny, nz) bool, a subset of ``occupancy``: the opening by the 6-neighbourhood with every
        removed voxel put back whose return changes no topology, and the components thin all through
        of at least :data:`ISLAND_VOXELS` voxels. Solid shapes come back unchanged.

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
    if not occ.any():
        return occ.copy()
    occ = np.pad(occ, 2)
    state = np.zeros(occ.shape, np.uint8)
    counts = _open(occ, state)
    removed = _removed(state, counts)
    if len(removed):
        _keep_thin_parts(state, removed, _OFFS, _FACE, ISLAND_VOXELS)
        _put_back(state, removed, _OFFS, _ADJ6, _ADJ26, _IN18, _FACE)
    return state[2:-2, 2:-2, 2:-2] == _IN
