"""The dataset format registry: detection, ``load`` and ``save``.

Adding a format is one new module with ``NAME``, ``DESCRIPTION``, ``detect(path) -> str | None``
(the evidence found, for the message) and ``load(path, *, allow_outside=False, **options) -> MultiView``
(names a dataset file gives go through :func:`data.paths.inside`; and optionally
``save(mv, path)``), plus one line in :data:`FORMATS`.
"""
from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

from data import blender, colmap, middlebury, oxford, tum
from data.errors import FormatError
from data.files import new_folders
from data.multiview import MultiView

__all__ = ["FORMATS", "detect", "load", "save"]

log = logging.getLogger(__name__)

#: format name -> module; the order is the detection priority when a folder fits several
FORMATS = {m.NAME: m for m in (tum, colmap, blender, middlebury, oxford)}


def detect(path) -> tuple[str, str]:
    """Which format the folder ``path`` holds.

    Returns:
        (format name, evidence), e.g. ("tum", "calib/*.txt and images/").

    Raises:
        FormatError: no known layout matches (the message lists what each format looks for).
    """
    path = Path(path)
    if not path.exists():
        raise FormatError(path, "does not exist")
    if path.is_file():
        if path.name.startswith("transforms") and path.suffix == ".json":
            return "blender", path.name
        if path.name.endswith("_par.txt"):
            return "middlebury", path.name
        if path.suffix == ".mat":
            return "oxford", path.name
        path = path.parent
    hits = [(name, ev) for name, mod in FORMATS.items() if (ev := mod.detect(path))]
    if not hits:
        wanted = "; ".join(f"{m.DESCRIPTION}" for m in FORMATS.values())
        raise FormatError(path, f"matches no known dataset layout. Looked for: {wanted}")
    if len(hits) > 1:
        log.info("%s fits several formats (%s); using %s", path, ", ".join(h[0] for h in hits), hits[0][0])
    return hits[0]


def load(path, format: str | None = None, *, verbose: bool = True, allow_outside: bool = False,
         **options) -> MultiView:
    """Read a multi-view dataset into a :class:`MultiView` in our conventions.

    Args:
        path: the dataset folder (or, for single-file formats, the camera file itself).
        format: "tum", "middlebury", "oxford", "colmap" or "blender"; None detects it from the
            folder's contents and says which it chose (in the log, and on stderr when ``verbose``
            once the dataset has loaded; it is also ``MultiView.format``).
        verbose: print the detected format.
        allow_outside: let the dataset's files name images and masks outside its folder (absolute
            names, ``../``); refused by default with a FormatError naming the file and the name
            (see :mod:`data.paths`). Pass True only for a dataset you trust.
        **options: passed to the format's loader (e.g. ``split="train"`` for blender, ``images=`` for
            colmap, ``name=`` for middlebury, ``pixel_origin=1`` for oxford).

    Raises:
        FormatError (a ValueError): malformed input, with the file and line at fault.

    Example:
        >>> mv = load("../shared/datasets/bunny")  # doctest: +SKIP
        data.load: ../shared/datasets/bunny is a tum dataset (calib/*.txt and images/)
        >>> mv.cameras.P.shape  # doctest: +SKIP
        (36, 3, 4)
    """
    path = Path(path)
    message = None
    if format is None:
        format, evidence = detect(path)
        message = f"data.load: {path} is a {format} dataset ({evidence})"
        log.info(message)
    elif format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)} or None to detect it, got {format!r}")
    elif not path.exists():
        raise FormatError(path, "does not exist")
    if not isinstance(allow_outside, bool):
        raise TypeError(f"allow_outside must be True or False, got {allow_outside!r}")
    try:
        mv = FORMATS[format].load(path, allow_outside=allow_outside, **options)
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            raise TypeError(f"format {format!r} does not take that option: {err}") from None
        raise
    if message and verbose:  # said once it worked: a failure's one line is the error itself
        print(message, file=sys.stderr)
    return mv


def save(mv: MultiView, path, format: str = "tum", *, overwrite: bool = False) -> Path:
    """Write ``mv`` as a dataset that :func:`load` (and the format's own tools) read back.

    The dataset is written into a temporary folder beside ``path`` and moved into place at the end,
    so a failure never leaves a half-written dataset.

    Args:
        mv: the views to write.
        path: the folder to create.
        format: "tum" (calib/images/silhouettes) or "blender" (transforms.json + RGBA images).
        overwrite: replace an existing ``path``; otherwise an existing non-empty folder is an error.

    Returns:
        ``path`` as a Path.
    """
    if not isinstance(mv, MultiView):
        raise TypeError(f"mv must be a data.MultiView, got {type(mv).__name__}")
    writers = {name: m for name, m in FORMATS.items() if hasattr(m, "save")}
    if format not in writers:
        raise ValueError(f"format must be one of {sorted(writers)} to save, got {format!r}")
    path = Path(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())) and not overwrite:
        raise FileExistsError(f"path {path} already exists and is not empty; pass overwrite=True to replace it")
    with new_folders(path.parent):
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            _save_into(writers[format], mv, path, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _save_into(writer, mv: MultiView, path: Path, tmp: Path) -> None:
    """Write the dataset into ``tmp``, then move it to ``path`` (an old one kept until the new one is in)."""
    target, old = tmp / "dataset", tmp / "old"
    try:
        writer.save(mv, target)
    except OSError as err:  # name the output, not the hidden staging folder
        raise type(err)(err.errno, f"cannot write the dataset {path}: {err.strerror or err}") from None
    if path.exists():
        path.rename(old)  # kept until the new one is in place: a failure between loses neither
    try:
        target.rename(path)
    except BaseException:
        if old.exists():
            old.rename(path)
        raise
