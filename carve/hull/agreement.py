"""Per-view agreement with the hull, and a hull that a few bad masks or a pixel of calibration error cannot cut.

The exact visual hull (:func:`carve.hull.carve`) lets every view veto every voxel. Real captures
break that in two ways, and each leaves its own trace in the data:

- a bad mask (a chunk of the object missing) makes one view reject, far from its silhouette, voxels
  that nearly all other views keep: many such rejections, concentrated in few views;
- calibration error of a pixel or two makes every view's silhouette slightly off the others': each
  view's mask is then partly left empty by the hull the others carve, a band a pixel or two wide
  spread over all views.

:func:`robust_carve` measures both (a tolerant carve gives the voxels nearly all views keep and who
rejects them; the hull's reprojection gives each view's missed band), carves again without the
cutting views and with ``slack`` = the estimated misalignment, and says what it did in a
:class:`~carve.hull.report.HullReport`. :func:`view_scores` scores any grid against the masks.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from carve.grid import VoxelGrid
from carve.hull.bounds import UnboundedRegionError
from carve.hull.carving import EmptyHullWarning, carve
from carve.hull.checks import as_numpy, border_of, camera_matrices, check_image_size, mask_stack, mask_values, \
    outside_policy
from carve.hull.report import HullReport, ViewRow

__all__ = ["VIEW_SHARE", "FAR_FACTOR", "FAR_MIN_PX", "CUT_SHARE", "CONCENTRATION", "SAMPLING_PX", "MIN_VOXELS",
           "HUBER", "TUKEY", "SLACK_CAP_PX", "ViewScores", "view_scores", "silhouette_shifts", "robust_carve"]

#: a voxel that at most this share of the views rejects is one "nearly all other views keep": a bad
#: mask is a minority, and 10% still leaves a consensus of nine views in ten
VIEW_SHARE = 0.1
#: a rejection is "far" when the voxel's pixel lies more than this many times the typical rejection
#: depth (the median over views of each view's 90th percentile) from the silhouette ...
FAR_FACTOR = 4.0
#: ... and at least this far (px): a mask's own edge (sampling, blur) is uncertain by about a pixel
FAR_MIN_PX = 2.0
#: a view cuts the object when its far rejections exceed this share of the voxels nearly all keep
#: (half a percent of the object: a visible chunk, not an edge effect) ...
CUT_SHARE = 0.005
#: ... and this many times the median view's far rejections (concentrated in few views: far
#: rejections spread over every view are a common cause, not one view's mask)
CONCENTRATION = 5.0
#: a silhouette is sampled at pixel centres: it is exact to half a pixel, so a smaller misalignment
#: is no evidence of calibration error (and any slack below 1 px dilates nothing)
SAMPLING_PX = 0.5
#: a hull of fewer voxels (less than 2 a side) has no shape to speak of: it is reported as degenerate
MIN_VOXELS = 8
#: Huber's threshold, in robust standard deviations of the outline's residuals (the usual 95%-efficiency value)
HUBER = 1.345
#: Tukey's biweight threshold, likewise (95% efficiency): residuals beyond it get no weight
TUKEY = 4.685
#: the largest slack (px) robust_carve applies: calibrations are off by "a pixel or two"; beyond
#: twice that, slack would bloat the hull by more than the misalignment it forgives
SLACK_CAP_PX = 4.0


@dataclass
class ViewScores:
    """How a grid reprojects into each of B views (all arrays (B,)).

    Attributes:
        iou: intersection over union of the mask and the reprojection.
        missed_pixels: mask pixels the reprojection leaves empty; missed_fraction: over the mask's pixels.
        extra_pixels: reprojection pixels outside the mask.
        band_px: mean width of the missed band, ``missed_pixels`` over the mask's contour length (px).
        reprojection: (B, H, W) bool, the grid's exact silhouettes (:func:`carve.hull.reprojection.reproject`).
    """

    iou: np.ndarray
    missed_pixels: np.ndarray
    missed_fraction: np.ndarray
    extra_pixels: np.ndarray
    band_px: np.ndarray
    reprojection: np.ndarray


def view_scores(grid: VoxelGrid, silhouettes, cameras, outside="carve") -> ViewScores:
    """Score each view by the grid's reprojection into it: IoU, missed pixels, missed band width.

    Args:
        grid: a :class:`carve.grid.VoxelGrid` (e.g. a hull).
        silhouettes: (B, H, W) bool masks (or 0/255 uint8), as for :func:`carve.hull.carve`.
        cameras: a :class:`geometry.Camera` of B cameras.
        outside: as for :func:`carve.hull.carve`; only checked here (the reprojection is clipped to
            the image either way, so a view with "keep" is scored on what it sees).

    Returns:
        :class:`ViewScores`.

    Example:
        >>> import numpy as np
        >>> from geometry import Camera
        >>> cams = Camera.look_at([[0, -4, 0], [4, 0, 0], [0, 0, 4]], up=(0, 1, 1), fov=40, width=64, height=48)
        >>> yy, xx = np.mgrid[:48, :64]
        >>> disc = np.stack([(xx - 31.5) ** 2 + (yy - 23.5) ** 2 < 12 ** 2] * 3)
        >>> hull = carve(disc, cams, resolution=48, bounds=([-1.5] * 3, [1.5] * 3))
        >>> scores = view_scores(hull, disc, cams)
        >>> scores.missed_pixels.tolist(), bool(scores.iou.min() > 0.8)  # the cubes overhang the centres
        ([0, 0, 0], True)
    """
    P, width, height = camera_matrices(cameras)
    masks = _bool_masks(silhouettes, len(P))
    H, W = check_image_size(masks, "silhouettes", width, height)
    outside_policy(outside, len(P), lambda: border_of(masks))
    from carve.hull.reprojection import reproject

    rep = reproject(grid, P, H, W)
    inter = np.count_nonzero(masks & rep, axis=(1, 2))
    union = np.count_nonzero(masks | rep, axis=(1, 2))
    area = np.count_nonzero(masks, axis=(1, 2))
    missed = area - inter
    band = np.array([m / max(_contour_length(s), 1.0) for m, s in zip(missed, masks)])
    return ViewScores(iou=inter / np.maximum(union, 1), missed_pixels=missed,
                      missed_fraction=missed / np.maximum(area, 1), extra_pixels=np.count_nonzero(rep & ~masks, axis=(1, 2)), band_px=band, reprojection=rep)


def robust_carve(silhouettes, cameras, resolution: int = 128, bounds="auto", outside="carve", names=None,
                 method: str = "octree", backend: str = "numba", device=None,
                 max_slack: float = SLACK_CAP_PX, exclude: bool = True) -> tuple[VoxelGrid, HullReport]:
    """The visual hull without the views whose masks cut the object, with slack for calibration error.

    1. Views whose mask holds no object pixel (or nothing but object) are set aside.
    2. A tolerant carve (``tolerance`` = :data:`VIEW_SHARE` of the views) gives the voxels nearly all
       views keep; each view's rejections of them are counted (``unique_rejections``) with their
       distance to its silhouette. A view *cuts* the object when it rejects many of them far from its
       silhouette, concentrated in few views (:data:`FAR_FACTOR`, :data:`FAR_MIN_PX`,
       :data:`CUT_SHARE`, :data:`CONCENTRATION`); at most that tolerance many views are excluded.
    3. The tolerant hull (the consensus) is reprojected into each remaining view and the view's mask
       outline is fitted onto it by a 2-D shift (:func:`silhouette_shifts`); the median shift length
       is the calibration misalignment (px). Slack = that estimate when it exceeds
       :data:`SAMPLING_PX`, capped at ``max_slack``.
    4. The hull is carved again without the cutting views (or with a matching tolerance) and with
       that slack, and scored in every view.

    Args:
        silhouettes, cameras, resolution, bounds, outside, method, backend, device: as for
            :func:`carve.hull.carve` (silhouettes may include empty masks: they are reported, not fatal).
        names: B view names for the report (default: the indices).
        max_slack: cap of the slack in pixels (>= 0).
        exclude: carve without the cutting views (True) or with them and ``tolerance`` = their number
            (False: each voxel may then be rejected by that many views, any of them).

    Returns:
        (grid, report): the robust hull (an empty 1-voxel grid when nothing survives; the report's
        ``diagnosis`` then says which views reject everything) and its :class:`~carve.hull.report.HullReport`.

    Example:
        >>> from geometry import Camera
        >>> cams = Camera.look_at([[0, -4, 0], [4, 0, 0], [0, 0, 4]], up=(0, 1, 1), fov=40, width=64, height=48)
        >>> yy, xx = np.mgrid[:48, :64]
        >>> disc = np.stack([(xx - 31.5) ** 2 + (yy - 23.5) ** 2 < 12 ** 2] * 3)
        >>> grid, report = robust_carve(disc, cams, 32, bounds=([-1.5] * 3, [1.5] * 3))
        >>> report.excluded, report.slack, grid.count() == report.exact_voxels
        ([], 0.0, True)
    """
    t0 = time.perf_counter()
    P, width, height = camera_matrices(cameras)
    B = len(P)
    masks = _bool_masks(silhouettes, B)
    check_image_size(masks, "silhouettes", width, height)
    names = _names(names, B)
    if isinstance(max_slack, bool) or not isinstance(max_slack, (int, float, np.integer, np.floating)) \
            or not np.isfinite(max_slack) or max_slack < 0:
        raise ValueError(f"max_slack must be a finite number of pixels >= 0, got {max_slack!r}")
    carve_out = outside_policy(outside, B, lambda: border_of(masks))
    cameras = cameras.numpy()
    reasons = _unusable(masks)
    options = dict(resolution=resolution, bounds=bounds, method=method, backend=backend, device=device)

    def hull(views, tolerance=0, slack=0.0):
        views = np.asarray(views, np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyHullWarning)
            return carve(masks[views], cameras[views], tolerance=tolerance, slack=slack,
                         outside=["carve" if carve_out[b] else "keep" for b in views], **options)

    usable = [b for b in range(B) if b not in reasons]
    unique = np.zeros(B, np.int64)
    report = HullReport(tolerance=0)
    if not usable:
        report.diagnosis = "every mask is empty or full, so no view constrains the object"
        return _finish(report, _empty(), masks, cameras, names, unique, reasons, list(range(B)), t0)
    share = max(1, int(VIEW_SHARE * len(usable))) if len(usable) > 1 else 0
    candidates, share = _tolerant_hull(hull, usable, share)
    rejected = np.zeros((0, len(usable)), bool)
    if candidates.count():
        from carve.hull.reprojection import rejections

        points = candidates.points()
        rejected = rejections(points, masks[usable], P[usable], carve_out[usable])
        unique[usable] = rejected.sum(0)
        for b, why in _cutting_views(points, rejected, masks, P, usable, share).items():
            reasons[b] = why
    agreeing = [b for b in usable if b not in reasons]
    slack = 0.0
    if candidates.count() and agreeing:
        from carve.hull.reprojection import reproject

        consensus = reproject(candidates, P[agreeing], *masks.shape[1:])
        shifts = silhouette_shifts(masks[agreeing], consensus)
        report.misalignment_px = float(np.median(np.hypot(shifts[:, 0], shifts[:, 1])))
        if report.misalignment_px > SAMPLING_PX:
            slack = float(min(report.misalignment_px, max_slack))
    report.slack = slack
    kept = agreeing if exclude else usable
    report.tolerance = len(usable) - len(agreeing) if not exclude else 0
    exact = hull(usable)
    report.exact_voxels = exact.count()
    if slack >= 1 or report.tolerance or len(kept) < len(usable):  # slack below 1 px dilates no mask
        grid = hull(kept, tolerance=report.tolerance, slack=slack)
    else:
        grid = exact
    excluded = [b for b in range(B) if b not in kept]
    culprits = _rejecting_everything(rejected, usable) if not exact.count() else []
    for b in culprits:
        if b in reasons:
            reasons[b] = ("rejects every voxel the other views keep, so the exact hull is empty (its cone misses "
                          "theirs: a wrong camera or mask?)")
    if grid.count() < MIN_VOXELS:
        report.diagnosis = _diagnosis(grid, culprits, names, reasons, excluded, unique)
    return _finish(report, grid, masks, cameras, names, unique, reasons, excluded, t0)


def _tolerant_hull(hull, usable, share):
    """The hull ``share`` views may veto: (grid, share). With a tolerance, ``bounds="auto"`` must find
    a box that any ``len(usable) - share`` of the views pin down; views all on one side of the object
    (the NeRF lego's upper hemisphere) may not, and then the tolerance halves until they do (1 still
    outvotes one bad mask; the report's unique rejections show what the tolerance let through)."""
    while True:
        try:
            return hull(usable, tolerance=share), share
        except UnboundedRegionError:
            if share <= 1:
                raise
            share //= 2


def silhouette_shifts(masks: np.ndarray, consensus: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Per view, the 2-D shift (px) that best lays the mask's outline onto a consensus silhouette.

    The outline's pixels ``x_i`` are fitted to the consensus' signed distance field ``D`` (> 0
    outside): ``min over (t, c) of sum_i rho(D(x_i + t) - c)``, Gauss-Newton with Huber's weights
    and then Tukey's (robust to a few wrong stretches of outline), the offset ``c`` absorbing a uniform difference in
    size (a consensus carved with tolerance is a little larger). A camera off by a pixel or two
    displaces its silhouette against the others'; that displacement is ``-t``.

    Args:
        masks: (B, H, W) bool masks. consensus: (B, H, W) bool, e.g. a tolerant hull's reprojection.
        iterations: at most this many Gauss-Newton steps (it stops when a step is below 1e-3 px).

    Returns:
        (B, 2) float64 shifts (x, y) in pixels (0 for a view whose mask or consensus is empty).

    Example:
        >>> yy, xx = np.mgrid[:40, :40]
        >>> mask = (xx - 20.0) ** 2 + (yy - 20.0) ** 2 < 100
        >>> moved = (xx - 22.0) ** 2 + (yy - 19.0) ** 2 < 100
        >>> np.round(silhouette_shifts(mask[None], moved[None]), 1).tolist()
        [[2.0, -1.0]]
    """
    import cv2
    from scipy.ndimage import map_coordinates

    out = np.zeros((len(masks), 2))
    for b, (mask, cons) in enumerate(zip(masks, consensus)):
        if not mask.any() or not cons.any() or cons.all():
            continue
        inside = cv2.distanceTransform(np.ascontiguousarray(cons, np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        outside = cv2.distanceTransform(np.ascontiguousarray(~cons, np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        # signed distance to the edge between object and background pixels (half a pixel off each centre)
        field = np.where(cons, 0.5 - inside.astype(np.float64), outside.astype(np.float64) - 0.5)
        gy, gx = np.gradient(field)
        contours, _ = cv2.findContours(np.ascontiguousarray(mask, np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        xy = np.concatenate([c[:, 0, :] for c in contours]).astype(np.float64)
        t = np.zeros(3)  # tx, ty, offset
        for weight in (_huber, _tukey):  # Huber's converge from afar, Tukey's then drop outline far off
            for _ in range(iterations):
                at = [xy[:, 1] + t[1], xy[:, 0] + t[0]]
                r = map_coordinates(field, at, order=1, mode="nearest") - t[2]
                J = np.stack([map_coordinates(gx, at, order=1, mode="nearest"),
                              map_coordinates(gy, at, order=1, mode="nearest"), -np.ones(len(xy))], axis=1)
                # the residuals' robust spread; outlines are whole pixels, so never below half a pixel
                scale = max(1.4826 * float(np.median(np.abs(r - np.median(r)))), 0.5)
                w = weight(r / scale)[:, None]
                step = np.linalg.lstsq((J * w).T @ J, -(J * w).T @ r, rcond=None)[0]
                t += step
                if np.abs(step).max() < 1e-3:
                    break
        out[b] = t[:2]
    return out


def _huber(z):
    """Huber's IRLS weights of standardised residuals."""
    return 1.0 / np.maximum(1.0, np.abs(z) / HUBER)


def _tukey(z):
    """Tukey's biweight IRLS weights of standardised residuals (0 beyond :data:`TUKEY`)."""
    return np.maximum(1.0 - (z / TUKEY) ** 2, 0.0) ** 2


# ------------------------------------------------------------------------------------ the pieces
def _cutting_views(points, rejected, masks, P, usable, share) -> dict:
    """{view: reason} for the views whose far rejections mark a mask that cuts the object.

    points: (N, 3) voxel centres nearly all views keep; rejected: (N, A) bool over the ``usable`` views.
    """
    from carve.hull.reprojection import pixel_of

    import cv2

    H, W = masks.shape[1:]
    depths = []
    for a, b in enumerate(usable):
        sel = rejected[:, a]
        x, y, z = (points[sel, k] for k in range(3))
        h = [((P[b, r, 0] * x + P[b, r, 1] * y) + P[b, r, 3]) + P[b, r, 2] * z for r in range(3)]
        col, row, inside = pixel_of(h, H, W)
        dist = cv2.distanceTransform(np.ascontiguousarray(~masks[b], np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        depths.append(np.where(inside, dist[row, col], np.inf))  # off the image or behind: as far as it gets
    typical = float(np.median([np.percentile(d[np.isfinite(d)], 90) if np.isfinite(d).any() else 0.0
                               for d in depths]))
    far_px = max(FAR_MIN_PX, FAR_FACTOR * typical)
    far = np.array([np.count_nonzero(d > far_px) for d in depths])
    limit = max(CUT_SHARE * len(points), CONCENTRATION * float(np.median(far)))
    order = [a for a in np.argsort(-far, kind="stable") if far[a] > limit][:share]
    return {usable[a]: (f"rejects {far[a]} voxels that nearly all other views keep, more than {far_px:.1f} px "
                        f"from its silhouette: its mask (or camera) cuts the object") for a in order}


def _rejecting_everything(rejected, usable) -> list:
    """The usable views that reject every candidate voxel all the other views keep (and there is one).

    rejected: (N, A) bool over the ``usable`` views.
    """
    if not len(rejected):
        return []
    n_rej = rejected.sum(1)
    culprits = []
    for a, b in enumerate(usable):
        others = (n_rej - rejected[:, a]) == 0
        if others.any() and rejected[others, a].all():
            culprits.append(b)
    return culprits


def _diagnosis(grid, culprits, names, reasons, excluded, unique) -> str:
    """Why the robust hull is empty or degenerate, naming the views that reject everything."""
    what = "the hull is empty" if not grid.count() else f"the hull is degenerate ({grid.count()} voxels)"
    if culprits:
        fate = "excluded" if all(b in excluded for b in culprits) else "kept"
        verb = "rejects" if len(culprits) == 1 else "reject"
        return (f"{what}: {_views(culprits, names)} {verb} everything the other views keep (a cone that misses "
                f"the others': a wrong camera or a wrong mask?); they were {fate}")
    most = [int(b) for b in np.flatnonzero(unique >= max(unique.max() / 2, 1))]  # the heaviest rejecters
    if most:
        extra_views = f"; {_views(most, names)} reject the most of what the others keep"
    else:
        extra_views = ""
    empties = [b for b, why in reasons.items() if "no object" in why]
    extra = f"; {_views(empties, names)} {'has an empty mask' if len(empties) == 1 else 'have empty masks'}" \
        if empties else ""
    return (f"{what}: no single view explains it, the views disagree everywhere (check the cameras' frame, "
            f"the masks' polarity and the bounds){extra_views}{extra}")


def _views(indices, names) -> str:
    """'view a' or 'views a, b' for a non-empty list of view indices."""
    return ("view " if len(indices) == 1 else "views ") + ", ".join(names[b] for b in indices)


def _finish(report, grid, masks, cameras, names, unique, reasons, excluded, t0):
    """Fill the report's rows from the final grid's scores in every view."""
    if grid.count():
        scores = view_scores(grid, masks, cameras)
        iou, missed, frac = scores.iou, scores.missed_pixels, scores.missed_fraction
    else:
        area = np.count_nonzero(masks, axis=(1, 2))
        iou, missed, frac = np.zeros(len(masks)), area, (area > 0).astype(float)
    report.views = [ViewRow(names[b], float(iou[b]), int(missed[b]), float(frac[b]), int(unique[b]),
                            b in excluded, reasons.get(b, "")) for b in range(len(masks))]
    report.excluded = sorted(int(b) for b in excluded)
    report.voxels = grid.count()
    report.seconds = time.perf_counter() - t0
    return grid, report


def _unusable(masks) -> dict:
    """{view: reason} for masks with no object pixel or nothing but object."""
    area = np.count_nonzero(masks, axis=(1, 2))
    reasons = {int(b): "its mask holds no object pixel" for b in np.flatnonzero(area == 0)}
    reasons.update({int(b): "its mask is object everywhere, it constrains nothing"
                    for b in np.flatnonzero(area == masks.shape[1] * masks.shape[2])})
    return reasons


def _bool_masks(silhouettes, n_views) -> np.ndarray:
    """(B, H, W) bool numpy masks, uint8 values checked (empty and full masks allowed)."""
    sil = np.ascontiguousarray(as_numpy(mask_stack(silhouettes, "silhouettes", n_views)))
    counts, values = mask_values(sil)
    if values[:, 2].any() or (values[:, 0].any() and values[:, 1].any()):
        bad = np.flatnonzero(values[:, 2] | values[:, 0]).tolist()
        raise ValueError(f"silhouettes of dtype uint8 must hold only 0 and 255 (or only 0 and 1), got other values "
                         f"in views {bad}; threshold them explicitly")
    return sil != 0


def _names(names, n_views) -> list:
    if names is None:
        return [str(b) for b in range(n_views)]
    names = [str(n) for n in names]
    if len(names) != n_views:
        raise ValueError(f"names must give one name per view ({n_views}), got {len(names)}")
    return names


def _contour_length(mask) -> float:
    """Length in px of the outlines of a (H, W) bool mask (OpenCV contours)."""
    import cv2

    contours, _ = cv2.findContours(np.ascontiguousarray(mask, np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return float(sum(cv2.arcLength(c, True) for c in contours))


def _empty() -> VoxelGrid:
    return VoxelGrid(np.zeros((1, 1, 1), bool), np.zeros(3), 1.0)
