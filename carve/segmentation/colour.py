"""Colour features of images: CIELAB, the background colour model of the image frame, Otsu splits.

The background model is a few k-means clusters of the colours in a frame along the image border
(``border``: its width, a fraction of the short side); clusters holding under ``min_share`` of the
frame (an object that leaves the frame, a highlight) are not background. A pixel's distance from
the model is its CIELAB distance to the nearest cluster, the lightness axis weighted by
``lightness_weight`` (0 compares chromaticity only, blind to shading and to shadows on a neutral
background).
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["JND", "lab", "weighted_lab", "gray", "downsample", "border_width", "border_pixels", "otsu_split",
           "kmeans", "nearest", "border_model", "color_distance"]

#: one just-noticeable difference in CIELAB: no colour-distance threshold goes below it, so an empty
#: scene stays empty
JND = 2.3


def lab(image: np.ndarray) -> np.ndarray:
    """CIELAB of an (H, W, 3) uint8 RGB image: (H, W, 3) float32, L in [0, 100], a and b in about [-128, 127]."""
    return cv2.cvtColor(image.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2LAB)


def weighted_lab(image: np.ndarray, lightness_weight: float) -> np.ndarray:
    """CIELAB of an (H, W, 3) uint8 image with L scaled by ``lightness_weight``: (H, W, 3) float32."""
    if lightness_weight < 0:
        raise ValueError(f"lightness_weight must be >= 0, got {lightness_weight}")
    return lab(image) * np.array([lightness_weight, 1.0, 1.0], np.float32)


def gray(image: np.ndarray) -> np.ndarray:
    """Grey level of an (H, W, 3) uint8 RGB image: (H, W) uint8."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def downsample(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` (H, W[, C]) shrunk (area) so that its longer side is at most ``max_side``."""
    s = max_side / max(image.shape[:2])
    return cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else image


def border_width(shape: tuple[int, ...], border: float) -> int:
    """Width in px (at least 2) of the frame that is ``border`` of the short side of ``shape`` (H, W[, C])."""
    return int(max(2, round(border * min(shape[:2]))))


def border_pixels(a: np.ndarray, width: int) -> np.ndarray:
    """Pixels of the frame of ``width`` around ``a`` (H, W[, C]) -> (M[, C]).

    Example:
        >>> import numpy as np
        >>> border_pixels(np.ones((10, 10)), 2).shape
        (64,)
    """
    h, w = a.shape[:2]
    width = min(width, h // 2, w // 2)
    parts = [a[:width], a[h - width:], a[width:h - width, :width], a[width:h - width, w - width:]]
    return np.concatenate([p.reshape((-1,) + a.shape[2:]) for p in parts])


def otsu_split(feature: np.ndarray, scale: float | None = None) -> tuple[float, np.ndarray, float]:
    """Otsu threshold of a float feature map (H, W), on 256 levels up to ``scale`` (None: its 99.5th percentile).

    Returns:
        (threshold in feature units, (H, W) bool mask feature > threshold,
        eta = between-class share of the variance, in [0, 1]).

    Example:
        >>> import numpy as np
        >>> f = np.zeros((8, 8), np.float32); f[:, 4:] = 10
        >>> t, m, eta = otsu_split(f)
        >>> 0 <= t < 10, int(m.sum()), round(eta, 3)
        (True, 32, 1.0)
    """
    f = np.asarray(feature, np.float32)
    hi = float(np.percentile(f, 99.5)) if scale is None else float(scale)
    if not np.isfinite(hi) or hi <= 0:
        return 0.0, np.zeros(f.shape, bool), 0.0
    f8 = np.clip(f * (255.0 / hi), 0, 255).astype(np.uint8)
    t, _ = cv2.threshold(f8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t) * hi / 255.0, f8 > t, _between_class_share(f8, int(t))


def _between_class_share(f8: np.ndarray, t: int) -> float:
    """Between-class variance over total variance of uint8 levels f8 split at > t."""
    hist = np.bincount(f8.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    x = np.arange(256.0)
    k = t + 1
    w0 = p[:k].sum()
    mu = (p * x).sum()
    var = (p * (x - mu) ** 2).sum()
    if var <= 0 or w0 <= 0 or w0 >= 1:
        return 0.0
    mu0 = (p[:k] * x[:k]).sum() / w0
    mu1 = (mu - w0 * mu0) / (1 - w0)
    return float(w0 * (1 - w0) * (mu0 - mu1) ** 2 / var)


def kmeans(samples: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means: (M, 3) float32 -> centres (k', 3), share of samples per centre (k',)."""
    k = int(min(k, len(samples)))
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, labels, centres = cv2.kmeans(np.ascontiguousarray(samples, np.float32), k, None, criteria, 2,
                                    cv2.KMEANS_PP_CENTERS)
    return centres, np.bincount(labels.ravel(), minlength=k) / len(samples)


def nearest(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared distance of x (..., 3) to the nearest of centres (k, 3) -> (...,), and its index (...,).

    Example:
        >>> import numpy as np
        >>> d, i = nearest(np.array([[0.0, 0, 1], [5, 0, 0]]), np.array([[0.0, 0, 0], [4, 0, 0]]))
        >>> d.tolist(), i.tolist()
        ([1.0, 1.0], [0, 1])
    """
    best = idx = None
    for j, c in enumerate(centres):
        diff = x - c
        d = np.einsum("...c,...c->...", diff, diff)
        if best is None:
            best, idx = d, np.zeros(d.shape, np.int32)
        else:
            closer = d < best
            best = np.where(closer, d, best)
            idx[closer] = j
    return best, idx


def border_model(labw: np.ndarray, clusters: int = 4, border: float = 0.03, min_share: float = 0.05,
                 object_centres: np.ndarray | None = None) -> np.ndarray:
    """Background colour clusters (k, 3) from the frame of ``labw`` (H, W, 3), in its weighted CIELAB.

    With ``object_centres`` (k', 3) (colours known to belong to the objects), frame pixels nearer
    to an object colour than to the frame's dominant clusters (``min_share`` or more) are left out
    first, so an object that leaves the frame does not become background; the clusters of the rest
    are kept down to a 1% share (a small patch of true background at the frame stays background).
    """
    if int(clusters) < 1:
        raise ValueError(f"clusters must be a positive integer, got {clusters}")
    if not 0 < border < 0.5:
        raise ValueError(f"border must be a fraction of the image's short side in (0, 0.5), got {border}")
    samples = border_pixels(labw, border_width(labw.shape, border))
    centres, share = kmeans(samples, clusters)
    if object_centres is not None and len(object_centres):
        dominant = centres[share >= min(min_share, share.max())]
        d_bg, _ = nearest(samples, dominant)
        d_obj, _ = nearest(samples, object_centres)
        rest = samples[d_bg <= d_obj]
        if len(rest) >= max(16, 0.2 * len(samples)):
            centres, share = kmeans(rest, clusters)
            min_share = min(min_share, 0.01)
    return centres[share >= min(min_share, share.max())]


def color_distance(image: np.ndarray, lightness_weight: float = 1.0, clusters: int = 4, border: float = 0.03,
                   min_share: float = 0.05, object_centres: np.ndarray | None = None) -> np.ndarray:
    """CIELAB distance of every pixel of ``image`` (H, W, 3) uint8 from the border model: (H, W) float32.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((32, 32, 3), np.uint8); img[8:24, 8:24] = 255
        >>> d = color_distance(img)
        >>> float(d[0, 0]), round(float(d[16, 16]))
        (0.0, 100)
    """
    labw = weighted_lab(image, lightness_weight)
    centres = border_model(labw, clusters, border, min_share, object_centres)
    d2, _ = nearest(labw, centres)
    return np.sqrt(d2)
