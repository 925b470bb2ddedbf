"""The (6, 26) binary marching-cubes case table, generated rather than typed in.

For each of the 256 corner patterns of a lattice cube: the loops the surface draws on the cube's
faces (a face with two diagonal occupied corners cuts them off separately: foreground joins by
faces only), each loop triangulated by chords that stay off the cube's faces (the fattest such
triangulation), and, for the four patterns whose empty corners are a body diagonal apart, a tube
between the two loops (background joins through corners). Triangles wind counter-clockwise seen from the empty side.
"""
from __future__ import annotations

import itertools

import numpy as np

__all__ = ["COUNTS", "TRIANGLES", "CUTS"]

# corner c of a cube sits at (c & 1, c >> 1 & 1, c >> 2 & 1); edge e joins corners _EDGES[e], along
# x for e in 0..3, y for 4..7, z for 8..11 (the kernels rely on this order)
_EDGES = np.array([(c, c | 1) for c in (0, 2, 4, 6)] + [(c, c | 2) for c in (0, 1, 4, 5)]
                  + [(c, c | 4) for c in (0, 1, 2, 3)])
_CORNER = np.array([(c & 1, c >> 1 & 1, c >> 2 & 1) for c in range(8)], float)
_MID = _CORNER[_EDGES].mean(axis=1)


def _loops(case: int) -> list[list[int]]:
    """The closed polygons (lists of cut edges) the surface of corner pattern ``case`` draws on the
    cube's faces, each wound counter-clockwise seen from the empty side."""
    occ = [(case >> c) & 1 for c in range(8)]
    nxt = {}
    for axis, side in itertools.product(range(3), (0, 1)):
        normal = np.zeros(3)
        normal[axis] = 2 * side - 1
        face_edges = [e for e, (a, b) in enumerate(_EDGES) if _CORNER[a, axis] == side and _CORNER[b, axis] == side]
        cut = [e for e in face_edges if occ[_EDGES[e][0]] != occ[_EDGES[e][1]]]
        if len(cut) == 2:
            segments = [(cut[0], cut[1])]
        elif len(cut) == 4:  # occupied corners on a diagonal: each is cut off on its own (6-adjacency)
            corners = {c for e in face_edges for c in _EDGES[e] if occ[c]}
            segments = [tuple(e for e in cut if c in _EDGES[e]) for c in corners]
        else:
            segments = []
        for ea, eb in segments:
            inside = next(c for c in set(_EDGES[ea]) | set(_EDGES[eb]) if occ[c])
            turn = np.cross(_MID[eb] - _MID[ea], _CORNER[inside] - _MID[ea]) @ normal
            nxt[ea if turn > 0 else eb] = eb if turn > 0 else ea  # occupied side on the left
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop = [start]
        seen.add(start)
        while nxt[loop[-1]] != start:
            loop.append(nxt[loop[-1]])
            seen.add(loop[-1])
        loops.append(loop)
    return loops


def _components(case: int) -> int:
    """The number of groups of occupied corners joined by cube edges (6-adjacency)."""
    parent = list(range(8))

    def root(c):
        while parent[c] != c:
            c = parent[c]
        return c

    for a, b in _EDGES:
        if (case >> a) & 1 and (case >> b) & 1:
            parent[root(a)] = root(b)
    return len({root(c) for c in range(8) if (case >> c) & 1})


def _shared_face(e1: int, e2: int) -> bool:
    """Whether two edges lie on one face of the cube: a chord between their midpoints would lie in
    that face, where the neighbouring cube draws its own segments."""
    m1, m2 = _MID[e1], _MID[e2]
    return any(m1[a] == m2[a] and m1[a] in (0.0, 1.0) for a in range(3))


def _fattest(candidates) -> list[tuple[int, int, int]]:
    """The triangulation with the largest smallest triangle (in the unit cube) among ``candidates``
    (lists of triangles)."""
    def smallest(tris):
        return min(np.linalg.norm(np.cross(_MID[q] - _MID[p], _MID[r] - _MID[p])) for p, q, r in tris)

    return max(candidates, key=smallest)


def _disks(loop: list[int]) -> list[list[tuple[int, int, int]]]:
    """Every triangulation of the polygon ``loop`` (kept in its winding) whose inner edges leave the
    cube's faces alone (no chord between two edges of one face), so that the mesh stays 2-manifold
    where two cubes meet."""
    if len(loop) == 3:
        return [[tuple(loop)]]
    out = []
    a, b = loop[0], loop[1]
    for k in range(2, len(loop)):  # the triangle on the loop edge (a, b) has its apex at loop[k]
        c = loop[k]
        chords = ([(b, c)] if k > 2 else []) + ([(c, a)] if k < len(loop) - 1 else [])
        if any(_shared_face(u, v) for u, v in chords):
            continue
        right = _disks(loop[1:k + 1]) if k > 2 else [[]]
        left = _disks([a] + loop[k:]) if k < len(loop) - 1 else [[]]
        out += [[(a, b, c)] + r + l for r in right for l in left]
    return out


def _band(a: list[int], b: list[int]) -> list[tuple[int, int, int]]:
    """Triangles of a tube between the loops a and b: every loop edge used once in its own direction,
    every inner edge once each way (an oriented annulus), off the cube's faces, the fattest such."""
    boundary = {(a[i], a[(i + 1) % len(a)]) for i in range(len(a))} | {(b[i], b[(i + 1) % len(b)])
                                                                       for i in range(len(b))}
    bands = []
    for apex_a, apex_b in itertools.product(itertools.product(b, repeat=len(a)), itertools.product(a, repeat=len(b))):
        tris = [(a[i], a[(i + 1) % len(a)], apex_a[i]) for i in range(len(a))]
        tris += [(b[i], b[(i + 1) % len(b)], apex_b[i]) for i in range(len(b))]
        directed = [(t[i], t[(i + 1) % 3]) for t in tris for i in range(3)]
        inner = [(u, v) for u, v in directed if (u, v) not in boundary]
        if (len(set(directed)) == len(directed) and all((v, u) in directed for u, v in inner)
                and not any(_shared_face(u, v) for u, v in inner)):
            bands.append(tris)
    return _fattest(bands)


def _table() -> tuple[np.ndarray, np.ndarray]:
    """(256,) triangle counts and (256, T, 3) edge triples of every corner pattern, wound
    counter-clockwise seen from the empty side."""
    cases = []
    for case in range(256):
        loops = _loops(case)
        tris = []
        if len(loops) > _components(case):  # two empty corners a body diagonal apart: one tube
            assert len(loops) == 2, case
            tris = _band(*loops)
        else:
            for loop in loops:
                tris += _fattest(_disks(loop))
        cases.append(tris)
    # the winding rule above leaves the occupied side on the left of each loop; orient every
    # triangle by one case: corner 0 alone, whose triangle must face away from it
    p, q, r = cases[1][0]
    flip = np.cross(_MID[q] - _MID[p], _MID[r] - _MID[p]) @ (_MID[p] - _CORNER[0]) < 0
    width = max(len(t) for t in cases)
    counts = np.array([len(t) for t in cases], np.int64)
    table = np.full((256, width, 3), -1, np.int64)
    for case, tris in enumerate(cases):
        for i, t in enumerate(tris):
            table[case, i] = t[::-1] if flip else t
    return counts, table


#: (256,) how many triangles each corner pattern draws, and (256, width, 3) their edges (-1 past them)
COUNTS, TRIANGLES = _table()
#: (256,) the cut edges of each corner pattern, bit e for edge e
CUTS = np.array([sum(1 << e for e, (a, b) in enumerate(_EDGES) if (case >> a & 1) != (case >> b & 1))
                 for case in range(256)], np.int64)
