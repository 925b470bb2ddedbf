"""COLMAP sparse models, text (``cameras.txt``, ``images.txt``) and binary (``cameras.bin``, ``images.bin``).

Layout (COLMAP's own)::

    <project>/images/...                 the photographs (names as in images.txt, subfolders allowed)
    <project>/sparse/0/cameras.{txt,bin} CAMERA_ID MODEL WIDTH HEIGHT PARAMS...
    <project>/sparse/0/images.{txt,bin}  IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, then a line of
                                         2D points per image (not used here)

``path`` may be the project, its ``sparse`` or ``sparse/0`` folder, or any folder holding the two
files; the images are looked for in ``images=`` if given, else in ``images/`` beside the model or in
one of its parent folders. Masks are read from ``silhouettes/``, ``masks/``, ``mask/`` or ``sil/``
beside the image folder (or beside the model when there are no images: a dataset of masks alone),
matched to the names in images.txt by stem (``0003.jpg`` <-> ``0003.png``, or COLMAP's ``0003.jpg.png``).

Conventions converted on the way in:
- the pose is world-to-camera, ``R = quat(qw, qx, qy, qz)``, ``T = t``, OpenCV axes: taken as is;
- COLMAP puts the top-left pixel centre at (0.5, 0.5): ``cx -= 0.5``, ``cy -= 0.5``;
- SIMPLE_PINHOLE and PINHOLE are used as they are; SIMPLE_RADIAL, RADIAL, OPENCV and FULL_OPENCV
  images are undistorted with OpenCV onto the same K and returned with that pinhole camera.
  Fisheye and other models are refused by name.
- images whose files were downscaled (same aspect ratio) get the camera rescaled to their size.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from data.distortion import undistort, undistort_mask
from data.errors import FormatError
from data.images import read_image
from data.masks import dataset_masks
from data.multiview import MultiView
from data.paths import inside
from data.text import finite_cameras, parse_numbers, read_lines
from geometry import Camera
from geometry.conventions import COLMAP_PIXEL_OFFSET

NAME = "colmap"
DESCRIPTION = "COLMAP sparse model: cameras.{txt,bin} + images.{txt,bin} (sparse/0/), images/ and/or masks"

#: model id -> (name, number of parameters) as in COLMAP's src/colmap/sensor/models.h
MODELS = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
MODEL_IDS = {name: (i, n) for i, (name, n) in MODELS.items()}
SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV")


def _model_dir(path: Path):
    for cand in (path, path / "sparse" / "0", path / "sparse"):
        for ext in ("txt", "bin"):
            if (cand / f"cameras.{ext}").is_file() and (cand / f"images.{ext}").is_file():
                return cand, ext
    return None, None


def detect(path: Path) -> str | None:
    d, ext = _model_dir(path)
    return None if d is None else f"{(d / f'cameras.{ext}').relative_to(path)}"


# ---------------------------------------------------------------------------------------- cameras


def intrinsics(model: str, params, where=None):
    """K (3, 3) in OUR pixel convention and OpenCV distortion coefficients (4 or 8,) of a COLMAP camera."""
    p = np.asarray(params, np.float64)
    o = COLMAP_PIXEL_OFFSET
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    else:
        fx, fy, cx, cy = p[:4]
    K = np.array([[fx, 0.0, cx - o], [0.0, fy, cy - o], [0.0, 0.0, 1.0]])
    dist = np.zeros(4)
    if model == "SIMPLE_RADIAL":
        dist[0] = p[3]
    elif model == "RADIAL":
        dist[:2] = p[3:5]
    elif model == "OPENCV":
        dist[:] = p[4:8]
    elif model == "FULL_OPENCV":
        dist = p[4:12].copy()  # k1 k2 p1 p2 k3 k4 k5 k6: OpenCV's rational model, same order
    return K, dist


def _check_model(model, nparams, path, line):
    if model not in MODEL_IDS:
        raise FormatError(path, f"unknown camera model {model!r}; COLMAP's models are {', '.join(MODEL_IDS)}", line)
    if model not in SUPPORTED:
        raise FormatError(path, f"camera model {model} is not supported; supported: {', '.join(SUPPORTED)} "
                                f"(undistort with `colmap image_undistorter` first)", line)
    need = MODEL_IDS[model][1]
    if nparams != need:
        raise FormatError(path, f"camera model {model} takes {need} parameters, got {nparams}", line)


def _check_camera(model, width, height, params, path, line, what=""):
    """Size and focal lengths a camera must have: positive (COLMAP's own reader assumes it)."""
    if width <= 0 or height <= 0:
        raise FormatError(path, f"{what}image size must be positive, got {width}x{height}", line)
    focal = params[:1] if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL") else params[:2]
    if not (np.asarray(focal) > 0).all():
        raise FormatError(path, f"{what}focal length must be positive, got {', '.join(f'{v:g}' for v in focal)}",
                          line)


def read_cameras_text(path):
    """{camera_id: (model, width, height, params (n,), line)} from a cameras.txt."""
    path = Path(path)
    cams = {}
    for lineno, text in enumerate(read_lines(path), start=1):
        tokens = text.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) < 5:
            raise FormatError(path, f"expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS..., got {len(tokens)} items", lineno)
        try:
            cid, width, height = int(tokens[0]), int(tokens[2]), int(tokens[3])
        except ValueError:
            raise FormatError(path, "CAMERA_ID, WIDTH and HEIGHT must be integers, got "
                                    f"{tokens[0]!r}, {tokens[2]!r}, {tokens[3]!r}", lineno) from None
        model = tokens[1].upper()
        _check_model(model, len(tokens) - 4, path, lineno)
        if cid in cams:
            raise FormatError(path, f"camera id {cid} is defined twice (first on line {cams[cid][4]})", lineno)
        params = parse_numbers(tokens[4:], path, lineno, what=f"{model} parameters")
        _check_camera(model, width, height, params, path, lineno)
        cams[cid] = (model, width, height, params, lineno)
    if not cams:
        raise FormatError(path, "defines no cameras")
    return cams


def quaternion_to_rotation(q) -> np.ndarray:
    """Rotation matrix of a quaternion (qw, qx, qy, qz) (COLMAP's and Eigen's order), normalised here.

    Example:
        >>> bool(np.allclose(quaternion_to_rotation([1e200, 1e200, 0, 0]), [[1, 0, 0], [0, 0, -1], [0, 1, 0]]))
        True
    """
    q = np.asarray(q, np.float64)
    q = q / np.abs(q).max()  # first to 1 at most, so that the norm neither overflows nor underflows
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def read_images_text(path):
    """[(image_id, qvec (4,), tvec (3,), camera_id, name, line)] from an images.txt."""
    path = Path(path)
    lines = read_lines(path)
    out = []
    i = 0
    while i < len(lines):
        text, lineno = lines[i], i + 1
        i += 1
        tokens = text.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) < 10:
            raise FormatError(path, f"expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got {len(tokens)} items",
                              lineno)
        try:
            iid, cid = int(tokens[0]), int(tokens[8])
        except ValueError:
            raise FormatError(path, f"IMAGE_ID and CAMERA_ID must be integers, got {tokens[0]!r} and {tokens[8]!r}",
                              lineno) from None
        v = parse_numbers(tokens[1:8], path, lineno, what="pose numbers (QW QX QY QZ TX TY TZ)")
        if np.abs(v[:4]).max() < 1e-12:  # max, not the norm: that overflows for 1e200
            raise FormatError(path, "the quaternion QW QX QY QZ is zero", lineno)
        name = " ".join(tokens[9:])  # names may contain spaces
        out.append((iid, v[:4], v[4:7], cid, name, lineno))
        if i < len(lines) and _is_points_line(lines[i]):
            i += 1  # the POINTS2D line that follows an image line (possibly empty; some writers omit it)
    if not out:
        raise FormatError(path, "lists no images")
    return out


def _is_points_line(text: str) -> bool:
    """Whether a line of images.txt is a POINTS2D line: empty, or (X, Y, POINT3D_ID) triples of numbers.

    An image line never is: it has 9 numbers and a name, and a name that is a number makes 10 tokens.

    Example:
        >>> _is_points_line("1.5 2.5 -1 3 4 7"), _is_points_line(""), _is_points_line("2 1 0 0 0 0 0 0 1 b.png")
        (True, True, False)
    """
    tokens = text.split()
    if len(tokens) % 3:
        return False
    try:
        [float(t) for t in tokens]
    except ValueError:
        return False
    return True


class _Reader:
    """Little-endian binary reader that reports where a record is cut short."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes() if path.is_file() else None
        if self.data is None:
            raise FormatError(path, "file is missing")
        self.pos = 0

    def read(self, fmt: str, what: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise FormatError(self.path, f"file ends inside {what} (byte {self.pos} of {len(self.data)})")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def read_string(self, what: str) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise FormatError(self.path, f"file ends inside {what}: unterminated name at byte {self.pos}")
        s = self.data[self.pos:end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s


def read_cameras_binary(path):
    """{camera_id: (model, width, height, params, None)} from a cameras.bin."""
    r = _Reader(Path(path))
    (n,) = r.read("Q", "the camera count")
    cams = {}
    for k in range(n):
        what = f"camera record {k + 1} of {n}"
        cid, model_id, width, height = r.read("iiQQ", what)
        if model_id not in MODELS:
            raise FormatError(r.path, f"{what}: unknown camera model id {model_id}; COLMAP's ids are 0..{max(MODELS)}")
        model, nparams = MODELS[model_id]
        params = np.array(r.read("d" * nparams, what))
        _check_model(model, nparams, r.path, None)
        if not np.isfinite(params).all():
            raise FormatError(r.path, f"{what}: parameters contain NaN or inf")
        _check_camera(model, width, height, params, r.path, None, f"{what}: ")
        if cid in cams:
            raise FormatError(r.path, f"{what}: camera id {cid} is defined twice")
        cams[cid] = (model, int(width), int(height), params, None)
    if r.pos != len(r.data):
        raise FormatError(r.path, f"{len(r.data) - r.pos} bytes left after {n} camera records; the count is wrong")
    return cams


def read_images_binary(path):
    """[(image_id, qvec, tvec, camera_id, name, None)] from an images.bin."""
    r = _Reader(Path(path))
    (n,) = r.read("Q", "the image count")
    out = []
    for k in range(n):
        what = f"image record {k + 1} of {n}"
        vals = r.read("i7di", what)
        iid, q, t, cid = vals[0], np.array(vals[1:5]), np.array(vals[5:8]), vals[8]
        name = r.read_string(what)
        (npts,) = r.read("Q", what)
        nbytes = npts * struct.calcsize("<ddq")
        if r.pos + nbytes > len(r.data):
            raise FormatError(r.path, f"{what} ({name}): file ends inside its {npts} 2D points")
        r.pos += nbytes
        if not (np.isfinite(q).all() and np.isfinite(t).all()):
            raise FormatError(r.path, f"{what} ({name}): pose contains NaN or inf")
        if np.abs(q).max() < 1e-12:
            raise FormatError(r.path, f"{what} ({name}): the quaternion is zero")
        out.append((iid, q, t, cid, name, None))
    if r.pos != len(r.data):
        raise FormatError(r.path, f"{len(r.data) - r.pos} bytes left after {n} image records; the count is wrong")
    if not out:
        raise FormatError(r.path, "lists no images")
    return out


# ------------------------------------------------------------------------------------------- load


def _image_dir(model_dir: Path, images):
    if images is not None:
        d = Path(images)
        if not d.is_dir():
            raise FormatError(d, "image folder is missing")
        return d
    for parent in (model_dir, *list(model_dir.parents)[:3]):
        if (parent / "images").is_dir():
            return parent / "images"
    return None


def load(path, *, images=None, undistort_images: bool = True, silhouettes=True,
         mask_object: str | None = None, allow_outside: bool = False) -> MultiView:
    """Read a COLMAP sparse model, its images and its masks.

    Args:
        path: project folder, ``sparse``/``sparse/0`` folder, or a folder with cameras/images files.
        images: the image folder, if not ``images/`` beside the model or in a parent folder.
        undistort_images: undistort images (and masks) of distorted models (the returned camera is
            the pinhole one either way; turn this off only for images that were already undistorted).
        silhouettes: True reads a mask folder (``silhouettes/``, ``masks/``, ``mask/``, ``sil/``)
            beside the image folder, or beside the model and in its parents when there is no image
            folder (a dataset of masks alone: ``images=None`` in the result); False reads none; or
            the mask folder itself. Masks match images.txt names by stem (see :mod:`data.masks`).
        mask_object: "bright" or "dark" when the masks' border cannot tell which is the object.
        allow_outside: accept image names that leave the image folder (absolute, or ``../``);
            refused by default (see :mod:`data.paths`).

    Views are ordered by image name.

    Raises:
        FormatError: a malformed or truncated model file (named, with the line for text files), an
            image name outside the image folder, a missing or undecodable image, sizes that disagree.
    """
    path = Path(path)
    model_dir, ext = _model_dir(path)
    if model_dir is None:
        raise FormatError(path, "holds no COLMAP model (cameras.txt + images.txt or cameras.bin + images.bin, "
                                "here or in sparse/0/)")
    cam_file, img_file = model_dir / f"cameras.{ext}", model_dir / f"images.{ext}"
    if ext == "txt":
        cams, recs = read_cameras_text(cam_file), read_images_text(img_file)
    else:
        cams, recs = read_cameras_binary(cam_file), read_images_binary(img_file)
    folder = _image_dir(model_dir, images)
    root = folder if folder is not None else model_dir
    for k, (iid, q, t, cid, name, line) in enumerate(recs):  # names from the file must stay in the folder
        inside(root, name, allow_outside=allow_outside, where=img_file, line=line)
        recs[k] = (iid, q, t, cid, Path(os.path.normpath(name)).as_posix(), line)
    recs = sorted(recs, key=lambda r: r[4])
    names = [Path(r[4]).with_suffix("").as_posix() for r in recs]
    places = [folder.parent] if folder is not None else [model_dir, *list(model_dir.parents)[:3]]
    masks, mask_dir = dataset_masks(places, names, file_names=[r[4] for r in recs], silhouettes=silhouettes,
                                    mask_object=mask_object)
    if folder is None and masks is None:
        raise FormatError(model_dir, "found no images/ folder and no mask folder (silhouettes/, masks/, mask/, "
                                     "sil/) beside the model or in its parents; pass images=")
    K, R, T, imgs, sils = [], [], [], [], []
    size = None
    for i, (iid, q, t, cid, name, line) in enumerate(recs):
        if cid not in cams:
            raise FormatError(img_file, f"image {name!r} refers to camera {cid}, which {cam_file.name} does not define",
                              line)
        model, width, height, params, cam_line = cams[cid]
        im = m = None
        if folder is not None:
            f = folder / name
            if not f.is_file():
                raise FormatError(img_file, f"image {name!r} is missing from {folder}", line)
            im = read_image(f)
        if masks is not None:
            m = masks[i]
            if im is not None and m.shape != im.shape[:2]:
                raise FormatError(mask_dir, f"the mask of {name!r} is {m.shape[1]}x{m.shape[0]}, its image is "
                                            f"{im.shape[1]}x{im.shape[0]}")
        f = folder / name if folder is not None else mask_dir
        shape = im.shape[:2] if im is not None else m.shape
        k, dist = intrinsics(model, params)
        if undistort_images and np.any(dist):
            if shape != (height, width):
                raise FormatError(f, f"{'image' if im is not None else f'the mask of {name!r}'} is "
                                     f"{shape[1]}x{shape[0]} but its distorted camera {cid} is {width}x{height}; "
                                     f"undistortion needs the original size")
            im = undistort(im, k, dist) if im is not None else None
            m = undistort_mask(m, k, dist) if m is not None else None
        h, w = shape
        if (w, h) != (width, height):
            if abs(w / h - width / height) > 1e-2:
                raise FormatError(f, f"image is {w}x{h} but camera {cid} in {cam_file.name} is {width}x{height}, "
                                     f"another aspect ratio")
            k = Camera(k, np.eye(3), np.zeros(3), width, height).resized(w, h).K[0]
        if size is None:
            size = (w, h)
        elif size != (w, h):
            raise FormatError(f, f"image is {w}x{h}, the first image is {size[0]}x{size[1]}; all views must "
                                 f"share one size")
        K.append(k)
        R.append(quaternion_to_rotation(q))
        T.append(t)
        imgs.append(im)
        sils.append(m)
    try:
        cameras = Camera(np.stack(K), np.stack(R), np.stack(T), *size)
    except ValueError as err:
        raise FormatError(cam_file, f"cameras are not valid ({err})") from None
    finite_cameras(cameras, [(img_file, r[5]) for r in recs])
    return MultiView(imgs if folder is not None else None, cameras, sils if masks is not None else None, None,
                     names, format=NAME, path=path)
