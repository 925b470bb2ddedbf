"""The arguments every silhouette method checks: its images, and masks given for them.

Images go through :func:`data.images.rgb_images`, the project's one image validator (uint8 or
float in [0, 1], numpy channels-last or torch channels-first), plus the one rule of segmentation's
own: an image has at least 8x8 pixels (the border colour model and the cleaning need a frame).
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

from data.images import rgb_images

__all__ = ["Images", "MIN_SIDE", "as_images", "as_masks"]

#: what the methods accept as images: a list of (H, W, 3) arrays, a (B, H, W, 3) array, or torch
#: images channels-first ((3, H, W) each, or one (B, 3, H, W) tensor)
Images = Union[Sequence[Any], np.ndarray]

#: the smallest image side a method accepts, in pixels
MIN_SIDE = 8


def as_images(images: Images, name: str = "images") -> list[np.ndarray]:
    """``images`` as a list of B (H, W, 3) uint8 RGB arrays (views where no conversion is needed).

    Example:
        >>> import numpy as np
        >>> [im] = as_images([np.zeros((8, 10), np.float32)])
        >>> im.shape, im.dtype
        ((8, 10, 3), dtype('uint8'))
    """
    items = rgb_images(images, name)
    for k, im in enumerate(items):
        if min(im.shape[:2]) < MIN_SIDE:
            raise ValueError(f"{name}[{k}] must be at least {MIN_SIDE}x{MIN_SIDE} pixels, "
                             f"got {im.shape[1]}x{im.shape[0]}")
    return items


def as_masks(masks, images: list[np.ndarray], name: str) -> list[np.ndarray]:
    """``masks`` (one (H, W) bool mask per image of ``images``, or a (B, H, W) bool array) as a list.

    Example:
        >>> import numpy as np
        >>> len(as_masks(np.zeros((2, 8, 8), bool), [np.zeros((8, 8, 3), np.uint8)] * 2, "init"))
        2
    """
    if isinstance(masks, np.ndarray) and masks.ndim == 3:
        masks = list(masks)
    if not isinstance(masks, (list, tuple)) or len(masks) != len(images):
        n = len(masks) if isinstance(masks, (list, tuple)) else type(masks).__name__
        raise ValueError(f"{name} must be a list of {len(images)} (H, W) bool masks, one per image, got {n}")
    out = []
    for k, (m, im) in enumerate(zip(masks, images)):
        m = np.asarray(m)
        if m.dtype != np.bool_:
            raise TypeError(f"{name}[{k}] must be a bool mask, got dtype {m.dtype}; use mask > 0")
        if m.shape != im.shape[:2]:
            raise ValueError(f"{name}[{k}] must have shape {im.shape[:2]} like its image, got {m.shape}")
        out.append(m)
    return out
