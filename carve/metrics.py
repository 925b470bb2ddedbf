"""Quality measures for reconstruction inputs and outputs.

Masks: :func:`mask_iou` and :func:`mask_precision_recall` compare boolean masks of the same shape:
one array of any number of dimensions (an (H, W) silhouette, an (nx, ny, nz) voxel occupancy, or a
(B, H, W) stack, all pooled as one mask), or lists of masks compared pair by pair and then averaged
(``reduce="mean"``), returned per pair (``"none"``) or pooled (``"total"``).

Convention: a mask is a boolean array. A uint8 mask holding 0/255 or 0/1 is refused with a message
that says how to convert it (``mask > 0`` or ``mask == 0`` for "0 is the object" files), because
guessing its polarity silently is how a whole evaluation ends up inverted.
"""
from __future__ import annotations

import numpy as np

from carve.depth_metrics import DEPTH_METRICS, depth_metrics

__all__ = ["mask_iou", "mask_precision_recall", "depth_metrics", "DEPTH_METRICS"]


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


def mask_iou(pred, truth, *, reduce="mean"):
    """Intersection over union of boolean masks.

    Args:
        pred: one bool array (any shape: (H, W), (nx, ny, nz), a (B, H, W) stack pooled as one
            mask), or a list of B bool masks (shapes may differ between pairs).
        truth: the same layout and shapes as ``pred``.
        reduce: for lists, "mean" returns the mean of per-mask IoUs, "none" the (B,) array of them,
            "total" the IoU of all pixels pooled. A single array is one mask (reduce is ignored).

    Returns:
        float, or (B,) float64 for ``reduce="none"``. Two empty masks have IoU 1.

    Example:
        >>> import numpy as np
        >>> a = np.zeros((4, 4), bool); a[:2] = True
        >>> b = np.zeros((4, 4), bool); b[:, :2] = True
        >>> round(mask_iou(a, b), 4)
        0.3333
    """
    p, t = _pairs(pred, truth)
    inter = np.array([np.count_nonzero(a & b) for a, b in zip(p, t)], dtype=np.float64)
    union = np.array([np.count_nonzero(a | b) for a, b in zip(p, t)], dtype=np.float64)
    if not isinstance(pred, (list, tuple)):
        return float(inter[0] / union[0]) if union[0] > 0 else 1.0
    if reduce == "total":
        return float(inter.sum() / union.sum()) if union.sum() > 0 else 1.0
    per = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    if reduce == "none":
        return per
    if reduce == "mean":
        return float(per.mean())
    raise ValueError(f"reduce must be 'mean', 'none' or 'total', got {reduce!r}")


def mask_precision_recall(pred, truth, *, reduce="mean"):
    """Precision (share of predicted pixels that are true) and recall (share of true pixels found).

    Args:
        pred, truth: as in :func:`mask_iou`.
        reduce: as in :func:`mask_iou`.

    Returns:
        (precision, recall): floats, or two (B,) arrays for ``reduce="none"``. An empty prediction has
        precision 1; an empty truth has recall 1.
    """
    p, t = _pairs(pred, truth)
    tp = np.array([np.count_nonzero(a & b) for a, b in zip(p, t)], dtype=np.float64)
    npred = np.array([np.count_nonzero(a) for a in p], dtype=np.float64)
    ntrue = np.array([np.count_nonzero(b) for b in t], dtype=np.float64)

    def ratio(num, den):
        return np.where(den > 0, num / np.maximum(den, 1), 1.0)

    if not isinstance(pred, (list, tuple)) or reduce == "total":
        prec = float(ratio(tp.sum(), npred.sum()))
        rec = float(ratio(tp.sum(), ntrue.sum()))
        return prec, rec
    prec, rec = ratio(tp, npred), ratio(tp, ntrue)
    if reduce == "none":
        return prec, rec
    if reduce == "mean":
        return float(prec.mean()), float(rec.mean())
    raise ValueError(f"reduce must be 'mean', 'none' or 'total', got {reduce!r}")
