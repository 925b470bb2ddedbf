"""glibc's allocator as Open3D's renderer needs it under Mesa's software drivers.

Under llvmpipe / lavapipe the ``O3DVisualizer`` renderer spins for good (two cores busy, never a
frame) in a process started with any glibc malloc tunable set: ``MALLOC_TRIM_THRESHOLD_`` (which
Dask's workers and every process started after ``import distributed`` inherit),
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_`` or their ``GLIBC_TUNABLES``
forms. Any of them switches off glibc's moving mmap threshold. Measured (Open3D 0.20, Mesa 22): a
fixed threshold of 4 MiB still spins, 32 MiB (the moving threshold's ceiling) draws. Without a
tunable the moving threshold draws faster than any fixed one, so nothing is changed there.

The same tunable makes a whole ``reconstruct`` task 23% slower (0.68 s against 0.56 s a dataset of the
batch benchmark, most of it in the snapshot: every large buffer becomes a fresh mmap and its page
faults); the batch's workers apply the same fix, which gets all of it back.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["steady_mmap_threshold"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_MMAP_THRESHOLD = 32 * 2 ** 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
_MALLOC_VARIABLES = (b"MALLOC_TRIM_THRESHOLD_", b"MALLOC_TOP_PAD_", b"MALLOC_MMAP_THRESHOLD_", b"MALLOC_MMAP_MAX_")
_MALLOC_TUNABLES = (b"malloc.trim_threshold", b"malloc.top_pad", b"malloc.mmap_threshold", b"malloc.mmap_max")


def _malloc_tuned_at_start() -> bool:
    """Whether this process started with a glibc malloc tunable set (its start-up environment, not
    ``os.environ``, which ``import distributed`` changes after the fact)."""
    try:
        with open("/proc/self/environ", "rb") as f:
            start = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
    except OSError:
        return False
    tunables = start.get(b"GLIBC_TUNABLES", b"")
    return any(name in start for name in _MALLOC_VARIABLES) or any(name in tunables for name in _MALLOC_TUNABLES)


def steady_mmap_threshold() -> None:
    """Where a malloc tunable stopped glibc's moving mmap threshold (see the module's notes), serve
    allocations under 32 MiB from the heap and keep up to 64 MiB free at its top, as that moving
    threshold does once warmed up. Elsewhere nothing changes: the moving threshold draws faster."""
    if not sys.platform.startswith("linux") or not _malloc_tuned_at_start():
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(_MMAP_THRESHOLD))
        # and trim the heap as the moving threshold would (twice it): not at every frame's free
        libc.mallopt(ctypes.c_int(_M_TRIM_THRESHOLD), ctypes.c_int(2 * _MMAP_THRESHOLD))
    except (OSError, AttributeError):  # musl and others: no mallopt
        pass
