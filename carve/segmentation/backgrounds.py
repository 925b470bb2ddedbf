"""Synthetic backgrounds, and the composites the learned silhouette model trains on.

Training images are procedural renders of :mod:`data.scenes` whose objects (their ground-truth mask)
are composited over synthetic backgrounds drawn fresh every epoch (:func:`composite`): smooth and
fine noise, colour gradients, periodic and multi-octave textures, and clutter (random shapes, a
turntable-like disk, bright point lights, blur and vignetting); about one in six keeps the scene's
own background. The model never sees a real photograph during training.

Everything is in torch, driven by a ``torch.Generator``; images are (3, H, W) float in [0, 1].

Example:
    >>> bg = synthetic_background(24, 32, seed=1)
    >>> bg.shape, bg.dtype
    ((24, 32, 3), dtype('uint8'))
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from carve.learn.augment import color_jitter

__all__ = ["synthetic_background", "background", "composite"]

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


def _clutter_shapes(img, g, h, w, ys, xs, dark):
    s = max(h, w)
    for _ in range(int(5 + _rand(g) * 25)):
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


def _turntable(img, g, h, w, ys, xs):
    """A turntable-like disk, seen at an angle, with a darker rim."""
    cy, cx = h * (0.55 + 0.3 * _rand(g)), w * (0.3 + 0.4 * _rand(g))
    rx = w * (0.3 + 0.4 * _rand(g))
    ry = rx * (0.25 + 0.75 * _rand(g))
    rim = _color(g) * 0.3
    _draw_ellipse(img, cy, cx, ry * 1.15, rx * 1.15, 0.0, rim, ys, xs)
    plate = (0.6 + 0.4 * _rand(g)) * torch.ones(3, 1, 1) + 0.1 * (_color(g) - 0.5)
    _draw_ellipse(img, cy, cx, ry, rx, 0.0, plate.clamp(0, 1), ys, xs)


def _lights(img, g, h, w, ys, xs):
    """Bright point lights / speculars added to ``img``; returns the new image."""
    for _ in range(int(3 + _rand(g) * 30)):
        cy, cx = _rand(g) * h, _rand(g) * w
        r = 0.5 + _rand(g) * max(h, w) / 100
        glow = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * r * r))[None]
        img = img + glow * (0.7 + 0.3 * _rand(g))
    return img


def _bg_clutter(g, h, w):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    dark = _rand(g) < 0.5
    base = _color(g) * (0.25 if dark else 1.0)
    img = base.expand(3, h, w).clone()
    img = img * 0.6 + 0.4 * _smooth_noise(g, h, w, 3) * img.mean()
    _clutter_shapes(img, g, h, w, ys, xs, dark)
    if _rand(g) < 0.5:
        _turntable(img, g, h, w, ys, xs)
    if _rand(g) < 0.5:
        img = _lights(img, g, h, w, ys, xs)
    if _rand(g) < 0.5:  # vignetting
        rr = ((xs / w - 0.5) ** 2 + (ys / h - 0.5) ** 2)[None]
        img = img * (1 - 0.8 * _rand(g) * rr * 2)
    return img.clamp(0, 1)


_BACKGROUNDS = (_bg_noise, _bg_gradient, _bg_texture, _bg_clutter, _bg_clutter)  # clutter twice as often


def synthetic_background(height: int, width: int, seed: int = 0):
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
    bg = background(g, height, width)
    return (bg.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def background(g: torch.Generator, h: int, w: int) -> torch.Tensor:
    """One background (3, h, w) in [0, 1] of the training distribution, drawn from ``g``."""
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


def composite(x: torch.Tensor, m: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A training image: the object of image ``x`` (3, H, W) with mask ``m`` (H, W) bool, zoomed in at
    random, usually over a synthetic background (soft edges, contact shadows), blurred, jittered,
    noised and flipped at random. Returns (image (3, H, W) in [0, 1], mask (H, W) bool)."""
    if _rand(g) < 0.5 and m.any():  # zoom in on the objects: they come in all sizes in photographs
        x, m = _zoom(x, m, g)
    if _rand(g) < 5 / 6:
        x = _over_background(x, m, g)
    if _rand(g) < 0.3:
        x = _blur(x, 0.4 + 1.2 * _rand(g))
    x = color_jitter(x, g, strength=0.25)
    if _rand(g) < 0.5:
        x = (x + 0.03 * _rand(g) * torch.randn(x.shape, generator=g)).clamp(0, 1)
    if _rand(g) < 0.5:
        x, m = x.flip(-1), m.flip(-1)
    return x, m


def _over_background(x, m, g):
    h, w = m.shape
    bg = background(g, h, w)
    alpha = m.float()[None]
    if _rand(g) < 0.5:  # soft, anti-aliased edge
        alpha = _blur(alpha, 0.5 + 0.5 * _rand(g))
        alpha = torch.where(m[None], alpha.clamp_min(0.5), alpha.clamp_max(0.5))
    if _rand(g) < 0.3:  # a contact shadow under the object
        shift = (int(2 + _rand(g) * h / 20), int((_rand(g) - 0.5) * w / 10))
        shadow = _blur(torch.roll(m.float()[None], shifts=shift, dims=(1, 2)), 2 + 3 * _rand(g))
        bg = bg * (1 - 0.5 * _rand(g) * shadow)
    return x * alpha + bg * (1 - alpha)
