"""Learned silhouettes: a UNet trained to find the object in front of any background.

It backs up the classical methods of :mod:`carve.segmentation` (``silhouettes(method="learned")``).
Training images are procedural renders of :mod:`data.scenes` whose objects (their ground-truth mask)
are composited over synthetic backgrounds drawn fresh every epoch: smooth and fine noise, colour
gradients, periodic and multi-octave textures, and clutter (random shapes, a turntable-like disk,
bright point lights, blur and vignetting); about one in six keeps the scene's own background. The
model never sees a real photograph during training.

- :class:`SilhouetteModel`: UNet -> foreground logits.
- :func:`predict_silhouettes`: bool masks of a list of RGB images (sizes may differ); large images are
  processed at ``max_side`` pixels and the probabilities resized back.
- :func:`synthetic_background`: one background image of the training distribution.
- :func:`train` and :func:`add_train_silhouette_arguments` / :func:`run_train_silhouettes` for the CLI.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from carve.training import (MODELS_DIR, ImageModel, TrainConfig, add_arguments, fit, window_of,
                            inference_model, load_model, model_file, run, train_command,
                            to_input, _color_jitter)

__all__ = ["SilhouetteModel", "predict_silhouettes", "synthetic_background", "train", "load",
           "default_model_path", "add_train_silhouette_arguments", "run_train_silhouettes"]

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


# ----------------------------------------------------------------------------------------------
# synthetic backgrounds (all in torch, driven by a torch.Generator, (3, H, W) float in [0, 1])


def _rand(g, *shape):
    return torch.rand(*shape, generator=g) if shape else float(torch.rand(1, generator=g))


def _color(g):
    return torch.rand(3, 1, 1, generator=g)


def _smooth_noise(g, h, w, cells, channels=3):
    n = torch.rand(1, channels, cells, cells, generator=g)
    return F.interpolate(n, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def _bg_noise(g, h, w):
    octaves = 1 + int(_rand(g) * 4)
    out = torch.zeros(3, h, w)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = int(2 + _rand(g) * 6) * (2 ** o)
        out += amp * _smooth_noise(g, h, w, min(cells, max(h, w)), 3 if _rand(g) < 0.7 else 1)
        total += amp
        amp *= 0.5
    out /= total
    if _rand(g) < 0.5:  # pixel noise on top
        out += 0.08 * _rand(g) * torch.randn(3, h, w, generator=g)
    return out.clamp(0, 1)


def _bg_gradient(g, h, w):
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    a = _rand(g) * 2 * math.pi
    if _rand(g) < 0.7:
        t = (xs * math.cos(a) + ys * math.sin(a)) * 0.5 + 0.5
    else:
        cx, cy = 2 * _rand(g) - 1, 2 * _rand(g) - 1
        t = ((xs - cx) ** 2 + (ys - cy) ** 2).sqrt() / 2
    t = t.clamp(0, 1)[None]
    c0, c1 = _color(g), _color(g)
    return (c0 * (1 - t) + c1 * t).clamp(0, 1)


def _bg_texture(g, h, w):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    kind = int(_rand(g) * 3)
    c0, c1 = _color(g), _color(g)
    if kind == 0:  # stripes / plaid
        t = torch.zeros(h, w)
        for _ in range(1 + int(_rand(g) * 3)):
            a = _rand(g) * math.pi
            f = (2 + _rand(g) * 20) * 2 * math.pi / max(h, w)
            t += torch.sin((xs * math.cos(a) + ys * math.sin(a)) * f + _rand(g) * 6.28)
        t = (t - t.min()) / (t.max() - t.min() + 1e-6)
        if _rand(g) < 0.5:
            t = (t > 0.5).float()
    elif kind == 1:  # checkerboard / tiles
        s = 4 + int(_rand(g) * max(h, w) / 6)
        a = _rand(g) * math.pi / 2
        u = xs * math.cos(a) - ys * math.sin(a)
        v = xs * math.sin(a) + ys * math.cos(a)
        t = ((torch.floor(u / s) + torch.floor(v / s)) % 2)
    else:  # wood / marble-like: warped sinusoid
        n = _smooth_noise(g, h, w, 4 + int(_rand(g) * 6), 1)[0]
        f = (3 + _rand(g) * 15) * 2 * math.pi / max(h, w)
        t = 0.5 + 0.5 * torch.sin(xs * f + 8 * n)
    return (c0 * (1 - t[None]) + c1 * t[None]).clamp(0, 1)


def _draw_ellipse(img, cy, cx, ry, rx, angle, color, ys, xs, alpha=1.0):
    c, s = math.cos(angle), math.sin(angle)
    u = ((xs - cx) * c + (ys - cy) * s) / max(rx, 1e-3)
    v = (-(xs - cx) * s + (ys - cy) * c) / max(ry, 1e-3)
    inside = ((u * u + v * v) <= 1).float()[None] * alpha
    img.mul_(1 - inside).add_(inside * color)


def _draw_polygon(img, cy, cx, r, sides, angle, color, ys, xs):
    # a convex regular polygon: inside all half-planes
    inside = torch.ones_like(xs, dtype=torch.bool)
    for k in range(sides):
        a = angle + 2 * math.pi * k / sides
        inside &= ((xs - cx) * math.cos(a) + (ys - cy) * math.sin(a)) <= r
    m = inside.float()[None]
    img.mul_(1 - m).add_(m * color)


def _bg_clutter(g, h, w):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    dark = _rand(g) < 0.5
    base = _color(g) * (0.25 if dark else 1.0)
    img = base.expand(3, h, w).clone()
    img = img * 0.6 + 0.4 * _smooth_noise(g, h, w, 3) * img.mean()
    s = max(h, w)
    for _ in range(int(5 + _rand(g) * 25)):  # random shapes
        kind = _rand(g)
        col = _color(g) * (0.5 if dark else 1.0)
        cy, cx = _rand(g) * h, _rand(g) * w
        r = s * (0.02 + 0.2 * _rand(g) ** 2)
        if kind < 0.35:
            _draw_ellipse(img, cy, cx, r, r * (0.3 + _rand(g)), _rand(g) * 3.14, col, ys, xs, alpha=0.5 + 0.5 * _rand(g))
        elif kind < 0.7:
            y0, x0 = int(cy), int(cx)
            img[:, y0:y0 + int(r * (0.5 + _rand(g) * 2)), x0:x0 + int(r * (0.5 + _rand(g) * 2))] = col
        elif kind < 0.85:
            _draw_polygon(img, cy, cx, r, 3 + int(_rand(g) * 8), _rand(g) * 3.14, col, ys, xs)
        else:  # a thin line
            a = _rand(g) * math.pi
            d = (xs - cx) * math.sin(a) - (ys - cy) * math.cos(a)
            m = (d.abs() < 0.5 + 1.5 * _rand(g)).float()[None]
            img.mul_(1 - m).add_(m * col)
    if _rand(g) < 0.5:  # a turntable-like disk, seen at an angle, with a polygonal rim
        cy, cx = h * (0.55 + 0.3 * _rand(g)), w * (0.3 + 0.4 * _rand(g))
        rx = w * (0.3 + 0.4 * _rand(g))
        ry = rx * (0.25 + 0.75 * _rand(g))
        rim = _color(g) * 0.3
        _draw_ellipse(img, cy, cx, ry * 1.15, rx * 1.15, 0.0, rim, ys, xs)
        plate = (0.6 + 0.4 * _rand(g)) * torch.ones(3, 1, 1) + 0.1 * (_color(g) - 0.5)
        _draw_ellipse(img, cy, cx, ry, rx, 0.0, plate.clamp(0, 1), ys, xs)
    if _rand(g) < 0.5:  # bright point lights / speculars
        for _ in range(int(3 + _rand(g) * 30)):
            cy, cx = _rand(g) * h, _rand(g) * w
            r = 0.5 + _rand(g) * s / 100
            glow = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * r * r))[None]
            img = img + glow * (0.7 + 0.3 * _rand(g))
    if _rand(g) < 0.5:  # vignetting
        rr = ((xs / w - 0.5) ** 2 + (ys / h - 0.5) ** 2)[None]
        img = img * (1 - 0.8 * _rand(g) * rr * 2)
    return img.clamp(0, 1)


_BACKGROUNDS = (_bg_noise, _bg_gradient, _bg_texture, _bg_clutter, _bg_clutter)  # clutter twice as often


def synthetic_background(height, width, seed=0):
    """One synthetic background of the training distribution.

    Args:
        height, width: size in pixels.
        seed: int; the kind (noise, gradient, texture, clutter) and its parameters follow from it.

    Returns:
        (height, width, 3) uint8 RGB image.
    """
    if not isinstance(height, int) or not isinstance(width, int) or height < 1 or width < 1:
        raise ValueError(f"height and width must be positive ints, got {height!r} and {width!r}")
    g = torch.Generator().manual_seed(int(seed))
    bg = _background(g, height, width)
    return (bg.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def _background(g, h, w):
    k = int(_rand(g) * len(_BACKGROUNDS))
    bg = _BACKGROUNDS[k](g, h, w)
    if _rand(g) < 0.3:  # a second layer blended in
        other = _BACKGROUNDS[int(_rand(g) * len(_BACKGROUNDS))](g, h, w)
        a = 0.2 + 0.5 * _rand(g)
        bg = bg * (1 - a) + other * a
    return bg


def _blur(x, sigma):
    if sigma < 0.3:
        return x
    r = int(math.ceil(2.5 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[0]
    y = F.conv2d(F.pad(x[None], (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


def _zoom(x, m, g):
    """Crop a random window (40-100% of the side) around the objects' centroid, resize back."""
    h, w = m.shape
    side = 0.4 + 0.6 * _rand(g)
    ch, cw = max(8, int(h * side)), max(8, int(w * side))
    ys, xs = torch.nonzero(m, as_tuple=True)
    cy, cx = float(ys.float().mean()), float(xs.float().mean())
    top = int(min(max(cy - ch * (0.3 + 0.4 * _rand(g)), 0), h - ch))
    left = int(min(max(cx - cw * (0.3 + 0.4 * _rand(g)), 0), w - cw))
    xc = x[:, top:top + ch, left:left + cw]
    mc = m[top:top + ch, left:left + cw]
    x = F.interpolate(xc[None], size=(h, w), mode="bilinear", align_corners=False)[0].clamp(0, 1)
    m = F.interpolate(mc[None, None].float(), size=(h, w), mode="nearest")[0, 0] > 0.5
    return x, m


# ----------------------------------------------------------------------------------------------
# the training task


class _SilhouetteTask:
    name = "silhouette"
    primary = "val_iou"
    metric_names = ("iou", "bce")

    @staticmethod
    def better(a, b):
        return a > b

    @staticmethod
    def build(**config):
        return SilhouetteModel(**config)

    @staticmethod
    def init_from_data(model, scenes):
        p = float(scenes.mask.float().mean().clamp(1e-3, 1 - 1e-3))
        with torch.no_grad():
            model.unet.head.bias.fill_(math.log(p / (1 - p)))

    @staticmethod
    def extra_tensors(scenes):
        return {}

    @staticmethod
    def composite(scenes, i, g):
        """The scene's object over a synthetic background: (image (3, H, W), mask (H, W) bool)."""
        x = to_input(scenes.images[i:i + 1])[0]
        m = scenes.mask[i]
        h, w = m.shape
        if _rand(g) < 0.5 and m.any():  # zoom in on the objects: they come in all sizes in photographs
            x, m = _zoom(x, m, g)
        if _rand(g) < 5 / 6:
            bg = _background(g, h, w)
            alpha = m.float()[None]
            if _rand(g) < 0.5:  # soft, anti-aliased edge
                alpha = _blur(alpha, 0.5 + 0.5 * _rand(g))
                alpha = torch.where(m[None], alpha.clamp_min(0.5), alpha.clamp_max(0.5))
            if _rand(g) < 0.3:  # a contact shadow under the object
                shadow = _blur(torch.roll(m.float()[None], shifts=(int(2 + _rand(g) * h / 20), int((_rand(g) - 0.5) * w / 10)),
                                          dims=(1, 2)), 2 + 3 * _rand(g))
                bg = bg * (1 - 0.5 * _rand(g) * shadow)
            x = x * alpha + bg * (1 - alpha)
        if _rand(g) < 0.3:
            x = _blur(x, 0.4 + 1.2 * _rand(g))
        x = _color_jitter(x, g, strength=0.25)
        if _rand(g) < 0.5:
            x = (x + 0.03 * _rand(g) * torch.randn(x.shape, generator=g)).clamp(0, 1)
        if _rand(g) < 0.5:
            x, m = x.flip(-1), m.flip(-1)
        return x, m

    @classmethod
    def train_sample(cls, scenes, i, g):
        x, m = cls.composite(scenes, i, g)
        return {"image": x, "mask": m}

    @classmethod
    def val_batch(cls, scenes, idx):
        xs, ms = [], []
        for i in idx:  # fixed composites: the generator depends on the scene index only
            x, m = cls.composite(scenes, i, torch.Generator().manual_seed(1_000_003 * int(i) + 17))
            xs.append(x)
            ms.append(m)
        return {"image": torch.stack(xs), "mask": torch.stack(ms)}

    @staticmethod
    def loss(model, batch, cfg):
        from carve.losses import mask_loss
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


TASK = _SilhouetteTask()


# ----------------------------------------------------------------------------------------------
# loading and inference


def default_model_path():
    """Path of the shipped default silhouette model (``carve/models/silhouette_default.pt``)."""
    return MODELS_DIR / DEFAULT_MODEL


def _model_file(path):
    return model_file(path, "silhouette", DEFAULT_MODEL, "python -m carve.learned_silhouettes")


def load(path=None):
    """Load a silhouette model file (default: the shipped one) -> :class:`SilhouetteModel` (eval mode).

    Raises:
        CheckpointError (a ValueError): missing, corrupt or foreign file, or a model of another task.
    """
    return load_model(_model_file(path), "silhouette")


def predict_silhouettes(images, model=None, *, max_side=256, threshold=0.5, return_probability=False,
                        batch_size=8, progress=None):
    """Object masks from photographs with the learned model.

    Args:
        images: list of (H, W, 3) uint8 RGB images (sizes may differ), or a (B, H, W, 3) array.
        model: None (the shipped default), a path to a model file, or a :class:`SilhouetteModel`.
        max_side: images whose longer side exceeds this are downsampled (area) to it for the network,
            and the probabilities upsampled (bilinear) back; None runs at full resolution.
        threshold: probability above which a pixel is foreground.
        return_probability: also return the (H, W) float32 probability maps.
        batch_size: images per forward pass.
        progress: tqdm bar (default: more than 4 batches on a tty).

    Returns:
        list of (H, W) bool masks (True on the object); with ``return_probability``, (masks, probs).
    """
    import cv2

    from carve.segmentation import _as_images  # one validation of image lists for every method

    items = _as_images(images)
    if model is None or isinstance(model, (str, Path)):
        net = inference_model(_model_file(model), "silhouette")
    elif isinstance(model, SilhouetteModel):
        net = model
    else:
        raise TypeError(f"model must be None (the shipped model), a path or a SilhouetteModel, got {type(model).__name__}")
    if max_side is not None and (not isinstance(max_side, int) or max_side < 8):
        raise ValueError(f"max_side must be None or an int >= 8, got {max_side!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    small = []
    for im in items:
        h, w = im.shape[:2]
        s = 1.0 if max_side is None or max(h, w) <= max_side else max_side / max(h, w)
        if s < 1:
            im = cv2.resize(im, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        small.append(torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float() / 255.0)
    from carve.depth import _run_padded

    device = next(net.parameters()).device
    chunks = range(0, len(small), batch_size)
    if progress is None:
        import sys
        progress = len(chunks) > 4 and sys.stderr.isatty()
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, desc="silhouettes", leave=False)
    probs = []
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            for k in chunks:
                for o in _run_padded(net, small[k:k + batch_size], device):
                    probs.append(torch.sigmoid(o.float()).cpu().numpy())
    finally:
        net.train(was_training)
    masks, full = [], []
    for im, p in zip(items, probs):
        h, w = im.shape[:2]
        if p.shape != (h, w):
            p = cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR)
        masks.append(p > threshold)
        full.append(p.astype(np.float32))
    return (masks, full) if return_probability else masks


# ----------------------------------------------------------------------------------------------
# training


def train(out="runs/silhouette", *, resume=None, progress=True, **config):
    """Train a silhouette model (see :class:`carve.training.TrainConfig`); returns fit's dict."""
    return fit(TrainConfig(task="silhouette", out=str(out), **config), resume=resume, progress=progress)


def add_train_silhouette_arguments(parser):
    """Add the training options of the silhouette model to an argparse (sub)parser."""
    return add_arguments(parser, "silhouette")


def run_train_silhouettes(args):
    """Train from options parsed by :func:`add_train_silhouette_arguments`; returns 0."""
    return run(args, "silhouette")


def main(argv=None):
    return train_command("silhouette", argv, prog="python -m carve.learned_silhouettes",
                         description="Train the learned silhouette model on composited procedural "
                                     "renders (also under torchrun --nproc_per_node=N).")


if __name__ == "__main__":
    raise SystemExit(main())
