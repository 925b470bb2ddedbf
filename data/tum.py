"""TUM / Bonn multi-view layout (Kolev and Cremers' benchmark datasets, e.g. the bunny).

Layout::

    calib/NNNN.txt        "CONTOUR" header line, then the 3x4 projection matrix P, one row per line,
                          with P @ [X, Y, Z, 1] = d * [u, v, 1], d the depth in front of the camera
    images/NNNN.<ext>     the photographs (any extension OpenCV reads); may be absent when masks are given
    silhouettes/NNNN.<ext>  optional 8-bit masks, 0 (black) is the object, anything else background
                          (the layout's convention; a border that says otherwise wins, with a warning)
    masks/, mask/, sil/   other mask folders, polarity from the border rule (see :mod:`data.masks`)
    bounds.txt            optional (ours): two lines "lo_x lo_y lo_z" and "hi_x hi_y hi_z"

Convention: P's pixel coordinates have the top-left pixel centre at (0, 0), as ours. Each P gets
the sign that puts the scene in front, a mirrored world is reflected into a right-handed one
(:func:`data.frames.orient_projections`, recorded as ``MultiView.world_from_dataset``; ``bounds.txt``
is in the dataset's frame), and P is decomposed into K [R|T] (``Camera.from_projection``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.errors import FormatError
from data.frames import orient_projections, to_dataset_projections, transform_bounds
from data.images import find_image, read_views, write_image
from data.masks import MASK_FOLDERS, dataset_masks, find_mask_folder
from data.multiview import MultiView
from data.text import finite_cameras, parse_numbers, read_lines
from geometry import Camera

NAME = "tum"
DESCRIPTION = ("TUM/Bonn: calib/NNNN.txt (CONTOUR + 3x4 P), images/ and/or a mask folder (silhouettes/: "
               "0 = object, masks/, mask/, sil/)")


def detect(path: Path) -> str | None:
    """Evidence that ``path`` is a TUM/Bonn folder, or None."""
    if not ((path / "calib").is_dir() and any((path / "calib").glob("*.txt"))):
        return None
    if (path / "images").is_dir():
        return "calib/*.txt and images/"
    masks = find_mask_folder([path])
    return f"calib/*.txt and {masks.name}/, no images" if masks else None


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


def load(path, *, silhouettes=True, mask_object: str | None = None, allow_outside: bool = False) -> MultiView:
    """Read a TUM/Bonn folder.

    Args:
        path: the folder holding ``calib/`` and ``images/`` and/or a mask folder (masks alone give a
            MultiView with ``images=None``).
        silhouettes: read the mask folder when present (True), not (False), or the mask folder itself.
        mask_object: "bright" or "dark": which value of the masks is the object, when neither the
            convention nor the border rule can tell (see :mod:`data.masks`).
        allow_outside: accepted as by every loader; this layout names no files (views are the
            ``calib/`` file names), so nothing can leave the folder.

    Raises:
        FormatError: a malformed calibration or ``bounds.txt`` (file and line named), a missing or
            undecodable image, a matrix that is not a valid camera.
    """
    path = Path(path)
    calibs = sorted((path / "calib").glob("*.txt"))
    if not calibs:
        raise FormatError(path / "calib", "holds no NNNN.txt calibration files")
    names = [c.stem for c in calibs]
    P = np.stack([read_projection(c) for c in calibs])
    images, size = None, None
    if (path / "images").is_dir() or not silhouettes:
        image_files = [find_image(path / "images", n, required_for=c) for n, c in zip(names, calibs)]
        images = read_views(image_files)
        size = images[0].shape[1::-1]
    masks, _ = dataset_masks([path], names, silhouettes=silhouettes, conventions={"silhouettes": "zero"},
                             mask_object=mask_object, size=size)
    if images is None and masks is None:
        raise FormatError(path, f"holds neither images/ nor a mask folder ({', '.join(MASK_FOLDERS)})")
    h, w = (images or masks)[0].shape[:2]
    try:
        P_world, frame = orient_projections(P, w, h, names)
        cameras = Camera.from_projection(P_world, w, h, orient=False)
    except ValueError as err:
        bad = _first_bad_projection(P)
        if bad is None:
            raise FormatError(path / "calib", str(err)) from None
        raise FormatError(calibs[bad], f"P is not a valid finite camera ({err})") from None
    finite_cameras(cameras, calibs)
    bounds = _read_bounds(path)
    bounds = None if bounds is None else transform_bounds(bounds, frame)
    return MultiView(images, cameras, masks, bounds, names, format=NAME, path=path, world_from_dataset=frame)


def _first_bad_projection(P):
    for i in range(len(P)):
        try:
            Camera.from_projection(P[i])
        except ValueError:
            return i
    return None


def save(mv: MultiView, path: Path) -> None:
    """Write ``mv`` in the TUM/Bonn layout into the new folder ``path`` (views named 0000, 0001, ...);
    a dataset of masks alone gets no ``images/``."""
    (path / "calib").mkdir(parents=True)
    names = [f"{i:04d}" for i in range(len(mv))]  # the layout numbers its views
    P = to_dataset_projections(mv.cameras.P, mv.world_from_dataset)  # back in the dataset's frame
    for name, p in zip(names, P):
        rows = "\n".join(" ".join(f"{v:.17g}" for v in row) for row in p)
        (path / "calib" / f"{name}.txt").write_text(f"CONTOUR\n{rows}\n")
    if mv.images is not None:
        (path / "images").mkdir()
        for name, im in zip(names, mv.images):
            write_image(path / "images" / f"{name}.png", im)
    if mv.silhouettes is not None:
        (path / "silhouettes").mkdir()
        for name, m in zip(names, mv.silhouettes):
            write_image(path / "silhouettes" / f"{name}.png", np.where(m, 0, 255).astype(np.uint8))
    if mv.bounds is not None:
        bounds = transform_bounds(mv.bounds, np.linalg.inv(mv.world_from_dataset))
        (path / "bounds.txt").write_text("\n".join(" ".join(f"{v:.17g}" for v in row) for row in bounds) + "\n")
