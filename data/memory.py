"""Memory checks before large allocations: what is available, and one clear MemoryError.

Absurd requests (``data.synthetic(views=10**7)``, a grid file that declares a 10**12-voxel shape)
are refused up front, naming the request and the estimate, instead of allocating gigabytes first.
"""
from __future__ import annotations

import os

__all__ = ["available_memory", "require_memory", "render_memory", "require_render_memory"]


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def require_memory(nbytes: float, what: str, advice: str) -> None:
    """Raise MemoryError when ``nbytes`` exceed the available memory; nothing is allocated.

    Args:
        nbytes: the estimate of the allocation.
        what: the request, as the user wrote it (``"views=10000000 at 320 x 240"``).
        advice: how to ask for less (``"render fewer or smaller views"``).

    Example:
        >>> require_memory(1024, "a test", "ask for less")
        >>> require_memory(2.0**70, "views=10**15", "render fewer views")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        MemoryError: views=10**15 needs about 1099511627776.00 GiB, but only ... GiB of memory is available; render fewer views
    """
    have = available_memory()
    if have is not None and nbytes > have:
        raise MemoryError(f"{what} needs about {nbytes / 2**30:.2f} GiB, but only {have / 2**30:.2f} GiB of "
                          f"memory is available; {advice}")


# bytes a rendering holds per pixel of every view: the outputs (RGB uint8, float32 depth, bool mask)
# and the float32 RGB background; and per pixel of the one view being cast: rays, hits, normals,
# colours and their temporaries in float64 (tracemalloc: 250-280 B at 320 x 240 and 640 x 480 with
# shadows and highlights; Open3D's own buffers come on top, hence the room to spare)
_BYTES_PER_OUTPUT_PIXEL = 3 + 4 + 1 + 12
_BYTES_PER_CAST_PIXEL = 400
# a look-at camera: K, R, T and the rig's temporaries, float64
_BYTES_PER_CAMERA = 1024


def render_memory(views: int, width: int, height: int) -> int:
    """Bytes ``data.render`` (and a rig of ``views`` cameras) needs at its peak: an estimate, on the safe side.

    Example:
        >>> round(render_memory(36, 320, 240) / 2**20)
        82
    """
    pixels = int(width) * int(height)
    return int(views) * (pixels * _BYTES_PER_OUTPUT_PIXEL + _BYTES_PER_CAMERA) + pixels * _BYTES_PER_CAST_PIXEL


def require_render_memory(views: int, width: int, height: int) -> None:
    """MemoryError, before anything is allocated, when rendering would not fit (:func:`render_memory`)."""
    require_memory(render_memory(views, width, height), f"rendering {views} views of {width} x {height} px",
                   "render fewer or smaller views")
