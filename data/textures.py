"""Procedural solid textures: smooth value noise and the albedo patterns the renderer paints with.

A texture is a function of the world point, so every view sees the same colour at the same surface
point (what photo-consistency needs) and no UV map is required.
"""
from __future__ import annotations

import numpy as np

__all__ = ["TEXTURE_KINDS", "texture_factor", "value_noise"]

#: the patterns :func:`texture_factor` draws
TEXTURE_KINDS = ("checker", "stripes", "noise", "patches")


def _hash01(ix, iy, iz, seed):
    """Deterministic pseudo-random values in [0, 1) for integer lattice points."""
    h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ (iz.astype(np.int64) * 83492791)
    h = (h ^ (int(seed) * 2654435761)) & 0xFFFFFFFF
    h = (h ^ (h >> 16)) * 0x45D9F3B & 0xFFFFFFFF
    h = (h ^ (h >> 16)) * 0x45D9F3B & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).astype(np.float64) / float(0x1000000)


def value_noise(points, scale=1.0, octaves=3, seed=0):
    """Smooth 3D value noise in [0, 1] at ``points`` (N, 3) (or (N, 2), z = 0), summed over octaves."""
    p = np.asarray(points, np.float64)
    if p.shape[-1] == 2:
        p = np.concatenate([p, np.zeros(p.shape[:-1] + (1,))], axis=-1)
    total = np.zeros(p.shape[:-1])
    amp, norm = 1.0, 0.0
    for o in range(int(octaves)):
        q = p * (scale * 2.0 ** o)
        i = np.floor(q).astype(np.int64)
        f = q - i
        f = f * f * (3 - 2 * f)
        acc = 0.0
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    w = (f[..., 0] if dx else 1 - f[..., 0]) * (f[..., 1] if dy else 1 - f[..., 1]) * \
                        (f[..., 2] if dz else 1 - f[..., 2])
                    acc = acc + w * _hash01(i[..., 0] + dx, i[..., 1] + dy, i[..., 2] + dz, seed + 101 * o)
        total += amp * acc
        norm += amp
        amp *= 0.5
    return total / norm


def texture_factor(spec, points):
    """Multiplicative albedo factor (N, 3) of a procedural solid texture at world ``points`` (N, 3).

    ``spec``: None, or a dict with ``kind`` ("checker", "stripes", "noise" or "patches": the noise cut
    into two-colour patches with soft borders), ``scale`` (pattern
    repeats per world unit, default 4), ``contrast`` (0..1, default 0.5), optional ``color`` (an RGB
    0..255 the dark parts tend to, default black) and ``seed`` (noise).
    """
    n = len(points)
    if not spec:
        return np.ones((n, 3))
    kind = spec.get("kind", "checker")
    scale = float(spec.get("scale", 4.0))
    contrast = float(np.clip(spec.get("contrast", 0.5), 0, 1))
    if kind == "checker":
        # cells are centred on the lattice, so that a plane through it (the ground, z = 0) lies
        # mid-cell rather than on a cell border, where rounding noise would flip the parity
        c = np.floor(points * scale + 0.5).astype(np.int64).sum(axis=1) % 2
        t = c.astype(np.float64)
    elif kind == "stripes":
        t = 0.5 + 0.5 * np.sin(2 * np.pi * scale * points[:, 2] + 3.0 * points[:, 0])
    elif kind == "noise":
        t = value_noise(points, scale=scale, octaves=3, seed=int(spec.get("seed", 0)))
    elif kind == "patches":  # noise cut into two-colour patches with soft borders, like a printed pattern
        t = value_noise(points, scale=scale, octaves=3, seed=int(spec.get("seed", 0)))
        t = np.clip((t - 0.42) / 0.16, 0, 1)
        t = t * t * (3 - 2 * t)
    else:
        raise ValueError(f"texture kind must be one of {', '.join(TEXTURE_KINDS)}, got {kind!r}")
    tint = np.asarray(spec.get("color", (0, 0, 0)), np.float64) / 255.0
    mix = (contrast * (1 - t))[:, None]
    return (1 - mix) + mix * tint[None, :]
