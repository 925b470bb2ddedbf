"""Where the viewer looks from: bounds, the default 3/4 view, given views, window sizes, turntables.

Convention: every camera here is a one-camera :class:`geometry.Camera` in the project's frames
(OpenCV axes, world-to-camera R and T, the top-left pixel centre at (0, 0)).
"""
from __future__ import annotations

import math

import numpy as np

from geometry import Camera, intrinsics_from_fov
from geometry.arrays import to_numpy

__all__ = ["bounds", "default_camera", "view_camera", "window_camera", "fit_camera", "window_size",
           "turntable", "check_up", "check_size", "DEFAULT_SIZE", "FOV", "WINDOW_FILL"]

DEFAULT_SIZE = (960, 720)  # (width, height) of a snapshot
FOV = 40.0                 # horizontal field of view of the default view, degrees
WINDOW_FILL = 0.6          # the window's first view: the object spans 60 % of the window (the binding way)
_FILL = 0.92               # a snapshot's default view: the box spans 92 % of the picture (an 8 % margin)
_AZIMUTH = -55.0           # default view: degrees around `up`, from the first horizontal axis
_ELEVATION = 28.0          # default view: degrees above the horizontal plane


def bounds(geometries) -> tuple[np.ndarray, np.ndarray]:
    """(lo (3,), hi (3,)): the axis-aligned box around Open3D geometries."""
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for g in geometries:
        box = g.get_axis_aligned_bounding_box()
        lo = np.minimum(lo, box.min_bound)
        hi = np.maximum(hi, box.max_bound)
    return lo, hi


def check_up(up) -> np.ndarray:
    """``up`` as a unit (3,) vector; ValueError for anything else.

    Example:
        >>> check_up((0, 0, 2)).tolist()
        [0.0, 0.0, 1.0]
    """
    u = to_numpy(up, "up")
    if u.shape != (3,) or not np.isfinite(u).all() or np.linalg.norm(u) < 1e-12:
        raise ValueError(f"up must be a non-zero 3-vector, got {np.asarray(up).tolist()}")
    return u / np.linalg.norm(u)


def check_size(size) -> tuple[tuple[int, int], bool]:
    """((width, height), given): the snapshot size, :data:`DEFAULT_SIZE` for None.

    Example:
        >>> check_size(None), check_size((64, 48))
        (((960, 720), False), ((64, 48), True))
    """
    if size is None:
        return DEFAULT_SIZE, False
    ok = (isinstance(size, (tuple, list)) and len(size) == 2
          and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 16 <= s <= 8192 for s in size))
    if not ok:
        raise ValueError(f"size must be (width, height) in pixels, two integers in [16, 8192], got {size!r}")
    return (int(size[0]), int(size[1])), True


def _horizontal_axes(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.eye(3)[0] if abs(up[0]) < 0.9 else np.eye(3)[1]
    e1 = ref - ref.dot(up) * up
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(up, e1)


def default_camera(lo: np.ndarray, hi: np.ndarray, up: np.ndarray, size: tuple[int, int],
                   fill: float = _FILL, points: np.ndarray | None = None) -> Camera:
    """A 3/4 view from above of the box lo..hi, as close as it can be with all 8 corners in frame.

    Args:
        lo, hi: (3,) corners of the box. up: (3,) unit world up. size: (width, height).
        fill: the fraction of the picture's width and height the box's corners may span (0.92: an
            8 % margin; the window's first view uses :data:`WINDOW_FILL`).
        points: (N, 3) points that must fit (default: the box's 8 corners); it looks at the box centre.

    Example:
        >>> import numpy as np
        >>> cam = default_camera(-np.ones(3), np.ones(3), np.array([0.0, 0, 1]), (64, 48))
        >>> len(cam), cam.width, bool(cam.center[0, 2] > 1)
        (1, 64, True)
    """
    W, H = size
    target = (lo + hi) / 2
    K = intrinsics_from_fov(FOV, W, H)
    e1, e2 = _horizontal_axes(up)
    az, el = math.radians(_AZIMUTH), math.radians(_ELEVATION)
    direction = math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * up
    R = Camera.look_at(target + direction, target, up, K=K).R[0]
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    if points is not None:
        corners = np.asarray(points, np.float64)
    local = (corners - target) @ R.T  # camera axes: right, down, forward
    tan_x, tan_y = fill * (W / 2) / K[0, 0], fill * (H / 2) / K[1, 1]
    # a corner at (x, y, z) fits when |x| <= tan_x * (dist + z) and |y| <= tan_y * (dist + z)
    need = np.concatenate([np.abs(local[:, 0]) / tan_x, np.abs(local[:, 1]) / tan_y]) - np.tile(local[:, 2], 2)
    radius = float(np.linalg.norm(hi - lo)) / 2
    dist = max(float(need.max()), 1.05 * radius, 1e-6)  # and never inside the bounding sphere
    return Camera.look_at(target + dist * direction, target, up, K=K, width=W, height=H)


def _camera_view(view: Camera, size: tuple[int, int], size_given: bool) -> Camera:
    cam = view.numpy() if view.is_torch else view
    if len(cam) != 1:
        raise ValueError(f"view must be a single camera, got a batch of {len(cam)}; pass cameras[i]")
    if not cam.has_size:
        if not size_given:
            raise ValueError("view must be a camera with width and height set (or pass size=), got one with no size")
        return Camera(cam.K, cam.R, cam.T, *size)
    if size_given and (cam.width, cam.height) != tuple(size):
        return cam.resized(*size)
    return cam


def view_camera(view, lo: np.ndarray, hi: np.ndarray, up: np.ndarray, size: tuple[int, int],
                size_given: bool) -> tuple[Camera, np.ndarray]:
    """(camera to render from, (3,) point a turntable turns around) for a ``view`` of
    :func:`carve.viz.snapshot`: None, a one-camera :class:`geometry.Camera`, or a dict(eye=, ...)."""
    centre = (lo + hi) / 2
    if view is None:
        return default_camera(lo, hi, up, size), centre
    if isinstance(view, Camera):
        return _camera_view(view, size, size_given), centre
    if isinstance(view, dict):
        unknown = set(view) - {"eye", "target", "up", "fov"}
        if "eye" not in view or unknown:
            raise ValueError(f"view must be a dict with 'eye' and optional 'target', 'up', 'fov' (horizontal "
                             f"degrees), got keys {sorted(view)}")
        target = to_numpy(view.get("target", centre), "view['target']")
        view_up = check_up(view.get("up", up))
        cam = Camera.look_at(to_numpy(view["eye"], "view['eye']"), target, view_up,
                             fov=view.get("fov", FOV), width=size[0], height=size[1])
        return cam, target
    raise TypeError(f"view must be None, a geometry.Camera or a dict(eye=, target=, up=), got {type(view).__name__}")


def window_camera(view, lo: np.ndarray, hi: np.ndarray, up: np.ndarray, size: tuple[int, int],
                  points: np.ndarray | None = None) -> tuple[Camera, np.ndarray]:
    """(camera, (3,) point the view turns around) for a window's first view, at the window's size.

    ``view`` None: a 3/4 view from above of the box lo..hi (the object, not the cameras) in which the
    object's ``points`` (default: the box's corners) span :data:`WINDOW_FILL` of the window. A
    one-camera :class:`geometry.Camera`: looking through it (:func:`fit_camera`: its pose, its whole
    image fitted in the window), turning around the point on its axis at the depth of the box
    centre. A dict: as for :func:`view_camera`.

    Example:
        >>> import numpy as np
        >>> cam, pivot = window_camera(None, -np.ones(3), np.ones(3), np.array([0.0, 0, 1]), (80, 60))
        >>> (cam.width, cam.height), pivot.tolist()
        ((80, 60), [0.0, 0.0, 0.0])
    """
    W, H = size
    centre = (lo + hi) / 2
    if view is None:
        return default_camera(lo, hi, up, size, fill=WINDOW_FILL, points=points), centre
    if isinstance(view, Camera):
        cam = fit_camera(_camera_view(view, size, False), size)
        R, C = cam.R[0], cam.center[0]
        depth = max(float(R[2] @ (centre - C)), 1e-3 * max(float(np.linalg.norm(hi - lo)), 1e-9))
        return cam, C + depth * R[2]
    return view_camera(view, lo, hi, up, size, True)


def fit_camera(cam: Camera, size: tuple[int, int]) -> Camera:
    """A one-camera ``cam`` shown in a view of another ``size`` (width, height): the same pose, its
    image scaled uniformly to fit inside the view and centred (the spare width or height is margin).

    The pixel corners (-0.5, -0.5) and (w - 0.5, h - 0.5) of ``cam``'s image map to the fitted
    rectangle's corners, so a point lands where ``cam`` puts it, scaled.

    Example:
        >>> import numpy as np
        >>> cam = Camera(np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]]), np.eye(3), np.zeros(3), 64, 48)
        >>> fit = fit_camera(cam, (256, 256))
        >>> fit.K[0].round(2).tolist(), (fit.width, fit.height)
        ([[200.0, 0.0, 127.5], [0.0, 200.0, 127.5], [0.0, 0.0, 1.0]], (256, 256))
    """
    W, H = size
    s = min(W / cam.width, H / cam.height)
    K = cam.K[0].astype(np.float64).copy()
    K[:2, :2] *= s
    K[0, 2] = (K[0, 2] + 0.5) * s + (W - cam.width * s) / 2 - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * s + (H - cam.height * s) / 2 - 0.5
    return Camera(K, cam.R[0], cam.T[0], int(W), int(H))


def window_size(screen: tuple[int, int] | None, aspect: float = 4 / 3) -> tuple[int, int]:
    """A window's default (width, height): 1280 x 960 at most, and within 85 % of the screen's width
    and of its height less 60 pixels (title bar, panels); 1024 x 768 where the screen is unknown.

    Example:
        >>> window_size((1280, 1024)), window_size((3840, 2160)), window_size(None)
        ((1080, 810), (1280, 960), (1024, 768))
    """
    if screen is None:
        return 1024, 768
    sw, sh = screen
    height = min(960.0, 1280.0 / aspect, 0.85 * sh - 60, 0.85 * sw / aspect)
    height = int(round(max(height, 120.0)))
    return int(round(height * aspect)), height


def turntable(cam: Camera, centre: np.ndarray, up: np.ndarray, frames: int) -> list[Camera]:
    """``frames`` copies of a one-camera ``cam`` turned around the axis ``up`` (3,) through ``centre`` (3,).

    Example:
        >>> import numpy as np
        >>> cam = Camera.look_at([3.0, 0.0, 0.0], fov=40, width=32, height=24)
        >>> ring = turntable(cam, np.zeros(3), np.array([0.0, 0, 1]), 4)
        >>> bool(np.allclose(ring[1].center[0], [0.0, 3.0, 0.0]))
        True
    """
    from scipy.spatial.transform import Rotation

    out = []
    C = cam.center[0]
    for i in range(frames):
        Q = Rotation.from_rotvec(up * (2 * math.pi * i / frames)).as_matrix()
        C_i = Q @ (C - centre) + centre
        R_i = cam.R[0] @ Q.T
        out.append(Camera(cam.K[0], R_i, -R_i @ C_i, cam.width, cam.height))
    return out
