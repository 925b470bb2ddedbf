"""Classical silhouette methods, one image at a time: threshold, otsu, color, and the GrabCut step.

- :func:`threshold`: the Middlebury recipe for objects on a dark background: grey level at or above
  ``level`` (0.19 of full scale), then dilate ``dilate`` px (10) and erode ``erode`` px (7).
- :func:`otsu`: Otsu's threshold on the grey level; the class that owns most of the image border is
  the background, so bright-on-dark and dark-on-bright both work.
- :func:`color`: distance in CIELAB from a background colour model estimated from the image border
  (:mod:`carve.segmentation.colour`); ``lightness_weight=0`` compares chromaticity only, which
  ignores shading and shadows cast on a neutral background.
- :func:`grabcut_mask`: OpenCV's GrabCut on one image, initialised from a mask in a band around its
  boundary, so it only moves the boundary, never invents a new object. The method
  :func:`carve.segmentation.grabcut` runs it over an image set from any method's masks.

Cleaning: see :mod:`carve.segmentation.clean` (``clean=True`` by default, but for ``threshold``).
"""
from __future__ import annotations

import cv2
import numpy as np

from carve.segmentation.clean import cleaning, disk, maybe_clean
from carve.segmentation.colour import JND, border_pixels, border_width, color_distance, gray, otsu_split
from carve.segmentation.inputs import Images, as_images
from data.progress import progress as progress_bar

__all__ = ["MAX_GRABCUT_ITERATIONS", "threshold", "otsu", "color", "color_mask", "grabcut_mask", "grabcut_labels",
           "check_grabcut"]

#: GrabCut's iterations at most: its energy stops falling within about ten (Rother et al. 2004 report
#: convergence in about 12; OpenCV's samples use 5), so 50 is generous, and it bounds the time a
#: typo such as ``iterations=10**7`` could cost (minutes per image)
MAX_GRABCUT_ITERATIONS = 50


def check_grabcut(iterations, band=None, edge_threshold=None, *, name: str = "iterations") -> None:
    """ValueError unless ``iterations`` is an integer in [1, MAX_GRABCUT_ITERATIONS], ``band`` None or an
    integer >= 0 and ``edge_threshold`` None or finite; ``name`` is the caller's name for iterations."""
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or \
            not 1 <= iterations <= MAX_GRABCUT_ITERATIONS:
        raise ValueError(f"{name} must be an integer in [1, {MAX_GRABCUT_ITERATIONS}] (GrabCut converges within "
                         f"about ten), got {iterations!r}")
    if band is not None and (isinstance(band, bool) or not isinstance(band, (int, np.integer)) or band < 0):
        raise ValueError(f"band must be None or an integer >= 0 pixels, got {band!r}")
    if edge_threshold is not None and not (isinstance(edge_threshold, (int, float, np.number))
                                           and np.isfinite(edge_threshold)):
        raise ValueError(f"edge_threshold must be None or a finite log-likelihood ratio, got {edge_threshold!r}")


def threshold(images: Images, *, level: float = 0.19, dilate: int = 10, erode: int = 7, clean: bool = False,
              open_radius: int | None = None, keep_fraction: float = 0.2, max_hole: float = 0.02,
              progress: bool | None = None) -> list[np.ndarray]:
    """Grey level at or above ``level``, dilated ``dilate`` px, eroded ``erode`` px (the Middlebury recipe).

    Args:
        images: B images, (H, W, 3) uint8 or float in [0, 1] (see :func:`data.images.rgb_images`).
        level: fraction of full scale in (0, 1).
        dilate, erode: disk radii in px, >= 0 (the recipe is for 640 px images).
        clean, open_radius, keep_fraction, max_hole: see :mod:`carve.segmentation.clean` (off by
            default: the recipe is its own cleaning).
        progress: a tqdm bar (default: more than 4 images on a terminal).

    Returns:
        list of B (H, W) bool masks, True on the object.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((64, 64, 3), np.uint8); img[20:40, 24:44] = 200
        >>> [m] = threshold([img], dilate=0, erode=0)
        >>> int(m.sum())
        400
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be a fraction of full scale in (0, 1), got {level}")
    if dilate < 0 or erode < 0:
        raise ValueError(f"dilate and erode must be >= 0 pixels, got {dilate} and {erode}")
    items = as_images(images)
    options = cleaning(clean, open_radius, keep_fraction, max_hole)
    out = []
    for im in progress_bar(items, desc="threshold", enabled=progress):
        m = (gray(im) >= level * 255).astype(np.uint8)
        if dilate:
            m = cv2.dilate(m, disk(dilate, m.shape))
        if erode:
            m = cv2.erode(m, disk(erode, m.shape), borderType=cv2.BORDER_CONSTANT, borderValue=1)
        out.append(maybe_clean(m > 0, options))
    return out


def otsu(images: Images, *, clean: bool = True, open_radius: int | None = None, keep_fraction: float = 0.2,
         max_hole: float = 0.02, progress: bool | None = None) -> list[np.ndarray]:
    """Otsu's threshold on the grey level; the class that owns most of the image border is background.

    Args:
        images: B images, (H, W, 3) uint8 or float in [0, 1].
        clean, open_radius, keep_fraction, max_hole: see :mod:`carve.segmentation.clean`.
        progress: a tqdm bar (default: more than 4 images on a terminal).

    Returns:
        list of B (H, W) bool masks, True on the object.

    Example:
        >>> import numpy as np
        >>> img = np.full((64, 64, 3), 230, np.uint8); img[20:40, 24:44] = (200, 90, 40)
        >>> [m] = otsu([img])
        >>> int(m.sum()), bool(m[30, 30])
        (400, True)
    """
    items = as_images(images)
    options = cleaning(clean, open_radius, keep_fraction, max_hole)
    out = []
    for im in progress_bar(items, desc="otsu", enabled=progress):
        g = gray(im)
        t, _ = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        m = g > t
        if border_pixels(m, border_width(m.shape, 0.03)).mean() > 0.5:
            m = ~m
        out.append(maybe_clean(m, options))
    return out


def color(images: Images, *, lightness_weight: float = 1.0, clusters: int = 4, border: float = 0.03,
          min_share: float = 0.05, threshold: float | None = None, clean: bool = True,
          open_radius: int | None = None, keep_fraction: float = 0.2, max_hole: float = 0.02,
          progress: bool | None = None) -> list[np.ndarray]:
    """CIELAB distance from a background colour model of the image border, thresholded.

    Args:
        images: B images, (H, W, 3) uint8 or float in [0, 1].
        lightness_weight: weight of the lightness axis, >= 0 (0: chromaticity only).
        clusters: k-means clusters of the border colours.
        border: width of the border frame, a fraction of the short side in (0, 0.5).
        min_share: clusters holding less of the frame than this are not background.
        threshold: CIELAB units; None for Otsu's threshold of the distances (never below 2.3, one
            just-noticeable difference, so an empty scene stays empty).
        clean, open_radius, keep_fraction, max_hole: see :mod:`carve.segmentation.clean`.
        progress: a tqdm bar (default: more than 4 images on a terminal).

    Returns:
        list of B (H, W) bool masks, True on the object.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((64, 64, 3), np.uint8); img[20:40, 24:44] = (200, 90, 40)
        >>> [m] = color([img])
        >>> int(m.sum())
        400
    """
    items = as_images(images)
    options = cleaning(clean, open_radius, keep_fraction, max_hole)
    return [color_mask(im, lightness_weight=lightness_weight, clusters=clusters, border=border,
                       min_share=min_share, threshold=threshold, cleaning=options)
            for im in progress_bar(items, desc="color", enabled=progress)]


def color_mask(image: np.ndarray, *, lightness_weight: float = 1.0, clusters: int = 4, border: float = 0.03,
               min_share: float = 0.05, threshold: float | None = None, object_centres: np.ndarray | None = None,
               cleaning: dict | None = None) -> np.ndarray:
    """:func:`color` on one (H, W, 3) uint8 image -> (H, W) bool.

    ``object_centres`` (k, 3): colours known to be the objects' (see
    :func:`carve.segmentation.colour.border_model`); ``cleaning``: options from
    :func:`carve.segmentation.clean.cleaning`, None for none.
    """
    d = color_distance(image, lightness_weight, clusters, border, min_share, object_centres)
    if threshold is None:
        t, _, _ = otsu_split(d)
        t = max(t, JND)
    else:
        t = float(threshold)
    return maybe_clean(d > t, cleaning)


def gmm_loglik(model: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Log-likelihood of colours x (N, 3) under an OpenCV GrabCut GMM model (1, 65) of 5 components -> (N,)."""
    m = np.asarray(model, np.float64).ravel()
    k = 5
    weights, means, covs = m[:k], m[k:4 * k].reshape(k, 3), m[4 * k:].reshape(k, 3, 3)
    terms = []
    for w, mu, cov in zip(weights, means, covs):
        if w <= 0:
            continue
        cov = cov + np.eye(3) * 1e-3
        d = x - mu
        maha = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
        terms.append(np.log(w) - 0.5 * maha - 0.5 * np.log(np.linalg.det(cov)) - 1.5 * np.log(2 * np.pi))
    if not terms:
        return np.full(len(x), -np.inf)
    return np.logaddexp.reduce(np.stack(terms), axis=0)


def grabcut_mask(image: np.ndarray, mask: np.ndarray, *, iterations: int = 5, band: int | None = None,
                 edge_threshold: float | None = 10.0, cleaning: dict | None = None) -> np.ndarray:
    """Refine ``mask`` (H, W) bool of ``image`` (H, W, 3) uint8 with GrabCut in a band around its boundary.

    The band is ``band`` px wide on each side (None: 1% of the image diagonal, at least 2 px).
    Then the pixels on the result's boundary (those with a background 4-neighbour) stay object only
    if GrabCut's own colour models find their colour at least ``exp(edge_threshold)`` times likelier
    as object than as background: edge pixels that mix object and background colours go to the
    background, the convention of reference silhouettes (TUM, Middlebury) where only pixels wholly
    on the object are object. None keeps GrabCut's boundary as it is. Returns (H, W) bool.
    """
    check_grabcut(iterations, band, edge_threshold)
    if not mask.any():
        return mask.copy()
    h, w = mask.shape
    r = int(band) if band is not None else max(2, int(round(0.01 * np.hypot(h, w))))
    m = mask.astype(np.uint8)
    labels = np.full(m.shape, cv2.GC_BGD, np.uint8)
    labels[cv2.dilate(m, disk(r, m.shape)) > 0] = cv2.GC_PR_BGD
    labels[m > 0] = cv2.GC_PR_FGD
    labels[cv2.erode(m, disk(r, m.shape), borderType=cv2.BORDER_CONSTANT, borderValue=1) > 0] = cv2.GC_FGD
    out = grabcut_labels(image, labels, iterations=iterations, edge_threshold=edge_threshold, cleaning=cleaning,
                         pad=3 * r)
    return mask.copy() if out is None else out


def grabcut_labels(image: np.ndarray, labels: np.ndarray, *, iterations: int = 5,
                   edge_threshold: float | None = 10.0, cleaning: dict | None = None,
                   pad: int = 8, prior: np.ndarray | None = None) -> np.ndarray | None:
    """GrabCut of ``image`` (H, W, 3) uint8 from a trimap ``labels`` (H, W) of OpenCV's GC_* values.

    ``GC_BGD``/``GC_FGD`` pixels are fixed, ``GC_PR_BGD``/``GC_PR_FGD`` are decided by the graph cut
    with colour models (5-component GMMs in CIELAB) learned from all of them. The work is cropped to
    the box of the non-``GC_BGD`` pixels grown by ``pad`` px (sure background there trains the
    background model). Then, as in :func:`grabcut_mask`, edge pixels keep object only with an
    ``edge_threshold`` log-likelihood margin, and the result is cleaned with ``cleaning``. Last, the
    pixels of ``prior`` ((H, W) bool, e.g. what other views say is object) that the cut gave to the
    background are object after all unless the colour models find them likelier background: where the
    colours cannot tell, the graph cut's smoothness alone decided them.

    Returns:
        (H, W) bool, or None when there is nothing to learn one of the two colour models from (or
        OpenCV finds the models degenerate): the caller keeps what it had.
    """
    check_grabcut(iterations, None, edge_threshold)
    h, w = labels.shape
    if prior is not None and (np.shape(prior) != (h, w) or np.asarray(prior).dtype != np.bool_):
        raise ValueError(f"prior must be an (H, W) = ({h}, {w}) bool mask like labels, got "
                         f"{np.asarray(prior).dtype} of shape {np.shape(prior)}")
    ys, xs = np.nonzero(labels != cv2.GC_BGD)
    if len(ys) == 0:
        return None
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, h)
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, w)
    gc = np.ascontiguousarray(labels[y0:y1, x0:x1])
    kinds = np.bincount(gc.ravel(), minlength=4)
    if kinds[cv2.GC_BGD] + kinds[cv2.GC_PR_BGD] == 0 or kinds[cv2.GC_FGD] + kinds[cv2.GC_PR_FGD] == 0:
        return None
    crop = np.ascontiguousarray(cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2LAB))
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    # GrabCut starts its colour models with k-means, seeded from OpenCV's per-thread generator: a fixed
    # seed makes the mask the same on any thread and after any earlier call (views are cut in parallel)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(crop, gc, None, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour models (e.g. a flat image)
        return None
    seg = maybe_clean((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), cleaning)
    if edge_threshold is not None and seg.any():
        _drop_mixed_edges(seg, crop, fgd, bgd, float(edge_threshold))
    if prior is not None:
        ask = prior[y0:y1, x0:x1] & ~seg
        if ask.any():
            colours = crop[ask].astype(np.float64)
            ratio = gmm_loglik(fgd, colours) - gmm_loglik(bgd, colours)
            seg[ask] = ratio >= 0
    out = np.zeros((h, w), bool)
    out[y0:y1, x0:x1] = seg
    return out


def _drop_mixed_edges(seg: np.ndarray, crop: np.ndarray, fgd: np.ndarray, bgd: np.ndarray,
                      edge_threshold: float) -> None:
    """In place: edge pixels of ``seg`` whose colour is not exp(edge_threshold) times likelier object go."""
    inner = cv2.erode(seg.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)),
                      borderType=cv2.BORDER_CONSTANT, borderValue=1) > 0
    # only pixels beside the interior are tested: a part one or two pixels thin has no interior
    # and is kept (testing it would erase thin legs and spikes whole)
    edge = seg & ~inner & (cv2.dilate(inner.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    colours = crop[edge].astype(np.float64)
    ratio = gmm_loglik(fgd, colours) - gmm_loglik(bgd, colours)
    seg[edge] = ratio > edge_threshold
