"""Reproducible augmentation: seeded generators, per-sample datasets, colour jitter, rescaled crops.

Everything random in training is drawn from a :func:`generator` seeded by integers (the run's
seed, a purpose, the epoch, the sample index...), so a run is reproducible and a resumed run
continues exactly where it stopped, whatever the number of processes.

Example:
    >>> a = torch.rand(2, generator=generator(0, 1, 2))
    >>> bool(torch.equal(a, torch.rand(2, generator=generator(0, 1, 2))))
    True
    >>> to_input(torch.zeros(1, 4, 5, 3, dtype=torch.uint8)).shape
    torch.Size([1, 3, 4, 5])
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["generator", "Samples", "to_input", "color_jitter", "scale_and_crop", "window_of"]


def generator(*keys: int) -> torch.Generator:
    """A torch Generator seeded from integers (seed, purpose, epoch, index, ...)."""
    g = torch.Generator()
    h = 0
    for k in keys:
        h = (h * 1_000_003 + int(k) + 0x9E3779B9) % (2 ** 62)
    g.manual_seed(h)
    return g


class Samples(torch.utils.data.Dataset):
    """Index -> training sample dict; the augmentation depends on (seed, purpose, epoch, index) only.

    Args:
        scenes: the split (a :class:`carve.learn.scenes.RenderedScenes`).
        make: ``make(scenes, i, g) -> dict`` (e.g. a task's ``train_sample``).
        seed, purpose: the generator's first keys (purpose keeps pretraining and training apart).
    """

    def __init__(self, scenes, make: Callable, seed: int, purpose: int):
        self.scenes, self.make, self.seed, self.purpose, self.epoch = scenes, make, seed, purpose, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict:
        return self.make(self.scenes, i, generator(self.seed, self.purpose, self.epoch, i))


def to_input(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 or float [0, 1] -> (B, 3, H, W) float32 in [0, 1]."""
    x = images.permute(0, 3, 1, 2)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def color_jitter(x: torch.Tensor, g: torch.Generator, strength: float = 0.15) -> torch.Tensor:
    """x: (3, H, W) in [0, 1]; random brightness, contrast and per-channel gain."""
    b = 1 + strength * (2 * torch.rand(1, generator=g) - 1)
    c = 1 + strength * (2 * torch.rand(1, generator=g) - 1)
    gain = 1 + 0.5 * strength * (2 * torch.rand(3, 1, 1, generator=g) - 1)
    m = x.mean()
    return ((x - m) * c + m * b).mul(gain).clamp(0, 1)


def _sizes(factors, h, w, m, crop, size):
    sizes = [(max(m, int(round(h * float(s) / m)) * m), max(m, int(round(w * float(s) / m)) * m)) for s in factors]
    if crop:
        sizes = [(max(sh, min(size, h)), max(sw, min(size, w))) for sh, sw in sizes]
    return sizes


def _resized(v, name, size):
    if tuple(v.shape[-2:]) == tuple(size):
        return v
    if name == "image":
        return F.interpolate(v, size=size, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(v[:, None].float(), size=size, mode="nearest")[:, 0].to(v.dtype)


def scale_and_crop(batch: dict, cfg, g: torch.Generator) -> dict:
    """Resize a batch by random factors in [cfg.scale_min, 1] (image: area-averaged; labels: nearest).

    Renders no larger than ``cfg.size`` share one factor (the batch keeps one size). Larger renders
    are training on crops: each image gets its own factor (sizes below ``cfg.size`` are raised to
    it) and a random ``size x size`` crop, so that every batch mixes resolutions, and the batch
    gains ``full_image`` (the list of resized images) and ``offset`` (B, 2) (top, left): the model's
    ``window`` (see :func:`window_of`).

    Shapes: every entry whose last two dimensions are the image's (H, W) is resized (and cropped):
    ``image`` (B, 3, H, W), labels (B, H, W); other entries pass through.
    """
    m = 2 ** (len(cfg.widths) - 1)
    h, w = batch["image"].shape[-2:]
    b = len(batch["image"])
    crop = max(h, w) > cfg.size
    factors = cfg.scale_min + (1 - cfg.scale_min) * torch.rand(b if crop else 1, generator=g)
    sizes = _sizes(factors, h, w, m, crop, cfg.size)
    per_pixel = [n for n, v in batch.items() if v.ndim >= 3 and v.shape[-2:] == (h, w)]
    if not crop:
        return {n: _resized(v, n, sizes[0]) if n in per_pixel else v for n, v in batch.items()}
    ch, cw = min(cfg.size, h), min(cfg.size, w)
    out = {n: v for n, v in batch.items() if n not in per_pixel}
    parts = {n: [] for n in per_pixel}
    full, offset = [], []
    for i, (sh, sw) in enumerate(sizes):
        t = int(torch.randint(0, sh - ch + 1, (1,), generator=g))
        l = int(torch.randint(0, sw - cw + 1, (1,), generator=g))
        for n in per_pixel:
            v = _resized(batch[n][i:i + 1], n, (sh, sw))
            if n == "image":
                full.append(v[0])
            parts[n].append(v[0, ..., t:t + ch, l:l + cw])
        offset.append((t, l))
    out.update({n: torch.stack(p) for n, p in parts.items()})
    out["full_image"], out["offset"] = full, torch.tensor(offset, device=batch["image"].device)
    return out


def window_of(batch: dict):
    """The model's ``window`` argument for a training batch: None, or (list of full images, offsets) of crops."""
    return (batch["full_image"], batch["offset"]) if "full_image" in batch else None
