"""The support under an object (a turntable disc, a floor patch): consistent across views, yet not the object.

A turntable or floor that the single-view masks take for object is seen by every view at the same
place, so the voting hull keeps it: the hull is the object on a wide, flat base. Geometry finds
that base; colour then decides, pixel by pixel, what is support and what is object.

- Up is where the cameras' up axes point (photographs are taken upright, and rigs stand on the
  floor): the mean of ``-R[1]`` over the views, used only when the views agree on it
  (:data:`UP_AGREEMENT`).
- The hull is cut into layers across up (:data:`LAYER_VOXELS` thick). A support is a base in the
  lower half, its widest layer at least :data:`WIDER` times the area of the object above it; the
  object is what lies above the first layer that narrow, and must be tall
  (:data:`OBJECT_HEIGHT`). Seen only from above, a flat disc's hull is a lens around the disc's
  plane, widest there: the base is everything below the object.
- A cone or a pyramid is widest at its foot too: the base is a support only when its pixels'
  colours are not the object's (:func:`distinct_colours`).
- In each view, the pixels the base reprojects to are the support's (:meth:`Support.pixels`):
  :func:`carve.segmentation.multiview.trimap` makes them "probable", never sure object, so the
  view's own colour models decide them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carve.grid import VoxelGrid
from carve.hull.reprojection import reproject

__all__ = ["Support", "find_support", "up_direction", "UP_AGREEMENT", "WIDER", "OBJECT_HEIGHT", "LAYER_VOXELS",
           "DISTINCT_FACTOR", "DISTINCT_MIN", "distinct_colours"]

#: the cameras' up axes must agree this well (length of their mean unit vector) to define up:
#: 0.5 holds for any rig within 60 degrees of upright, and fails for views from all around
UP_AGREEMENT = 0.5
#: a base is a support when its widest layer has at least this many times the area of the object
#: above it (the median of the layers above the first one that narrow): a disc or floor patch under
#: an object is several times wider; a bottle's foot or a mug's base is not
WIDER = 2.0
#: and the narrow part above must span at least this share of the hull's height: an object stands
#: on the base, not a short tip
OBJECT_HEIGHT = 0.3
#: a base's colours are distinct from the object's when their median CIELAB distance to the
#: object's colour clusters is this many times the object pixels' own (shading spreads an object's
#: colours around its clusters; another material sits well outside that spread) ...
DISTINCT_FACTOR = 2.0
#: ... and at least this many CIELAB units (about four just-noticeable differences)
DISTINCT_MIN = 10.0
#: layers are this many voxels thick: thin enough to resolve a support's rim, thick enough that
#: voxel centres on a lattice tilted against up do not alias into alternating empty and full layers
LAYER_VOXELS = 2


@dataclass
class Support:
    """A support found under the object: its base (hull voxels) and where each view sees it.

    Attributes:
        up: (3,) unit vector, world up. top: height (along ``up``) of the base's top.
        base_voxels: voxels of the hull in the base; area_ratio: the base's widest layer over the
            object's median layer.
        reprojection: (B, H, W) bool, the base's pixels in each view.
    """

    up: np.ndarray
    top: float
    base_voxels: int
    area_ratio: float
    reprojection: np.ndarray
    kind: str = "base"

    def pixels(self, view: int) -> np.ndarray:
        """(H, W) bool: the support's pixels in view ``view``."""
        return self.reprojection[view]

    def summary(self) -> dict:
        """A JSON-ready record: up, top, base voxels, area ratio."""
        return {"up": [round(float(v), 4) for v in self.up], "top": float(self.top),
                "base_voxels": int(self.base_voxels), "area_ratio": round(float(self.area_ratio), 2)}


def distinct_colours(images, masks, base, body, max_samples: int = 50_000) -> bool:
    """Whether the pixels only the base covers have colours the object's pixels do not explain.

    Object colours: k-means (4 clusters) in CIELAB of the masked pixels the body (the upper part of
    the object) covers; the base's pixels (masked, not covered by the body) are distinct when their median
    distance to the nearest object cluster exceeds :data:`DISTINCT_FACTOR` times the object pixels'
    own median distance and :data:`DISTINCT_MIN` CIELAB units.

    Args:
        images: B (H, W, 3) uint8; masks: B (H, W) bool; base, body: (B, H, W) bool reprojections.
    """
    from carve.segmentation.colour import kmeans, lab, nearest

    pools = {"base": [], "body": []}
    for im, m, b, o in zip(images, masks, base, body):
        colours = lab(im)
        pools["base"].append(colours[m & b & ~o])
        pools["body"].append(colours[m & o])
    base_px, body_px = (np.concatenate(pools[k]).astype(np.float32) for k in ("base", "body"))
    if len(base_px) < 100 or len(body_px) < 100:  # too few pixels to compare colour models
        return False
    rng = np.random.default_rng(0)
    base_px = base_px[rng.permutation(len(base_px))[:max_samples]]
    body_px = body_px[rng.permutation(len(body_px))[:max_samples]]
    centres, _ = kmeans(body_px, 4)
    own = np.sqrt(np.median(nearest(body_px, centres)[0]))
    away = np.sqrt(np.median(nearest(base_px, centres)[0]))
    return bool(away > max(DISTINCT_FACTOR * own, DISTINCT_MIN))


def up_direction(cameras) -> np.ndarray | None:
    """World up from B cameras' orientation: the normalised mean of ``-R[b, 1]``, or None if they disagree.

    Example:
        >>> from geometry import Camera
        >>> ring = [[3, 0, 1], [0, 3, 1], [-3, 0, 1], [0, -3, 1]]
        >>> cams = Camera.look_at(ring, up=(0, 0, 1), fov=40, width=32, height=32)
        >>> up_direction(cams).round(2).tolist()
        [0.0, 0.0, 1.0]
    """
    ups = -np.asarray(cameras.numpy().R)[:, 1, :]
    mean = ups.mean(0)
    if np.linalg.norm(mean) < UP_AGREEMENT:
        return None
    return mean / np.linalg.norm(mean)


def find_support(hull: VoxelGrid, cameras, consensus: np.ndarray, images=None, masks=None) -> Support | None:
    """The support under the object in ``hull`` (a voting hull), or None when there is none.

    Args:
        hull: the hull of the current masks (:class:`carve.grid.VoxelGrid`).
        cameras: the B cameras (:class:`geometry.Camera`) with width and height.
        consensus: (B, H, W) bool, the hull's reprojection (its size gives the images').
        images, masks: B (H, W, 3) uint8 images and their (H, W) bool masks: when given, a base
            whose colours the object's own explain (:func:`distinct_colours`) is no support: a
            cone's or a pyramid's wide bottom is the object.

    Returns:
        :class:`Support`, or None (no agreed up direction, a hull too flat to judge, or no base
        :data:`WIDER` times wider than a tall object above it).
    """
    up = up_direction(cameras)
    if up is None or hull.count() == 0:
        return None
    points = hull.points()
    height = points @ up
    thick = LAYER_VOXELS * hull.voxel_size
    layer = np.floor((height - height.min()) / thick).astype(np.int64)
    area = np.bincount(layer)
    n = len(area)
    peak = int(np.argmax(area))
    if n < 6 or peak > n // 2:  # too flat to hold an object above a base, or widest above mid-height
        return None
    narrow = np.flatnonzero(area[peak:] * WIDER <= area[peak])
    if len(narrow) == 0:
        return None
    top_layer = peak + int(narrow[0])
    above = area[top_layer:]
    if len(above) < OBJECT_HEIGHT * n or np.median(above) * WIDER > area[peak]:
        return None  # what is narrow above the base is a short tip, or only a dip
    in_base = layer < top_layer
    base = VoxelGrid(np.zeros_like(hull.occupancy), lo=hull.lo, voxel_size=hull.voxel_size)
    base.occupancy[tuple(np.argwhere(hull.occupancy)[in_base].T)] = True
    rep = reproject(base, cameras.numpy().P, *consensus.shape[1:])
    if images is not None:
        # the object's colours from the upper half of what stands on the base, clear of the lens a
        # support's hull raises around the object's foot
        body = VoxelGrid(np.zeros_like(hull.occupancy), lo=hull.lo, voxel_size=hull.voxel_size)
        body.occupancy[tuple(np.argwhere(hull.occupancy)[layer >= (top_layer + n) / 2].T)] = True
        if not distinct_colours(images, masks, rep, reproject(body, cameras.numpy().P, *consensus.shape[1:])):
            return None
    return Support(up=up, top=float(height.min() + top_layer * thick), base_voxels=int(in_base.sum()),
                   area_ratio=float(area[peak] / max(np.median(above), 1)), reprojection=rep)
