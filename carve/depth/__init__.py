"""Monocular depth: one photograph in, a metric depth map (and a coloured point cloud) out.

- :class:`DepthModel`: a :class:`carve.learn.nets.UNet` with a positive depth head (it predicts log
  depth; depth = exp(log depth)), trained on the procedural scenes of :mod:`data.scenes`; its
  training task is :data:`DEPTH` (a :class:`carve.learn.task.Task`).
- :func:`predict`: depth maps of one image, a batch, or a list of images of different sizes (each
  comes back at its own size; unequal sizes are padded to a common canvas with a mask, never
  resized). ``model=None`` uses the model shipped in ``carve/models/depth_default.pt``. Its metric
  scale is that of the training scenes' lens (:data:`TRAINING_FOV` degrees, horizontal). Through
  other lenses the network reads part of the change from perspective, not all of it: on 12 test
  scenes seen at 40 and 70 degrees its depths come out 19% short and 16% long (per-image medians).
- :func:`to_points`: a coloured point cloud from an image, its depth and its camera (through
  :func:`geometry.depth_to_points`). Depths of several calibrated views can also feed
  :func:`carve.carve_depth`.
- :func:`train`, and :func:`add_train_depth_arguments` / :func:`run_train_depth` for the command line
  (``carve train-depth``; ``python -m carve.depth`` runs the same, also under ``torchrun``).

Convention: images are RGB, numpy ``(H, W, 3)`` / ``(B, H, W, 3)`` (uint8, or float in [0, 1]) or
torch ``(3, H, W)`` / ``(B, 3, H, W)`` float in [0, 1]; depth is the z coordinate in the camera frame
(OpenCV axes), in the units of the training scenes, per pixel.

Example:
    >>> import numpy as np
    >>> from carve.depth import predict
    >>> depth = predict(np.zeros((96, 128, 3), np.uint8))
    >>> depth.shape, depth.dtype, bool((depth > 0).all())
    ((96, 128), dtype('float32'), True)
"""
from carve.depth.model import DEPTH, DepthModel, default_model_path, load
from carve.depth.predict import predict, to_points
from carve.depth.training import add_train_depth_arguments, run_train_depth, train
from carve.learn.checkpoints import CheckpointError
from data.scenes import FOV as TRAINING_FOV  # horizontal field of view of every training scene, degrees

__all__ = ["DepthModel", "DEPTH", "predict", "TRAINING_FOV", "to_points", "train", "load", "default_model_path",
           "add_train_depth_arguments", "run_train_depth", "CheckpointError"]
