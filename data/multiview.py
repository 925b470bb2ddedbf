"""``MultiView``: the one type every loader returns and the renderer fills.

Convention: everything in a MultiView is already in the project's conventions (OpenCV camera axes,
world-to-camera ``R``, ``T``, pixel centres at integers, silhouettes True on the object); loaders
convert foreign conventions on the way in.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from geometry import Camera

__all__ = ["MultiView"]


@dataclass(eq=False)
class MultiView:
    """B calibrated views of one scene.

    Attributes:
        images: list of B (H, W, 3) uint8 RGB images (a (B, H, W, 3) array is accepted and split),
            or None for a dataset of masks alone (then ``silhouettes`` must be given).
        cameras: ``geometry.Camera`` with B cameras and ``width``/``height`` set to the images' size.
        silhouettes: list of B (H, W) bool masks (True on the object), or None.
        bounds: (2, 3) float64 box ``[lo, hi]`` around the object in world units, or None.
        names: list of B view names (file stems); default "0000", "0001", ...
        depths: list of B (H, W) float32 metric depth maps (z in the camera frame, 0 = no depth),
            or None; rendered data has them, photographs do not.
        flags: per-view boolean flags, name -> (B,) bool, e.g. Middlebury's ``good_silhouette``.
        format: the format this came from ("tum", "colmap", ..., "render"), or None.
        path: the folder or file it was loaded from, or None.
        world_from_dataset: (4, 4) float64 map from the dataset's own world frame to the one the
            cameras (and every computation) use: the identity, or an axis reflection when the
            dataset's frame is mirrored (see :mod:`data.frames`). Outputs go back through its
            inverse, so that they line up with the user's data.

    Example:
        >>> import numpy as np
        >>> from geometry import Camera
        >>> cams = Camera.look_at([[3.0, 0, 1], [0, 3.0, 1]], fov=50, width=32, height=24)
        >>> mv = MultiView([np.zeros((24, 32, 3), np.uint8)] * 2, cams)
        >>> mv
        MultiView(2 views, 32x24)
        >>> mv[1:].names
        ['0001']
        >>> MultiView(None, cams, silhouettes=[np.ones((24, 32), bool)] * 2)   # masks alone
        MultiView(2 views, 32x24, no images, silhouettes)
    """

    images: list | None
    cameras: Camera
    silhouettes: list | None = None
    bounds: np.ndarray | None = None
    names: list | None = None
    depths: list | None = None
    flags: dict = field(default_factory=dict)
    format: str | None = None
    path: Path | None = None
    world_from_dataset: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __post_init__(self):
        if not isinstance(self.cameras, Camera):
            raise TypeError(f"cameras must be a geometry.Camera, got {type(self.cameras).__name__}")
        if not self.cameras.has_size:
            raise ValueError("cameras must have width and height set (the image size), got a camera with no size")
        if self.cameras.is_torch:
            self.cameras = self.cameras.numpy()
        b, w, h = len(self.cameras), self.cameras.width, self.cameras.height
        if self.images is None and self.silhouettes is None:
            raise ValueError("a MultiView needs images or silhouettes (or both), got neither")
        self.images = None if self.images is None else _as_list(self.images, "images")
        if self.images is not None and len(self.images) != b:
            raise ValueError(f"images must hold one image per camera ({b}), got {len(self.images)}")
        for k, im in enumerate(self.images or ()):
            if not isinstance(im, np.ndarray) or im.dtype != np.uint8:
                raise TypeError(f"images[{k}] must be a uint8 numpy array, got "
                                f"{getattr(im, 'dtype', type(im).__name__)}")
            if im.shape != (h, w, 3):
                raise ValueError(f"images[{k}] must have shape ({h}, {w}, 3) to match the cameras' "
                                 f"{w}x{h}, got {im.shape}")
        if self.silhouettes is not None:
            self.silhouettes = _as_list(self.silhouettes, "silhouettes")
            if len(self.silhouettes) != b:
                raise ValueError(f"silhouettes must hold one mask per camera ({b}), got {len(self.silhouettes)}")
            for k, m in enumerate(self.silhouettes):
                m = np.asarray(m)
                if m.dtype != np.bool_:
                    raise TypeError(f"silhouettes[{k}] must be bool (True on the object), got dtype {m.dtype}; "
                                    f"convert with mask > 0, or mask == 0 where 0 marks the object")
                if m.shape != (h, w):
                    raise ValueError(f"silhouettes[{k}] must have shape ({h}, {w}) matching the cameras' "
                                     f"{w}x{h}, got {m.shape}")
        if self.depths is not None:
            self.depths = _as_list(self.depths, "depths")
            if len(self.depths) != b:
                raise ValueError(f"depths must hold one map per camera ({b}), got {len(self.depths)}")
            for k, d in enumerate(self.depths):
                if np.asarray(d).shape != (h, w):
                    raise ValueError(f"depths[{k}] must have shape ({h}, {w}), got {np.asarray(d).shape}")
            self.depths = [np.asarray(d, np.float32) for d in self.depths]
        if self.bounds is not None:
            bnd = np.asarray(self.bounds, dtype=np.float64)
            if bnd.shape != (2, 3):
                raise ValueError(f"bounds must have shape (2, 3) = [lo, hi], got {bnd.shape}")
            if not np.isfinite(bnd).all() or not (bnd[0] < bnd[1]).all():
                raise ValueError(f"bounds must be finite with lo < hi on every axis, got {bnd.tolist()}")
            self.bounds = bnd
        if self.names is None:
            self.names = [f"{i:04d}" for i in range(b)]
        else:
            self.names = [str(n) for n in self.names]
            if len(self.names) != b:
                raise ValueError(f"names must hold one name per camera ({b}), got {len(self.names)}")
        flags = {}
        for key, value in dict(self.flags or {}).items():
            arr = np.asarray(value)
            if arr.shape != (b,) or arr.dtype != np.bool_:
                raise ValueError(f"flags[{key!r}] must be a ({b},) bool array, got {arr.shape} {arr.dtype}")
            flags[str(key)] = arr
        self.flags = flags
        if self.path is not None:
            self.path = Path(self.path)
        frame = np.asarray(self.world_from_dataset, dtype=np.float64)
        if frame.shape != (4, 4) or not np.isfinite(frame).all() or not np.allclose(frame[3], [0, 0, 0, 1]):
            raise ValueError(f"world_from_dataset must be a finite (4, 4) affine matrix, got {frame.tolist()}")
        self.world_from_dataset = frame

    # ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.cameras)

    @property
    def width(self) -> int:
        return self.cameras.width

    @property
    def height(self) -> int:
        return self.cameras.height

    def __getitem__(self, index) -> "MultiView":
        """A subset of the views: an int, a slice, a list of ints or a (B,) bool mask."""
        b = len(self)
        if isinstance(index, (int, np.integer)):
            if not -b <= index < b:
                raise IndexError(f"view index {index} is out of range for {b} views")
            idx = [int(index) % b]
        elif isinstance(index, slice):
            idx = list(range(b))[index]
        else:
            arr = np.asarray(index)
            if arr.dtype == np.bool_:
                if arr.shape != (b,):
                    raise IndexError(f"a boolean view mask must have shape ({b},), got {arr.shape}")
                arr = np.flatnonzero(arr)
            if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                raise IndexError(f"views are selected by an int, a slice, a list of ints or a bool mask, got {index!r}")
            if arr.size and (arr.max() >= b or arr.min() < -b):
                raise IndexError(f"view indices must be in [-{b}, {b}), got {arr.tolist()}")
            idx = [int(i) % b for i in arr]
        if not idx:
            raise IndexError("a MultiView needs at least one view, the selection is empty")
        pick = lambda seq: None if seq is None else [seq[i] for i in idx]  # noqa: E731
        return replace(self, images=pick(self.images), cameras=self.cameras[idx],
                       silhouettes=pick(self.silhouettes), names=pick(self.names), depths=pick(self.depths),
                       flags={k: v[idx] for k, v in self.flags.items()})

    def replace(self, **changes) -> "MultiView":
        """A copy with some attributes replaced (and validated again)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"replace got unknown attribute(s) {unknown}; MultiView has {sorted(known)}")
        return replace(self, **changes)

    def __repr__(self) -> str:
        parts = [f"{len(self)} views", f"{self.width}x{self.height}"]
        if self.images is None:
            parts.append("no images")
        if self.silhouettes is not None:
            parts.append("silhouettes")
        if self.depths is not None:
            parts.append("depths")
        if self.bounds is not None:
            parts.append("bounds " + np.array2string(self.bounds, precision=3, separator=", ").replace("\n", ""))
        if self.flags:
            parts.append("flags " + ", ".join(self.flags))
        if self.format:
            parts.append(f"format={self.format!r}")
        if self.path is not None:
            parts.append(f"path='{self.path}'")
        return f"MultiView({', '.join(parts)})"


def _as_list(x, name):
    if isinstance(x, np.ndarray):
        if x.ndim < 3:
            raise ValueError(f"{name} must be a list of per-view arrays or one stacked (B, ...) array, "
                             f"got an array of shape {x.shape}")
        return list(x)
    if isinstance(x, (list, tuple)):
        return list(x)
    raise TypeError(f"{name} must be a list of per-view arrays or a stacked (B, ...) array, got {type(x).__name__}")
