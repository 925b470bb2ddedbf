"""Lens distortion removal for loaders whose formats carry distortion coefficients.

The loaders return pinhole cameras: images are undistorted with OpenCV onto the same pixel grid
and the same K (in our pixel convention), so the returned ``Camera`` describes the returned image.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["undistort", "undistort_mask"]


def _check(K, dist):
    K = np.asarray(K, np.float64)
    dist = np.asarray(dist, np.float64).ravel()
    if K.shape != (3, 3):
        raise ValueError(f"K must have shape (3, 3), got {K.shape}")
    if dist.size not in (4, 5, 8, 12, 14):
        raise ValueError(f"dist must hold 4, 5, 8, 12 or 14 OpenCV coefficients, got {dist.size}")
    return K, dist


def undistort(image: np.ndarray, K, dist) -> np.ndarray:
    """Remove lens distortion from an image.

    Args:
        image: (H, W, 3) or (H, W) array.
        K: (3, 3) intrinsics in our pixel convention (top-left pixel centre at (0, 0), as OpenCV's).
        dist: OpenCV distortion coefficients (k1, k2, p1, p2[, k3[, k4, k5, k6[, ...]]]).

    Returns:
        The undistorted image, same shape and dtype, imaged by the pinhole camera K.
    """
    K, dist = _check(K, dist)
    if not np.any(dist):
        return image
    return cv2.undistort(image, K, dist, None, K)


def undistort_mask(mask: np.ndarray, K, dist) -> np.ndarray:
    """Undistort an (H, W) bool mask (nearest-neighbour, so it stays a mask)."""
    K, dist = _check(K, dist)
    if not np.any(dist):
        return mask
    h, w = mask.shape
    map1, map2 = cv2.initUndistortRectifyMap(K, dist, None, K, (w, h), cv2.CV_32FC1)
    return cv2.remap(mask.astype(np.uint8), map1, map2, cv2.INTER_NEAREST) > 0
