"""File names that dataset files give: kept inside the dataset folder unless the caller allows otherwise.

A ``transforms.json`` ``file_path``, a COLMAP image name or a Middlebury ``_par.txt`` image name is
data from whoever wrote the dataset. :func:`inside` is the one check every loader runs on such a
name before touching the file: ``../outside.png``, ``/etc/passwd`` and ``a/../../b`` are refused
with a :class:`~data.errors.FormatError` naming the file (and line) that gave them, unless the caller
passes ``allow_outside=True`` (``carve --allow-outside-paths``).

The check is lexical (``os.path.normpath``): symbolic links already inside the folder are followed,
as they are the folder owner's doing (an ``images`` link to another disk is a common layout); what
a dataset file can no longer do is name a place outside the folder.

    >>> inside("ds", "./train/r_0.png").as_posix()
    'ds/train/r_0.png'
    >>> inside("ds", "../outside.png")
    Traceback (most recent call last):
    ...
    data.errors.FormatError: ds: names '../outside.png', which is outside the dataset folder ds; ...
    >>> inside("ds", "../outside.png", allow_outside=True).as_posix()
    'outside.png'
"""
from __future__ import annotations

import os
from pathlib import Path, PurePath

from data.errors import FormatError, short_repr

__all__ = ["inside", "ALLOW_HINT"]

#: the longest name of one file or folder on the common file systems (ext4, XFS, APFS, NTFS): a longer
#: one cannot exist, and asking the OS about it raises ENAMETOOLONG
NAME_MAX = 255
#: the longest whole path Linux takes (PATH_MAX; macOS takes 1024, Windows' long paths 32767)
PATH_MAX = 4096

#: how a user allows names that leave the folder, for every message that refuses one
ALLOW_HINT = "pass allow_outside=True (carve: --allow-outside-paths) if you trust this dataset"


def inside(root, name, *, allow_outside: bool = False, where=None, line: int | None = None) -> Path:
    """``root / name``, normalised, refused when ``name`` leaves ``root``.

    Args:
        root: the folder the name is relative to (the dataset folder, or its image folder).
        name: the file name as the dataset file gives it (relative, ``/`` or the OS separator).
        allow_outside: accept absolute names and ``..`` escapes (the path is returned normalised).
        where: the file that gave the name, for the message (default: ``root``).
        line: the 1-based line of ``where`` that gave it, or None.

    Returns:
        The path (``root`` joined with the normalised name; an absolute name as it is when allowed).

    Raises:
        FormatError: ``name`` is not a string, is empty, names the folder itself, holds a NUL
            character or a lone surrogate, is too long for a file system (a part past
            :data:`NAME_MAX` bytes, a path of :data:`PATH_MAX`), or (unless ``allow_outside``) is
            absolute or climbs out of ``root``.
    """
    root = Path(root)
    where = root if where is None else where
    if not isinstance(name, str):
        raise FormatError(where, f"expected a file name (a string), got {short_repr(name)}", line)
    if "\0" in name:
        raise FormatError(where, f"file name {short_repr(name)} holds a NUL character", line)
    try:
        longest = max(len(os.fsencode(part)) for part in PurePath(name).parts) if name else 0
    except UnicodeEncodeError:  # a lone surrogate from a JSON "\\ud800" escape
        raise FormatError(where, f"file name {short_repr(name)} is not valid text (it holds a lone surrogate)", line) \
            from None
    if longest > NAME_MAX:
        raise FormatError(where, f"file name {short_repr(name)} has a part of {longest} bytes; file systems take "
                                 f"{NAME_MAX} at most", line)
    rel = os.path.normpath(name) if name else os.curdir
    if rel == os.curdir:
        raise FormatError(where, f"file name {name!r} names the folder itself, not a file", line)
    pure = PurePath(rel)
    escapes = pure.is_absolute() or bool(pure.drive) or bool(pure.root) or pure.parts[0] == os.pardir
    if escapes and not allow_outside:
        raise FormatError(where, f"names {short_repr(name)}, which is outside the dataset folder {root}; names in "
                                 f"a dataset file must stay inside it ({ALLOW_HINT})", line)
    full = Path(os.path.normpath(root / rel))
    if len(os.fsencode(full)) >= PATH_MAX:
        raise FormatError(where, f"file name {short_repr(name)} makes a path of {len(os.fsencode(full))} bytes; "
                                 f"the system takes {PATH_MAX - 1} at most", line)
    return full
