"""Depth maps of photographs (:func:`predict`) and the coloured point clouds they make (:func:`to_points`).

Convention: images are RGB, numpy ``(H, W, 3)`` / ``(B, H, W, 3)`` (uint8, or float in [0, 1]) or
torch ``(3, H, W)`` / ``(B, 3, H, W)`` (uint8 or float in [0, 1]); depth is the z coordinate in
the camera frame (OpenCV axes), in the units of the training scenes, per pixel.

Example:
    >>> import numpy as np
    >>> depth = predict(np.zeros((96, 128, 3), np.uint8))
    >>> depth.shape, depth.dtype, bool((depth > 0).all())
    ((96, 128), dtype('float32'), True)
"""
from __future__ import annotations

import numpy as np
import torch

from carve.depth.model import resolve_model
from carve.learn.inference import image_tensors, predict_padded
from data.images import rgb_images

__all__ = ["predict", "to_points"]


def _as_list(images):
    """(list of single images, kind) with kind "single", "batch" or "list"."""
    if isinstance(images, (list, tuple)):
        return list(images), "list"
    if isinstance(images, torch.Tensor):
        if images.ndim in (3, 4):
            return (list(images), "batch") if images.ndim == 4 else ([images], "single")
        raise ValueError(f"images must be a (3, H, W) or (B, 3, H, W) tensor, got shape {tuple(images.shape)}")
    if isinstance(images, np.ndarray):
        if images.ndim in (3, 4):
            return (list(images), "batch") if images.ndim == 4 else ([images], "single")
        hint = "; for a grey image use np.repeat(image[..., None], 3, -1)" if images.ndim == 2 else ""
        raise ValueError(f"images must be an (H, W, 3) or (B, H, W, 3) array, got shape {images.shape}{hint}")
    raise TypeError(f"images must be a numpy array, a torch tensor or a list of them, got {type(images).__name__}")


def _back(t: torch.Tensor, like):
    """The output in the input's type: torch on the input's device for torch input, else numpy."""
    return t.to(like.device) if isinstance(like, torch.Tensor) else t.numpy()


def predict(images, model=None, *, batch_size: int = 8, device=None, progress: bool | None = None):
    """Metric depth maps of RGB images.

    Each image comes back at its own size: a list of unequal sizes is padded to a common canvas with
    a mask, never resized.

    Args:
        images: one image — numpy (H, W, 3) uint8 or float in [0, 1], or torch (3, H, W) — or a
            batch ((B, H, W, 3) array, (B, 3, H, W) tensor), or a list of single images whose sizes
            may differ.
        model: None (the shipped default), a path to a model file, or a :class:`DepthModel`.
        batch_size: images per forward pass (bounds memory).
        device: torch device to run on (default: the model's).
        progress: progress bar over batches (default: more than 4 batches and stderr is a tty).

    Returns:
        depth: float32 (H, W) for one image, (B, H, W) for a batch, or a list of (H_i, W_i) for a
        list; numpy for numpy input, torch (on the input's device) for torch input.

    Raises:
        ValueError / TypeError: malformed images; CheckpointError: an unusable model file.
    """
    items, kind = _as_list(images)
    xs = image_tensors(rgb_images(items, "images", dtype=np.float32))
    net = resolve_model(model)
    outs = predict_padded(net, xs, batch_size=batch_size, device=device, desc="depth", progress=progress)
    if kind == "single":
        return _back(outs[0], images)
    if kind == "batch":
        return _back(torch.stack(outs), images)
    return [_back(o, im) for o, im in zip(outs, images)]


def to_points(image, depth, camera, mask=None):
    """A coloured point cloud from an image, its depth map and its camera.

    Args:
        image: (H, W, 3) RGB (numpy uint8 or float), the colours.
        depth: (H, W) depth z per pixel (e.g. from :func:`predict`); 0/NaN = no depth.
        camera: a :class:`geometry.Camera` holding one camera (its size, if set, must be W x H).
        mask: optional (H, W) bool; only these pixels become points (e.g. a silhouette).

    Returns:
        points: (M, 3) world points; colors: (M, 3) of the image's dtype.
    """
    from geometry import Camera, depth_to_points

    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a geometry.Camera, got {type(camera).__name__}")
    if len(camera) != 1:
        raise ValueError(f"camera must hold one camera for one image, got {len(camera)}")
    image = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    depth = depth.detach().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    if depth.shape != image.shape[:2]:
        raise ValueError(f"depth must have the image's shape {image.shape[:2]}, got {depth.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"mask must be a boolean array, got dtype {mask.dtype}; convert with `mask > 0`")
        if mask.shape != depth.shape:
            raise ValueError(f"mask must have the depth's shape {depth.shape}, got {mask.shape}")
        depth = np.where(mask, depth, 0)
    return depth_to_points(depth, camera, image=image)
