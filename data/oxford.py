"""Oxford VGG multi-view sequences (e.g. the dinosaur: ``viff.000.ppm`` ... and ``dino_Ps.mat``).

Layout::

    <anything>.mat     a MATLAB file holding ``P``: a 1xN cell array of 3x4 projection matrices
                       (an N x 3 x 4 or 3 x 4 x N numeric array is accepted too)
    viff.000.ppm ...   the images, paired with the matrices in name order

Real folders hold one image more than there are matrices (the last image repeats the first view):
the first N images in name order are used and a warning says so. Fewer images than matrices is an
error. Masks are read from a mask folder beside the images (see :func:`load`); with no images
there, the masks alone pair with the matrices in name order (``images=None``).

Convention: P maps to pixel coordinates with the top-left pixel centre at (0, 0), as ours. For
matrices written for MATLAB's 1-based pixels, pass ``pixel_origin=1`` (subtracts 1 from u and v).
Each P gets the sign that puts the scene in front; a mirrored world (the dinosaur's projective-then-
metric frame is one) is reflected into a right-handed one and recorded as
``MultiView.world_from_dataset`` (:func:`data.frames.orient_projections`); a K far from metric warns.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from data.errors import FormatError
from data.matfile import read_variable, variable_names
from data.frames import orient_projections
from data.images import list_images, read_views
from data.masks import dataset_masks, find_mask_folder, read_masks
from data.multiview import MultiView
from data.text import finite_cameras
from geometry import Camera

NAME = "oxford"
DESCRIPTION = "Oxford VGG: a .mat holding P (1xN cell of 3x4 matrices), images in name order"


def _mat_files_with_p(path: Path, errors: list | None = None):
    """The .mat files in ``path`` that hold a variable P; the FormatErrors of unreadable ones go to ``errors``."""
    found = []
    for f in sorted(path.glob("*.mat")):
        try:
            if "P" in variable_names(f):
                found.append(f)
        except FormatError as err:  # not a MATLAB file we can list (e.g. v7.3 / HDF5): not ours to judge here
            if errors is not None:
                errors.append(err)
    return found


def detect(path: Path) -> str | None:
    masks = find_mask_folder([path])
    if not any(path.glob("*.mat")) or not (list_images(path) or (masks is not None and list_images(masks))):
        return None
    found = _mat_files_with_p(path)
    return f"{found[0].name} with P" if found else None


def read_projections(mat) -> np.ndarray:
    """The (N, 3, 4) projection matrices in the variable ``P`` of a .mat file.

    Raises:
        FormatError: not a MAT-file (v4, v5 or v7; v7.3 is HDF5 and named as such), no ``P``, or a
            ``P`` that is not N 3x4 matrices of finite real numbers.
    """
    mat = Path(mat)
    P = read_variable(mat, "P")
    if P is None:  # version 4: scipy's reader of it is plain Python
        from scipy.io import loadmat

        try:
            data = loadmat(str(mat))
        except Exception as err:  # noqa: BLE001 - scipy raises many types for a bad file
            raise FormatError(mat, f"cannot be read as a MATLAB file ({err})") from None
        P = data.get("P", KeyError("P"))
    else:
        data = {name: None for name in variable_names(mat)} if isinstance(P, KeyError) else {"P": P}
    if isinstance(P, KeyError):
        raise FormatError(mat, f"holds no variable P (it holds {sorted(k for k in data if not k.startswith('__'))})")
    if P.dtype == object:
        cells = P.ravel(order="F")
        if P.ndim != 2 or min(P.shape) != 1:
            raise FormatError(mat, f"P must be a 1xN cell array, got a {P.shape[0]}x{P.shape[1]} cell array")
        out = []
        for i, c in enumerate(cells):
            c = np.asarray(c)
            if c.shape != (3, 4) or not _is_real(c):
                raise FormatError(mat, f"P{{{i + 1}}} must be a 3x4 numeric matrix, got shape {c.shape} "
                                       f"dtype {c.dtype}")
            out.append(c.astype(np.float64))
        P = np.stack(out) if out else np.zeros((0, 3, 4))
    elif not _is_real(P):
        raise FormatError(mat, f"P must hold real numbers, got dtype {P.dtype}")
    elif P.ndim == 3 and P.shape[1:] == (3, 4):
        P = P.astype(np.float64)
    elif P.ndim == 3 and P.shape[:2] == (3, 4):
        P = np.moveaxis(P, 2, 0).astype(np.float64)
    elif P.shape == (3, 4):
        P = P[None].astype(np.float64)
    else:
        raise FormatError(mat, f"P must be a 1xN cell array of 3x4 matrices, got an array of shape {P.shape}")
    if len(P) == 0:
        raise FormatError(mat, "P holds no matrices")
    bad = np.flatnonzero(~np.isfinite(P).all(axis=(1, 2)))
    if bad.size:
        raise FormatError(mat, f"P{{{bad[0] + 1}}} contains NaN or inf")
    return P


def _is_real(a: np.ndarray) -> bool:
    """Whether ``a`` holds real numbers (MATLAB doubles, singles or integers; not complex, text or logical)."""
    return np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)


def load(path, *, mat: str | None = None, pixel_origin: int = 0, silhouettes=True,
         mask_object: str | None = None, allow_outside: bool = False) -> MultiView:
    """Read an Oxford VGG folder.

    Args:
        path: the folder (or the .mat file; the images are then read from its folder).
        mat: the .mat file name when the folder holds several with a ``P``.
        pixel_origin: 0 if P's top-left pixel centre is (0, 0); 1 for MATLAB-style (1, 1).
        silhouettes: True reads a mask folder beside the images (``silhouettes/``, ``masks/``,
            ``mask/``, ``sil/``; matched by stem, or, with no images, paired with P in name order
            as the images are: a dataset of masks alone); False reads none; or the mask folder.
        mask_object: "bright" or "dark" when the masks' border cannot tell which is the object.
        allow_outside: accepted as by every loader; this layout names no files (images pair with P
            by name order), so nothing can leave the folder.

    Raises:
        FormatError: an unreadable .mat or a malformed ``P`` (file named), too few images, a
            missing or undecodable image, a matrix that is not a valid camera.
    """
    path = Path(path)
    if path.is_file():
        mat_file, folder = path, path.parent
    else:
        folder = path
        if mat is not None:
            mat_file = folder / mat
        else:
            errors = []
            found = _mat_files_with_p(folder, errors)
            if not found and errors:
                raise errors[0]  # the reason the one that should hold P cannot be read
            if not found:
                raise FormatError(folder, "holds no .mat file with a variable P")
            if len(found) > 1:
                raise FormatError(folder, f"holds several .mat files with P ({', '.join(f.name for f in found)}); "
                                          f"pass mat= to pick one")
            mat_file = found[0]
    if pixel_origin not in (0, 1):
        raise ValueError(f"pixel_origin must be 0 or 1, got {pixel_origin!r}")
    P = read_projections(mat_file)
    n = len(P)
    files = list_images(folder)
    mask_dir = None
    if silhouettes is True:
        mask_dir = find_mask_folder([folder])
    elif silhouettes not in (False, None):
        mask_dir = Path(silhouettes)
    if not files and mask_dir is not None and mask_dir.is_dir():
        files = list_images(mask_dir)  # masks alone: they pair with P in name order, as images would
    if len(files) < n:
        raise FormatError(folder, f"holds {len(files)} images for the {n} matrices in {mat_file.name}; "
                                  f"every matrix needs its image")
    if len(files) > n:
        extra = ", ".join(f.name for f in files[n:][:3]) + (" ..." if len(files) > n + 3 else "")
        warnings.warn(f"{folder}: {len(files)} images for {n} matrices in {mat_file.name}; pairing the first "
                      f"{n} in name order and ignoring {extra}", stacklevel=3)
        files = files[:n]
    stems = [f.stem for f in files]
    if mask_dir is not None and files[0].parent == mask_dir:
        images, masks = None, read_masks(files, mask_dir, mask_object=mask_object, names=stems)
    else:
        images = read_views(files)
        masks, _ = dataset_masks([folder], stems, silhouettes=silhouettes, mask_object=mask_object,
                                 size=images[0].shape[1::-1])
    h, w = (images or masks)[0].shape[:2]
    if pixel_origin:
        P = np.array([[1.0, 0, -pixel_origin], [0, 1.0, -pixel_origin], [0, 0, 1.0]]) @ P
    for i in range(n):
        try:
            Camera.from_projection(P[i])
        except ValueError as err:
            raise FormatError(mat_file, f"P{{{i + 1}}} is not a valid finite camera ({err})") from None
    names = [f.stem for f in files]
    try:
        P_world, frame = orient_projections(P, w, h, names)
    except ValueError as err:
        raise FormatError(mat_file, str(err)) from None
    cameras = finite_cameras(Camera.from_projection(P_world, w, h, orient=False), mat_file)
    return MultiView(images, cameras, masks, None, names, format=NAME, path=folder, world_from_dataset=frame)
