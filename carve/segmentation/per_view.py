"""Per-view work on every core: OpenCV's GrabCut runs one image per thread (it releases the GIL).

Each view's mask depends on its own image alone, so the views can be cut at once. The results come
back in the views' order, whatever order the threads finish in, and a view's result does not depend
on the thread that made it (:func:`carve.segmentation.classical.grabcut_labels` seeds OpenCV's
per-thread random generator before each cut).
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

import numba

from data.progress import progress as progress_bar
from geometry.parallel import own_cores

__all__ = ["threads", "map_views"]

T = TypeVar("T")
#: work submitted ahead of the threads, per thread: enough to keep every core busy while a view's
#: inputs are made, few enough that a long set's inputs (a distance map per view) are not all held at once
AHEAD = 2


def threads() -> int:
    """Threads for per-view work: the cores this process may use, or fewer when the caller's Numba
    thread count is lower (``NUMBA_NUM_THREADS``, or a batch task's share of its worker's cores)."""
    return max(1, min(own_cores(), numba.get_num_threads()))


def map_views(work: Callable[..., T], inputs: Iterable[tuple], *, total: int, desc: str,
              progress: bool | None = None) -> list[T]:
    """``[work(*args) for args in inputs]``, run on :func:`threads` threads, in the inputs' order.

    ``inputs`` is read lazily, at most :data:`AHEAD` items per thread ahead of the finished ones; a
    progress bar (``desc``, ``total`` steps, :func:`data.progress.progress`'s rule) counts finished views.
    An exception raised by ``work`` is raised here.

    Example:
        >>> map_views(pow, [(2, 3), (3, 2)], total=2, desc="powers", progress=False)
        [8, 9]
    """
    workers = min(threads(), max(int(total), 1))
    bar = progress_bar(range(total), desc=desc, total=total, enabled=progress)
    tick = getattr(bar, "update", lambda steps: None)  # a tqdm bar, or the plain range when none is shown
    out: list[T] = []
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="view") as pool:
            pending: deque = deque()
            for args in inputs:
                pending.append(pool.submit(work, *args))
                if len(pending) >= AHEAD * workers:
                    out.append(pending.popleft().result())
                    tick(1)
            while pending:
                out.append(pending.popleft().result())
                tick(1)
    finally:
        if hasattr(bar, "close"):
            bar.close()
    return out
