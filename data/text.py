"""Parsing numbers out of text calibration files, with errors that name the file and line."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from data.errors import FormatError

__all__ = ["read_lines", "parse_numbers"]


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
