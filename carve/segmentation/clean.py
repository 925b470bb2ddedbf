"""Cleaning of object masks: a small opening, the large components, the small holes filled.

Every method but ``threshold`` (whose recipe is its own cleaning) cleans its masks by default with
:func:`clean_mask`: an opening of ``open_radius`` px (by default 0.2% of the image diagonal, so
none on small images and thin parts survive), then the connected components of at least
``keep_fraction`` of the largest one's area, then the holes smaller than ``max_hole`` of the
object's area filled (larger holes, such as the one through a torus or a mug handle, stay open).
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["disk", "default_open_radius", "clean_mask", "cleaning", "maybe_clean"]


def disk(radius: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Elliptic structuring element of ``radius`` px: (2r + 1, 2r + 1) uint8.

    With the ``shape`` (H, W[, C]) of the image it is for, the radius is capped at the image's
    diagonal: a wider disk reaches no further pixel, so dilations, erosions and openings come out
    the same, while a user's ``radius=10**6`` would otherwise build a terabyte kernel.
    """
    r = int(radius)
    if shape is not None:
        r = min(r, int(np.ceil(np.hypot(shape[0], shape[1]))))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def default_open_radius(shape: tuple[int, ...]) -> int:
    """The default opening radius for an image of ``shape`` (H, W[, C]): 0.2% of its diagonal."""
    return int(round(0.002 * float(np.hypot(shape[0], shape[1]))))


def clean_mask(mask: np.ndarray, *, open_radius: int | None = None, keep_fraction: float = 0.2,
               max_hole: float = 0.02) -> np.ndarray:
    """Opening, keep the large connected components, fill the small holes.

    Args:
        mask: (H, W) bool.
        open_radius: px; None for :func:`default_open_radius`, 0 for no opening.
        keep_fraction: components smaller than this share of the largest one are dropped.
        max_hole: holes up to this share of the object's area are filled; 0 fills none.

    Returns:
        (H, W) bool, a new array.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((40, 40), bool); m[5:30, 5:30] = True; m[15, 15] = False; m[35, 35] = True
        >>> out = clean_mask(m)
        >>> bool(out[15, 15]), bool(out[35, 35]), int(out.sum())
        (True, False, 625)
    """
    m = mask.astype(np.uint8)
    r = default_open_radius(mask.shape) if open_radius is None else int(open_radius)
    if r > 0:
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, disk(r, m.shape))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    areas = stats[:, cv2.CC_STAT_AREA]
    keep = areas >= keep_fraction * areas[1:].max()
    keep[0] = False  # label 0: the background
    out = keep[labels]
    if max_hole > 0:
        # holes: the 4-connected components of the background that do not reach the image border
        # (scipy's binary_fill_holes, whose repeated erosions cost most of the cleaning)
        n, gaps, stats, _ = cv2.connectedComponentsWithStats((~out).view(np.uint8), connectivity=4)
        small = stats[:, cv2.CC_STAT_AREA] <= max_hole * np.count_nonzero(out)
        small[0] = False  # label 0: the object
        small[np.concatenate([gaps[0], gaps[-1], gaps[:, 0], gaps[:, -1]])] = False
        if small.any():
            out |= small[gaps]
    return out


def cleaning(clean: bool, open_radius: int | None, keep_fraction: float, max_hole: float) -> dict | None:
    """Checked options of :func:`clean_mask`, or None when ``clean`` is off: what methods pass on.

    Example:
        >>> cleaning(True, None, 0.2, 0.02)
        {'open_radius': None, 'keep_fraction': 0.2, 'max_hole': 0.02}
        >>> cleaning(False, None, 0.2, 0.02) is None
        True
    """
    if open_radius is not None and int(open_radius) < 0:
        raise ValueError(f"open_radius must be None or >= 0 pixels, got {open_radius}")
    if not 0 <= keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be a share of the largest component in [0, 1], got {keep_fraction}")
    if max_hole < 0:
        raise ValueError(f"max_hole must be a share of the object's area >= 0, got {max_hole}")
    if not clean:
        return None
    return {"open_radius": open_radius, "keep_fraction": keep_fraction, "max_hole": max_hole}


def maybe_clean(mask: np.ndarray, options: dict | None) -> np.ndarray:
    """``mask`` (H, W) bool cleaned with ``options`` (from :func:`cleaning`), or as it is for None."""
    return mask if options is None else clean_mask(mask, **options)
