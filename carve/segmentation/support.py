"""The support under an object (a turntable disc, a floor patch): consistent across views, yet not the object.

A turntable or floor that the single-view masks take for object is seen by every view at the same
place, so the voting hull keeps it: the hull is the object on a wide, flat base. Geometry finds
that base; colour then decides, pixel by pixel, what is support and what is object.

- Up is where the cameras' up axes point (photographs are taken upright, and rigs stand on the
  floor): the mean of ``-R[1]`` over the views, used only when the views agree on it
  (:data:`UP_AGREEMENT`).
- The hull is cut into one-voxel layers across up. A support is a base at the bottom at least
  :data:`WIDER` times the area of any layer above :data:`BASE_HEIGHT` of the hull's height (the
  object on it). The base is the bottom layers down from the first one narrower than the
  geometric mean of the two areas.
- In each view, the pixels the base reprojects to are the support's (:meth:`Support.pixels`):
  :func:`carve.segmentation.multiview.trimap` makes them "probable", never sure object, so the
  view's own colour models decide them. A base of the object's own colour (a plinth that is part
  of it) stays object; a disc of another colour goes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carve.grid import VoxelGrid
from carve.hull.reprojection import reproject

__all__ = ["Support", "find_support", "up_direction", "UP_AGREEMENT", "WIDER", "BASE_HEIGHT"]

#: the cameras' up axes must agree this well (length of their mean unit vector) to define up:
#: 0.5 holds for any rig within 60 degrees of upright, and fails for views from all around
UP_AGREEMENT = 0.5
#: a base is a support when its area is at least this many times the object's widest layer above:
#: a disc or floor patch under an object is several times wider; a bottle's foot or a mug's base is not
WIDER = 2.0
#: the object is judged by the layers above this share of the hull's height, clear of a support's
#: bloat: seen only from above, a flat disc's hull rises into a lens about ``tan(elevation)`` of
#: its radius high (a quarter of it at 15 degrees)
BASE_HEIGHT = 0.35


@dataclass
class Support:
    """A support found under the object: its base (hull voxels) and where each view sees it.

    Attributes:
        up: (3,) unit vector, world up. top: height (along ``up``) of the base's top.
        base_voxels: voxels of the hull in the base; area_ratio: base area over the object's widest layer.
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


def up_direction(cameras) -> np.ndarray | None:
    """World up from B cameras' orientation: the normalised mean of ``-R[b, 1]``, or None if they disagree.

    Example:
        >>> from geometry import Camera
        >>> cams = Camera.look_at([[3, 0, 1], [0, 3, 1], [-3, 0, 1], [0, -3, 1]], up=(0, 0, 1), fov=40, width=32, height=32)
        >>> up_direction(cams).round(2).tolist()
        [0.0, 0.0, 1.0]
    """
    ups = -np.asarray(cameras.numpy().R)[:, 1, :]
    mean = ups.mean(0)
    if np.linalg.norm(mean) < UP_AGREEMENT:
        return None
    return mean / np.linalg.norm(mean)


def find_support(hull: VoxelGrid, cameras, consensus: np.ndarray) -> Support | None:
    """The support under the object in ``hull`` (a voting hull), or None when there is none.

    Args:
        hull: the hull of the current masks (:class:`carve.grid.VoxelGrid`).
        cameras: the B cameras (:class:`geometry.Camera`) with width and height.
        consensus: (B, H, W) bool, the hull's reprojection (its size gives the images').

    Returns:
        :class:`Support`, or None (no agreed up direction, a hull too flat to judge, or no base
        :data:`WIDER` times wider than the object above it).
    """
    up = up_direction(cameras)
    if up is None or hull.count() == 0:
        return None
    points = hull.points()
    height = points @ up
    layer = np.floor((height - height.min()) / hull.voxel_size).astype(np.int64)
    area = np.bincount(layer)
    if len(area) < 6:  # fewer layers than that hold no object above a base
        return None
    above = area[int(np.ceil(BASE_HEIGHT * len(area))):]
    base_area = area[:max(1, int(BASE_HEIGHT * len(area)) - 1)].max()
    ratio = base_area / max(above.max(), 1)
    if ratio < WIDER:
        return None
    narrow = np.sqrt(base_area * above.max())
    peak = int(np.argmax(area[:len(area) - len(above)]))
    top_layer = peak + int(np.argmax(area[peak:] < narrow))
    in_base = layer < top_layer
    base = VoxelGrid(np.zeros_like(hull.occupancy), lo=hull.lo, voxel_size=hull.voxel_size)
    base.occupancy[tuple(np.argwhere(hull.occupancy)[in_base].T)] = True
    cams = cameras.numpy()
    rep = reproject(base, cams.P, *consensus.shape[1:])
    return Support(up=up, top=float(height.min() + top_layer * hull.voxel_size), base_voxels=int(in_base.sum()),
                   area_ratio=float(ratio), reprojection=rep)
