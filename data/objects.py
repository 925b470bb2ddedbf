"""Procedural test objects that stress a visual hull, as watertight ``trimesh.Trimesh`` meshes.

Each object is a signed distance function (negative inside) built from a few primitives and meshed
with marching cubes, so the result is closed and consistently oriented: ``mesh.is_watertight`` is
True and ``mesh.volume`` is the ground-truth volume. Vertices are coloured per part. Objects sit in
about [-1, 1]^3, z up, resting near z = -0.7.

What each one stresses:

- ``sphere``, ``box``: the easy cases (a box's hull from enough views is the box).
- ``torus``: a hole (genus 1) that a silhouette sees only from above.
- ``mug``: a concavity no silhouette can see (the hull fills the cup) and a handle (genus 1).
- ``bowl``: a wide open concavity (a spherical shell cut open at the top) on a foot.
- ``table``: thin legs and the space under the top.
- ``pretzel``: genus 2 (two holes side by side).
- ``urchin``: thin spikes sticking out of a sphere.

Example:
    >>> from data import objects
    >>> m = objects.torus()
    >>> bool(m.is_watertight), round(float(m.volume), 2)
    (True, 0.74)
"""
from __future__ import annotations

import numpy as np

__all__ = ["NAMES", "get", "contains", "sphere", "box", "torus", "mug", "bowl", "table", "pretzel", "urchin",
           "mesh_from_sdf", "textured"]

# ---------------------------------------------------------------------------------------- SDFs
# Every primitive: points (N, 3) -> signed distance (N,), negative inside.


def _sphere(p, centre, r):
    return np.linalg.norm(p - np.asarray(centre), axis=1) - r


def _box(p, centre, half):
    q = np.abs(p - np.asarray(centre)) - np.asarray(half)
    return np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)


def _cylinder(p, centre, r, half_height, axis=2):
    q = p - np.asarray(centre)
    radial = np.delete(q, axis, axis=1)
    d = np.stack([np.linalg.norm(radial, axis=1) - r, np.abs(q[:, axis]) - half_height], axis=1)
    return np.linalg.norm(np.maximum(d, 0), axis=1) + np.minimum(d.max(axis=1), 0)


def _torus(p, centre, major, minor, axis=2):
    q = p - np.asarray(centre)
    radial = np.linalg.norm(np.delete(q, axis, axis=1), axis=1) - major
    return np.hypot(radial, q[:, axis]) - minor


def _capsule(p, a, b, r):
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0, 1)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1) - r


def _round_cone(p, a, b, r1, r2):
    """A cone with rounded ends from a sphere of radius r1 at ``a`` to one of radius r2 at ``b``
    (exact SDF, after Inigo Quilez's sdRoundCone)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ba = b - a
    l2 = ba @ ba
    rr = r1 - r2
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    pa = p - a
    y = pa @ ba
    z = y - l2
    x2 = l2 * np.maximum(l2 * np.einsum("ij,ij->i", pa, pa) - y * y, 0)  # = |pa * l2 - ba * y|^2
    y2 = y * y * l2
    z2 = z * z * l2
    k = np.sign(rr) * rr * rr * x2
    far = np.sign(z) * a2 * z2 > k
    near = np.sign(y) * a2 * y2 < k
    side = (np.sqrt(x2 * a2 * il2) + y * rr) * il2 - r1
    return np.where(far, np.sqrt(x2 + z2) * il2 - r2, np.where(near, np.sqrt(x2 + y2) * il2 - r1, side))


# ------------------------------------------------------------------------------------- meshing


def mesh_from_sdf(parts, lo, hi, resolution=96, colors=None, name="object"):
    """Mesh the union of SDF ``parts`` over the box [lo, hi] with marching cubes.

    Args:
        parts: list of callables ``f(points (N, 3)) -> (N,)`` signed distances (negative inside);
            a part may also be a pair ``(f, g)`` meaning ``f`` minus ``g`` (a cut-out).
        lo, hi: (3,) corners of a box that contains the object with some margin.
        resolution: grid cells along the longest side.
        colors: one RGB (0..255) per part for the vertex colours, or None for grey.
        name: stored in ``mesh.metadata["name"]``.

    Returns:
        A watertight ``trimesh.Trimesh`` with outward normals and vertex colours, one connected body
        (bits thinner than a grid cell that marching cubes cuts off, such as a spike's tip, are dropped).
    """
    import trimesh
    from skimage.measure import marching_cubes

    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    step = (hi - lo).max() / int(resolution)
    shape = np.ceil((hi - lo) / step).astype(int) + 3  # one empty cell of padding on each side
    origin = lo - step
    axes = [origin[i] + step * np.arange(shape[i]) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)

    def evaluate(points):
        ds = []
        for part in parts:
            if isinstance(part, tuple):
                f, g = part
                ds.append(np.maximum(f(points), -g(points)))
            else:
                ds.append(part(points))
        return np.stack(ds, axis=1)

    per_part = evaluate(grid)
    sdf = per_part.min(axis=1).reshape(shape)
    sdf[[0, -1]] = sdf[:, [0, -1]] = sdf[:, :, [0, -1]] = step  # closed at the grid's border
    verts, faces, _, _ = marching_cubes(sdf.astype(np.float32), level=0.0, spacing=(step, step, step))
    verts = verts + origin
    mesh = trimesh.Trimesh(verts, faces, process=True)
    if mesh.body_count > 1:  # slivers of a part thinner than a cell (a spike's tip) come off: drop them
        bodies = mesh.split(only_watertight=False)
        mesh = max(bodies, key=lambda b: abs(b.volume))
    if mesh.volume < 0:
        mesh.invert()
    cols = np.asarray(colors if colors is not None else [(180, 180, 180)] * len(parts), dtype=np.uint8)
    which = evaluate(mesh.vertices).argmin(axis=1)
    rgba = np.concatenate([cols[which], np.full((len(which), 1), 255, np.uint8)], axis=1)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba)
    mesh.metadata["name"] = name
    if not mesh.is_watertight:
        raise RuntimeError(f"meshing {name} at resolution {resolution} gave a mesh that is not watertight; "
                           f"raise the resolution")
    return mesh


# ------------------------------------------------------------------------------------- objects


def sphere(radius: float = 0.8, resolution: int = 64):
    """A sphere of ``radius`` at the origin (icosphere, exact vertices on the sphere)."""
    import trimesh

    subdiv = int(np.clip(np.log2(max(resolution, 8) / 8) + 1, 1, 5))
    mesh = trimesh.creation.icosphere(subdivisions=subdiv, radius=radius)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.tile([200, 120, 60, 255], (len(mesh.vertices), 1)))
    mesh.metadata["name"] = "sphere"
    return mesh


def box(extents=(1.2, 0.8, 0.6), resolution: int = 0):
    """An axis-aligned box centred at the origin. ``resolution`` is ignored (the box is exact)."""
    import trimesh

    del resolution
    mesh = trimesh.creation.box(extents=extents)
    colors = np.array([[200, 60, 60, 255], [60, 200, 60, 255], [60, 60, 200, 255]], np.uint8)
    normal_axis = np.abs(mesh.face_normals).argmax(axis=1)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=colors[normal_axis])
    mesh.metadata["name"] = "box"
    return mesh


def torus(major: float = 0.6, minor: float = 0.25, resolution: int = 96):
    """A torus around the z axis: one hole (genus 1), visible in silhouettes only from above/below."""
    return mesh_from_sdf([lambda p: _torus(p, (0, 0, 0), major, minor)],
                         [-major - minor] * 2 + [-minor], [major + minor] * 2 + [minor],
                         resolution, [(210, 140, 60)], "torus")


def mug(resolution: int = 96):
    """A mug: a cavity open at the top (a concavity silhouettes cannot see) and a handle (genus 1)."""
    body = lambda p: _cylinder(p, (0, 0, 0), 0.5, 0.6)  # noqa: E731
    cavity = lambda p: _cylinder(p, (0, 0, 0.15), 0.42, 0.6)  # noqa: E731  (floor 0.15 thick)
    handle_ring = lambda p: _torus(p, (0.5, 0, 0), 0.3, 0.07, axis=1)  # noqa: E731
    outside_body = lambda p: np.maximum(handle_ring(p), 0.45 - p[:, 0])  # noqa: E731
    return mesh_from_sdf([(body, cavity), outside_body], (-0.55, -0.55, -0.65), (0.9, 0.55, 0.65),
                         resolution, [(230, 230, 220), (60, 110, 200)], "mug")


def bowl(resolution: int = 112):
    """A bowl: a spherical shell (radius 0.8, wall 0.08) cut open above its centre's plane + 0.1, on a
    foot ring. Its inside is a concavity that silhouettes from above the rim cannot see."""
    centre = np.array([0.0, 0.0, 0.25])
    cup = lambda p: np.maximum(_sphere(p, centre, 0.8), p[:, 2] - (centre[2] + 0.1))  # noqa: E731
    hollow = lambda p: _sphere(p, centre, 0.72)  # noqa: E731
    foot = lambda p: _cylinder(p, (0, 0, -0.58), 0.3, 0.06)  # noqa: E731
    return mesh_from_sdf([(cup, hollow), foot], (-0.85, -0.85, -0.7), (0.85, 0.85, 0.4), resolution,
                         [(225, 215, 190), (150, 120, 90)], "bowl")


def table(resolution: int = 112):
    """A table: a top on four thin legs joined by a stretcher frame (thin parts, loops, overhangs)."""
    top = lambda p: _box(p, (0, 0, 0.55), (0.8, 0.5, 0.04))  # noqa: E731
    legs = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            legs.append(lambda p, sx=sx, sy=sy: _box(p, (0.7 * sx, 0.4 * sy, -0.1), (0.04, 0.04, 0.64)))
    rails = [lambda p: _box(p, (0, 0.4, -0.45), (0.7, 0.025, 0.025)),
             lambda p: _box(p, (0, -0.4, -0.45), (0.7, 0.025, 0.025))]
    parts = [top] + legs + rails
    colors = [(150, 90, 50)] + [(90, 60, 40)] * 4 + [(120, 80, 50)] * 2
    return mesh_from_sdf(parts, (-0.85, -0.55, -0.75), (0.85, 0.55, 0.6), resolution, colors, "table")


def pretzel(resolution: int = 112):
    """Two fused tori side by side: genus 2."""
    a = lambda p: _torus(p, (-0.42, 0, 0), 0.4, 0.14)  # noqa: E731
    b = lambda p: _torus(p, (0.42, 0, 0), 0.4, 0.14)  # noqa: E731
    return mesh_from_sdf([a, b], (-1.0, -0.6, -0.2), (1.0, 0.6, 0.2), resolution,
                         [(200, 150, 80), (180, 110, 60)], "pretzel")


def urchin(spikes: int = 14, resolution: int = 96, seed: int = 0):
    """A sphere with ``spikes`` thin cones on a Fibonacci spiral: thin parts in every direction.

    ``seed`` turns the spiral about z.
    """
    k = np.arange(spikes) + 0.5
    z = 1 - 2 * k / spikes
    phi = np.pi * (1 + 5 ** 0.5) * k + seed
    dirs = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], axis=1)
    parts = [lambda p: _sphere(p, (0, 0, 0), 0.45)]
    for d in dirs:
        parts.append(lambda p, d=d: _round_cone(p, 0.35 * d, 0.95 * d, 0.08, 0.02))
    colors = [(80, 160, 90)] + [(220, 200, 80)] * spikes
    return mesh_from_sdf(parts, (-1, -1, -1), (1, 1, 1), resolution, colors, "urchin")


_CATALOG = {"sphere": sphere, "box": box, "torus": torus, "mug": mug, "bowl": bowl, "table": table,
            "pretzel": pretzel, "urchin": urchin}
#: names of the procedural objects, for ``get(name)``
NAMES = tuple(_CATALOG)


def get(name: str, **kwargs):
    """The object called ``name`` (one of :data:`NAMES`), built with ``kwargs``."""
    if name not in _CATALOG:
        raise ValueError(f"name must be one of {list(NAMES)}, got {name!r}")
    return _CATALOG[name](**kwargs)


def textured(mesh, kind: str = "noise", scale: float = 8.0, contrast: float = 0.9, color=(120, 40, 20), seed: int = 0):
    """A copy of ``mesh`` painted with a procedural solid texture, which :func:`data.render` draws.

    The default is what photo-consistency needs to see anything: smooth value noise whose blobs
    (about ``1 / scale`` = 0.125 world units, some 15 pixels in a 320 x 240 view of an object 2 units
    wide) are larger than a voxel's footprint at resolution 128, so a surface point keeps its colour
    under a pixel of parallax; a contrast (0.9) far above 8-bit noise; and a brown tint, so the
    pattern changes hue as well as brightness.

    Args:
        mesh: a ``trimesh.Trimesh`` (not changed).
        kind, scale, contrast, color, seed: the texture (see :func:`data.textures.texture_factor`).

    Example:
        >>> m = textured(sphere())
        >>> m.metadata["texture"]["kind"], "texture" in sphere().metadata
        ('noise', False)
    """
    from data.textures import texture_factor

    spec = {"kind": kind, "scale": float(scale), "contrast": float(contrast), "color": tuple(color), "seed": int(seed)}
    texture_factor(spec, np.zeros((1, 3)))  # checks kind
    out = mesh.copy()
    out.metadata = dict(mesh.metadata, texture=spec)
    return out


def contains(mesh, points) -> np.ndarray:
    """Ground truth for a watertight mesh: which points lie inside it.

    Args:
        mesh: a watertight ``trimesh.Trimesh`` (every object here is one).
        points: (N, 3) world points, e.g. the voxel centres of a carved grid.

    Returns:
        (N,) bool, from Open3D's ray-parity occupancy (fast: millions of points a second).

    Example:
        >>> contains(sphere(radius=0.5), np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.9]])).tolist()
        [True, False]
    """
    import open3d as o3d

    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    return scene.compute_occupancy(o3d.core.Tensor(points.astype(np.float32))).numpy() > 0
