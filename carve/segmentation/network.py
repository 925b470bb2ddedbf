"""Learned silhouettes: a UNet trained to find the object in front of any background.

It backs up the classical methods of :mod:`carve.segmentation` (``silhouettes(method="learned")``).
It trains on procedural renders of :mod:`data.scenes` composited over synthetic backgrounds
(:mod:`carve.segmentation.backgrounds`) and never sees a real photograph.

- :class:`SilhouetteModel`: UNet -> foreground logits; :data:`SILHOUETTE`: its training task (a
  :class:`carve.learn.task.Task`).
- :func:`learned`: bool masks of RGB images (sizes may differ); :func:`learned_probabilities`: the
  foreground probabilities. Large images are processed at ``max_side`` pixels and the
  probabilities resized back.
- :func:`train`, and ``python -m carve.segmentation.network [options]`` (also under ``torchrun``).

Example:
    >>> import numpy as np
    >>> masks = learned([np.zeros((48, 64, 3), np.uint8)])
    >>> masks[0].shape, masks[0].dtype
    ((48, 64), dtype('bool'))
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from carve.learn import cli
from carve.learn.augment import to_input, window_of
from carve.learn.checkpoints import load_model, model_file, shipped_model_path
from carve.learn.config import TrainConfig
from carve.learn.inference import image_tensors, network, predict_padded
from carve.learn.nets import ImageModel
from carve.segmentation.backgrounds import composite
from data.images import rgb_images

__all__ = ["SilhouetteModel", "SILHOUETTE", "SilhouetteTask", "learned", "learned_probabilities", "train", "load",
           "default_model_path", "main"]

DEFAULT_MODEL = "silhouette_default.pt"


class SilhouetteModel(ImageModel):
    """UNet -> per-pixel foreground logit.

    Shapes: images (B, 3, H, W) float RGB in [0, 1]; mask optional (B, H, W) bool (padding);
    forward -> logits (B, H, W) (foreground where > 0; ``torch.sigmoid`` gives probabilities).
    """

    task = "silhouette"

    def __init__(self, widths=(8, 16, 32, 64, 128), coord_channels=True, global_context=True, context_size=64,
                 resolution_channel=False):
        super().__init__(widths, coord_channels, global_context, context_size, out_channels=1,
                         resolution_channel=resolution_channel)

    def forward(self, images, mask=None, window=None):
        return self.features(images, mask, window)[:, 0]


class SilhouetteTask:
    """The learned-silhouette :class:`carve.learn.task.Task` (use the instance :data:`SILHOUETTE`).

    Samples and validation batches: ``image`` (3, H, W) composited over a synthetic background and
    its ``mask`` (H, W) bool; validation composites are fixed (seeded by the scene index).
    """

    name = "silhouette"
    primary = "val_iou"
    shipped_model = DEFAULT_MODEL
    retrain_hint = "python -m carve.segmentation.network"
    metric_names = ("iou", "bce")

    @staticmethod
    def better(a, b):
        return a > b

    @staticmethod
    def build(**network):
        return SilhouetteModel(**network)

    @staticmethod
    def init_from_data(model, scenes):
        """Start the head's bias at the logit of the training scenes' foreground share."""
        p = float(scenes.mask.float().mean().clamp(1e-3, 1 - 1e-3))
        with torch.no_grad():
            model.unet.head.bias.fill_(math.log(p / (1 - p)))

    @staticmethod
    def extra_tensors(scenes):
        return {}

    @staticmethod
    def train_sample(scenes, i, g):
        x, m = composite(to_input(scenes.images[i:i + 1])[0], scenes.mask[i], g)
        return {"image": x, "mask": m}

    @classmethod
    def val_batch(cls, scenes, idx):
        samples = [cls.train_sample(scenes, i, torch.Generator().manual_seed(1_000_003 * int(i) + 17)) for i in idx]
        return {"image": torch.stack([s["image"] for s in samples]), "mask": torch.stack([s["mask"] for s in samples])}

    @staticmethod
    def loss(model, batch, cfg):
        from carve.learn.losses import mask_loss

        return mask_loss(model(batch["image"], window=window_of(batch)), batch["mask"])

    @staticmethod
    def evaluate(model, batch, cfg):
        logits = model(batch["image"])
        t = batch["mask"]
        p = logits > 0
        inter = (p & t).sum(dim=(1, 2)).double()
        union = (p | t).sum(dim=(1, 2)).double()
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
        bce = F.binary_cross_entropy_with_logits(logits, t.float(), reduction="none").mean(dim=(1, 2))
        return {"iou": iou.cpu().numpy(), "bce": bce.double().cpu().numpy()}


#: the silhouette task: pass it to :func:`carve.learn.loop.fit`, :func:`carve.learn.checkpoints.load_model`...
SILHOUETTE = SilhouetteTask()


# ----------------------------------------------------------------------------------------------
# loading and inference


def default_model_path() -> Path:
    """Path of the shipped default silhouette model (``carve/models/silhouette_default.pt``)."""
    return shipped_model_path(SILHOUETTE)


def load(path=None) -> SilhouetteModel:
    """Load a silhouette model file (default: the shipped one) -> :class:`SilhouetteModel` (eval mode).

    Raises:
        CheckpointError (a ValueError): missing, corrupt or foreign file, or a model of another task.
    """
    return load_model(model_file(path, SILHOUETTE), SILHOUETTE)


def _downsampled(im: np.ndarray, max_side: int | None) -> np.ndarray:
    import cv2

    h, w = im.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return im
    s = max_side / max(h, w)
    return cv2.resize(im, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def learned_probabilities(images, model=None, *, max_side: int | None = 256, batch_size: int = 8,
                          progress: bool | None = None) -> list[np.ndarray]:
    """Foreground probabilities of photographs from the learned model.

    Args:
        images: list of (H, W, 3) RGB images (uint8, or float in [0, 1]; sizes may differ), or a
            (B, H, W, 3) array (see :func:`data.images.rgb_images`).
        model: None (the shipped default), a path to a model file, or a :class:`SilhouetteModel`.
        max_side: images whose longer side exceeds this are downsampled (area) to it for the network,
            and the probabilities upsampled (bilinear) back; None runs at full resolution.
        batch_size: images per forward pass.
        progress: progress bar (default: more than 4 batches on a tty).

    Returns:
        list of (H, W) float32 probabilities in [0, 1], one per image at its own size.
    """
    import cv2

    items = rgb_images(images, "images")  # uint8: resized as 8-bit images, as in training
    net = network(model, SILHOUETTE, SilhouetteModel)
    if max_side is not None and (not isinstance(max_side, int) or isinstance(max_side, bool) or max_side < 8):
        raise ValueError(f"max_side must be None or an int >= 8, got {max_side!r}")
    xs = image_tensors([_downsampled(im, max_side).astype(np.float32) / np.float32(255) for im in items])
    outs = predict_padded(net, xs, batch_size=batch_size, desc="silhouettes", progress=progress)
    probs = []
    for im, o in zip(items, outs):
        p = torch.sigmoid(o).numpy()
        h, w = im.shape[:2]
        if p.shape != (h, w):
            p = cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR)
        probs.append(p.astype(np.float32))
    return probs


def learned(images, model=None, *, max_side: int | None = 256, threshold: float = 0.5, batch_size: int = 8,
            progress: bool | None = None) -> list[np.ndarray]:
    """Object masks of photographs from the learned model.

    Args:
        images, model, max_side, batch_size, progress: as for :func:`learned_probabilities`.
        threshold: probability above which a pixel is foreground, in (0, 1).

    Returns:
        list of (H, W) bool masks (True on the object).
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    probs = learned_probabilities(images, model, max_side=max_side, batch_size=batch_size, progress=progress)
    return [p > threshold for p in probs]


# ----------------------------------------------------------------------------------------------
# training


def train(out="runs/silhouette", *, resume=None, progress: bool = True, **config) -> dict:
    """Train a silhouette model (see :class:`carve.learn.config.TrainConfig`); returns
    :func:`carve.learn.loop.fit`'s dict."""
    from carve.learn.loop import fit

    return fit(TrainConfig(task=SILHOUETTE.name, out=str(out), **config), SILHOUETTE, resume=resume,
               progress=progress)


def main(argv=None) -> int:
    """``python -m carve.segmentation.network [options]``: train a silhouette model."""
    return cli.train_command(SILHOUETTE, argv, prog="python -m carve.segmentation.network",
                             description="Train the learned silhouette model on composited procedural "
                                         "renders (also under torchrun --nproc_per_node=N).")


if __name__ == "__main__":
    raise SystemExit(main())
