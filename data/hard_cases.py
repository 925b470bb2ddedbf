"""Rendered hard cases for silhouette estimation: captures that defeat a single view, with ground truth.

Each case is a scene that real captures are made of, rendered from a rig of calibrated cameras with
exact object silhouettes (the support the object stands on is drawn but is not in them):

- ``"dark"``: a matte white urchin (thin spikes everywhere) on black, one directional light with
  low ambient light and cast shadows, so that the side away from the light is a dark grey of about
  32 of 255, not far above the background: the Middlebury dinosaur.
- ``"floor"``: a pretzel (two holes) lying on a large checkered floor that fills every view, with
  cast shadows and specular highlights on the object: the floor is seen through the holes and is
  as consistent across the views as the object is.
- ``"cloth"``: a wooden table (thin legs, the cloth seen under its top) on a blue cloth (a floor
  with folds of value noise, and a blue noise backdrop), each view at its own exposure (a gain
  between 0.6 and 1.4, clipped): the colour models of one view do not carry over to the next.
- ``"turntable"``: a glazed mug on a light grey turntable disc that lies inside the frame in
  every view, on a dark background; a few of the views (about one in six, at most 5) are closer and
  cut the top of the mug at the image border.

Every image also carries sensor noise (:data:`SENSOR_NOISE`). Cameras look down on the object from
at least 10 degrees above the floor, as a photographer's do, so no view looks from under the support.

    >>> from data.hard_cases import HARD_CASES, hard_case
    >>> mv = hard_case("turntable", views=6, size=(48, 36))
    >>> len(mv), mv.format, mv.images[0].shape, mv.silhouettes[0].dtype
    (6, 'render', (36, 48, 3), dtype('bool'))

Convention: as for every rendered set (:func:`data.render_views`): depths are camera z of the
first surface hit, support included, ``bounds`` is the object's box grown by 5% per side.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from geometry import Camera

__all__ = ["HARD_CASES", "SENSOR_NOISE", "EXPOSURE", "CaseScene", "hard_case", "hard_case_scene", "expose"]

#: the case names, in the order the benchmark lists them
HARD_CASES = ("dark", "floor", "cloth", "turntable")
#: standard deviation of the additive Gaussian sensor noise in grey levels: a consumer camera at a
#: low ISO; every real image has some, and a segmentation must not rely on flat colours
SENSOR_NOISE = 2.0
#: the range of the per-view exposure gains of "cloth": about half a stop either way, what auto
#: exposure does between views that see more or less of a bright object or a dark backdrop
EXPOSURE = (0.6, 1.4)
#: the largest number of close views of "turntable" (the brief asks for 3 to 5 of 24)
MAX_CLOSE_VIEWS = 5


@dataclass(frozen=True)
class CaseScene:
    """What a case renders: the object, its support, the cameras and how to shade and expose them.

    Attributes:
        object: the object, a ``trimesh.Trimesh`` (the one mesh in the silhouettes).
        supports: the meshes it stands on (floor, disc), ``metadata["silhouette"] = False``.
        cameras: ``geometry.Camera``, B views.
        options: keyword arguments of :func:`data.render` (light, ambient, shadows, specular...).
        gains: (B,) per-view exposure gains applied after rendering (see :func:`expose`).
    """

    object: object
    supports: list
    cameras: Camera
    options: dict
    gains: np.ndarray

    @property
    def meshes(self) -> list:
        """The object first, then its supports: what :func:`data.render` draws."""
        return [self.object, *self.supports]


# ------------------------------------------------------------------------------------- meshes


@lru_cache(maxsize=None)
def _built(name: str):
    """The catalogue object ``name`` (built once per process: the urchin takes a second or two)."""
    from data import objects

    return objects.get(name)


def _object(name: str, yaw: float, colors):
    """A copy of the catalogue object turned by ``yaw`` radians about z, resting on z = 0.

    ``colors`` maps each of the object's part colours (RGB) to a new one, or is one RGB for all.
    """
    import trimesh

    mesh = _built(name).copy()
    c, s = np.cos(yaw), np.sin(yaw)
    v = np.asarray(mesh.vertices) @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T
    v[:, 2] -= v[:, 2].min()
    rgba = np.asarray(mesh.visual.vertex_colors).copy()
    if isinstance(colors, dict):
        for old, new in colors.items():
            rgba[(rgba[:, :3] == old).all(axis=1), :3] = new
    else:
        rgba[:, :3] = colors
    out = trimesh.Trimesh(v, np.asarray(mesh.faces), vertex_colors=rgba, process=False)
    out.metadata["name"] = name
    return out


def _floor(color, texture, half: float = 30.0):
    """A square floor at z = 0 of side ``2 * half`` (to the horizon from every camera here)."""
    import trimesh

    v = [[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]]
    floor = trimesh.Trimesh(v, [[0, 1, 2], [0, 2, 3]], face_colors=[*color, 255], process=False)
    floor.metadata.update(silhouette=False, texture=texture, specular=0.0, name="floor")
    return floor


def _disc(radius: float, thickness: float, color):
    """A turntable: a flat cylinder of ``radius`` whose top face is the plane z = 0."""
    import trimesh

    disc = trimesh.creation.cylinder(radius=radius, height=thickness, sections=128)
    disc.apply_translation([0, 0, -thickness / 2])
    disc.visual = trimesh.visual.ColorVisuals(disc, face_colors=np.tile([*color, 255], (len(disc.faces), 1)))
    disc.metadata.update(silhouette=False, specular=0.0, name="turntable")
    return disc


# -------------------------------------------------------------------------------------- cases


def _dark(views, w, h, rng):
    from data.rigs import hemisphere

    plaster = (228, 226, 220)  # matte off-white, like the dinosaur's plaster
    obj = _object("urchin", rng.uniform(0, 2 * np.pi), plaster)
    obj.apply_translation([0, 0, -obj.bounds[:, 2].mean()])  # floating, centred: nothing holds it
    # radius 4.4 keeps the urchin (about 1.9 across) inside the 40-degree frame with a margin
    cams = hemisphere(views, radius=4.4, min_elevation=10, max_elevation=65, fov=40, width=w, height=h)
    # one light from a side, 50 degrees up: the far side and the underside get ambient light alone,
    # 0.14 * 0.89 * 255 = 32 grey levels; the backdrop is black velvet (6 levels)
    options = dict(light=(0.6, -0.2, 0.75), ambient=0.14, shadows=True, background_color=(6, 6, 7))
    return CaseScene(obj, [], cams, options, np.ones(views))


def _floor_case(views, w, h, rng):
    from data.rigs import hemisphere

    obj = _object("pretzel", rng.uniform(0, 2 * np.pi), {})
    # beige and grey-brown tiles of a quarter unit: a busy, neutral pattern next to a brown object
    tiles = {"kind": "checker", "scale": 4.0, "contrast": 0.45, "color": (70, 62, 58)}
    floor = _floor((182, 176, 164), tiles)
    # from 25 degrees up, the 40-degree frame's top row looks 10 degrees below the horizon: the
    # floor fills every view, border to border
    cams = hemisphere(views, radius=4.0, min_elevation=25, max_elevation=70, target=(0, 0, 0.14), fov=40,
                      width=w, height=h)
    options = dict(light=(-0.45, 0.55, 0.75), ambient=0.35, shadows=True, specular=0.55, shininess=30.0,
                   background_color=(205, 210, 220))
    return CaseScene(obj, [floor], cams, options, np.ones(views))


def _cloth(views, w, h, rng):
    from data.rigs import hemisphere

    obj = _object("table", rng.uniform(0, 2 * np.pi), {})
    folds = {"kind": "noise", "scale": 2.5, "contrast": 0.55, "color": (12, 20, 60), "seed": int(rng.integers(1 << 30))}
    cloth = _floor((48, 78, 168), folds)
    # low cameras (from 12 degrees) see over the cloth onto the backdrop
    cams = hemisphere(views, radius=4.8, min_elevation=12, max_elevation=60, target=(0, 0, 0.6), fov=40,
                      width=w, height=h)
    options = dict(light=(0.5, 0.4, 0.75), ambient=0.3, shadows=True, background="noise",
                   background_color=(40, 66, 150))
    lo, hi = EXPOSURE
    gains = lo + (hi - lo) * rng.permutation(views) / max(views - 1, 1)  # the whole range, shuffled
    return CaseScene(obj, [cloth], cams, options, gains)


def _turntable(views, w, h, rng):
    from data.rigs import turntable

    # the mug's white body and blue handle, glazed red-orange and dark red
    obj = _object("mug", rng.uniform(0, 2 * np.pi), {(230, 230, 220): (196, 78, 48), (60, 110, 200): (140, 42, 36)})
    disc = _disc(0.95, 0.08, (206, 206, 200))
    close = min(MAX_CLOSE_VIEWS, max(1, round(views / 6)))
    start = float(rng.uniform(0, 360))
    # the ring frames the disc and the mug with room to spare; the close views (nearer, lower, aimed
    # at the disc) cut the top of the mug and keep the disc inside the frame
    ring = turntable(views - close, elevation=30, radius=4.4, target=(0, 0, 0.45), fov=40, width=w, height=h,
                     start=start)
    near = turntable(close, elevation=25, radius=3.5, target=(0, 0, 0.2), fov=40, width=w, height=h,
                     start=start + 180.0 / (views - close))
    order = np.argsort(np.r_[np.arange(views - close) / (views - close), (np.arange(close) + 0.5) / close],
                       kind="stable")
    cams = Camera.concat([ring, near])[order.tolist()]
    options = dict(light=(0.3, -0.45, 0.85), ambient=0.3, shadows=True, specular=0.35, shininess=60.0,
                   background_color=(24, 24, 28))
    return CaseScene(obj, [disc], cams, options, np.ones(views))


_BUILDERS = {"dark": _dark, "floor": _floor_case, "cloth": _cloth, "turntable": _turntable}


def _check(name, views, size, seed):
    if name not in HARD_CASES:
        raise ValueError(f"name must be one of {HARD_CASES}, got {name!r}")
    if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or views < 2:
        raise ValueError(f"views must be an integer of at least 2 (co-segmentation needs several), got {views!r}")
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and
            all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 8 for s in size)):
        raise ValueError(f"size must be (width, height) in pixels, each at least 8, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


# ------------------------------------------------------------------------------------------ API


def hard_case_scene(name: str, *, views: int = 24, size=(320, 240), seed: int = 0) -> CaseScene:
    """The scene of a hard case, not rendered: object, supports, cameras, shading and exposures.

    Args:
        name: one of :data:`HARD_CASES`.
        views: number of cameras, at least 2.
        size: (width, height) of the images in pixels.
        seed: turns the object about its vertical axis and draws the exposures, the noise patterns
            and the turntable's start angle; the same seed gives the same scene at any size.

    Example:
        >>> s = hard_case_scene("cloth", views=6, size=(32, 24))
        >>> len(s.cameras), len(s.meshes), round(float(s.gains.min()), 2), round(float(s.gains.max()), 2)
        (6, 2, 0.6, 1.4)
    """
    _check(name, views, size, seed)
    rng = np.random.default_rng([int(seed), HARD_CASES.index(name)])
    return _BUILDERS[name](int(views), int(size[0]), int(size[1]), rng)


def expose(images, gains, *, noise: float = SENSOR_NOISE, seed: int = 0) -> np.ndarray:
    """What the camera records: ``images`` times a per-view ``gains``, plus Gaussian sensor noise.

    Args:
        images: (B, H, W, 3) uint8 rendered images.
        gains: (B,) exposure gains (1 = as rendered).
        noise: standard deviation of the sensor noise in grey levels (0: none).
        seed: seeds the noise.

    Returns:
        (B, H, W, 3) uint8, rounded and clipped to 0..255 (a gain above 1 saturates highlights).

    Example:
        >>> im = np.full((2, 1, 1, 3), 200, np.uint8)
        >>> expose(im, [0.5, 1.5], noise=0)[:, 0, 0, 0].tolist()
        [100, 255]
    """
    images = np.asarray(images)
    gains = np.asarray(gains, np.float64)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (B, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if gains.shape != (len(images),) or not np.isfinite(gains).all() or (gains <= 0).any():
        raise ValueError(f"gains must be {len(images)} positive numbers, one per image, got {gains.tolist()}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a non-negative standard deviation in grey levels, got {noise!r}")
    out = images.astype(np.float32) * gains.astype(np.float32)[:, None, None, None]
    if noise > 0:
        out += np.random.default_rng(seed).normal(0.0, noise, out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def hard_case(name: str, *, views: int = 24, size=(320, 240), seed: int = 0, progress=None):
    """Render a hard case: a ``data.MultiView`` with ground-truth silhouettes of the object alone.

    Args:
        name: one of :data:`HARD_CASES` (see the module's description of each).
        views: number of views, at least 2.
        size: (width, height) of the images in pixels.
        seed: see :func:`hard_case_scene`; it also seeds the sensor noise.
        progress: a tqdm bar over the views (default: see :func:`data.progress.show_progress`).

    Returns:
        ``data.MultiView`` with ``format="render"``: images (exposed, noisy), cameras, silhouettes
        (True on the object, never on its support), depths, ``bounds`` (the object's box, 5% grown)
        and names ``"0000"``, ``"0001"``...

    Example:
        >>> mv = hard_case("floor", views=2, size=(32, 24))
        >>> bool(mv.silhouettes[0].any()), bool(mv.silhouettes[0].all())
        (True, False)
    """
    from data.renderer import render_views

    scene = hard_case_scene(name, views=views, size=size, seed=seed)
    mv = render_views(scene.meshes, scene.cameras, seed=int(seed), progress=progress, **scene.options)
    images = expose(np.stack(mv.images), scene.gains, seed=int(seed) * len(HARD_CASES) + HARD_CASES.index(name))
    return mv.replace(images=list(images))
