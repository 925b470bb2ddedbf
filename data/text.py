"""Parsing numbers out of text calibration files, with errors that name the file and line, and the
last check every loader makes on the cameras those numbers give."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from data.errors import FormatError

__all__ = ["read_lines", "parse_numbers", "finite_cameras"]


def read_lines(path) -> list[str]:
    """The lines of a text file (no line endings), or a FormatError saying why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "file is missing")
    try:
        return path.read_text(encoding="utf-8-sig", errors="strict").splitlines()
    except UnicodeDecodeError:
        raise FormatError(path, "is not a text file (not UTF-8); expected a text calibration file") from None


def parse_numbers(tokens, path, line: int, *, count: int | None = None, what: str = "numbers") -> np.ndarray:
    """Parse ``tokens`` as finite floats; ``count`` checks how many there must be.

    Raises FormatError naming ``path``:``line`` for a short or long row, a word that is not a number,
    NaN or infinity.
    """
    if count is not None and len(tokens) != count:
        raise FormatError(path, f"expected {count} {what}, got {len(tokens)}", line)
    values = []
    for k, tok in enumerate(tokens):
        try:
            v = float(tok)
        except ValueError:
            raise FormatError(path, f"{what}: item {k + 1} is {tok!r}, not a number", line) from None
        if not math.isfinite(v):
            raise FormatError(path, f"{what}: item {k + 1} is {tok}, expected a finite number", line)
        values.append(v)
    return np.array(values, dtype=np.float64)


def finite_cameras(cameras, where):
    """``cameras`` if every projection ``K [R|T]`` and centre is finite, else a FormatError.

    Finite numbers can still overflow together (a principal point of 1e308 times a depth of 3), and
    such a camera projects every point to inf: refused here, by the file that gave it.

    Args:
        cameras: a numpy ``geometry.Camera`` of B views.
        where: the file the cameras came from, or a list of B files or (file, line) pairs, one per view.

    Raises:
        FormatError: naming the first view whose projection or centre is not finite.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~(np.isfinite(cameras.P).all(axis=(1, 2)) & np.isfinite(cameras.center).all(axis=1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        place = where[i] if isinstance(where, list) else where
        path, line = place if isinstance(place, tuple) else (place, None)
        raise FormatError(path, f"the camera of view {i + 1} overflows: K [R|T] or its centre is not finite "
                                f"(numbers too large to compute with)", line)
    return cameras
