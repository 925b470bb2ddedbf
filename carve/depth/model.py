"""The depth network (:class:`DepthModel`), its training task (:data:`DEPTH`) and its model files.

:class:`DepthModel` is a :class:`carve.learn.nets.UNet` with a positive depth head: it predicts log
depth, and depth = exp(log depth). :data:`DEPTH` is the :class:`carve.learn.task.Task` that
:func:`carve.learn.loop.fit` trains on the procedural scenes of :mod:`data.scenes`: a scale-invariant
log loss plus gradient matching (:func:`carve.learn.losses.depth_loss`), validated by Eigen et al.'s
measures.

Example:
    >>> net = DepthModel(widths=(4, 8)).eval()
    >>> net(torch.rand(2, 3, 12, 10)).shape
    torch.Size([2, 12, 10])
    >>> DEPTH.name, DEPTH.primary, DEPTH.better(0.05, 0.1)
    ('depth', 'val_abs_rel', True)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from carve.learn.augment import color_jitter, to_input, window_of
from carve.learn.checkpoints import load_model, model_file, shipped_model_path
from carve.learn.inference import network
from carve.learn.nets import ImageModel

__all__ = ["DepthModel", "DEPTH", "DepthTask", "load", "default_model_path", "resolve_model", "DEFAULT_MODEL"]

DEFAULT_MODEL = "depth_default.pt"
_LOG_DEPTH_LIMIT = 20.0


class DepthModel(ImageModel):
    """UNet + positive depth head.

    Args:
        widths, coord_channels, global_context, context_size, resolution_channel: see
            :class:`carve.learn.nets.UNet`.

    Shapes:
        images: (B, 3, H, W) float RGB in [0, 1];  mask: optional (B, H, W) bool (padding = False).
        forward -> depth (B, H, W) > 0;  log_depth -> (B, H, W).
    """

    task = "depth"

    def __init__(self, widths=(8, 16, 32, 64, 128), coord_channels=True, global_context=True, context_size=64,
                 resolution_channel=False):
        super().__init__(widths, coord_channels, global_context, context_size, out_channels=1,
                         resolution_channel=resolution_channel)

    def log_depth(self, images, mask=None, window=None):
        return self.features(images, mask, window)[:, 0].clamp(-_LOG_DEPTH_LIMIT, _LOG_DEPTH_LIMIT)

    def forward(self, images, mask=None, window=None):
        return torch.exp(self.log_depth(images, mask, window))


class DepthTask:
    """The monocular-depth :class:`carve.learn.task.Task` (use the instance :data:`DEPTH`).

    Samples: ``image`` (3, H, W), ``log_depth`` (H, W) and ``valid`` (H, W) bool (pixels with depth);
    validation batches hold ``image`` and metric ``depth`` (0 = none).
    """

    name = "depth"
    primary = "val_abs_rel"
    shipped_model = DEFAULT_MODEL
    retrain_hint = "carve train-depth"
    metric_names = ("abs_rel", "rmse", "delta1", "silog")

    @staticmethod
    def better(a, b):
        return a < b

    @staticmethod
    def build(**network):
        return DepthModel(**network)

    @staticmethod
    def init_from_data(model, scenes):
        """Start the head's bias at the training scenes' mean log depth."""
        d = scenes.depth
        valid = d > 0
        if valid.any():
            with torch.no_grad():
                model.unet.head.bias.fill_(float(torch.log(d[valid]).mean()))

    @staticmethod
    def extra_tensors(scenes):
        """The training set's mean depth map (H, W) over pixels with depth: the baseline to beat."""
        d = scenes.depth
        valid = (d > 0).float()
        mean = (d * valid).sum(0) / valid.sum(0).clamp_min(1)
        return {"mean_depth": mean.float()}

    @staticmethod
    def train_sample(scenes, i, g):
        x = color_jitter(to_input(scenes.images[i:i + 1])[0], g)
        d = scenes.depth[i]
        if bool(torch.rand(1, generator=g) < 0.5):
            x, d = x.flip(-1), d.flip(-1)
        valid = d > 0
        return {"image": x, "log_depth": torch.where(valid, torch.log(d.clamp_min(1e-6)), torch.zeros_like(d)),
                "valid": valid}

    @staticmethod
    def val_batch(scenes, idx):
        return {"image": to_input(scenes.images[idx]), "depth": scenes.depth[idx]}

    @staticmethod
    def loss(model, batch, cfg):
        from carve.learn.losses import depth_loss

        # through __call__, so that DDP syncs gradients
        log_pred = torch.log(model(batch["image"], window=window_of(batch)))
        return depth_loss(log_pred, batch["log_depth"], batch["valid"], lam=cfg.silog_lambda,
                          grad_weight=cfg.grad_weight)

    @staticmethod
    def evaluate(model, batch, cfg):
        from carve.learn.losses import silog_loss
        from carve.metrics import depth_metrics_per_image

        log_pred = model.log_depth(batch["image"])
        gt = batch["depth"]
        m = depth_metrics_per_image(torch.exp(log_pred).cpu(), gt.cpu())
        valid = gt > 0
        silog = [float(silog_loss(log_pred[i:i + 1], torch.log(gt[i:i + 1].clamp_min(1e-6)), valid[i:i + 1],
                                  lam=cfg.silog_lambda)) for i in range(len(gt))]
        return {"abs_rel": np.nan_to_num(m["abs_rel"]), "rmse": np.nan_to_num(m["rmse"]),
                "delta1": np.nan_to_num(m["delta1"]), "silog": np.asarray(silog)}


#: the depth task: pass it to :func:`carve.learn.loop.fit`, :func:`carve.learn.checkpoints.load_model`...
DEPTH = DepthTask()


def default_model_path() -> Path:
    """Path of the shipped default depth model (``carve/models/depth_default.pt``)."""
    return shipped_model_path(DEPTH)


def load(path=None) -> DepthModel:
    """Load a depth model file (default: the shipped one) -> :class:`DepthModel` in eval mode (CPU).

    Raises:
        CheckpointError (a ValueError): missing, corrupt or foreign file, or a model of another task.
    """
    return load_model(model_file(path, DEPTH), DEPTH)


def resolve_model(model) -> DepthModel:
    """The network of ``model``: None (the shipped default, prepared for inference and cached), a
    path to a model file, a :class:`DepthModel`, or one wrapped in DistributedDataParallel."""
    return network(model, DEPTH, DepthModel)
