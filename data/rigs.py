"""Camera rigs for synthetic data: look-at cameras on a turntable ring or spread over a hemisphere.

Convention: world z is up; cameras look at ``target`` with the world's up direction pointing up in
the image (OpenCV axes, so image v grows downward). Angles are in degrees.
"""
from __future__ import annotations

import numpy as np

from geometry import Camera

__all__ = ["turntable", "hemisphere"]


def _check(n, radius, width, height):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive number of views, got {n!r}")
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius must be a positive distance, got {radius!r}")
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive number of pixels, got {v!r}")


def _cameras(directions, radius, target, fov, width, height):
    target = np.asarray(target, np.float64)
    if target.shape != (3,):
        raise ValueError(f"target must have shape (3,), got {target.shape}")
    eye = target + radius * directions
    return Camera.look_at(eye, target, up=(0.0, 0.0, 1.0), fov=fov, width=int(width), height=int(height))


def turntable(n: int, elevation: float = 30.0, radius: float = 3.0, *, target=(0.0, 0.0, 0.0),
              fov: float = 40.0, width: int = 128, height: int = 128, start: float = 0.0) -> Camera:
    """``n`` cameras on a horizontal ring around ``target``, like a turntable sequence.

    Args:
        n: number of views, evenly spaced in azimuth.
        elevation: degrees above the horizontal plane through ``target`` (-90 < elevation < 90).
        radius: distance from ``target``.
        target: (3,) the point every camera looks at.
        fov: horizontal field of view, degrees.
        width, height: image size in pixels.
        start: azimuth of the first view, degrees from the +x axis, counter-clockwise seen from above.

    Returns:
        Camera with B = n.

    Example:
        >>> cams = turntable(36, elevation=20, radius=4, width=64, height=48)
        >>> len(cams), cams.width, cams.height
        (36, 64, 48)
    """
    _check(n, radius, width, height)
    if not -90 < elevation < 90:
        raise ValueError(f"elevation must be in (-90, 90) degrees, got {elevation}")
    az = np.radians(start + 360.0 * np.arange(n) / n)
    el = np.radians(elevation)
    d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.full(n, np.sin(el))], axis=1)
    return _cameras(d, radius, target, fov, width, height)


def hemisphere(n: int, radius: float = 3.0, *, min_elevation: float = 10.0, max_elevation: float = 75.0,
               target=(0.0, 0.0, 0.0), fov: float = 40.0, width: int = 128, height: int = 128) -> Camera:
    """``n`` cameras spread evenly over the band of a hemisphere between two elevations.

    Directions follow a Fibonacci spiral, equal-area in the band, so any n gives an even spread.

    Args:
        n: number of views.
        radius: distance from ``target``.
        min_elevation, max_elevation: degrees above the horizon (max below 90: straight down has no up).
        target, fov, width, height: as in :func:`turntable`.
    """
    _check(n, radius, width, height)
    if not -90 < min_elevation < max_elevation < 90:
        raise ValueError(f"elevations must satisfy -90 < min_elevation < max_elevation < 90, got "
                         f"{min_elevation} and {max_elevation}")
    z0, z1 = np.sin(np.radians(min_elevation)), np.sin(np.radians(max_elevation))
    k = np.arange(n) + 0.5
    z = z0 + (z1 - z0) * k / n  # uniform in z = uniform in area on the sphere
    phi = np.pi * (3.0 - np.sqrt(5.0)) * np.arange(n)
    r = np.sqrt(1 - z * z)
    d = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    return _cameras(d, radius, target, fov, width, height)
