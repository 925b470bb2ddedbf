"""Progress bars: one rule for when long work shows a bar, for every module of the project.

A bar appears when the caller asks (``enabled=True``), or by default (``enabled=None``) when the
work has more than :data:`MIN_STEPS` steps and stderr is a terminal: pipelines and CI logs stay
clean, a person at a terminal sees the work move. ``TQDM_DISABLE=1`` (what ``carve --quiet`` sets)
turns every bar off.
"""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

__all__ = ["progress", "show_progress", "MIN_STEPS"]

T = TypeVar("T")

#: work of at most this many steps shows no bar by default: it ends before a bar would tell anything
MIN_STEPS = 4


def show_progress(enabled: bool | None, total: int | None) -> bool:
    """Whether a bar is shown: ``enabled`` itself when given, else the default rule above.

    Example:
        >>> show_progress(True, 1), show_progress(False, 100)
        (True, False)
    """
    if os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes"):
        return False
    if enabled is not None:
        return bool(enabled)
    return (total is None or total > MIN_STEPS) and sys.stderr.isatty()


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, enabled: bool | None = None,
             **tqdm_options) -> Iterable[T]:
    """``iterable`` itself, or wrapped in a tqdm bar when :func:`show_progress` says so.

    Args:
        iterable: the work, one item per step.
        desc: the bar's label ("render", "colouring", ...).
        total: number of steps (default: ``len(iterable)`` when it has one).
        enabled: True or False to force the bar on or off; None for the default rule.
        **tqdm_options: passed to ``tqdm`` (``unit=``, ``leave=``...; ``leave`` defaults to False).

    Example:
        >>> list(progress(range(3), desc="steps", enabled=False))
        [0, 1, 2]
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not show_progress(enabled, total):
        return iterable
    from tqdm.auto import tqdm

    tqdm_options.setdefault("leave", False)
    return tqdm(iterable, desc=desc, total=total, **tqdm_options)
