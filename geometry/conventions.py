"""The project's conventions, written once: camera axes and the pixel grid.

Convention:
    Camera axes: OpenCV's, x right, y down, z forward. OpenGL / Blender / NeRF use x right, y up,
    z backward; the two differ by a rotation of pi about x, i.e. negating the camera's y and z axes.
    Pixels: the centre of the top-left pixel is (0, 0), pixel (i, j) covers [j - 0.5, j + 0.5) in u
    and [i - 0.5, i + 0.5) in v, so a point is looked up at ``(floor(v + 0.5), floor(u + 0.5))``.
    COLMAP puts the top-left pixel centre at (0.5, 0.5): subtract :data:`COLMAP_PIXEL_OFFSET` from its
    principal point.
"""
from __future__ import annotations

import numpy as np

from geometry.arrays import is_tensor

#: add to COLMAP (and other corner-origin) principal points to get ours: cx_ours = cx_colmap - 0.5
COLMAP_PIXEL_OFFSET = 0.5


def _flip_camera_yz(c2w):
    """Negate the camera's y and z axes (columns 1 and 2 of the rotation part) of (..., 3|4, 4) poses."""
    if c2w.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"c2w must have shape (..., 4, 4) or (..., 3, 4), got {tuple(c2w.shape)}")
    out = c2w.clone() if is_tensor(c2w) else np.array(c2w, dtype=np.float64)
    out[..., :3, 1:3] = -out[..., :3, 1:3]
    return out


def opengl_to_opencv(c2w):
    """Camera-to-world poses with OpenGL/Blender camera axes -> OpenCV camera axes. c2w: (..., 4, 4)."""
    return _flip_camera_yz(c2w)


def opencv_to_opengl(c2w):
    """Camera-to-world poses with OpenCV camera axes -> OpenGL/Blender camera axes. c2w: (..., 4, 4)."""
    return _flip_camera_yz(c2w)


def pixel_index(uv):
    """The pixel a projected point falls in: ``(rows, cols) = (floor(v + 0.5), floor(u + 0.5))``.

    Args:
        uv: (..., 2) pixel coordinates, numpy or torch.

    Returns:
        rows, cols: (...) int64 arrays (tensors for tensor input). Bounds are not checked: a point is
        inside a W x H image iff ``0 <= cols < W`` and ``0 <= rows < H``.
    """
    if uv.shape[-1] != 2:
        raise ValueError(f"uv must have shape (..., 2), got {tuple(uv.shape)}")
    if is_tensor(uv):
        import torch

        idx = torch.floor(uv + 0.5).to(torch.int64)
    else:
        idx = np.floor(np.asarray(uv) + 0.5).astype(np.int64)
    return idx[..., 1], idx[..., 0]
