"""The colour-distance threshold the views agree on: initial masks chosen by multi-view consistency.

A single view's threshold on the colour distance from its background (Otsu's, as in
:func:`carve.segmentation.auto`) splits the most distinct part of the object from the rest. On a
matte object in deep shade that is its lit part: the dark side is left out, and differently in
every view, so the views contradict each other and the hull of their masks cuts the object. At a
threshold that holds the whole object they agree: the hull of all the masks reprojects onto each
of them. :func:`consistent_masks` tries each view's Otsu threshold scaled by :data:`SCALES` and
keeps the highest one whose masks the voting hull reproduces about as well as the best
(mean IoU over the views, :data:`MIN_GAIN`).

A threshold so low that background becomes object shows too: shadows, noise and texture differ
from view to view (the hull does not reproduce them), and a backdrop or floor reaches the image
border, which the masks of a right threshold do not: a scale with more views leaving the frame
than Otsu's own is ruled out.
"""
from __future__ import annotations

import warnings

import numpy as np

from carve.hull import EmptyHullWarning, border_views, carve, outside_per_view
from carve.hull.bounds import UnboundedRegionError
from carve.hull.reprojection import reproject
from carve.segmentation.clean import maybe_clean
from carve.segmentation.colour import JND, otsu_split
from carve.segmentation.per_view import map_views

__all__ = ["consistent_masks", "SCALES", "SCAN_RESOLUTION", "MIN_GAIN", "LENIENT", "FLOOR"]

#: the thresholds tried, as shares of each view's Otsu threshold: halvings down to an eighth, which
#: reaches a shade eight times darker than Otsu's split (deep shade under ambient light alone is
#: a few times darker than the lit side; beyond an eighth the sensor's noise takes over)
SCALES = (1.0, 0.5, 0.25, 0.125)
#: the highest threshold whose mean IoU is within this of the best is chosen: a mask that grows
#: gains IoU from the hull's overhang alone (the cubes of a 64-voxel hull overhang the silhouette by
#: about a voxel, a band whose share of the mask shrinks as the mask grows), by up to a couple of
#: percent; a smaller gain is no evidence that the lower threshold finds more of the object
MIN_GAIN = 0.02
#: voxels along the box's longest side for the scan: 64 resolves the object's parts well enough to
#: compare thresholds, at a sixteenth of the voxels of the final hull
SCAN_RESOLUTION = 64
#: the lenient masks, which say where a view is sure there is background, are thresholded at this
#: share of the chosen threshold (one halving below it): a view vetoes a voxel in the hull only
#: where its pixel is clearly background, so parts a view's chosen threshold loses (a dark leg at low
#: exposure) still reach the hull when other views see them, while the lenient masks' own extra
#: pixels (shadows, noise) differ from view to view and are carved by the others
LENIENT = 0.5
#: never threshold below one just-noticeable difference in CIELAB: an empty scene stays empty
FLOOR = JND


def consistent_masks(distances: list[np.ndarray], cameras, *, vote_share: float, cleaning: dict | None,
                     resolution: int = SCAN_RESOLUTION) -> tuple[list[np.ndarray], float, dict]:
    """Masks thresholded at the scale of each view's Otsu threshold that the views agree on best.

    Args:
        distances: B (H, W) float colour-distance maps (:func:`carve.segmentation.colour.color_distance`).
        cameras: the B cameras (:class:`geometry.Camera`, with width and height).
        vote_share: share of the views the scan's voting hull lets veto a voxel.
        cleaning: options of :func:`carve.segmentation.clean.clean_mask` for the masks, or None.
        resolution: voxels along the longest side of the scan's hulls.

    Returns:
        (B masks, B lenient masks (at :data:`LENIENT` of the chosen threshold), the chosen scale,
        {scale: mean IoU of masks and hull reprojection, or None when that scale was ruled out (more
        views leaving the frame than at Otsu's threshold, or no hull)}).
    """
    otsu = [max(otsu_split(d)[0], FLOOR) for d in distances]
    cams = cameras.numpy()
    scores, candidates, leaving = {}, {}, None

    def thresholded(scale):  # every view's mask at ``scale`` times its Otsu level, cleaned
        return map_views(lambda d, t: maybe_clean(d > max(scale * t, FLOOR), cleaning), zip(distances, otsu),
                         total=len(distances), desc="threshold", progress=False)

    for scale in SCALES:
        masks = thresholded(scale)
        border = int(border_views(np.stack(masks)).sum())
        leaving = border if leaving is None else leaving
        candidates[scale] = masks
        scores[scale] = None if border > leaving else _agreement(masks, cams, vote_share, resolution)
    valid = [k for k in SCALES if scores[k] is not None]
    best = SCALES[0]
    if valid:
        top = max(scores[k] for k in valid)
        best = next(k for k in valid if scores[k] >= top - MIN_GAIN)  # the highest threshold that is as good
    lenient = thresholded(LENIENT * best)
    return candidates[best], lenient, best, scores


def _agreement(masks, cams, vote_share, resolution) -> float | None:
    """Mean IoU over the views of each mask and the voting hull's reprojection (None: no hull)."""
    stack = np.stack(masks)
    area = np.count_nonzero(stack, axis=(1, 2))
    usable = np.flatnonzero((area > 0) & (area < stack[0].size))
    if len(usable) < 2:
        return None
    outside = outside_per_view(stack[usable])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyHullWarning)
        try:
            hull = carve(stack[usable], cams[usable], resolution, tolerance=int(vote_share * len(usable)),
                         outside=outside)
        except UnboundedRegionError:
            return None
    if not hull.count():
        return None
    rep = reproject(hull, cams.P, *stack.shape[1:])
    inter = np.count_nonzero(stack & rep, axis=(1, 2))
    union = np.count_nonzero(stack | rep, axis=(1, 2))
    return float(np.mean(inter / np.maximum(union, 1)))
