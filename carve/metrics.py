"""Quality measures for reconstruction inputs and outputs: masks and depth maps.

Masks: :func:`mask_iou` and :func:`mask_precision_recall` compare boolean masks of the same shape:
one array of any number of dimensions (an (H, W) silhouette, an (nx, ny, nz) voxel occupancy, or a
(B, H, W) stack, all pooled as one mask), or lists of masks compared pair by pair and then averaged
(``reduce="mean"``) or pooled (``"total"``); :func:`mask_iou_per_mask` and
:func:`mask_precision_recall_per_mask` return the per-pair values as arrays.

Convention: a mask is a boolean array. A uint8 mask holding 0/255 or 0/1 is refused with a message
that says how to convert it (``mask > 0`` or ``mask == 0`` for "0 is the object" files), because
guessing its polarity silently is how a whole evaluation ends up inverted.

Depth maps: :func:`depth_metrics` and :func:`depth_metrics_per_image`, with the definitions of Eigen, Puhrsch and Fergus (NIPS 2014).

Over the valid pixels of each image (true depth finite and > 0, predicted depth finite and > 0, and
the optional mask), with p the prediction and g the truth:

- ``abs_rel`` = mean |p - g| / g,  ``sq_rel`` = mean (p - g)^2 / g
- ``rmse`` = sqrt(mean (p - g)^2),  ``rmse_log`` = sqrt(mean (log p - log g)^2)
- ``delta1``, ``delta2``, ``delta3`` = share of pixels with max(p / g, g / p) < 1.25, 1.25^2, 1.25^3

Each measure is computed per image and then averaged over images (the usual protocol of the KITTI and
NYU evaluations). ``median_scaling=True`` first multiplies each prediction by
median(g) / median(p), which evaluates depth up to scale (the protocol for scale-ambiguous methods).
"""
from __future__ import annotations

import numpy as np

__all__ = ["mask_iou", "mask_iou_per_mask", "mask_precision_recall", "mask_precision_recall_per_mask",
           "depth_metrics", "depth_metrics_per_image", "DEPTH_METRICS"]

DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")


def _as_masks(name, masks):
    """Return a list of boolean arrays from one mask, a stacked batch, or a list of masks."""
    if isinstance(masks, (list, tuple)):
        items = list(masks)
        if not items:
            raise ValueError(f"{name} must hold at least one mask, got an empty {type(masks).__name__}")
    else:
        items = [masks]
    out = []
    for k, m in enumerate(items):
        if hasattr(m, "detach"):  # torch tensor
            m = m.detach().cpu().numpy()
        m = np.asarray(m)
        if m.dtype != np.bool_:
            where = f"{name}[{k}]" if isinstance(masks, (list, tuple)) else name
            raise TypeError(
                f"{where} must be a boolean mask, got dtype {m.dtype}; convert with `mask > 0` "
                f"(or `mask == 0` where 0 marks the object)")
        out.append(m)
    return out


def _pairs(pred, truth):
    p = _as_masks("pred", pred)
    t = _as_masks("truth", truth)
    if len(p) != len(t):
        raise ValueError(f"pred and truth must hold the same number of masks, got {len(p)} and {len(t)}")
    for k, (a, b) in enumerate(zip(p, t)):
        if a.shape != b.shape:
            raise ValueError(f"pred and truth must have the same shape, got {a.shape} and {b.shape}"
                             + (f" at index {k}" if len(p) > 1 else ""))
    return p, t


def mask_iou(pred, truth, *, reduce="mean") -> float:
    """Intersection over union of boolean masks.

    Args:
        pred: one bool array (any shape: (H, W), (nx, ny, nz), a (B, H, W) stack pooled as one
            mask), or a list of B bool masks (shapes may differ between pairs).
        truth: the same layout and shapes as ``pred``.
        reduce: for lists, "mean" returns the mean of per-mask IoUs, "total" the IoU of all pixels
            pooled (:func:`mask_iou_per_mask` gives the per-mask values). A single array is one mask.

    Returns:
        float. Two empty masks have IoU 1.

    Example:
        >>> import numpy as np
        >>> a = np.zeros((4, 4), bool); a[:2] = True
        >>> b = np.zeros((4, 4), bool); b[:, :2] = True
        >>> round(mask_iou(a, b), 4)
        0.3333
    """
    _check_reduce(reduce, "mask_iou_per_mask")
    inter, union = _intersections_unions(pred, truth)
    if not isinstance(pred, (list, tuple)) or reduce == "total":
        return float(_ratio(inter.sum(), union.sum()))
    return float(_ratio(inter, union).mean())


def mask_iou_per_mask(pred, truth) -> np.ndarray:
    """The IoU of each pair of masks: (B,) float64 for lists of B masks (see :func:`mask_iou`).

    Example:
        >>> import numpy as np
        >>> a = np.ones((2, 2), bool)
        >>> mask_iou_per_mask([a, a], [a, ~a]).tolist()
        [1.0, 0.0]
    """
    inter, union = _intersections_unions(pred, truth)
    return _ratio(inter, union)


def _check_reduce(reduce, per_mask):
    if reduce == "none":
        raise ValueError(f"reduce must be 'mean' or 'total', got 'none'; {per_mask}() returns the per-mask values")
    if reduce not in ("mean", "total"):
        raise ValueError(f"reduce must be 'mean' or 'total', got {reduce!r}")


def _ratio(num, den):
    """num / den, with 1 where den is 0 (nothing predicted and nothing true is a perfect score)."""
    return np.where(den > 0, num / np.maximum(den, 1), 1.0)


def _intersections_unions(pred, truth):
    p, t = _pairs(pred, truth)
    inter = np.array([np.count_nonzero(a & b) for a, b in zip(p, t)], dtype=np.float64)
    union = np.array([np.count_nonzero(a | b) for a, b in zip(p, t)], dtype=np.float64)
    return inter, union


def mask_precision_recall(pred, truth, *, reduce="mean") -> tuple[float, float]:
    """Precision (share of predicted pixels that are true) and recall (share of true pixels found).

    Args:
        pred, truth: as in :func:`mask_iou`.
        reduce: as in :func:`mask_iou` (:func:`mask_precision_recall_per_mask` gives per-mask values).

    Returns:
        (precision, recall), floats. An empty prediction has precision 1; an empty truth has recall 1.
    """
    _check_reduce(reduce, "mask_precision_recall_per_mask")
    tp, npred, ntrue = _true_positives(pred, truth)
    if not isinstance(pred, (list, tuple)) or reduce == "total":
        return float(_ratio(tp.sum(), npred.sum())), float(_ratio(tp.sum(), ntrue.sum()))
    return float(_ratio(tp, npred).mean()), float(_ratio(tp, ntrue).mean())


def mask_precision_recall_per_mask(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of each pair of masks: two (B,) float64 arrays (see :func:`mask_precision_recall`)."""
    tp, npred, ntrue = _true_positives(pred, truth)
    return _ratio(tp, npred), _ratio(tp, ntrue)


def _true_positives(pred, truth):
    p, t = _pairs(pred, truth)
    tp = np.array([np.count_nonzero(a & b) for a, b in zip(p, t)], dtype=np.float64)
    npred = np.array([np.count_nonzero(a) for a in p], dtype=np.float64)
    ntrue = np.array([np.count_nonzero(b) for b in t], dtype=np.float64)
    return tp, npred, ntrue


# ---------------------------------------------------------------------------------------- depth
def _as_maps(name, x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if isinstance(x, (list, tuple)):
        raise TypeError(f"{name} must be an array of shape (H, W) or (B, H, W), got a {type(x).__name__}; "
                        f"stack equal-size maps with np.stack or evaluate each image separately")
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (H, W), (B, H, W) or (B, 1, H, W), got {x.shape}")
    return x


def depth_metrics(pred, gt, mask=None, *, median_scaling=False) -> dict:
    """Eigen et al. depth errors of predicted against true depth maps.

    Args:
        pred: (H, W), (B, H, W) or (B, 1, H, W) predicted depth (numpy or torch).
        gt: true depth of the same shape; 0, negative, NaN or inf mean "no ground truth".
        mask: optional bool array of the same shape: the pixels to evaluate (and'ed with validity).
        median_scaling: rescale each prediction by median(gt) / median(pred) over its valid pixels.

    Returns:
        dict with the keys of :data:`DEPTH_METRICS`, each averaged over the images that have a valid
        pixel (floats; :func:`depth_metrics_per_image` gives per-image arrays), plus ``"count"``: the
        number of images that were evaluated.

    Example:
        >>> import numpy as np
        >>> g = np.full((4, 4), 2.0); p = np.full((4, 4), 2.2)
        >>> round(depth_metrics(p, g)["abs_rel"], 3), depth_metrics(p, g)["delta1"]
        (0.1, 1.0)
        >>> depth_metrics(p, g, median_scaling=True)["abs_rel"]
        0.0
    """
    per = depth_metrics_per_image(pred, gt, mask, median_scaling=median_scaling)
    count = per.pop("count")
    res = {k: (float(np.nanmean(a)) if count else float("nan")) for k, a in per.items()}
    res["count"] = count
    return res


def depth_metrics_per_image(pred, gt, mask=None, *, median_scaling=False) -> dict:
    """The measures of :func:`depth_metrics` for each image: (B,) float64 arrays, NaN for an image
    without valid pixels, plus ``"count"``, the number of images that have one.

    Example:
        >>> import numpy as np
        >>> g = np.full((2, 4, 4), 2.0); p = np.full((2, 4, 4), 2.2); p[1] = 2.0
        >>> depth_metrics_per_image(p, g)["abs_rel"].round(3).tolist()
        [0.1, 0.0]
    """
    p = _as_maps("pred", pred).astype(np.float64)
    g = _as_maps("gt", gt).astype(np.float64)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    valid = np.isfinite(g) & (g > 0) & np.isfinite(p) & (p > 0)
    if mask is not None:
        m = _as_maps("mask", mask)
        if m.dtype != np.bool_:
            raise TypeError(f"mask must be a boolean array, got dtype {m.dtype}; convert with `mask > 0`")
        if m.shape != g.shape:
            raise ValueError(f"mask must have the shape of gt {g.shape}, got {m.shape}")
        valid &= m
    out = {k: np.full(len(p), np.nan) for k in DEPTH_METRICS}
    for i in range(len(p)):
        v = valid[i]
        if not v.any():
            continue
        pi, gi = p[i][v], g[i][v]
        if median_scaling:
            pi = pi * (np.median(gi) / np.median(pi))
        diff = pi - gi
        ratio = np.maximum(pi / gi, gi / pi)
        out["abs_rel"][i] = np.mean(np.abs(diff) / gi)
        out["sq_rel"][i] = np.mean(diff * diff / gi)
        out["rmse"][i] = np.sqrt(np.mean(diff * diff))
        out["rmse_log"][i] = np.sqrt(np.mean((np.log(pi) - np.log(gi)) ** 2))
        for k in (1, 2, 3):
            out[f"delta{k}"][i] = np.mean(ratio < 1.25 ** k)
    out["count"] = int(np.count_nonzero(valid.any(axis=(1, 2))))
    return out
