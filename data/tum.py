"""TUM / Bonn multi-view layout (Kolev and Cremers' benchmark datasets, e.g. the bunny).

Layout::

    calib/NNNN.txt        "CONTOUR" header line, then the 3x4 projection matrix P, one row per line,
                          with P @ [X, Y, Z, 1] = d * [u, v, 1], d the depth in front of the camera
    images/NNNN.<ext>     the photographs (any extension OpenCV reads)
    silhouettes/NNNN.<ext>  optional 8-bit masks, 0 (black) is the object, anything else background
    bounds.txt            optional (ours): two lines "lo_x lo_y lo_z" and "hi_x hi_y hi_z"

Convention: P's pixel coordinates have the top-left pixel centre at (0, 0), as ours, so P is taken
as it is and decomposed into K [R|T] (``Camera.from_projection``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.errors import FormatError
from data.images import find_image, read_mask, read_views, write_image
from data.multiview import MultiView
from data.text import parse_numbers, read_lines
from geometry import Camera

NAME = "tum"
DESCRIPTION = "TUM/Bonn: calib/NNNN.txt (CONTOUR + 3x4 P), images/, optional silhouettes/ (0 = object)"


def detect(path: Path) -> str | None:
    """Evidence that ``path`` is a TUM/Bonn folder, or None."""
    if (path / "calib").is_dir() and (path / "images").is_dir() and any((path / "calib").glob("*.txt")):
        return "calib/*.txt and images/"
    return None


def read_projection(path) -> np.ndarray:
    """The (3, 4) P of one ``calib/NNNN.txt`` (optional ``CONTOUR`` header, then 3 rows of 4 numbers)."""
    path = Path(path)
    rows = []
    for lineno, text in enumerate(read_lines(path), start=1):
        tokens = text.split()
        if not tokens:
            continue
        if not rows and tokens[0].upper() == "CONTOUR" and len(tokens) == 1:
            continue
        if len(rows) == 3:
            raise FormatError(path, f"unexpected content after the 3x4 matrix: {text.strip()[:40]!r}", lineno)
        rows.append(parse_numbers(tokens, path, lineno, count=4, what=f"numbers in row {len(rows) + 1} of P"))
    if len(rows) != 3:
        raise FormatError(path, f"expected 3 rows of 4 numbers (the 3x4 matrix P), got {len(rows)} rows")
    return np.stack(rows)


def _read_bounds(path: Path):
    f = path / "bounds.txt"
    if not f.is_file():
        return None
    rows = [(n, line.split()) for n, line in enumerate(read_lines(f), start=1) if line.split()]
    if len(rows) != 2:
        raise FormatError(f, f"expected 2 lines (lo and hi) of 3 numbers, got {len(rows)}")
    lo, hi = (parse_numbers(tok, f, n, count=3, what="coordinates") for n, tok in rows)
    if not (lo < hi).all():
        raise FormatError(f, f"lo must be below hi on every axis, got lo {lo.tolist()} and hi {hi.tolist()}")
    return np.stack([lo, hi])


def load(path, *, silhouettes: bool = True) -> MultiView:
    """Read a TUM/Bonn folder.

    Args:
        path: the folder holding ``calib/`` and ``images/``.
        silhouettes: read ``silhouettes/`` when present.
    """
    path = Path(path)
    calibs = sorted((path / "calib").glob("*.txt"))
    if not calibs:
        raise FormatError(path / "calib", "holds no NNNN.txt calibration files")
    names = [c.stem for c in calibs]
    P = np.stack([read_projection(c) for c in calibs])
    image_files = [find_image(path / "images", n, required_for=c) for n, c in zip(names, calibs)]
    images = read_views(image_files)
    h, w = images[0].shape[:2]
    try:
        cameras = Camera.from_projection(P, w, h)
    except ValueError as err:
        bad = _first_bad_projection(P)
        raise FormatError(calibs[bad], f"P is not a valid finite camera ({err})") from None
    masks = None
    sil_dir = path / "silhouettes"
    if silhouettes and sil_dir.is_dir():
        mask_files = [find_image(sil_dir, n, required_for=c) for n, c in zip(names, calibs)]
        masks = [read_mask(f, object_value=0) for f in mask_files]
        for f, m in zip(mask_files, masks):
            if m.shape != (h, w):
                raise FormatError(f, f"silhouette is {m.shape[1]}x{m.shape[0]}, its image is {w}x{h}")
    return MultiView(images, cameras, masks, _read_bounds(path), names, format=NAME, path=path)


def _first_bad_projection(P):
    for i in range(len(P)):
        try:
            Camera.from_projection(P[i])
        except ValueError:
            return i
    return 0


def save(mv: MultiView, path: Path) -> None:
    """Write ``mv`` in the TUM/Bonn layout into the new folder ``path`` (views named 0000, 0001, ...)."""
    (path / "calib").mkdir(parents=True)
    (path / "images").mkdir()
    names = [f"{i:04d}" for i in range(len(mv))]  # the layout numbers its views
    P = mv.cameras.P
    for name, p, im in zip(names, P, mv.images):
        rows = "\n".join(" ".join(f"{v:.17g}" for v in row) for row in p)
        (path / "calib" / f"{name}.txt").write_text(f"CONTOUR\n{rows}\n")
        write_image(path / "images" / f"{name}.png", im)
    if mv.silhouettes is not None:
        (path / "silhouettes").mkdir()
        for name, m in zip(names, mv.silhouettes):
            write_image(path / "silhouettes" / f"{name}.png", np.where(m, 0, 255).astype(np.uint8))
    if mv.bounds is not None:
        (path / "bounds.txt").write_text("\n".join(" ".join(f"{v:.17g}" for v in row) for row in mv.bounds) + "\n")
