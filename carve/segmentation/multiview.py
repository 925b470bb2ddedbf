"""Silhouettes that agree across calibrated views: multi-view co-segmentation.

A view's mask is a guess; the hull of all the views is evidence. :func:`co_segment` alternates, in
the spirit of Campbell et al. 2007 and Djelouah et al. 2013:

1. initial masks from the best single-view method: :func:`carve.segmentation.auto`'s colour
   distance, thresholded at the level the views agree on (:mod:`carve.segmentation.consistent`:
   a matte object in deep shade keeps its dark side), plus lenient masks that say where each view
   is sure of background;
2. a voting hull: a voxel is kept unless more than :data:`VOTE_SHARE` of the views reject it (and
   only where they are sure of background), so a few bad masks cannot cut the object, with the
   calibration slack that :func:`carve.hull.robust_carve` estimates; views whose masks cut the
   object (robust_carve's exclusions, then views that disagree with the last consensus,
   :data:`VOTER_AGREEMENT`) do not vote, but are refined like the others;
3. the hull reprojected into each view gives a trimap (:func:`trimap`): sure object where the view
   and the hull agree, sure background outside both, the rest for the graph cut;
4. each view is refined there by a graph cut with that view's own colour models
   (:func:`carve.segmentation.classical.grabcut_labels`), so exposure and white balance may differ
   between views;
5. carve again, until the masks change by less than :data:`CHANGE` of their pixels.

A support under the object (a turntable, a floor) is consistent across views too, so the loop
alone would keep it: :mod:`carve.segmentation.support` finds it and takes it out of the trimap.

Each view gets a confidence: the IoU of its mask with the final hull's reprojection, the share of
what the view says that all the views together confirm.
"""
from __future__ import annotations

import logging
import time
import warnings

import cv2
import numpy as np

from carve.grid import VoxelGrid
from carve.hull import EmptyHullWarning, carve, outside_per_view, robust_carve
from carve.hull.agreement import SLACK_CAP_PX, VIEW_SHARE
from carve.hull.bounds import UnboundedRegionError
from carve.hull.checks import camera_matrices, check_image_size
from carve.hull.reprojection import reproject
from carve.segmentation.auto import initial_masks
from carve.segmentation.classical import check_grabcut, grabcut_labels
from carve.segmentation.clean import cleaning, disk
from carve.segmentation.inputs import Images, as_images
from carve.segmentation.per_view import map_views

__all__ = ["CoSegmentation", "co_segment", "trimap", "VOTE_SHARE", "VOTER_AGREEMENT", "CHANGE", "MAX_ITERATIONS",
           "BOX_MARGIN", "EDGE_PX"]

log = logging.getLogger(__name__)

#: a voxel survives unless more than this share of the views reject it: the "nearly all views" of
#: the robust hull (the same 10% robust_carve uses: a bad mask is a minority)
VOTE_SHARE = VIEW_SHARE
#: the loop stops when fewer than this share of the masks' pixels change (the issue's 0.1%)
CHANGE = 1e-3
#: at most this many refine-and-carve rounds: on the captures measured the masks settle in two to
#: four, after which GrabCut's own noise keeps the change near 0.1%: more rounds buy nothing
MAX_ITERATIONS = 4
#: the carving box is the first robust hull's box grown by this share of its size per side: room
#: for what refinement adds back (holes filled, parts a bad view had cut), and a fixed box keeps
#: the later carves cheap (no automatic bounds) and comparable
BOX_MARGIN = 0.15
#: a view votes in the next hull when its mask's IoU with the consensus is at least this share of
#: the median view's: agreeing views differ from the median by a pixel band (a few percent), a mask
#: that misses a chunk of the object (or holds a chunk of something else) by a fifth or more
VOTER_AGREEMENT = 0.8
#: px: edges are uncertain by a pixel or two (blur, sampling, mixed colours), so the graph cut may
#: move the outline of mask and consensus this far out before sure background begins
EDGE_PX = 2


class CoSegmentation(list):
    """The masks of :func:`co_segment`: a list of B (H, W) bool arrays, True on the object, plus

    Attributes:
        confidence: (B,) float in [0, 1], IoU of each mask with the final hull's reprojection.
        hull: the final voting hull (:class:`carve.grid.VoxelGrid`).
        iterations: refine-and-carve rounds run; changes: share of mask pixels each round changed.
        slack: calibration slack (px) used in the hulls; support: what
            :func:`carve.segmentation.support.find_support` found (None when nothing).
        seconds: wall time of the whole call.
        scan: the initial threshold scan (``threshold_scale`` chosen, ``agreement`` per scale), or None.
    """

    def __init__(self, masks, *, confidence, hull, iterations, changes, slack, support, seconds, scan=None):
        super().__init__(masks)
        self.scan = scan
        self.confidence = np.asarray(confidence, np.float64)
        self.hull, self.iterations, self.changes = hull, int(iterations), list(changes)
        self.slack, self.support, self.seconds = float(slack), support, float(seconds)


def co_segment(images: Images, cameras, *, init="auto", init_params: dict | None = None, resolution: int = 128,
               bounds="auto", vote_share: float = VOTE_SHARE, max_iterations: int = MAX_ITERATIONS,
               change: float = CHANGE, max_slack: float = SLACK_CAP_PX, grabcut_iterations: int = 3,
               edge_threshold: float | None = 10.0, support: bool = True, consistent: bool = True,
               progress: bool | None = None) -> CoSegmentation:
    """Object masks estimated jointly from calibrated views: masks -> voting hull -> trimaps -> graph cuts.

    Args:
        images: B images, (H, W, 3) uint8 or float in [0, 1], all of the cameras' size.
        cameras: a :class:`geometry.Camera` of B cameras with width and height.
        init: the initial masks: a single-view method name ("auto", the default, "color", "otsu",
            "threshold", "grabcut", "learned") or B (H, W) bool masks.
        init_params: keyword parameters of that method.
        resolution: voxels along the longest side of the hull's box (at 128 a voxel spans about
            5 px of a 1024x768 view; the trimap allows for that overhang).
        bounds: the box to carve, (lo, hi), or "auto" (found from the initial masks).
        vote_share: share of the views that may reject a voxel the hull still keeps, in [0, 0.5).
        max_iterations: refine-and-carve rounds at most (>= 1); change: stop when fewer than this
            share of the mask pixels change in a round.
        max_slack: cap of the calibration slack in pixels (see :func:`carve.hull.robust_carve`).
        grabcut_iterations: GrabCut iterations per view and round; edge_threshold: see
            :func:`carve.segmentation.grabcut` (None keeps mixed edge pixels).
        support: find a turntable or floor under the object and keep it out of the masks.
        consistent: with ``init="auto"``, threshold auto's colour distance at the level the views
            agree on best (:func:`carve.segmentation.consistent.consistent_masks`), not at each
            view's own Otsu level, and leave auto's GrabCut step to the loop's graph cuts (False:
            run ``auto`` whole, view by view, as the start).
        progress: a tqdm bar over the views of each round (default: more than 4 views on a terminal).

    Returns:
        :class:`CoSegmentation`: the B masks (a list) with ``confidence`` and the loop's record.

    Raises:
        TypeError, ValueError: bad images, cameras or options, named in the message.

    Example:
        >>> import data
        >>> mv = data.synthetic("sphere", views=8, size=(64, 48))
        >>> masks = co_segment(mv.images, mv.cameras, resolution=32)
        >>> len(masks), bool(masks.confidence.min() > 0.8)
        (8, True)
    """
    t0 = time.perf_counter()
    items = as_images(images)
    P, width, height = camera_matrices(cameras)
    if len(P) != len(items):
        raise ValueError(f"cameras must hold one camera per image ({len(items)}), got {len(P)}")
    if width is None:
        raise ValueError("cameras must have width and height set, got a camera with no size")
    shapes = {im.shape[:2] for im in items}
    if len(shapes) > 1:
        raise ValueError(f"images must all have the cameras' size {height}x{width}, got sizes "
                         f"{sorted(f'{w}x{h}' for h, w in shapes)}")
    check_image_size(np.empty((1, *items[0].shape[:2])), "images", width, height)
    _check_options(vote_share, max_iterations, change, grabcut_iterations)
    cams = cameras.numpy()
    masks, scan = _initial(items, cams, init, init_params, consistent, vote_share, progress)
    lenient = scan.pop("lenient") if scan else None
    # the box and the slack from the evidence the hull will be carved from, so the box holds what
    # the lenient masks add back (a part the chosen threshold lost in many views)
    outside = _outside(masks)
    try:
        first, report = robust_carve(np.stack(_evidence(masks, lenient)), cams, resolution, bounds=bounds,
                                     outside=outside, max_slack=max_slack)
    except UnboundedRegionError as err:  # the views, or masks that hold the background too: say which
        share = float(np.mean([m.mean() for m in masks]))
        raise UnboundedRegionError(
            f"{err}; co_segment's initial masks (init={init if isinstance(init, str) else 'given'!r}) hold "
            f"{share:.0%} of each image on average and {outside.count('keep')} of {len(masks)} touch the image "
            "border, where a view bounds nothing: if they hold more than the object, pass masks as init") from err
    slack = report.slack
    if not first.count():
        log.warning("co_segment: the initial masks carve nothing (%s); returning them unrefined",
                    report.diagnosis or "empty hull")
        return CoSegmentation(masks, confidence=np.zeros(len(items)), hull=first, iterations=0, changes=[],
                              slack=slack, support=None, seconds=time.perf_counter() - t0, scan=scan)
    box = _grown_box(first)
    found = None
    voters = np.array([b not in report.excluded for b in range(len(items))])
    options = cleaning(True, None, 0.2, 0.02)  # the cleaning every method applies by default
    changes = []
    hull = first
    last = [None] * len(items)  # each view's trimap of the round before
    for round_ in range(max_iterations):
        hull = _voting_hull(_evidence(masks, lenient), cams, resolution, box, vote_share, slack, voters,
                            _outside(masks))
        if not hull.count():
            break
        consensus = reproject(hull, P, height, width)
        overhang = _overhang_px(hull, cams, slack)
        if support and found is None:
            from carve.segmentation.support import find_support

            found = find_support(hull, cams, consensus, items, masks) or False

        def refine(b):
            m = masks[b]
            drop = found.pixels(b) if found else None
            labels = trimap(m, consensus[b], support=drop, overhang=int(overhang[b]))
            if last[b] is not None and np.count_nonzero(labels != last[b]) <= change * max(np.count_nonzero(m), 1):
                return m  # its graph cut's input has not changed: the view is settled
            last[b] = labels
            # what the hull adds to this view is object unless the view's colours favour background: the
            # other views' evidence stands where this view cannot tell (a dark leg over its own shadow)
            out = grabcut_labels(items[b], labels, iterations=grabcut_iterations, edge_threshold=edge_threshold,
                                 cleaning=options, prior=(labels == cv2.GC_PR_FGD) & ~m)
            return m.copy() if out is None else out

        refined = map_views(refine, ((b,) for b in range(len(items))), total=len(items),
                            desc=f"co-segmentation, round {round_ + 1}", progress=progress)
        moved = sum(int(np.count_nonzero(a ^ b)) for a, b in zip(masks, refined))
        changes.append(moved / max(sum(int(np.count_nonzero(m)) for m in masks), 1))
        masks = refined
        voters = _voters(_agreement(masks, consensus))
        if changes[-1] < change:
            break
    final = _voting_hull(masks, cams, resolution, box, vote_share, slack, voters, _outside(masks)) if changes \
        else hull
    confidence = _agreement(masks, reproject(final, P, height, width)) if final.count() else np.zeros(len(items))
    log.info("co_segment: %d rounds, changes %s, slack %.2f px, support %s", len(changes),
             [f"{c:.4f}" for c in changes], slack, found.kind if found else "none")
    return CoSegmentation(masks, confidence=confidence, hull=final, iterations=len(changes), changes=changes,
                          slack=slack, support=found.summary() if found else None, scan=scan,
                          seconds=time.perf_counter() - t0)


def trimap(mask: np.ndarray, consensus: np.ndarray, support: np.ndarray | None = None,
           overhang: int = 0) -> np.ndarray:
    """GrabCut labels (H, W) uint8 for one view from its mask and the hull's reprojection into it.

    The graph cut decides where the view and the hull disagree, and nowhere else:

    - sure object (``GC_FGD``): where the view's ``mask`` and the ``consensus`` agree, but for a
      one-pixel rim (thin parts, legs and spikes a few pixels wide, keep their middle: a wider
      margin would hand them to the graph cut, whose smoothness erases them);
    - probable object: the rest of the mask within the consensus, and what the consensus adds
      farther than ``overhang`` px from the mask (the hull fills what the view missed: a hole, a
      dark part, the object where it leaves the frame; it stays object unless the view's own
      colours favour background, see :func:`co_segment`);
    - probable background: the consensus within ``overhang`` px outside the mask (the cubes of a
      voxel hull overhang the silhouette by about a voxel: there the mask's edge is the better
      one), what the view alone calls object (a blob no other view confirms: colour decides), and
      :data:`EDGE_PX` px around mask and consensus;
    - sure background: everything else;
    - ``support`` (H, W) bool: pixels of a support under the object; never sure object, and probable
      background unless the view's own colours say otherwise.

    Example:
        >>> m = np.zeros((20, 20), bool); m[4:16, 4:16] = True
        >>> labels = trimap(m, m)
        >>> [int((labels == k).sum()) for k in range(4)]  # BGD, FGD, PR_BGD, PR_FGD
        [152, 100, 104, 44]
    """
    m8 = mask.astype(np.uint8)
    labels = np.full(mask.shape, cv2.GC_BGD, np.uint8)
    labels[cv2.dilate(m8 | consensus.astype(np.uint8), disk(EDGE_PX)) > 0] = cv2.GC_PR_BGD
    near = cv2.dilate(m8, disk(overhang)) > 0 if overhang > 0 else mask
    labels[consensus & (mask | ~near)] = cv2.GC_PR_FGD
    core = cv2.erode((mask & consensus).astype(np.uint8), disk(1), borderType=cv2.BORDER_CONSTANT,
                     borderValue=1) > 0
    labels[core] = cv2.GC_FGD
    if support is not None:
        labels[support & (labels != cv2.GC_BGD)] = cv2.GC_PR_BGD
    return labels


def _initial(items, cams, init, init_params, consistent, vote_share, progress) -> tuple[list[np.ndarray], dict | None]:
    """The initial masks, and the consistency scan's record (None when there was none)."""
    params = dict(init_params or {})
    if params and not isinstance(init, str):
        raise ValueError("init_params must be empty when init holds masks, got "
                         f"{sorted(params)}")
    if not (consistent and isinstance(init, str) and init == "auto"):
        return initial_masks(items, init, progress=progress, **params), None
    import inspect

    from carve.segmentation.auto import auto, auto_feature
    from carve.segmentation.consistent import consistent_masks

    # auto's colour steps; its GrabCut step is what the loop's graph cuts do, with the hull's help
    accepted = ("min_chroma", "min_chroma_share", "clean", "open_radius", "keep_fraction", "max_hole")
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"init_params {unknown} do not apply to co_segment's 'auto' start (it takes {list(accepted)}; "
                        "pass consistent=False to run auto whole)")
    opts = {k: p.default for k, p in inspect.signature(auto).parameters.items() if k in accepted}
    opts.update(params)
    options = cleaning(opts["clean"], opts["open_radius"], opts["keep_fraction"], opts["max_hole"])
    distance = auto_feature(items, min_chroma=opts["min_chroma"], min_chroma_share=opts["min_chroma_share"],
                            cleaning=options)
    distances = map_views(distance, ((im,) for im in items), total=len(items), desc="colour distance",
                          progress=progress)
    masks, lenient, scale, scores = consistent_masks(distances, cams, vote_share=vote_share, cleaning=options)
    return masks, {"threshold_scale": scale, "agreement": scores, "lenient": lenient}


def _check_options(vote_share, max_iterations, change, grabcut_iterations) -> None:
    if not 0 <= vote_share < 0.5:
        raise ValueError(f"vote_share must be a share of the views in [0, 0.5), got {vote_share!r}")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, (int, np.integer)) or max_iterations < 1:
        raise ValueError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
    check_grabcut(grabcut_iterations, name="grabcut_iterations")
    if not 0 <= change < 1:
        raise ValueError(f"change must be a share of the mask pixels in [0, 1), got {change!r}")


def _outside(masks) -> list[str]:
    """"keep" for views whose mask leaves the frame (carving them there would cut the object)."""
    return outside_per_view(np.stack(masks))


def _evidence(masks, lenient):
    """What the hull is carved from: the masks, with the lenient masks' pixels (where a view is not
    sure of background) when the initial scan gave them."""
    return masks if lenient is None else [m | w for m, w in zip(masks, lenient)]


def _voting_hull(masks, cams, resolution, box, share, slack, voters, outside) -> VoxelGrid:
    """The hull a ``share`` of the ``voters`` (B,) bool may veto, from the voters whose masks hold some
    object and some background (an empty or full mask says nothing about where the object is);
    ``outside``: B "carve"/"keep"."""
    stack = np.stack(masks)
    area = np.count_nonzero(stack, axis=(1, 2))
    usable = np.flatnonzero((area > 0) & (area < stack[0].size) & voters)
    if len(usable) == 0:
        return _nothing(box)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyHullWarning)
        return carve(stack[usable], cams[usable], resolution, bounds=box, tolerance=int(share * len(usable)),
                     slack=slack, outside=[outside[b] for b in usable])


def _nothing(box) -> VoxelGrid:
    lo, hi = box
    return VoxelGrid(np.zeros((1, 1, 1), bool), lo=lo, voxel_size=float(np.max(hi - lo)))


def _grown_box(grid: VoxelGrid) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(grid.occupancy)
    lo = grid.lo + idx.min(0) * grid.voxel_size
    hi = grid.lo + (idx.max(0) + 1) * grid.voxel_size
    pad = BOX_MARGIN * (hi - lo).max()
    return lo - pad, hi + pad


def _voters(agreement: np.ndarray) -> np.ndarray:
    """(B,) bool: the views whose masks agree with the consensus well enough to vote next round."""
    return agreement >= VOTER_AGREEMENT * np.median(agreement)


def _overhang_px(hull: VoxelGrid, cams, slack: float) -> np.ndarray:
    """(B,) px: how far the hull's reprojection may overhang a silhouette in each view: a voxel's
    size seen from the camera at the hull's centre, plus the slack."""
    centre = hull.points().mean(0)
    depth = np.einsum("bij,j->bi", cams.R, centre)[:, 2] + cams.T[:, 2]
    focal = 0.5 * (cams.K[:, 0, 0] + cams.K[:, 1, 1])
    return np.ceil(focal * hull.voxel_size / np.maximum(depth, 1e-9) + slack).astype(int)


def _agreement(masks, reprojection) -> np.ndarray:
    out = []
    for m, r in zip(masks, reprojection):
        union = np.count_nonzero(m | r)
        out.append(np.count_nonzero(m & r) / union if union else 0.0)
    return np.array(out)
