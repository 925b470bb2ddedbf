"""Middlebury multi-view stereo layout (Seitz et al.; dino, temple and their ring/sparse-ring sets).

Layout::

    <name>_par.txt   first line: the number of images; then one line per image
                     "imgname.png k11 k12 k13 k21 k22 k23 k31 k32 k33 r11 r12 r13 r21 ... r33 t1 t2 t3"
                     with P = K [R t] (world to camera, OpenCV axes, pixel centres at integers)
    <imgname>.png    the images, beside the _par.txt
    <name>_good_silhouette_images.txt   optional: the images whose silhouettes (from the dark
                     background, ``carve.silhouettes(..., method="threshold")``) are reliable; exposed
                     as ``MultiView.flags["good_silhouette"]``
    <name>_ang.txt   (ignored: the turntable angles)

The layout has no masks of its own: ``silhouettes`` is None unless a mask folder (``silhouettes/``,
``masks/``, ``mask/``, ``sil/``) beside the ``_par.txt`` holds them (see :mod:`data.masks`); with
masks and no images the result has ``images=None``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from data.errors import FormatError
from data.images import find_image, read_views
from data.masks import dataset_masks, find_mask_folder
from data.multiview import MultiView
from data.paths import inside
from data.text import finite_cameras, parse_numbers, read_lines
from geometry import Camera

NAME = "middlebury"
DESCRIPTION = "Middlebury multi-view: <name>_par.txt (count, then 'img k[9] R[9] t[3]' per line), images beside it"


def detect(path: Path) -> str | None:
    found = sorted(path.glob("*_par.txt"))
    return f"{found[0].name}" if found else None


def _par_file(path: Path, name: str | None) -> Path:
    if path.is_file():
        return path
    if name is not None:
        f = path / f"{name}_par.txt"
        if not f.is_file():
            raise FormatError(f, "file is missing (name= picks <name>_par.txt)")
        return f
    found = sorted(path.glob("*_par.txt"))
    if not found:
        raise FormatError(path, "holds no <name>_par.txt file")
    if len(found) > 1:
        names = ", ".join(f.name[: -len("_par.txt")] for f in found)
        raise FormatError(path, f"holds several camera files ({names}); pass name= to pick one")
    return found[0]


def read_par(path):
    """Parse a ``_par.txt``: returns (image names, K (N,3,3), R (N,3,3), T (N,3), line numbers)."""
    path = Path(path)
    lines = [(n, t.split()) for n, t in enumerate(read_lines(path), start=1) if t.split()]
    if not lines:
        raise FormatError(path, "file is empty; expected a count line then one line per image")
    n0, head = lines[0]
    try:
        count = int(head[0]) if len(head) == 1 and _is_count(head[0]) else None
    except ValueError:  # past Python's 4300-digit limit: no count of images either
        count = None
    if count is None:
        raise FormatError(path, f"first line must be the number of images, got {' '.join(head)[:40]!r}", n0)
    rows = lines[1:]
    if len(rows) != count:
        raise FormatError(path, f"the count line says {count} images, the file lists {len(rows)}", n0)
    names, K, R, T, where = [], [], [], [], []
    for lineno, tokens in rows:
        if len(tokens) != 22:
            raise FormatError(path, f"expected an image name and 21 numbers (K 9, R 9, t 3), got "
                                    f"{len(tokens)} items", lineno)
        v = parse_numbers(tokens[1:], path, lineno, what="camera parameters")
        names.append(tokens[0])
        K.append(v[:9].reshape(3, 3))
        R.append(v[9:18].reshape(3, 3))
        T.append(v[18:21])
        where.append(lineno)
    return names, np.stack(K), np.stack(R), np.stack(T), where


def _is_count(token: str) -> bool:
    """Whether ``token`` is a plain count: ASCII digits only (``str.isdigit`` also takes ``³``, which int() refuses).

    Example:
        >>> _is_count("36"), _is_count("³"), _is_count("-1")
        (True, False, False)
    """
    return token.isascii() and token.isdigit()


def _read_good(path: Path, names: list[str]) -> np.ndarray:
    stems = {Path(n).stem: i for i, n in enumerate(names)}
    full = {n: i for i, n in enumerate(names)}
    flags = np.zeros(len(names), bool)
    lines = [(n, t.split()) for n, t in enumerate(read_lines(path), start=1) if t.split()]
    if lines and len(lines[0][1]) == 1 and _is_count(lines[0][1][0]) and lines[0][1][0] not in stems:
        lines = lines[1:]  # a leading count line
    for lineno, tokens in lines:
        for tok in tokens:
            i = full.get(tok, stems.get(Path(tok).stem))
            if i is None:
                raise FormatError(path, f"lists image {tok!r}, which the _par.txt file does not have", lineno)
            flags[i] = True
    return flags


def load(path, *, name: str | None = None, silhouettes=True, mask_object: str | None = None,
         allow_outside: bool = False) -> MultiView:
    """Read a Middlebury multi-view folder (or its ``_par.txt`` file).

    Args:
        path: the folder, or the ``<name>_par.txt`` file itself.
        name: the dataset name when the folder holds several ``_par.txt`` files (e.g. "dinoSR").
        silhouettes: True reads a mask folder beside the ``_par.txt`` (``silhouettes/``, ``masks/``,
            ``mask/``, ``sil/``, matched by image stem; with none of the images present, a dataset
            of masks alone); False reads none; or the mask folder itself.
        mask_object: "bright" or "dark" when the masks' border cannot tell which is the object.
        allow_outside: accept image names that leave the ``_par.txt``'s folder (absolute, or
            ``../``); refused by default (see :mod:`data.paths`).

    Raises:
        FormatError: a malformed ``_par.txt`` (file and line named), an image name outside the
            folder, a missing or undecodable image, a camera that is not valid.
    """
    par = _par_file(Path(path), name)
    folder = par.parent
    names, K, R, T, where = read_par(par)
    for k, ln in enumerate(where):  # names from the file must stay in its folder
        inside(folder, names[k], allow_outside=allow_outside, where=par, line=ln)
        names[k] = Path(os.path.normpath(names[k])).as_posix()
    stems = [Path(n).stem for n in names]
    found = [find_image(folder, n) for n in names]
    has_masks = silhouettes not in (False, None) and (silhouettes is not True or find_mask_folder([folder]))
    images = None
    if any(found) or not has_masks:  # masks alone when none of the images is there
        files = [find_image(folder, n, required_for=(par, ln)) for n, ln in zip(names, where)]
        images = read_views(files)
    masks, _ = dataset_masks([folder], stems, silhouettes=silhouettes, mask_object=mask_object,
                             size=None if images is None else images[0].shape[1::-1])
    h, w = (images or masks)[0].shape[:2]
    for i, ln in enumerate(where):
        try:
            Camera(K[i], R[i], T[i])
        except ValueError as err:
            raise FormatError(par, str(err), ln) from None
    cameras = finite_cameras(Camera(K, R, T, w, h), [(par, ln) for ln in where])
    stem = par.name[: -len("_par.txt")]
    flags = {}
    good = folder / f"{stem}_good_silhouette_images.txt"
    if good.is_file():
        flags["good_silhouette"] = _read_good(good, names)
    return MultiView(images, cameras, masks, None, stems, flags=flags,
                     format=NAME, path=folder)
