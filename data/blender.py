"""NeRF / Blender ``transforms.json`` (and ``transforms_{train,val,test}.json``), as written by
NeRF's Blender scenes, instant-ngp and nerfstudio.

Layout::

    transforms.json  {"camera_angle_x": ..., or "fl_x", "fl_y", "cx", "cy", "w", "h"
                      [, "k1", "k2", "p1", "p2"],
                      "frames": [{"file_path": "./train/r_0", "transform_matrix": 4x4}, ...]}
                     intrinsics may also be given per frame (nerfstudio).

Conventions converted on the way in:
- ``transform_matrix`` is camera-to-world with OpenGL camera axes (x right, y up, z backward):
  converted to our world-to-camera OpenCV pose;
- pixel coordinates in the file have the image's top-left corner at (0, 0) (pixel centres at
  half-integers, as in Blender, COLMAP, instant-ngp and nerfstudio): ``cx -= 0.5``, ``cy -= 0.5``;
  with only ``camera_angle_x`` the principal point is the image centre, ``(W - 1) / 2`` in ours;
- ``file_path`` may lack its extension; RGBA images give silhouettes from alpha (alpha >= 128:
  at least half covered; fully opaque images give none) and their colour channels as the image;
- masks may also come from each frame's ``mask_path`` (nerfstudio) or a mask folder beside the
  json (see :func:`load` and :mod:`data.masks`);
- ``k1, k2, p1, p2`` (and ``k3``) are undistorted away with OpenCV.

Our own ``bounds`` key ([[lo], [hi]]) is written by :func:`save` and read back; other tools ignore it.
Poses whose rotation blocks are all reflections (det < 0: a mirrored world) are carved in the world
reflected by :data:`data.frames.MIRROR`, recorded as ``MultiView.world_from_dataset``; :func:`save`
writes poses and bounds back in the dataset's frame.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from data.distortion import undistort, undistort_mask
from data.errors import FormatError, short_repr
from data.frames import orient_poses, transform_bounds
from data.images import IMAGE_EXTENSIONS, find_image, read_image_alpha, write_image
from data.masks import dataset_masks, read_masks
from data.multiview import MultiView
from data.paths import inside
from data.text import finite_cameras
from geometry import Camera

NAME = "blender"
DESCRIPTION = "NeRF/Blender: transforms.json or transforms_{train,val,test}.json (camera-to-world, OpenGL axes)"

SPLITS = ("train", "val", "test")

#: alpha at or above which a pixel is the object: at least half covered (the midpoint of 0..255)
ALPHA_OBJECT = 128


def _files(path: Path, split: str):
    if path.is_file():
        return [path]
    single = path / "transforms.json"
    split_files = [path / f"transforms_{s}.json" for s in SPLITS if (path / f"transforms_{s}.json").is_file()]
    if split == "all":
        return [single] if single.is_file() else split_files
    if split not in SPLITS:
        raise ValueError(f"split must be 'all', 'train', 'val' or 'test', got {split!r}")
    f = path / f"transforms_{split}.json"
    if not f.is_file():
        raise FormatError(f, "file is missing (split= picks transforms_<split>.json)")
    return [f]


def detect(path: Path) -> str | None:
    files = _files(path, "all") if path.is_dir() else []
    return ", ".join(f.name for f in files) if files else None


def _line_of(text: str, needle: str, start: int = 0) -> int | None:
    pos = text.find(needle, start)
    return None if pos < 0 else text.count("\n", 0, pos) + 1


def _frame_lines(text: str) -> list[int]:
    """Line numbers where each frame's "file_path" appears, in order (for error messages)."""
    return [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r'"file_path"\s*:', text)]


def _float(v) -> float | None:
    """``v`` as a float if it is a JSON number (not a bool), else None; an int past float range is inf."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return float(v)
    except OverflowError:  # a JSON integer of 400 digits
        return math.inf


def _finite(v) -> float | None:
    """``v`` as a finite float if it is a JSON number (not a bool), else None."""
    x = _float(v)
    return x if x is not None and math.isfinite(x) else None


def _number(d: dict, key: str, f: Path, line):
    x = _finite(d[key])
    if x is None:
        raise FormatError(f, f"{key} must be a finite number, got {short_repr(d[key])}", line)
    return x


def _size(value, key: str, f: Path, line) -> int:
    """An image size in pixels from the json: a positive whole number (``32`` or ``32.0``)."""
    x = _finite(value)
    if x is None or x != int(x) or x < 1:
        raise FormatError(f, f"{key} must be a positive whole number of pixels, got {short_repr(value)}", line)
    return int(x)


def _matrix(value, shapes, what: str, f: Path, line) -> np.ndarray:
    """A JSON list of lists of finite numbers of one of ``shapes``, as float64; FormatError otherwise."""
    want = " or ".join(f"{a}x{b}" for a, b in shapes)
    rows = value if isinstance(value, list) and all(isinstance(r, list) for r in value) else None
    nums = None if rows is None else [[_float(v) for v in r] for r in rows]
    if nums is None or any(v is None for r in nums for v in r):
        raise FormatError(f, f"{what} must be a {want} matrix (a list of lists of numbers), got {short_repr(value)}",
                          line)
    if not nums or len({len(r) for r in nums}) != 1 or (len(nums), len(nums[0])) not in shapes:
        raise FormatError(f, f"{what} must be a {want} matrix, got {len(nums)} rows of "
                             f"{'/'.join(str(n) for n in sorted({len(r) for r in nums})) or 'no'} numbers", line)
    arr = np.array(nums, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise FormatError(f, f"{what} contains NaN or inf", line)
    return arr



def _read_json(f: Path):
    """The parsed json file ``f``; FormatError (with the line where known) for anything that is not JSON."""
    if not f.is_file():
        raise FormatError(f, "file is missing")
    blob = f.read_bytes()
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise FormatError(f, f"is not UTF-8 text (byte {err.start}); expected a transforms json",
                          blob.count(b"\n", 0, err.start) + 1) from None
    try:
        return text, json.loads(text)
    except json.JSONDecodeError as err:
        raise FormatError(f, f"is not valid JSON: {err.msg}", err.lineno) from None
    except RecursionError:  # json.loads recurses once per nested [ or {
        raise FormatError(f, "nests lists or objects too deeply to be a transforms json") from None
    except ValueError as err:  # e.g. an integer past Python's 4300-digit limit
        raise FormatError(f, f"is not valid JSON: {err}") from None


def _intrinsics(d: dict, top: dict, width: int, height: int, f: Path, text: str, line):
    """K (ours) and OpenCV distortion from a frame dict ``d`` falling back to the top-level ``top``."""
    def get(key):
        if key in d:
            return _number(d, key, f, line)
        if key in top:
            return _number(top, key, f, _line_of(text, f'"{key}"'))
        return None

    fx, fy, cx, cy = get("fl_x"), get("fl_y"), get("cx"), get("cy")
    ax, ay = get("camera_angle_x"), get("camera_angle_y")
    if fx is None and ax is None:
        raise FormatError(f, "no intrinsics: expected camera_angle_x or fl_x (with fl_y, cx, cy)", line)
    for name, a in (("camera_angle_x", ax), ("camera_angle_y", ay)):
        if a is not None and not 0 < a < math.pi:
            raise FormatError(f, f"{name} must be an angle in radians in (0, pi), got {a}", line)
    if fx is None:
        fx = 0.5 * width / math.tan(0.5 * ax)
    if fy is None:
        fy = 0.5 * height / math.tan(0.5 * ay) if ay is not None else fx
    if fx <= 0 or fy <= 0:
        raise FormatError(f, f"focal lengths must be positive, got fl_x={fx}, fl_y={fy}", line)
    cx = (width / 2 if cx is None else cx) - 0.5
    cy = (height / 2 if cy is None else cy) - 0.5
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    coeffs = [get(k) for k in ("k1", "k2", "p1", "p2", "k3")]
    dist = np.array([c or 0.0 for c in coeffs])
    return K, (dist if coeffs[4] is not None else dist[:4])


def load(path, *, split: str = "all", background=None, silhouettes=True, mask_path: bool = True,
         mask_object: str | None = None, allow_outside: bool = False) -> MultiView:
    """Read NeRF/Blender ``transforms*.json``.

    Args:
        path: the folder, or one transforms json file.
        split: "all" (``transforms.json``, or else train, val and test together), "train", "val", "test".
        background: None keeps the stored colour of RGBA images; an (r, g, b) in 0..255 composites
            them over that colour (NeRF's white background: (255, 255, 255)).
        silhouettes: True reads masks (see below); False reads none; or a mask folder to read.
        mask_path: read the frames' ``mask_path`` (nerfstudio) when they have one.
        mask_object: "bright" or "dark" when the masks' border cannot tell which is the object.
        allow_outside: accept ``file_path`` / ``mask_path`` names that leave the json's folder
            (absolute, or ``../``); refused by default (see :mod:`data.paths`).

    Masks come from, in this order: every frame's ``mask_path`` (nerfstudio: non-zero is the object
    unless the border says otherwise); a mask folder (``silhouettes/``, ``masks/``, ``mask/``,
    ``sil/``) beside the json, matched by the ``file_path`` names; the images' alpha (at least half
    covered, alpha >= 128). Frames whose image files are all missing while masks are given make a
    dataset of masks alone (``images=None``).

    Raises:
        FormatError: malformed json (wrong types, non-finite numbers, bad nesting, not UTF-8), a name
            outside the folder, a missing or undecodable image, sizes that do not agree.
    """
    path = Path(path)
    files = _files(path, split)
    if not files:
        raise FormatError(path, "holds no transforms.json or transforms_{train,val,test}.json")
    frames, names = [], []  # (json file, its text, meta, frame, index, line, 4x4, image file or None)
    bounds = None
    for f in files:
        text, meta = _read_json(f)
        if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
            raise FormatError(f, "expected an object with a 'frames' list")
        if "bounds" in meta:
            b = _matrix(meta["bounds"], [(2, 3)], "bounds ([[lo_x, lo_y, lo_z], [hi_x, hi_y, hi_z]])", f,
                        _line_of(text, '"bounds"'))
            if not (b[0] < b[1]).all():
                raise FormatError(f, f"bounds must have lo < hi on every axis, got {meta['bounds']!r}",
                                  _line_of(text, '"bounds"'))
            bounds = b
        lines = _frame_lines(text)
        if not meta["frames"]:
            raise FormatError(f, "the 'frames' list is empty", _line_of(text, '"frames"'))
        for i, fr in enumerate(meta["frames"]):
            line = lines[i] if i < len(lines) else _line_of(text, '"frames"')
            if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
                raise FormatError(f, f"frame {i} needs 'file_path' and 'transform_matrix'", line)
            M = _matrix(fr["transform_matrix"], [(4, 4), (3, 4)], f"frame {i}: transform_matrix", f, line)
            rel = _relative(f, fr["file_path"], allow_outside, line)
            frames.append((f, text, meta, fr, i, line, M, find_image(f.parent, rel)))
            names.append(Path(rel).with_suffix("").as_posix() if Path(rel).suffix.lower() in IMAGE_EXTENSIONS
                         else Path(rel).as_posix())
    masks = _masks(frames, names, path if path.is_dir() else path.parent, silhouettes, mask_path, mask_object,
                   allow_outside)
    if masks is None or any(fr[7] is not None for fr in frames):
        for f, _, _, fr, _, line, _, img in frames:  # every frame needs its image: name the first missing
            if img is None:
                find_image(f.parent, _relative(f, fr["file_path"], allow_outside, line), required_for=(f, line))
    K, c2w, images, sils = [], [], [], []
    size = None
    for k_view, (f, text, meta, fr, i, line, M, img_path) in enumerate(frames):
        m = None if masks is None else masks[k_view]
        rgb = alpha = None
        if img_path is not None:
            rgb, alpha = read_image_alpha(img_path)
            if m is not None and m.shape != rgb.shape[:2]:
                raise FormatError(f, f"frame {i}: its mask is {m.shape[1]}x{m.shape[0]} but {img_path.name} is "
                                     f"{rgb.shape[1]}x{rgb.shape[0]}", line)
        what = img_path.name if img_path is not None else "its mask"
        h, w = rgb.shape[:2] if rgb is not None else m.shape
        for key, actual in (("w", w), ("h", h)):
            want = fr.get(key, meta.get(key))
            if want is not None and _size(want, key, f, line if key in fr else _line_of(text, f'"{key}"')) != actual:
                raise FormatError(f, f"frame {i}: {key}={want} but {what} is {w}x{h}", line)
        k, dist = _intrinsics(fr, meta, w, h, f, text, line)
        if alpha is not None and background is not None:
            a = alpha[..., None].astype(np.float32) / 255
            bg = np.asarray(background, np.float32).reshape(1, 1, 3)
            rgb = np.clip(rgb * a + bg * (1 - a) + 0.5, 0, 255).astype(np.uint8)
        if masks is None and alpha is not None and silhouettes is not False and silhouettes is not None:
            m = alpha >= ALPHA_OBJECT  # silhouettes=False reads none, alpha included
        if np.any(dist):
            rgb = undistort(rgb, k, dist) if rgb is not None else None
            m = undistort_mask(m, k, dist) if m is not None else None
        if size is None:
            size = (w, h)
        elif size != (w, h):
            raise FormatError(f, f"frame {i}: {what} is {w}x{h}, the first image is "
                                 f"{size[0]}x{size[1]}; all views must share one size", line)
        K.append(k)
        c2w.append(M[:3, :4])
        images.append(rgb)
        sils.append(m)
    try:
        c2w_world, frame = orient_poses(np.stack(c2w), names)  # a mirrored world is reflected (data.frames)
        cameras = Camera.from_c2w(c2w_world, np.stack(K), *size, convention="opengl")
    except ValueError as err:
        raise FormatError(files[0], f"camera poses are not valid ({err})") from None
    finite_cameras(cameras, [(fr[0], fr[5]) for fr in frames])
    if all(m is not None for m in sils):
        if masks is None and all(m.all() for m in sils):
            sils = None  # every image fully opaque: its alpha says nothing about the object
    elif any(m is not None for m in sils):
        first = next(i for i, m in enumerate(sils) if m is None)
        raise FormatError(files[0], f"some images have alpha and some not (view {names[first]!r} has none); "
                                    f"silhouettes need alpha in every image")
    else:
        sils = None
    bounds = None if bounds is None else transform_bounds(bounds, frame)
    return MultiView(None if images[0] is None else images, cameras, sils, bounds, names, format=NAME, path=path,
                     world_from_dataset=frame)


def _relative(f: Path, name, allow_outside: bool, line) -> str:
    """A frame's ``file_path`` / ``mask_path`` relative to the json's folder, checked to stay inside it."""
    if isinstance(name, str):
        name = name.removeprefix("./")
    inside(f.parent, name, allow_outside=allow_outside, where=f, line=line)  # raises for a name that leaves it
    return Path(os.path.normpath(name)).as_posix()


def _masks(frames, names, root: Path, silhouettes, mask_path: bool, mask_object, allow_outside: bool):
    """The masks of the frames from ``mask_path`` or a mask folder, at their files' size; None if neither."""
    if silhouettes is False or silhouettes is None:
        return None
    with_path = [fr for fr in frames if "mask_path" in fr[3]] if mask_path and silhouettes is True else []
    if with_path:
        if len(with_path) != len(frames):
            f, _, _, fr, i, line, _, _ = next(fr for fr in frames if "mask_path" not in fr[3])
            raise FormatError(f, f"frame {i} has no mask_path while {len(with_path)} other frames have one; "
                                 f"give every frame its mask", line)
        files = [find_image(f.parent, _relative(f, fr["mask_path"], allow_outside, line), required_for=(f, line))
                 for f, _, _, fr, _, line, _, _ in frames]
        return read_masks(files, frames[0][0], convention="nonzero", mask_object=mask_object, names=names)
    return dataset_masks([root], names, silhouettes=silhouettes, mask_object=mask_object)[0]


def save(mv: MultiView, path: Path) -> None:
    """Write ``mv`` as ``transforms.json`` + ``images/NNNN.png`` into the new folder ``path``.

    Intrinsics go in as ``fl_x, fl_y, cx, cy, w, h`` (per frame when they differ between views) and
    ``camera_angle_x``; silhouettes, when present, become the images' alpha channel. A dataset of
    masks alone gets ``masks/NNNN.png`` (255 on the object) named by each frame's ``mask_path``, and
    no image files.
    """
    (path / ("images" if mv.images is not None else "masks")).mkdir(parents=True)
    cams = mv.cameras
    K = cams.K
    w, h = cams.width, cams.height

    def intr(k):
        return {"fl_x": float(k[0, 0]), "fl_y": float(k[1, 1]), "cx": float(k[0, 2] + 0.5),
                "cy": float(k[1, 2] + 0.5)}

    shared = bool(np.allclose(K, K[0], rtol=0, atol=0))
    meta = {"camera_angle_x": 2 * math.atan(0.5 * w / K[0, 0, 0]), "w": w, "h": h}
    if shared:
        meta.update(intr(K[0]))
    if mv.bounds is not None:
        meta["bounds"] = transform_bounds(mv.bounds, np.linalg.inv(mv.world_from_dataset)).tolist()
    c2w = np.linalg.inv(mv.world_from_dataset) @ cams.c2w("opengl")  # in the dataset's frame
    frames = []
    for i in range(len(mv)):
        rel = f"images/{i:04d}.png"
        alpha = None if mv.silhouettes is None else mv.silhouettes[i].astype(np.uint8) * 255
        fr = {"file_path": f"./{rel}", "transform_matrix": c2w[i].tolist()}
        if mv.images is not None:
            write_image(path / rel, mv.images[i], alpha=alpha)
        else:
            write_image(path / f"masks/{i:04d}.png", alpha)
            fr["mask_path"] = f"./masks/{i:04d}.png"
        if not shared:
            fr.update(intr(K[i]))
        frames.append(fr)
    meta["frames"] = frames
    (path / "transforms.json").write_text(json.dumps(meta, indent=2))
