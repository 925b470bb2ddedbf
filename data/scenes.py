"""Procedural scenes for learning: random primitives on a ground plane, rendered with exact depth.

Each scene has a checkered ground plane, 1 to 5 primitives (sphere, box, cylinder, cone, capsule,
torus) with random colours, sizes, poses and solid textures (checker, stripes, value noise), a
random directional light with shadows, a random sky colour, and a random look-at camera. A seed
fixes all of it; the size only decides how finely it is sampled, so ``sample(s, (64, 64))`` and
``sample(s, (256, 256))`` show the same scene from the same camera (same field of view).

Metric depth must be readable from a single picture, as it is in real photographs taken with one
camera model (fixed intrinsics, floor tiles of a usual size). So every scene shares the horizontal
field of view :data:`FOV` and the ground's checker has squares of :data:`FLOOR_SQUARE` units (its
colours and contrast vary): the horizon and the squares' size then fix the camera's height and
pitch, and objects standing on the floor get their distance from their contact line.

    >>> from data import scenes
    >>> s = scenes.sample(0, size=(96, 128))
    >>> s["image"].shape, s["depth"].dtype, s["mask"].dtype, s["camera"].width
    ((96, 128, 3), dtype('float32'), dtype('bool'), 128)

Convention: ``depth`` is z in the camera frame in world units (metres, if you like), 0 for sky;
``mask`` is True on the primitives (not the ground or sky).
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from geometry import Camera

__all__ = ["Scene", "generate", "camera", "sample", "samples", "FOV", "FLOOR_SQUARE"]

PRIMITIVES = ("sphere", "box", "cylinder", "cone", "capsule", "torus")
TEXTURES = (None, "checker", "stripes", "noise")
FOV = 55.0  # horizontal field of view of every scene's camera, degrees
FLOOR_SQUARE = 0.5  # side of the ground's checker squares, world units


@dataclass
class Scene:
    """A generated scene: meshes (the ground first), camera pose, field of view and lighting."""

    meshes: list
    eye: np.ndarray
    target: np.ndarray
    fov: float
    light: np.ndarray
    ambient: float
    sky: tuple
    seed: int
    kinds: list = field(default_factory=list)


def _color(rng):
    h, s, v = rng.uniform(0, 1), rng.uniform(0.35, 0.95), rng.uniform(0.45, 1.0)
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def _texture(rng):
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    spec = {"kind": kind, "scale": float(rng.uniform(2.0, 10.0)), "contrast": float(rng.uniform(0.25, 0.7)),
            "color": _color(rng), "seed": int(rng.integers(1 << 30))}
    return spec if kind else None


def _primitive(kind, rng):
    import trimesh

    c = trimesh.creation
    if kind == "sphere":
        return c.icosphere(subdivisions=2, radius=rng.uniform(0.2, 0.45))
    if kind == "box":
        return c.box(extents=rng.uniform(0.25, 0.8, 3))
    if kind == "cylinder":
        return c.cylinder(radius=rng.uniform(0.1, 0.35), height=rng.uniform(0.3, 1.0), sections=24)
    if kind == "cone":
        return c.cone(radius=rng.uniform(0.15, 0.4), height=rng.uniform(0.3, 0.9), sections=24)
    if kind == "capsule":
        return c.capsule(height=rng.uniform(0.2, 0.7), radius=rng.uniform(0.1, 0.25), count=[16, 8])
    if kind == "torus":
        major = rng.uniform(0.2, 0.4)
        return c.torus(major_radius=major, minor_radius=rng.uniform(0.05, 0.4) * major,
                       major_sections=24, minor_sections=12)
    raise ValueError(f"kind must be one of {PRIMITIVES}, got {kind!r}")


def _rotation(rng, tilt):
    from scipy.spatial.transform import Rotation

    yaw = Rotation.from_euler("z", rng.uniform(0, 2 * np.pi))
    if tilt:
        return (yaw * Rotation.random(random_state=int(rng.integers(1 << 31)))).as_matrix()
    return yaw.as_matrix()


def generate(seed: int) -> Scene:
    """The scene of ``seed`` (any int >= 0): meshes, camera pose and lighting, independent of size."""
    import trimesh

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    # ground: a large square at z = 0, drawn but not part of the mask
    g = 30.0
    ground = trimesh.Trimesh(vertices=[[-g, -g, 0], [g, -g, 0], [g, g, 0], [-g, g, 0]], faces=[[0, 1, 2], [0, 2, 3]],
                             process=False)
    gcol = _color(rng)
    gcol = tuple(int(0.55 * c + 0.45 * 160) for c in gcol)  # muted
    ground.visual = trimesh.visual.ColorVisuals(ground, face_colors=np.tile([*gcol, 255], (2, 1)))
    gtex = {"kind": "checker", "scale": 1.0 / FLOOR_SQUARE, "contrast": float(rng.uniform(0.2, 0.6)),
            "color": _color(rng)}
    ground.metadata.update(texture=gtex, silhouette=False, name="ground")
    meshes, kinds = [ground], []
    for _ in range(int(rng.integers(1, 6))):
        kind = PRIMITIVES[rng.integers(len(PRIMITIVES))]
        m = _primitive(kind, rng)
        R = _rotation(rng, tilt=rng.uniform() < 0.4)
        v = np.asarray(m.vertices) @ R.T
        r, a = 1.3 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        lift = rng.uniform(0.2, 0.8) if rng.uniform() < 0.15 else 0.0  # a few float above the ground
        v = v + np.array([r * np.cos(a), r * np.sin(a), lift - v[:, 2].min()])
        m = trimesh.Trimesh(v, np.asarray(m.faces), process=False)
        m.visual = trimesh.visual.ColorVisuals(m, face_colors=np.tile([*_color(rng), 255], (len(m.faces), 1)))
        m.metadata.update(texture=_texture(rng), name=kind)
        meshes.append(m)
        kinds.append(kind)
    dist = rng.uniform(2.5, 4.5)
    el, az = np.radians(rng.uniform(15, 55)), rng.uniform(0, 2 * np.pi)
    target = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), rng.uniform(0.1, 0.4)])
    eye = target + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    fov = FOV
    lel, laz = np.radians(rng.uniform(25, 75)), rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(lel) * np.cos(laz), np.cos(lel) * np.sin(laz), np.sin(lel)])
    ambient = float(rng.uniform(0.25, 0.45))
    sky = tuple(int(c) for c in rng.integers(150, 240, 3))
    return Scene(meshes, eye, target, fov, light, ambient, sky, int(seed), kinds)


def _size(size):
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and
            all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"size must be (height, width) in pixels, got {size!r}")
    return int(size[0]), int(size[1])


def camera(scene: Scene, size=(128, 128)) -> Camera:
    """The scene's camera for an image of ``size`` = (height, width); the horizontal FOV is fixed."""
    h, w = _size(size)
    return Camera.look_at(scene.eye, scene.target, up=(0, 0, 1), fov=scene.fov, width=w, height=h)


def sample(seed: int, size=(128, 128)) -> dict:
    """One training sample.

    Args:
        seed: selects the scene (and its camera); the same seed gives the same scene at any size.
        size: (height, width) of the image.

    Returns:
        dict with ``image`` (H, W, 3) uint8, ``depth`` (H, W) float32 (metric z, 0 for sky),
        ``mask`` (H, W) bool (the primitives), ``camera`` (``geometry.Camera``, one view) and
        ``seed``.
    """
    from data.renderer import render

    scene = generate(seed)
    cam = camera(scene, size)
    images, depths, masks = render(scene.meshes, cam, background="solid", background_color=scene.sky,
                                   light=scene.light, ambient=scene.ambient, shadows=True, progress=False)
    # the ground is drawn but carries metadata["silhouette"] = False, so masks hold the primitives only
    return {"image": images[0], "depth": depths[0], "mask": masks[0], "camera": cam, "seed": int(seed)}


def samples(n: int, start: int = 0, size=(128, 128)):
    """Generate ``n`` samples for seeds ``start, start + 1, ...`` (a generator of dicts)."""
    for seed in range(int(start), int(start) + int(n)):
        yield sample(seed, size)
