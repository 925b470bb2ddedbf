"""Self-supervised pretraining: the encoder learns to tell 0/90/180/270-degree rotations apart.

It uses only the images of the training renders (no labels), so that a model trained on a small
share of the labels can start from an encoder that has seen every image.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from carve.learn import distributed
from carve.learn.augment import Samples, color_jitter, to_input
from carve.learn.phase import make_phase, train_epochs

__all__ = ["pretrain_rotation"]


class _RotationNet(nn.Module):
    """The model's encoder + global average pool + a linear 4-way rotation head."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.head = nn.Linear(model.unet.widths[-1], 4)

    def forward(self, x):
        return self.head(self.model.encoder_features(x).mean(dim=(2, 3)))


def _rotated_sample(scenes, i, g):
    k = int(torch.randint(0, 4, (1,), generator=g))
    x = color_jitter(to_input(scenes.images[i:i + 1])[0], g)
    return {"image": torch.rot90(x, k, dims=(1, 2)), "label": torch.tensor(k)}


def _step(m, batch):
    return F.cross_entropy(m(batch["image"]), batch["label"]), {}


def _accuracy(net, hold, device) -> dict:
    """Share of the held-out images (each in 4 rotations) whose rotation the net finds, over all ranks."""
    net.eval()
    correct = torch.zeros(2, dtype=torch.float64)
    mine = list(range(distributed.rank(), len(hold), distributed.world()))
    with torch.no_grad():
        for k in range(0, len(mine), 64):
            ids = mine[k:k + 64]
            x = to_input(hold[ids]).to(device)
            for r in range(4):
                pred = net(torch.rot90(x, r, dims=(2, 3))).argmax(1)
                correct += torch.tensor([float((pred == r).sum()), float(len(ids))], dtype=torch.float64)
    correct = distributed.all_sum(correct)
    return {"val_rot_acc": float(correct[0] / max(correct[1], 1))}


def pretrain_rotation(model, scenes, cfg, device, epochs: int | None = None, progress: bool = True) -> list[dict]:
    """Pretrain ``model``'s encoder by rotation prediction on the images of ``scenes``.

    The rotation head is discarded afterwards; the encoder weights stay in ``model``.

    Args:
        model: an :class:`carve.learn.nets.ImageModel` (on ``device``).
        scenes: :class:`carve.learn.scenes.RenderedScenes`; the last 10% of images are held out.
        cfg: the run's :class:`carve.learn.config.TrainConfig` (batch, lr, seed, ``pretrain_epochs``).
        epochs: default ``cfg.pretrain_epochs``.

    Returns:
        history (list of per-epoch dicts with train_loss and val_rot_acc on the held-out images).
    """
    epochs = cfg.pretrain_epochs if epochs is None else epochs
    net = _RotationNet(model).to(device)
    n_hold = max(1, len(scenes) // 10)
    hold = scenes.images[-n_hold:]
    data = Samples(scenes.slice(0, -n_hold), _rotated_sample, cfg.seed, 7)
    phase = make_phase("pretrain", net, data, cfg, device, epochs=epochs, step=_step,
                       validate=lambda epoch: _accuracy(net, hold, device), seed=cfg.seed + 1,
                       find_unused=True)  # the decoder takes no part
    history = []
    for _ in train_epochs(phase, cfg, device, history, progress=progress):
        pass
    return history
