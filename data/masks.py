"""Masks where users keep them: mask folders matched to views by name, and their polarity.

Every loader calls :func:`dataset_masks`. It looks for one of the folders :data:`MASK_FOLDERS`
(``silhouettes/``, ``masks/``, ``mask/``, ``sil/``; the first that holds images wins) beside the
images, or beside the calibration for layouts without an images folder, and pairs each view with
the mask file of the same name without its extension, any extension OpenCV reads (``0003.jpg`` <->
``0003.png``; ``cam1/0003.jpg`` <-> ``cam1/0003.png``). Also accepted, in this order, when the plain
name has no file: COLMAP's own mask naming, the full image name plus an extension
(``0003.jpg.png``); ``0003_mask.png``; and, for views in subfolders whose base names are unique, a
flat ``0003.png``. A folder may hold more masks than there are views; a view without a mask, or
with two candidate files, is an error naming it.

Polarity (which value is the object) is decided once per dataset, over all of its masks:

- threshold: a pixel is "bright" when its value is above the midpoint of the darkest and the
  brightest value in the dataset (127.5 for 8-bit 0/255 masks, 0.5 for 0/1 masks), so the few
  anti-aliased edge pixels go to the nearer class;
- border rule: the background is the class that owns at least two thirds of a mask's image border.
  Every mask whose border is that one-sided votes; all votes must agree (else a FormatError names
  masks on both sides), and with no vote at all the polarity is ambiguous (FormatError naming the
  folder) unless the layout has a convention or the caller says ``mask_object="bright"`` / ``"dark"``;
- a layout's own convention (:data:`CONVENTIONS`: TUM's ``silhouettes/`` is "exactly 0 is the
  object", nerfstudio's ``mask_path`` is "non-zero is the object") keeps its own exact rule; when the
  border rule votes against it, the border rule wins and a warning says so.

    >>> import numpy as np
    >>> m = np.full((6, 8), 255, np.uint8); m[2:4, 3:5] = 0          # a dark object on white
    >>> polarity([m], "masks")
    'dark'
    >>> [s] = threshold_masks([m], "masks"); int(s.sum())
    4
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from data.errors import FormatError
from data.images import IMAGE_EXTENSIONS, read_mask_values

__all__ = ["MASK_FOLDERS", "CONVENTIONS", "find_mask_folder", "match_masks", "polarity", "threshold_masks",
           "read_masks", "dataset_masks"]

log = logging.getLogger(__name__)

#: the folder names searched for masks, in this order of preference
MASK_FOLDERS = ("silhouettes", "masks", "mask", "sil")

#: a layout's own mask conventions: name -> (polarity, description); each keeps its exact rule
CONVENTIONS = {
    "zero": ("dark", "exactly 0 is the object, every other value background (TUM/Bonn)"),
    "nonzero": ("bright", "every non-zero value is the object (nerfstudio mask_path)"),
}

#: the share of a mask's border one class must own for that mask to vote on the polarity: two
#: thirds, so that an object cut by the frame edge (it owns part of the border) does not vote
DECISIVE = 2 / 3

#: how many names a message lists before "..."
_LIST = 4


def find_mask_folder(places) -> Path | None:
    """The first of ``place/silhouettes``, ``place/masks``, ``place/mask``, ``place/sil`` that holds an
    image file (an empty folder is no mask folder), trying each place of ``places`` (folders, in
    order) in turn; None when there is none."""
    for place in places:
        for name in MASK_FOLDERS:
            cand = Path(place) / name
            if cand.is_dir() and any(f.suffix.lower() in IMAGE_EXTENSIONS for f in cand.rglob("*")):
                return cand
    return None


def _index(folder: Path) -> dict:
    """Relative path without extension (posix) -> the image files under ``folder`` of that name."""
    index = {}
    for f in sorted(folder.rglob("*")):
        if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
            index.setdefault(f.relative_to(folder).with_suffix("").as_posix(), []).append(f)
    return index


def match_masks(folder, names, file_names=None) -> list[Path]:
    """The mask file of each view in ``folder``, matched by name.

    Args:
        folder: the mask folder.
        names: B view names, relative paths without extension (``"0003"``, ``"cam1/0003"``).
        file_names: B image file names with their extension, when the layout has them (COLMAP's
            ``images.txt``), for masks named ``0003.jpg.png``.

    Returns:
        B paths.

    Raises:
        FormatError: a view has no mask, or two files fit it (``0003.png`` and ``0003.jpg``).
    """
    folder = Path(folder)
    index = _index(folder)
    base = {}
    for key, files in index.items():
        base.setdefault(key.rsplit("/", 1)[-1], []).extend(files)
    names = [str(n) for n in names]
    unique_bases = len({n.rsplit("/", 1)[-1] for n in names}) == len(names)
    out = []
    for i, name in enumerate(names):
        keys = [name]
        if file_names is not None:
            keys.append(Path(str(file_names[i])).as_posix())
        keys.append(f"{name}_mask")
        found = next((index[k] for k in keys if k in index), None)
        if found is None and unique_bases and "/" in name:  # masks kept flat for views in subfolders
            found = base.get(name.rsplit("/", 1)[-1])
        if found is None:
            tried = ", ".join(f"{k}.<ext>" for k in keys)
            raise FormatError(folder, f"has no mask for view {name!r} (looked for {tried}); every view needs "
                                      f"one, or pass silhouettes=False to load without masks")
        if len(found) > 1:
            raise FormatError(folder, f"has {len(found)} masks for view {name!r} "
                                      f"({', '.join(f.name for f in found)}); keep one")
        out.append(found[0])
    return out


def _border(mask: np.ndarray) -> np.ndarray:
    """The image border's pixels of an (H, W) array, each once."""
    if min(mask.shape) <= 2:
        return mask.ravel()
    return np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])


def _names_of(idx, names) -> str:
    listed = ", ".join(str(names[i]) for i in idx[:_LIST])
    return listed + (" ..." if len(idx) > _LIST else "")


def polarity(values, folder, *, convention: str | None = None, names=None) -> str:
    """Which class of a dataset's masks is the object: "bright" or "dark".

    Args:
        values: B (H, W) arrays of mask values as stored (see :func:`data.images.read_mask_values`).
        folder: where the masks are, for messages.
        convention: a key of :data:`CONVENTIONS`: used when no mask's border decides.
        names: B names for messages (default: the view indices).

    Raises:
        FormatError: every mask holds one value; the masks' borders disagree; or none decides and
            there is no convention.
    """
    names = list(range(len(values))) if names is None else list(names)
    if convention is not None and convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(CONVENTIONS)} or None, got {convention!r}")
    lo, hi = _range(values, folder)
    mid = (lo + hi) / 2
    bright_bg, dark_bg = [], []
    for i, v in enumerate(values):
        bright = np.asarray(v) > mid
        if bright.all() or not bright.any():
            continue  # one class only: no evidence which class it is
        share = float(_border(bright).mean())
        if share >= DECISIVE:
            bright_bg.append(i)
        elif share <= 1 - DECISIVE:
            dark_bg.append(i)
    if bright_bg and dark_bg:
        few, many = sorted((bright_bg, dark_bg), key=len)
        raise FormatError(folder, f"masks disagree on which value is the object: the border of "
                                  f"{_names_of(few, names)} is mostly {'bright' if few is bright_bg else 'dark'} "
                                  f"but that of {len(many)} other masks mostly "
                                  f"{'bright' if many is bright_bg else 'dark'} (the class owning the border "
                                  f"is taken as background); make them agree")
    if bright_bg or dark_bg:
        found = "dark" if bright_bg else "bright"
        if convention is not None and CONVENTIONS[convention][0] != found:
            warnings.warn(f"{folder}: the masks' border says the object is {found}, against the layout's "
                          f"convention ({CONVENTIONS[convention][1]}); following the border", stacklevel=3)
        return found
    if convention is not None:
        return CONVENTIONS[convention][0]
    raise FormatError(folder, f"cannot tell which value marks the object: in no mask does one class own "
                              f"{DECISIVE:.0%} of the image border (the background should); pass "
                              f"mask_object='bright' or 'dark' (carve reconstruct --mask-object)")


def _range(values, folder):
    lo = min(float(np.min(v)) for v in values)
    hi = max(float(np.max(v)) for v in values)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise FormatError(folder, "masks hold NaN or inf values")
    if lo == hi:
        raise FormatError(folder, f"every mask holds the single value {lo:g}; nothing tells the object "
                                  f"from the background")
    return lo, hi


def threshold_masks(values, folder, *, convention: str | None = None, mask_object: str | None = None,
                    names=None) -> list[np.ndarray]:
    """Binary silhouettes (True on the object) from a dataset's mask values.

    Args:
        values: B (H, W) arrays of mask values as stored.
        folder: where the masks are, for messages.
        convention: a key of :data:`CONVENTIONS` (the layout's own rule), or None.
        mask_object: "bright" or "dark" to set the polarity; None decides it (:func:`polarity`).
        names: B names for messages.

    Returns:
        B (H, W) bool arrays: the convention's exact rule where it applies, else the midpoint
        threshold on the decided side.
    """
    if mask_object not in (None, "bright", "dark"):
        raise ValueError(f"mask_object must be 'bright', 'dark' or None (decide from the border), got {mask_object!r}")
    side = mask_object or polarity(values, folder, convention=convention, names=names)
    if convention is not None and CONVENTIONS[convention][0] == side:
        if convention == "zero":
            return [np.asarray(v) == 0 for v in values]
        return [np.asarray(v) != 0 for v in values]
    lo, hi = _range(values, folder)
    mid = (lo + hi) / 2
    return [np.asarray(v) > mid if side == "bright" else np.asarray(v) <= mid for v in values]


def read_masks(files, folder, *, convention: str | None = None, mask_object: str | None = None,
               names=None, size=None) -> list[np.ndarray]:
    """Read the mask files of a dataset and threshold them as one (see :func:`threshold_masks`).

    Args:
        files: B mask files.
        folder: where they are, for messages.
        convention, mask_object, names: as in :func:`threshold_masks`.
        size: (width, height) every mask must have (its image's); None: all the first mask's size.

    Returns:
        B (H, W) bool arrays.
    """
    files = [Path(f) for f in files]
    values = [read_mask_values(f) for f in files]
    w, h = size if size is not None else values[0].shape[::-1]
    for f, v in zip(files, values):
        if v.shape != (h, w):
            what = "its image is" if size is not None else "the first mask is"
            raise FormatError(f, f"mask is {v.shape[1]}x{v.shape[0]}, {what} {w}x{h}")
    return threshold_masks(values, folder, convention=convention, mask_object=mask_object,
                           names=names if names is not None else [f.name for f in files])


def dataset_masks(places, names, *, file_names=None, silhouettes=True, conventions=None,
                  mask_object: str | None = None, size=None) -> tuple[list | None, Path | None]:
    """The silhouettes of a dataset from its mask folder, if it has one: what every loader calls.

    Args:
        places: folders to look in for a mask folder (:data:`MASK_FOLDERS`), in order: beside the
            images first, then beside the calibration.
        names: B view names (relative paths without extension).
        file_names: B image file names with extension (COLMAP), or None.
        silhouettes: True to look for a mask folder, False to read none, or the mask folder itself.
        conventions: mask folder name -> a :data:`CONVENTIONS` key, the layout's own rule for that
            folder (TUM: ``{"silhouettes": "zero"}``).
        mask_object: "bright" / "dark" to set the polarity instead of deciding it.
        size: (width, height) of the images, or None (masks-only datasets).

    Returns:
        (B (H, W) bool silhouettes, the folder) or (None, None) when there is no mask folder.
    """
    if silhouettes is False or silhouettes is None:
        return None, None
    if silhouettes is True:
        folder = find_mask_folder(places)
        if folder is None:
            return None, None
    else:
        folder = Path(silhouettes)
        if not folder.is_dir():
            raise FormatError(folder, "mask folder (silhouettes=) is missing")
    files = match_masks(folder, names, file_names)
    convention = (conventions or {}).get(folder.name) if silhouettes is True else None
    log.info("masks from %s", folder)
    return read_masks(files, folder, convention=convention, mask_object=mask_object, names=names, size=size), folder
