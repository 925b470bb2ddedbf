"""Images in: files (RGB uint8 images, 8-bit masks, any extension OpenCV reads) and arrays.

:func:`rgb_images` is the one validator of image arguments for every function that takes
photographs (silhouettes, depth, mesh colouring).

Reading goes through ``np.fromfile`` + ``cv2.imdecode`` so that paths with non-ASCII characters work
on every platform. Writing encodes in memory first and writes through :func:`data.files.atomic_path`, so a failure (a
full disk, Ctrl-C) never leaves a partial image behind.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from data.errors import FormatError
from data.files import atomic_path
from geometry.arrays import is_tensor

__all__ = ["IMAGE_EXTENSIONS", "read_image", "read_image_alpha", "read_mask", "read_mask_values", "write_image",
           "find_image", "list_images", "rgb_images"]

#: extensions (lower case) that loaders accept as images, in the order tried when a name has none
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pbm", ".pnm", ".bmp", ".tif", ".tiff",
                    ".webp", ".exr", ".jp2")


def _decode(path: Path, flags: int) -> np.ndarray:
    if not path.is_file():
        raise FormatError(path, "image file is missing")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise FormatError(path, "cannot decode this file as an image (corrupt, empty, or a format "
                                "OpenCV does not read)")
    return img


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(np.nan_to_num(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8)


def read_image(path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (any alpha channel is dropped; grey comes back as
    three equal channels; 16-bit and float images are scaled to 8 bits).

    Raises:
        FormatError: the file is missing or cannot be decoded.
    """
    return read_image_alpha(path)[0]


def read_image_alpha(path) -> tuple:
    """Read an image file as RGB and its alpha channel.

    Args:
        path: image file (any format OpenCV decodes; 16-bit and float images are scaled to 8 bits).

    Returns:
        (rgb, alpha): (H, W, 3) uint8 RGB, and (H, W) uint8 alpha or None for an image without one.

    Raises:
        FormatError: the file is missing or cannot be decoded.
    """
    path = Path(path)
    img = _to_uint8(_decode(path, cv2.IMREAD_UNCHANGED))
    alpha = None
    if img.ndim == 2:
        rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        alpha = np.ascontiguousarray(img[:, :, 3])
    elif img.shape[2] == 3:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.shape[2] == 2:  # grey + alpha
        rgb = cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2RGB)
        alpha = np.ascontiguousarray(img[:, :, 1])
    else:
        raise FormatError(path, f"image has {img.shape[2]} channels, expected 1, 3 or 4")
    return rgb, alpha


def read_views(files) -> list:
    """Read the images of a multi-view dataset: ``read_image`` for each file, all of one size.

    Returns:
        list of (H, W, 3) uint8 RGB. Raises FormatError naming the first file of another size.
    """
    images = [read_image(f) for f in files]
    h, w = images[0].shape[:2]
    for f, im in zip(files, images):
        if im.shape[:2] != (h, w):
            raise FormatError(f, f"image is {im.shape[1]}x{im.shape[0]}, the first image is {w}x{h}; "
                                 f"all views must share one size")
    return images


def read_mask(path, *, object_value: int | None = None) -> np.ndarray:
    """Read one mask image as (H, W) bool.

    Args:
        path: the mask file (a varying alpha channel is the mask; colour is converted to grey).
        object_value: the 8-bit value that marks the object (``0`` for the TUM/Bonn layout, where
            every other value, anti-aliased edges included, is background); None means "non-zero is
            the object". The values are those of :func:`read_mask_values`, scaled to 8 bits.

    A dataset's masks are better read together by :func:`data.masks.dataset_masks`, which decides
    their polarity over all of them.
    """
    values = _to_uint8(read_mask_values(path))
    return values == object_value if object_value is not None else values > 0


def read_mask_values(path) -> np.ndarray:
    """Read a mask file's values as they are stored, for :mod:`data.masks` to threshold.

    Args:
        path: the mask file (any format OpenCV decodes).

    Returns:
        (H, W) array in the file's own type (uint8, uint16 or float; 0/1 masks stay 0/1): the alpha
        channel when the file has one that is not constant (a cut-out saved with transparency: its
        alpha is the mask), else the grey value (colour masks are converted to grey).

    Raises:
        FormatError: the file is missing or cannot be decoded.
    """
    path = Path(path)
    img = _decode(path, cv2.IMREAD_UNCHANGED)
    if img.ndim == 2:
        return img
    if img.shape[2] in (2, 4) and img[:, :, -1].min() != img[:, :, -1].max():
        return np.ascontiguousarray(img[:, :, -1])
    if img.shape[2] in (1, 2):
        return np.ascontiguousarray(img[:, :, 0])
    return cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_BGR2GRAY)


def write_image(path, image: np.ndarray, *, alpha: np.ndarray | None = None) -> Path:
    """Write an (H, W, 3) uint8 RGB image, an (H, W) uint8 or bool image, optionally with alpha.

    The extension picks the format (``.png`` recommended: lossless). A bool image is written 0/255.
    The file is written atomically: on any failure ``path`` keeps its old content, or stays absent.

    Returns:
        ``path`` as a Path.

    Raises:
        TypeError: a dtype other than uint8 or bool. ValueError: another shape, an alpha of another
        size, or an extension OpenCV cannot write. FileNotFoundError: the folder does not exist.
    """
    path = Path(path)
    img = np.asarray(image)
    if img.dtype == np.bool_:
        img = img.astype(np.uint8) * 255
    if img.dtype != np.uint8:
        raise TypeError(f"image must be uint8 (or bool), got dtype {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        if alpha is not None:
            alpha = np.asarray(alpha)
            if alpha.shape != img.shape[:2]:
                raise ValueError(f"alpha must have the image's shape {img.shape[:2]}, got {alpha.shape}")
            img = np.dstack([img, alpha.astype(np.uint8)])
    elif img.ndim != 2:
        raise ValueError(f"image must have shape (H, W, 3) or (H, W), got {img.shape}")
    ok, buf = cv2.imencode(path.suffix or ".png", img)
    if not ok:
        raise ValueError(f"path must end in an image extension OpenCV can write, got {path.name!r}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return path


def find_image(folder, stem: str, *, required_for=None):
    """The image file ``folder/stem.<ext>`` for any extension in :data:`IMAGE_EXTENSIONS`.

    ``stem`` may itself carry an extension (then it is used as is when the file exists). Returns the
    path, or None when nothing matches and ``required_for`` is None; otherwise raises FormatError
    naming ``required_for`` (the file that referred to the image, or a (path, line) pair).
    """
    folder = Path(folder)
    direct = folder / stem
    if direct.suffix.lower() in IMAGE_EXTENSIONS and _is_file(direct):
        return direct
    for ext in IMAGE_EXTENSIONS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if _is_file(cand):
                return cand
    if required_for is None:
        return None
    ref, line = required_for if isinstance(required_for, tuple) else (required_for, None)
    raise FormatError(ref, f"image {stem!r} is missing from {folder} (tried {', '.join(IMAGE_EXTENSIONS)})",
                      line)


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the name itself is one the OS refuses (too long: ENAMETOOLONG)."""
    try:
        return path.is_file()
    except OSError:
        return False


def list_images(folder) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def rgb_images(images, name: str = "images", *, dtype=np.uint8) -> list:
    """Validate a set of RGB images and return them as a list of (H, W, 3) numpy arrays.

    Args:
        images: a list or tuple of images (sizes may differ), a (B, H, W, 3|4) numpy array, or a
            (B, 3, H, W) torch tensor. A numpy image is channels-last, (H, W, 3), (H, W, 4) (alpha
            is dropped) or grey (H, W); a torch image is channels-first, (3, H, W). Values are uint8
            (0..255) or floats in [0, 1].
        name: the argument's name, for error messages.
        dtype: ``np.uint8`` (floats are scaled by 255 and rounded) or ``np.float32`` (uint8 is
            divided by 255).

    Returns:
        list of B (H, W, 3) arrays of ``dtype`` (views of the input where nothing had to change).

    Raises:
        TypeError: not images, or a dtype other than uint8 or float. ValueError: an empty set, a
        wrong shape, or floats that are not finite or not in [0, 1]; the message names the image.

    Example:
        >>> import numpy as np
        >>> [a, b] = rgb_images([np.zeros((4, 6, 3), np.uint8), np.ones((2, 3), np.float32)])
        >>> a.shape, b.shape, b.dtype, int(b.max())
        ((4, 6, 3), (2, 3, 3), dtype('uint8'), 255)
    """
    if dtype not in (np.uint8, np.float32):
        raise ValueError(f"dtype must be np.uint8 or np.float32, got {dtype!r}")
    items = _image_items(images, name)
    return [_rgb_image(im, f"{name}[{k}]", dtype) for k, im in enumerate(items)]


def _image_items(images, name: str) -> list:
    """The single images of ``images`` (a list, a 4-D array or a 4-D tensor), with named errors."""
    if isinstance(images, (list, tuple)):
        items = list(images)
    elif isinstance(images, np.ndarray) or is_tensor(images):
        shape = tuple(images.shape)
        if len(shape) != 4:
            hint = f"; a single image? wrap it in a list: [{name}]" if len(shape) in (2, 3) else ""
            layout = "(B, 3, H, W) tensor" if is_tensor(images) else "(B, H, W, 3) array"
            raise ValueError(f"{name} must be a {layout} or a list of images, got shape {shape}{hint}")
        items = list(images)
    else:
        raise TypeError(f"{name} must be a list of (H, W, 3) images or a (B, H, W, 3) array, "
                        f"got {type(images).__name__}")
    if not items:
        raise ValueError(f"{name} must hold at least one image, got none")
    return items


def _rgb_image(im, where: str, dtype) -> np.ndarray:
    if is_tensor(im):
        if im.ndim != 3 or im.shape[0] != 3:
            raise ValueError(f"{where} must be a (3, H, W) tensor (torch images are channels-first), "
                             f"got shape {tuple(im.shape)}")
        im = im.detach().cpu().permute(1, 2, 0).numpy()
    else:
        im = np.asarray(im)
    if im.ndim == 2:
        im = np.repeat(im[..., None], 3, axis=-1)
    if im.ndim != 3 or im.shape[-1] not in (3, 4):
        raise ValueError(f"{where} must have shape (H, W, 3), (H, W, 4) or (H, W), got {im.shape}")
    if min(im.shape[:2]) < 1:
        raise ValueError(f"{where} must have at least one pixel, got shape {im.shape}")
    im = im[..., :3]
    if im.dtype == np.uint8:
        return im if dtype == np.uint8 else im.astype(np.float32) / np.float32(255)
    if im.dtype == np.bool_ or not np.issubdtype(im.dtype, np.floating):
        raise TypeError(f"{where} must be uint8 (0..255) or float in [0, 1], got dtype {im.dtype}")
    if not np.isfinite(im).all():
        raise ValueError(f"{where} must be finite, got NaN or inf values")
    lo, hi = float(im.min()), float(im.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{where} must hold floats in [0, 1], got the range {lo:.3g}..{hi:.3g}; "
                         "pass uint8 or divide by 255")
    if dtype == np.uint8:
        return np.round(im * 255).astype(np.uint8)
    return im.astype(np.float32, copy=False)
