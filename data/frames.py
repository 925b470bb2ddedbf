"""Frames from the wild: P signs, mirrored worlds, non-metric K, and the way back to a dataset's frame.

A P matrix fixes a camera only up to scale, sign included. :func:`orient_projections` gives each P
the sign that puts the scene in front of its camera (:func:`geometry.orientation.front_signs`).
When that sign gives ``det(P[:, :3]) < 0`` in every view, the dataset's world is mirrored (a
projective reconstruction upgraded to a metric one can land in either handedness): we carve in the
right-handed world reached by reflecting the z axis, :data:`MIRROR` = ``diag(1, 1, -1, 1)`` (any one
axis would do; reflecting z keeps the dataset's x and y, so a grid's x-y layout reads as the user's).

Convention: ``X_world = world_from_dataset @ X_dataset`` (homogeneous 4-vectors), so a dataset's P
becomes ``P_world = P_dataset @ inverse(world_from_dataset)`` (``P @ MIRROR`` for the reflection) and
goes back as ``P_dataset = P_world @ world_from_dataset``. Outputs (points, meshes, grids, boxes,
saved datasets) go back to the dataset's frame, so that they line up with the user's other data.
"""
from __future__ import annotations

import warnings

import numpy as np

from geometry import Camera
from geometry.orientation import front_signs

__all__ = ["MIRROR", "NonMetricWarning", "orient_projections", "orient_poses", "check_metric", "to_dataset_points",
           "to_dataset_mesh", "transform_bounds", "to_dataset_projections", "is_identity"]

#: the reflection that makes a mirrored dataset's world right-handed: z -> -z
MIRROR = np.diag([1.0, 1.0, -1.0, 1.0])
#: |skew| / fx above which K is not a real camera's: pixel axes of real sensors are perpendicular to far
#: better than this (0.6 degrees); a projective reconstruction upgraded to an approximately metric one
#: leaves larger skew behind
MAX_SKEW = 0.01
#: |fy / fx - 1| above which K is not a square-pixel camera's: calibrations of square-pixel sensors agree
#: to a fraction of a percent; beyond 5% the pixels are anamorphic or, more often, the frame is not metric
MAX_ASPECT_ERROR = 0.05


class NonMetricWarning(UserWarning):
    """The calibration's frame is far from metric: units are not metres and angles are not preserved."""


def orient_projections(P, width: int, height: int, names=None):
    """Choose each P's sign so the scene is in front, and reflect a mirrored world.

    Args:
        P: (B, 3, 4) projection matrices in the dataset's frame, any scale and sign.
        width, height: the image size in pixels (used to find where the views look).
        names: B view names for messages (default: the indices).

    Returns:
        (P_world (B, 3, 4) float64, world_from_dataset (4, 4)): ``P_world`` has the scene at positive
        depth and ``det(P_world[:, :3]) > 0``, the same pixels as P for every point (``P_world @
        world_from_dataset`` is P up to a non-zero scale per view); ``world_from_dataset`` is the
        identity, or :data:`MIRROR` for a mirrored dataset. A K far from metric warns
        (:class:`NonMetricWarning`); carving still uses these exact P.

    Raises:
        ValueError: P's left 3x3 blocks are not invertible, or the in-front signs leave det of mixed
            sign (an inconsistent calibration; the message names the minority's views).

    Example:
        >>> cams = Camera.look_at([[4.0, 0, 1], [0, 4.0, 1], [-4.0, 0, 1]], fov=50, width=64, height=48)
        >>> P_world, frame = orient_projections(-cams.P @ MIRROR, 64, 48)
        >>> np.allclose(frame, MIRROR), np.allclose(P_world, cams.P)
        (True, True)
    """
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 3 or P.shape[1:] != (3, 4):
        raise ValueError(f"P must have shape (B, 3, 4), got {P.shape}")
    names = [str(n) for n in names] if names is not None else [str(i) for i in range(len(P))]
    if len(names) != len(P):
        raise ValueError(f"names must hold one name per view ({len(P)}), got {len(names)}")
    det = np.linalg.det(P[:, :, :3])
    norm = np.abs(P[:, :, :3]).max(axis=(1, 2))
    if not np.isfinite(P).all() or np.any(np.abs(det) <= 1e-12 * norm ** 3):
        bad = int(np.flatnonzero(~np.isfinite(P).all(axis=(1, 2)) | (np.abs(det) <= 1e-12 * norm ** 3))[0])
        raise ValueError(f"P must be finite with an invertible left 3x3 block, got a singular or non-finite "
                         f"matrix for view {names[bad]}")
    signs = front_signs(P, width, height)
    handed = np.sign(det) * signs
    if not np.all(handed == handed[0]):
        minority = handed < 0 if np.sum(handed < 0) <= len(P) / 2 else handed > 0
        odd = [names[i] for i in np.flatnonzero(minority)]
        raise ValueError(f"P must be one consistent calibration, but with the scene in front det(P[:, :3]) has "
                         f"mixed signs: views {_listing(odd)} are mirrored relative to the other "
                         f"{len(P) - len(odd)}")
    frame = MIRROR.copy() if handed[0] < 0 else np.eye(4)
    P_world = (P * signs[:, None, None]) @ np.linalg.inv(frame)
    check_metric(Camera.from_projection(P_world, width, height, orient=False).K, names)
    return P_world, frame


def orient_poses(c2w, names=None):
    """Camera-to-world poses (B, 3|4, 4) whose rotation blocks may all be reflections -> (c2w_world, frame).

    A mirrored ``transform_matrix`` (``det < 0``) is the pose of a camera in a mirrored world: the
    world is reflected by :data:`MIRROR` (``c2w_world = MIRROR @ c2w``). Mixed signs are an error
    naming the minority's views.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    det = np.linalg.det(c2w[:, :3, :3])
    names = [str(n) for n in names] if names is not None else [str(i) for i in range(len(c2w))]
    if np.all(det > 0) or not np.all(np.isfinite(det)):
        return c2w, np.eye(4)  # Camera's own checks report anything else wrong with them
    if np.any(det > 0):
        minority = det < 0 if np.sum(det < 0) <= len(det) / 2 else det > 0
        odd = [names[i] for i in np.flatnonzero(minority)]
        raise ValueError(f"camera poses must be one consistent calibration, but det of the rotation has mixed "
                         f"signs: views {_listing(odd)} are mirrored relative to the other {len(det) - len(odd)}")
    return MIRROR[None, : c2w.shape[1], :] @ _homogeneous(c2w), MIRROR.copy()


def check_metric(K, names=None) -> None:
    """Warn (:class:`NonMetricWarning`) when some K has skew or aspect far from a real camera's.

    Args:
        K: (B, 3, 3) intrinsics with ``K[2, 2] = 1``. names: B view names for the message.
    """
    K = np.asarray(K, dtype=np.float64).reshape(-1, 3, 3)
    skew = np.abs(K[:, 0, 1]) / K[:, 0, 0]
    aspect = K[:, 1, 1] / K[:, 0, 0]
    bad = (skew > MAX_SKEW) | (np.abs(aspect - 1) > MAX_ASPECT_ERROR)
    if bad.any():
        names = [str(n) for n in names] if names is not None else [str(i) for i in range(len(K))]
        worst = int(np.argmax(np.maximum(skew / MAX_SKEW, np.abs(aspect - 1) / MAX_ASPECT_ERROR)))
        warnings.warn(f"K is far from metric in {int(bad.sum())} of {len(K)} views (e.g. view {names[worst]}: "
                      f"skew/fx {skew[worst]:.3g}, aspect fy/fx {aspect[worst]:.4g}; a real camera has about 0 "
                      f"and 1): the frame is projective or affine, so units are not metres and angles are "
                      f"not preserved; carving uses the exact P", NonMetricWarning, stacklevel=3)


def is_identity(world_from_dataset) -> bool:
    """Whether the map is exactly the identity (nothing to do)."""
    return bool(np.array_equal(np.asarray(world_from_dataset, dtype=np.float64), np.eye(4)))


def to_dataset_points(points, world_from_dataset) -> np.ndarray:
    """(N, 3) world points -> (N, 3) float64 points in the dataset's frame."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    inv = np.linalg.inv(_frame(world_from_dataset))
    return points @ inv[:3, :3].T + inv[:3, 3]


def to_dataset_mesh(mesh, world_from_dataset):
    """A copy of a ``trimesh.Trimesh`` (or ``PointCloud``) in the dataset's frame; the same object for the identity.

    Faces are re-wound when the map reverses orientation (det < 0), so they stay counter-clockwise
    seen from outside; vertex colours are kept.
    """
    if is_identity(world_from_dataset):
        return mesh
    frame = _frame(world_from_dataset)
    out = mesh.copy()
    colors = _vertex_colors(mesh)
    out.vertices = to_dataset_points(np.asarray(mesh.vertices), frame)
    if hasattr(out, "faces") and np.linalg.det(frame[:3, :3]) < 0 and len(out.faces):
        out.faces = np.asarray(out.faces)[:, ::-1]
    if colors is not None:
        out.visual.vertex_colors = colors
    return out


def transform_bounds(bounds, matrix) -> np.ndarray:
    """The (2, 3) box ``[lo, hi]`` holding ``matrix`` (4, 4) applied to the box ``bounds``.

    Exact for axis permutations and reflections (the mapped box is a box); for other maps the box
    around the eight mapped corners.
    """
    bounds = np.asarray(bounds, dtype=np.float64)
    if bounds.shape != (2, 3):
        raise ValueError(f"bounds must have shape (2, 3) = [lo, hi], got {bounds.shape}")
    frame = _frame(matrix)
    corners = np.array([[bounds[i, 0], bounds[j, 1], bounds[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    mapped = corners @ frame[:3, :3].T + frame[:3, 3]
    return np.stack([mapped.min(0), mapped.max(0)])


def to_dataset_projections(P, world_from_dataset) -> np.ndarray:
    """(B, 3, 4) world P -> the same cameras in the dataset's frame, ``P @ world_from_dataset``."""
    return np.asarray(P, dtype=np.float64) @ _frame(world_from_dataset)


def _frame(matrix) -> np.ndarray:
    frame = np.asarray(matrix, dtype=np.float64)
    if frame.shape != (4, 4) or not np.isfinite(frame).all() or not np.allclose(frame[3], [0, 0, 0, 1]):
        raise ValueError(f"world_from_dataset must be a finite (4, 4) affine matrix, got {frame.tolist()}")
    if abs(np.linalg.det(frame[:3, :3])) < 1e-12:
        raise ValueError(f"world_from_dataset must be invertible, got {frame.tolist()}")
    return frame


def _homogeneous(c2w):
    if c2w.shape[1] == 4:
        return c2w
    last = np.broadcast_to(np.array([0.0, 0, 0, 1]), (len(c2w), 1, 4))
    return np.concatenate([c2w, last], axis=1)


def _vertex_colors(mesh):
    visual = getattr(mesh, "visual", None)
    if visual is not None and getattr(visual, "kind", None) == "vertex":
        return np.asarray(visual.vertex_colors).copy()
    colors = getattr(mesh, "colors", None)  # PointCloud
    return np.asarray(colors).copy() if colors is not None and len(colors) else None


def _listing(names: list, most: int = 10) -> str:
    return ", ".join(names[:most]) + (f" ... ({len(names)} in all)" if len(names) > most else "")
