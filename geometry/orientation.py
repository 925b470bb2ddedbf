"""Which sign of each projection matrix puts the scene in front of its camera (cheirality).

A 3x4 P fixes a camera only up to scale, sign included: ``P`` and ``-P`` give the same pixels, but
the depth ``w`` of ``P @ [X, 1]`` changes sign. A physical camera sees what lies in front of it
(``w > 0``), so the sign to use is the one that puts the scene there, not the one that makes
``det(P[:, :3])`` positive. When the in-front sign gives ``det(P[:, :3]) < 0`` the frame is mirrored
(see :mod:`data.frames`, which reflects a world axis to carve in a right-handed frame).

The rule of :func:`front_signs`, for B >= 2 views:

1. The scene is what the views look at: the point ``X0`` nearest, in least squares, to every
   view's line through its camera centre and its image centre (lines, so no sign is assumed).
2. ``X0`` decides when it is well placed: the lines spread by at least :data:`RAY_SPREAD_MIN_DEG`
   (rms angle about their mean axis), and ``X0`` projects into at least :data:`INSIDE_FRACTION` of
   the images. Each P then gets the sign with ``w(X0) > 0``.
3. Otherwise (forward-facing rigs, whose nearly parallel lines meet wherever noise puts them, even
   behind the cameras), or when ``X0`` leaves the views' det signs mixed, the image-rectangle cones
   decide (linear programs): the global sign (relative to ``det > 0``) for which some point lies in
   front of every camera and inside every image. When both global signs qualify (a forward-facing
   rig sees a region in front and, through the point reflections of its cones, one behind), nothing
   in P decides, and the ``det > 0`` convention is kept.

One camera carries no evidence of where its scene is: it keeps ``det(P[:, :3]) > 0``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

__all__ = ["front_signs", "RAY_SPREAD_MIN_DEG", "INSIDE_FRACTION"]

#: rms angle (degrees) of the views' image-centre lines about their mean axis below which the rig is
#: taken as forward-facing: hand-held forward sweeps (LLFF-style) stay within a few degrees, while
#: object rigs (turntables, hemispheres, arcs of 15 degrees or more) spread further
RAY_SPREAD_MIN_DEG = 4.0
#: the least share of views ``X0`` must project into to be taken as the scene they look at: a point
#: most views see; an object may leave some images in part, so not all of them
INSIDE_FRACTION = 0.5


def front_signs(P, width=None, height=None) -> np.ndarray:
    """Per view the sign (+1 or -1) that puts the scene in front of the camera (module docstring).

    Args:
        P: (B, 3, 4) projection matrices, any scale and sign, with invertible ``P[:, :3]``.
        width, height: the image size in pixels, or None (then the principal axes stand in for the
            image-centre lines and no image-rectangle test is made).

    Returns:
        (B,) float64 signs; ``signs[:, None, None] * P`` has the scene at positive depth. The signs
        may leave ``det(P[:, :3])`` of mixed sign: that is an inconsistent calibration, for the
        caller to report.

    Example:
        >>> import numpy as np
        >>> from geometry import Camera
        >>> cams = Camera.look_at([[4.0, 0, 1], [0, 4.0, 1], [-4.0, 0, 1]], fov=50, width=64, height=48)
        >>> front_signs(cams.P * np.array([1.0, -1.0, -2.0])[:, None, None], 64, 48).tolist()
        [1.0, -1.0, -1.0]
    """
    P = np.asarray(P, dtype=np.float64)
    M = P[:, :, :3]
    det_sign = np.sign(np.linalg.det(M))
    if len(P) < 2:
        return det_sign
    w = _depths_at_scene_point(P, width, height)
    if w is not None:
        signs = np.sign(w)
        t = signs * det_sign
        if np.all(t == t[0]):
            return signs
    if width is None:
        return det_sign if w is None else signs
    ahead = _cones_meet(P * det_sign[:, None, None], width, height)
    behind = _cones_meet(-P * det_sign[:, None, None], width, height)
    if ahead:
        return det_sign
    if behind:
        return -det_sign
    if w is not None:
        return signs  # mixed: the caller names the views that disagree
    warnings.warn("P: no point lies in front of every camera and inside every image for either sign; "
                  "keeping the det(P[:, :3]) > 0 sign", stacklevel=3)
    return det_sign


def _depths_at_scene_point(P, width, height):
    """(B,) depths ``P @ [X0, 1]`` at the point the views look at, or None when it is not well placed."""
    M = P[:, :, :3]
    Minv = np.linalg.inv(M)
    centres = -np.einsum("bij,bj->bi", Minv, P[:, :, 3])
    if width is None:
        d = M[:, 2, :]
    else:
        pix = np.array([(width - 1) / 2, (height - 1) / 2, 1.0])
        d = np.einsum("bij,j->bi", Minv, pix)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    proj = np.eye(3)[None] - d[:, :, None] * d[:, None, :]  # projectors orthogonal to each line
    A, rhs = proj.sum(0), np.einsum("bij,bj->i", proj, centres)
    evals = np.linalg.eigvalsh(A)
    if evals[0] / len(P) < math.sin(math.radians(RAY_SPREAD_MIN_DEG)) ** 2:
        return None
    X0 = np.linalg.solve(A, rhs)
    h = np.einsum("bij,j->bi", P, np.append(X0, 1.0))
    w = h[:, 2]
    reach = np.linalg.norm(M[:, 2, :], axis=1) * np.linalg.norm(X0 - centres, axis=1)
    if np.any(np.abs(w) <= 1e-9 * reach):  # X0 on a camera's principal plane: no side to read
        return None
    if width is not None:
        u, v = h[:, 0] / w, h[:, 1] / w
        inside = (u >= -0.5) & (u <= width - 0.5) & (v >= -0.5) & (v <= height - 0.5)
        if inside.mean() < INSIDE_FRACTION:
            return None
    return w


def _cones_meet(P, width, height) -> bool:
    """Whether some point lies at positive depth and inside the image rectangle of every P (an LP)."""
    from scipy.optimize import linprog

    P = P / np.linalg.norm(P[:, 2, :3], axis=1)[:, None, None]  # depth in world units
    p1, p2, p3 = P[:, 0], P[:, 1], P[:, 2]
    # each row g with g . [X, 1] >= 0 holds in the cone: u >= -0.5, u <= W - 0.5, v likewise
    rows = [p1 + 0.5 * p3, (width - 0.5) * p3 - p1, p2 + 0.5 * p3, (height - 0.5) * p3 - p2]
    G = np.concatenate(rows)
    G = G / np.linalg.norm(G[:, :3], axis=1, keepdims=True)
    centres = -np.einsum("bij,bj->bi", np.linalg.inv(P[:, :, :3]), P[:, :, 3])
    scale = max(float(np.ptp(centres, axis=0).max()), float(np.abs(centres).max()), 1e-300)
    margin = 1e-6 * scale  # strictly in front: a relative margin, far below any scene's extent
    A_ub = np.concatenate([-G[:, :3], -p3[:, :3]])
    b_ub = np.concatenate([G[:, 3], p3[:, 3] - margin])
    res = linprog(np.zeros(3), A_ub=A_ub, b_ub=b_ub, bounds=[(None, None)] * 3, method="highs")
    return res.status == 0
