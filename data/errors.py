"""The one error type of the dataset loaders: malformed input, named by file and line.

``FormatError`` is a ``ValueError``, so callers that catch ValueError keep working; its message
starts with ``path, line N:`` (as Python's own tracebacks name a place), then says what is wrong.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["FormatError", "short_repr"]


class FormatError(ValueError):
    """Malformed dataset input.

    Attributes:
        path: the offending file (or folder), as a ``Path``.
        line: 1-based line number in that file, or None where the fault is not on one line (a
            binary record, a missing file, a count that does not match).
        reason: the message without the location prefix.
    """

    def __init__(self, path, reason: str, line: int | None = None):
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}, line {line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {reason}")


def short_repr(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting a file's bad value in a message.

    Example:
        >>> short_repr("x" * 100, 12)
        "'xxxxxxxx..."
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
