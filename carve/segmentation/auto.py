"""The methods that look at a whole image set or build on the others: auto and grabcut.

:func:`auto` picks, with no per-dataset tuning, chromaticity alone or full CIELAB distance from the
border model (:func:`auto_choice` says which and why); a first pass at low resolution learns the
objects' colours over all views (:func:`object_colours`), so that in views where the object leaves
the frame its colour is not taken for background; then the masks are cleaned and refined with
GrabCut, whose colour models also decide the edge pixels (``edge_threshold``): pixels that mix
object and background colours go to the background, the convention of reference silhouettes (TUM,
Middlebury). On the TUM bunny: mean IoU 0.974 against its ground truth.

:func:`grabcut` refines the masks of any method (auto's first pass by default) or masks given.
"""
from __future__ import annotations

import functools
import logging
from typing import Callable, Sequence

import cv2
import numpy as np

from carve.segmentation.classical import check_grabcut, color, color_mask, grabcut_mask, otsu, threshold
from carve.segmentation.clean import clean_mask, cleaning, disk, maybe_clean
from carve.segmentation.colour import JND, color_distance, downsample, kmeans, otsu_split, weighted_lab
from carve.segmentation.inputs import Images, as_images, as_masks
from carve.segmentation.per_view import map_views

__all__ = ["auto", "auto_choice", "auto_feature", "grabcut", "initial_masks", "object_colours"]

log = logging.getLogger(__name__)

#: the analysis size of auto's first pass and of :func:`auto_choice`: the colour models need no more
ANALYSIS_SIDE = 400


def auto_choice(images: Images, *, min_chroma: float = 4.0, min_chroma_share: float = 0.25,
                eta_margin: float = 0.03, max_side: int = ANALYSIS_SIDE) -> dict:
    """What :func:`auto` picks for these images, and why.

    Two candidate features are measured on every image (downsampled to ``max_side`` px): the full
    CIELAB distance from the border colour model, and its chromatic part alone
    (``lightness_weight=0``, blind to shading and to neutral backgrounds of any brightness).
    Chromaticity is chosen when, in the median over the images,

    - its Otsu threshold is at least ``min_chroma`` CIELAB units (the objects differ from the
      background in colour, clearly more than noise and white balance do),
    - the full distance does not separate clearly more cleanly (Otsu's between-class share of the
      variance, eta, not higher by more than ``eta_margin``), and
    - its cleaned mask holds at least ``min_chroma_share`` of the full distance's cleaned mask (colour
      explains the object, not just a coloured detail of a neutral one);

    otherwise the full CIELAB distance is used. A bright neutral turntable under a coloured object
    (the TUM bunny) or a neutral object on a coloured backdrop takes the first branch; a white mug
    with a blue handle on black, or a grey object on black, the second.

    Args:
        images: B images, (H, W, 3) uint8 or float in [0, 1].
        min_chroma: CIELAB units of chromatic contrast needed to use chromaticity alone.
        min_chroma_share: smallest share of the full-distance mask the chromatic mask must cover.
        eta_margin: how much better the full distance must separate to win (ties go to chroma,
            which ignores shading).
        max_side: the analysis size; the choice does not need full resolution.

    Returns:
        dict with ``method`` ("color"), ``params`` (the keyword arguments auto will use) and the
        medians behind the choice: ``chroma_contrast`` (CIELAB units), ``eta_chroma``, ``eta_full``
        and ``chroma_share``.

    Example:
        >>> import numpy as np
        >>> noise = np.random.default_rng(0).normal(0, 3, (64, 64, 3))
        >>> img = np.clip(128 + noise, 0, 255).astype(np.uint8); img[20:40, 24:44] = (200, 90, 40)
        >>> img[:, :32] //= 2                          # a coloured object, half the scene in shade
        >>> auto_choice([img])["params"]
        {'lightness_weight': 0.0}
        >>> grey = np.zeros((64, 64, 3), np.uint8); grey[20:40, 24:44] = 150   # grey on black
        >>> auto_choice([grey])["params"]
        {'lightness_weight': 1.0}
    """
    rows = []
    for im in as_images(images):
        small = downsample(im, max_side)
        t0, m0, e0 = otsu_split(color_distance(small, lightness_weight=0.0))
        _, m1, e1 = otsu_split(color_distance(small, lightness_weight=1.0))
        c0, c1 = clean_mask(m0), clean_mask(m1)
        rows.append((t0, e0, e1, np.count_nonzero(c0 & c1) / max(np.count_nonzero(c1), 1)))
    t0, e0, e1, share = (float(v) for v in np.median(np.array(rows), axis=0))
    chroma = t0 >= min_chroma and e1 - e0 <= eta_margin and share >= min_chroma_share
    return {"method": "color", "params": {"lightness_weight": 0.0 if chroma else 1.0},
            "chroma_contrast": t0, "eta_chroma": e0, "eta_full": e1, "chroma_share": share}


def auto(images: Images, *, min_chroma: float = 4.0, min_chroma_share: float = 0.25, refine: bool = True,
         iterations: int = 5, band: int | None = None, edge_threshold: float | None = 10.0, clean: bool = True,
         open_radius: int | None = None, keep_fraction: float = 0.2, max_hole: float = 0.02,
         progress: bool | None = None) -> list[np.ndarray]:
    """Silhouettes with no per-dataset tuning: colour distance chosen over the set, then GrabCut.

    Args:
        images: B images, (H, W, 3) uint8 or float in [0, 1].
        min_chroma, min_chroma_share: see :func:`auto_choice`.
        refine: refine with GrabCut (:func:`carve.segmentation.classical.grabcut_mask`).
        iterations, band, edge_threshold: GrabCut's, see :func:`grabcut`.
        clean, open_radius, keep_fraction, max_hole: see :mod:`carve.segmentation.clean`.
        progress: a tqdm bar (default: more than 4 images on a terminal).

    Returns:
        list of B (H, W) bool masks, True on the object.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((64, 64, 3), np.uint8); img[20:40, 24:44] = (200, 90, 40)
        >>> [m] = auto([img])
        >>> int(m.sum())
        400
    """
    if refine:
        check_grabcut(iterations, band, edge_threshold)
    items = as_images(images)
    options = cleaning(clean, open_radius, keep_fraction, max_hole)
    distance = auto_feature(items, min_chroma=min_chroma, min_chroma_share=min_chroma_share, cleaning=options)

    def view(im):
        d = distance(im)
        m = maybe_clean(d > max(otsu_split(d)[0], JND), options)  # as color_mask
        if refine:
            m = grabcut_mask(im, m, iterations=iterations, band=band, edge_threshold=edge_threshold,
                             cleaning=options)
        return m

    return map_views(view, ((im,) for im in items), total=len(items), desc="silhouettes", progress=progress)


def auto_feature(items: list[np.ndarray], *, min_chroma: float = 4.0, min_chroma_share: float = 0.25,
                 cleaning: dict | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Auto's feature for this image set: a function from an image (H, W, 3) uint8 to its CIELAB
    distance (H, W) float32 from the border model.

    The feature (chromaticity or full CIELAB, :func:`auto_choice`) is chosen over the whole set, and
    the objects' colours (:func:`object_colours`) are learned over all views from a first pass at
    :data:`ANALYSIS_SIDE` px (masks cleaned with ``cleaning``), so that a view whose border holds the
    object's colour does not call it background. The function is then applied view by view (in
    parallel: :func:`carve.segmentation.per_view.map_views`).
    """
    choice = auto_choice(items, min_chroma=min_chroma, min_chroma_share=min_chroma_share)
    log.info("silhouettes(method='auto'): chroma contrast %.1f, eta %.3f vs %.3f, share %.2f -> color(%s)",
             choice["chroma_contrast"], choice["eta_chroma"], choice["eta_full"], choice["chroma_share"],
             choice["params"])
    lw = choice["params"]["lightness_weight"]
    small = [downsample(im, ANALYSIS_SIDE) for im in items]
    first = map_views(lambda im: color_mask(im, lightness_weight=lw, cleaning=cleaning), ((im,) for im in small),
                      total=len(small), desc="colour models", progress=False)
    centres = object_colours(small, first, lw)
    return functools.partial(color_distance, lightness_weight=lw, object_centres=centres)


def grabcut(images: Images, *, init: str | Sequence[np.ndarray] = "auto", iterations: int = 5,
            band: int | None = None, edge_threshold: float | None = 10.0, clean: bool = True,
            open_radius: int | None = None, keep_fraction: float = 0.2, max_hole: float = 0.02,
            progress: bool | None = None) -> list[np.ndarray]:
    """OpenCV's GrabCut in a band around initial masks: it moves their boundaries, never invents objects.

    Args:
        images: B images, (H, W, 3) uint8 or float in [0, 1].
        init: the initial masks: a method name ("auto", the default, runs without its own GrabCut;
            "threshold", "otsu", "color", "learned"), or B (H, W) bool masks.
        iterations: GrabCut iterations.
        band: px each side of the initial boundary that GrabCut may move (None: 1% of the image
            diagonal); it must span the initial masks' error.
        edge_threshold: log-likelihood ratio object:background an edge pixel's colour needs to stay
            object (see :func:`carve.segmentation.classical.grabcut_mask`); None: off.
        clean, open_radius, keep_fraction, max_hole: see :mod:`carve.segmentation.clean`; they also
            apply to the initial masks of a method named by ``init`` (but threshold and learned).
        progress: a tqdm bar (default: more than 4 images on a terminal).

    Returns:
        list of B (H, W) bool masks, True on the object.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((64, 64, 3), np.uint8); img[20:40, 24:44] = (200, 90, 40)
        >>> rough = np.zeros((64, 64), bool); rough[18:42, 22:46] = True
        >>> [m] = grabcut([img], init=[rough], band=3)
        >>> int(m.sum())
        400
    """
    check_grabcut(iterations, band, edge_threshold)
    items = as_images(images)
    options = cleaning(clean, open_radius, keep_fraction, max_hole)
    if isinstance(init, str) and init == "grabcut":
        raise ValueError("init must be a method name other than 'grabcut' (auto, threshold, otsu, color, learned) "
                         "or a list of masks, got 'grabcut'")
    params = {}
    if isinstance(init, str) and init != "learned":
        params = {"open_radius": open_radius, "keep_fraction": keep_fraction, "max_hole": max_hole}
        if init != "threshold":  # its recipe is its own cleaning
            params["clean"] = clean
        if init == "auto":  # auto's own GrabCut is the step this one replaces
            params["refine"] = False
    masks = initial_masks(items, init, progress=progress, **params)
    return map_views(lambda im, m: grabcut_mask(im, m, iterations=iterations, band=band, edge_threshold=edge_threshold,
                                                cleaning=options),
                     zip(items, masks), total=len(items), desc="grabcut", progress=progress)


def initial_masks(items: list[np.ndarray], init, *, progress: bool | None = None, **params) -> list[np.ndarray]:
    """The masks ``init`` holds (B (H, W) bool masks) or names: a single-view method run with ``params``.

    Methods: "auto", "color", "otsu", "threshold", "grabcut", "learned" (torch loads only then).
    """
    if not isinstance(init, str):
        return as_masks(init, items, "init")
    methods = {"auto": auto, "color": color, "otsu": otsu, "threshold": threshold, "grabcut": grabcut}
    if init == "learned":
        from carve.segmentation.network import learned

        methods["learned"] = learned
    if init not in methods:
        raise ValueError(f"init must be a method name (auto, color, otsu, threshold, grabcut, learned) or a list "
                         f"of masks, got {init!r}")
    return methods[init](items, progress=progress, **params)


def object_colours(images: list[np.ndarray], masks: list[np.ndarray], lightness_weight: float,
                   clusters: int = 4, max_samples: int = 200_000) -> np.ndarray | None:
    """Colour clusters (k, 3) of the objects over a whole image set, from first-pass masks.

    Args:
        images: B (H, W, 3) uint8 images; masks: their B (H, W) bool first-pass masks.
        lightness_weight: the weighted CIELAB the clusters are in (see
            :func:`carve.segmentation.colour.weighted_lab`).

    Pooled over all views, the views whose first pass went wrong (an object leaving the frame gets
    its colour into the border model) are outvoted by the others. Pixels are taken well inside the
    masks (2 px in from the edge, whose colours mix with the background; 1 px in thin parts) and
    subsampled on a fixed stride. None when the masks hold too few pixels.
    """
    pools = []
    total = sum(int(m.sum()) for m in masks)
    stride = max(1, total // max_samples)
    for im, m in zip(images, masks):
        m8 = m.astype(np.uint8)
        core = cv2.erode(m8, disk(2))
        # parts too thin for that (legs, spikes) contribute their middles: 1 px in from the edge
        thin = cv2.erode(m8, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))) & ~cv2.dilate(core, disk(3))
        inner = (core | thin) > 0
        if inner.any():
            pools.append(weighted_lab(im, lightness_weight)[inner][::stride])
    if not pools:
        return None
    samples = np.concatenate(pools)
    if len(samples) < clusters * 4:
        return None
    centres, _ = kmeans(samples, clusters)
    return centres
