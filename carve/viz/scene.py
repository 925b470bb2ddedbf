"""What the viewer shows, described once: named geometries in groups, the cameras, the first view.

The window (:mod:`carve.viz.window`) and the snapshots (:mod:`carve.viz.offscreen`) both consume a
:class:`Scene` made by :func:`build_scene`, so a headless PNG shows what the window shows first: the
same geometries, the same framing, the same groups hidden.

Groups (:data:`GROUPS`), each one toggle in the window:

- ``mesh``: triangle meshes; ``grid``: voxel grids (drawn as their surface); ``points``: point
  clouds; ``lines``: line sets given as items;
- ``cameras``: one frustum per camera (a LineSet named ``camera NAME``), coloured by agreement when
  it is known: :data:`GOOD_COLOR`, or :data:`FLAGGED_COLOR` for the views a reconstruction flagged
  (excluded from its robust hull; see :func:`flagged_from_report`), :data:`FRUSTUM_COLOR` otherwise;
- ``images``: each camera's photograph as a textured quad on its frustum's image plane (``photo NAME``),
  downsampled to :data:`PHOTO_PIXELS` on its longest side.

Convention: cameras are :class:`geometry.Camera` in the project's frames (OpenCV axes, world-to-camera
R and T, the top-left pixel centre at (0, 0)).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from carve.viz.convert import FRUSTUM_COLOR, as_camera, camera_frustums, frustum_scale, load_item, to_open3d_geometry
from carve.viz.framing import bounds, check_up, view_camera, window_camera
from geometry import Camera, unproject

__all__ = ["Scene", "Entry", "build_scene", "flagged_from_report", "check_hide", "GROUPS", "OBJECT_GROUPS",
           "GOOD_COLOR", "FLAGGED_COLOR", "PHOTO_PIXELS"]

GROUPS = ("mesh", "grid", "points", "lines", "cameras", "images")
OBJECT_GROUPS = ("mesh", "grid", "points", "lines")  # what the first view is framed on
GOOD_COLOR = (0.10, 0.55, 0.20)     # a view that agrees with the hull
FLAGGED_COLOR = (0.86, 0.08, 0.08)  # a view the reconstruction flagged
PHOTO_PIXELS = 256                  # longest side of the photographs drawn on the frustums


@dataclass
class Entry:
    """One named geometry of a :class:`Scene`.

    Attributes:
        name: unique in the scene; the window lists it under its group.
        group: one of :data:`GROUPS`.
        geometry: the Open3D geometry (TriangleMesh, PointCloud or LineSet), world coordinates.
        texture: (h, w, 3) uint8 RGB drawn on a textured quad (``images``), else None.
        camera: the index of the camera it belongs to (``cameras``, ``images``), else None.
    """

    name: str
    group: str
    geometry: object
    texture: np.ndarray | None = None
    camera: int | None = None


@dataclass
class Scene:
    """Everything a viewer draws and where it looks first; made by :func:`build_scene`.

    Attributes:
        entries: the :class:`Entry` list, objects first, then frustums, then photographs.
        hidden: the groups hidden at first.
        lo, hi: (3,) box around the object (the ``OBJECT_GROUPS`` entries; the frustums when there
            is nothing else). points: (N, 3) up to 20000 of its points, to frame its shape.
        up: (3,) unit world up of the default view.
        view: the first view: None (a 3/4 view framed on the object), a one-camera Camera or a dict.
        cameras: the numpy :class:`geometry.Camera` batch drawn as frustums, or None.
        names: one view name per camera. flagged: indices of the flagged views.
        photos: one (H, W, 3) uint8 photograph per camera (full size), or None.
        scale: depth of the frustums' image planes, world units (0 without cameras).
    """

    entries: list
    hidden: frozenset
    lo: np.ndarray
    hi: np.ndarray
    points: np.ndarray
    up: np.ndarray
    view: object = None
    cameras: Camera | None = None
    names: list = field(default_factory=list)
    flagged: frozenset = frozenset()
    photos: list | None = None
    scale: float = 0.0

    def visible(self) -> list:
        """The entries drawn at first: those of groups not in ``hidden``."""
        return [e for e in self.entries if e.group not in self.hidden]

    def groups(self) -> list:
        """The groups the scene holds, in :data:`GROUPS` order."""
        present = {e.group for e in self.entries}
        return [g for g in GROUPS if g in present]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) around every entry, hidden ones included."""
        return bounds([e.geometry for e in self.entries])

    def first_camera(self, size: tuple[int, int]) -> tuple[Camera, np.ndarray]:
        """(camera, (3,) pivot) of the window's first view at viewport ``size`` (width, height):
        :func:`carve.viz.framing.window_camera` on the object."""
        return window_camera(self.view, self.lo, self.hi, self.up, size, self.points)

    def snapshot_camera(self, size: tuple[int, int], size_given: bool) -> tuple[Camera, np.ndarray]:
        """(camera, (3,) turntable centre) of a snapshot: the window's first view when ``view`` is
        None; a given Camera at its own size (or resized to a given ``size``), or a dict view."""
        if self.view is None:
            return self.first_camera(size)
        return view_camera(self.view, self.lo, self.hi, self.up, size, size_given)

    def label(self, i: int) -> str:
        """The text shown beside camera ``i``: its view name, marked when flagged."""
        return f"{self.names[i]} (flagged)" if i in self.flagged else str(self.names[i])

    def label_position(self, i: int) -> np.ndarray:
        """(3,) where camera ``i``'s label sits: its centre."""
        return self.cameras.center[i]

    def photo_entry(self, i: int, pixels: int | None = PHOTO_PIXELS) -> Entry:
        """Camera ``i``'s photograph as an ``images`` entry, at most ``pixels`` on its longest side
        (None: full size)."""
        return Entry(f"photo {self.names[i]}", "images", image_plane(self.cameras[i], self.scale),
                     texture=downsample(self.photos[i], pixels), camera=i)


def check_hide(hide) -> frozenset:
    """``hide`` (an iterable of group names, or one comma-separated string) as a frozenset.

    Example:
        >>> sorted(check_hide("images,cameras"))
        ['cameras', 'images']
    """
    if hide is None:
        return frozenset()
    if isinstance(hide, str):
        hide = [h.strip() for h in hide.split(",") if h.strip()]
    try:
        groups = list(hide)
    except TypeError:
        raise TypeError(f"hide must be group names from {', '.join(GROUPS)}, got {type(hide).__name__}") from None
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"hide must name groups from {', '.join(GROUPS)}, got {unknown}")
    return frozenset(groups)


def flagged_from_report(report, names) -> list[int]:
    """The views a reconstruction flagged, from its per-view report (``NAME_views.json``).

    Flagged: the views the robust hull was carved without (``excluded``). The report's rows must be
    the views given, in order (their ``name`` fields equal ``names``).

    Args:
        report: a path to ``NAME_views.json`` or its parsed dict.
        names: the B view names of the cameras drawn.

    Returns:
        sorted indices into ``names``.

    Example:
        >>> flagged_from_report({"views": [{"name": "a"}, {"name": "b"}], "excluded": [1]}, ["a", "b"])
        [1]
    """
    where = "report"
    if isinstance(report, (str, os.PathLike)):
        where = f"report {str(report)!r}"
        try:
            report = json.loads(Path(report).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"report must name an existing NAME_views.json file, got {str(report)!r}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{where} must be a readable JSON file written by carve reconstruct, got {err}") from None
    if not isinstance(report, dict) or not isinstance(report.get("views"), list) \
            or not isinstance(report.get("excluded", []), list):
        raise ValueError(f"{where} must hold the per-view report of carve reconstruct (a dict with 'views' and "
                         f"'excluded' lists), got {type(report).__name__}"
                         + (f" with keys {sorted(report)}" if isinstance(report, dict) else ""))
    rows = [str(v.get("name")) if isinstance(v, dict) else "?" for v in report["views"]]
    names = [str(n) for n in names]
    if rows != names:
        raise ValueError(f"{where} must be about the views drawn ({len(names)} views: {names[:3]}...), got a "
                         f"report on {len(rows)} views: {rows[:3]}...")
    excluded = report.get("excluded", [])
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(names) for i in excluded):
        raise ValueError(f"{where} must list excluded views as indices in [0, {len(names)}), got {excluded}")
    return sorted(set(excluded))


def downsample(image: np.ndarray, pixels: int | None) -> np.ndarray:
    """(h, w, 3) uint8 ``image`` shrunk (area averaging) to at most ``pixels`` on its longest side."""
    if pixels is None or max(image.shape[:2]) <= pixels:
        return np.ascontiguousarray(image)
    import cv2

    s = pixels / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s)))
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def image_plane(camera: Camera, depth: float):
    """A one-camera ``camera``'s image rectangle at ``depth`` as a textured, two-sided quad.

    Corners: the outer pixel corners (-0.5, -0.5) .. (W - 0.5, H - 0.5) unprojected to ``depth``, so
    the quad fills the camera's view exactly and coincides with its frustum's image plane.

    Returns:
        ``open3d.geometry.TriangleMesh`` with 4 vertices, 4 triangles (both sides) and
        ``triangle_uvs`` (Open3D's: u right, v up, (0, 0) at the image's bottom-left corner) and white
        vertex colours.
    """
    import open3d as o3d

    W, H = camera.width, camera.height
    uv = np.array([[-0.5, -0.5], [W - 0.5, -0.5], [W - 0.5, H - 0.5], [-0.5, H - 0.5]])
    corners = unproject(uv, np.full(4, float(depth)), camera)[0]
    tex = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])  # Open3D's v runs up the image
    triangles = np.array([[0, 1, 2], [0, 2, 3], [0, 2, 1], [0, 3, 2]], np.int32)  # front and back
    quad = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(corners), o3d.utility.Vector3iVector(triangles))
    quad.triangle_uvs = o3d.utility.Vector2dVector(tex[triangles.reshape(-1)])
    quad.triangle_material_ids = o3d.utility.IntVector(np.zeros(len(triangles), np.int32))
    quad.paint_uniform_color([1.0, 1.0, 1.0])  # the texture is multiplied by the vertex colour
    return quad


def _item_group(item, geometry) -> str:
    import open3d as o3d

    if isinstance(item, o3d.geometry.VoxelGrid) or hasattr(item, "to_open3d"):  # carve.VoxelGrid and kin
        return "grid"
    if isinstance(geometry, o3d.geometry.TriangleMesh):
        return "mesh"
    if isinstance(geometry, o3d.geometry.PointCloud):
        return "points"
    return "lines"


def _item_entries(items) -> list:
    converted = []
    for i, item in enumerate(items):
        name = f"items[{i}]"
        if isinstance(item, (str, os.PathLike)):
            item = load_item(Path(item), name)
        geometry = to_open3d_geometry(item, name=name)
        if geometry is not None:
            converted.append((_item_group(item, geometry), geometry))
    counts = {g: sum(1 for c, _ in converted if c == g) for g in GROUPS}
    seen: dict = {}
    entries = []
    for group, geometry in converted:
        seen[group] = seen.get(group, 0) + 1
        entries.append(Entry(group if counts[group] == 1 else f"{group} {seen[group]}", group, geometry))
    return entries


def _check_names(names, n: int) -> list:
    if names is None:
        return [f"{i:04d}" for i in range(n)]
    if isinstance(names, str) or len(names) != n:
        got = "a string" if isinstance(names, str) else f"{len(names)} names"
        raise ValueError(f"names must hold one view name per camera ({n}), got {got}")
    out = [str(x) for x in names]
    if len(set(out)) != n:
        raise ValueError(f"names must be distinct, got repeats among {out[:8]}")
    return out


def _check_photos(photos, cam: Camera) -> list | None:
    if photos is None:
        return None
    if len(photos) != len(cam):
        raise ValueError(f"photos must hold one image per camera ({len(cam)}), got {len(photos)}")
    out = []
    for i, im in enumerate(photos):
        a = np.asarray(im)
        if a.dtype != np.uint8:
            raise TypeError(f"photos[{i}] must be a uint8 RGB image, got dtype {a.dtype}")
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[:2] != (cam.height, cam.width):
            raise ValueError(f"photos[{i}] must have shape ({cam.height}, {cam.width}, 3), the cameras' size, "
                             f"got {a.shape}")
        out.append(a[..., :3])
    return out


def _check_flagged(flagged, n: int) -> frozenset:
    if flagged is None:
        return frozenset()
    arr = np.asarray(list(flagged) if not isinstance(flagged, np.ndarray) else flagged)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"flagged must be view indices or a ({n},) bool mask, got a mask of shape {arr.shape}")
        return frozenset(int(i) for i in np.flatnonzero(arr))
    if arr.size and (arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"flagged must be view indices in [0, {n}), got {arr.tolist()}")
    return frozenset(int(i) for i in arr)


def _object_frame(entries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, points): the box and up to 20000 points of the object entries (all when none)."""
    objects = [e.geometry for e in entries if e.group in OBJECT_GROUPS] or [e.geometry for e in entries]
    lo, hi = bounds(objects)
    points = [np.asarray(getattr(g, "vertices", None) or getattr(g, "points")) for g in objects]
    points = np.concatenate([p for p in points if len(p)] or [np.stack([lo, hi])])
    step = max(1, len(points) // 20000)
    return lo, hi, points[::step]


def build_scene(items, cameras: Camera | None = None, *, names=None, photos=None, flagged=None, hide=(),
                view=None, up=(0.0, 0.0, 1.0)) -> Scene:
    """The :class:`Scene` of the items and cameras, checked.

    Args:
        items: what to draw (see :func:`carve.viz.to_open3d_geometry`); paths are loaded.
        cameras: a :class:`geometry.Camera` batch of B cameras (with size), drawn as frustums sized
            to the scene (:func:`carve.viz.convert.frustum_scale`), or None.
        names: B view names (default "0000", "0001", ...), shown beside the frustums.
        photos: B (H, W, 3) uint8 RGB photographs of the cameras' size (grey (H, W) and RGBA are
            accepted), drawn on the frustums' image planes; or None.
        flagged: the views a reconstruction flagged, as indices or a (B,) bool mask (see
            :func:`flagged_from_report`); with it every frustum is coloured good or flagged.
        hide: groups hidden at first (see :data:`GROUPS`), e.g. ``("images",)``.
        view: the first view (see :func:`carve.viz.show`). up: (3,) world up of the default view.

    Example:
        >>> import numpy as np
        >>> s = build_scene([np.random.default_rng(0).random((50, 3))], hide=["points"])
        >>> [(e.name, e.group) for e in s.entries], s.visible()
        ([('points', 'points')], [])
    """
    up = check_up(up)
    hidden = check_hide(hide)
    if view is not None and not isinstance(view, (Camera, dict)):
        raise TypeError(f"view must be None, a geometry.Camera or a dict(eye=, target=, up=), got {type(view).__name__}")
    if cameras is None:
        for arg, value in (("names", names), ("photos", photos), ("flagged", flagged)):
            if value is not None:
                raise ValueError(f"{arg} describes cameras, so it needs cameras=..., got {arg} and no cameras")
    entries = _item_entries(items)
    cam, scale, view_names, pictures, marked = None, 0.0, [], None, frozenset()
    if cameras is not None:
        cam = as_camera(cameras, "cameras")
        if not cam.has_size:
            raise ValueError("cameras must have width and height set to draw frustums, got cameras with no size")
        view_names = _check_names(names, len(cam))
        pictures = _check_photos(photos, cam)
        marked = _check_flagged(flagged, len(cam))
        centre = radius = None
        if entries:
            lo, hi = bounds([e.geometry for e in entries])
            centre, radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo)) / 2
        scale = frustum_scale(cam.center, centre, radius)
        for i in range(len(cam)):
            color = FRUSTUM_COLOR if flagged is None else (FLAGGED_COLOR if i in marked else GOOD_COLOR)
            entries.append(Entry(f"camera {view_names[i]}", "cameras", camera_frustums(cam[i], scale, color),
                                 camera=i))
    if not entries:
        raise ValueError(f"items must hold something to draw, got {len(items)} empty item(s) and no cameras")
    lo, hi, points = _object_frame(entries)
    scene = Scene(entries, hidden, lo, hi, points, up, view, cam, view_names, marked, pictures, scale)
    if pictures is not None:
        entries.extend(scene.photo_entry(i) for i in range(len(cam)))
    return scene
