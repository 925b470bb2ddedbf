"""Monocular-depth error measures with the definitions of Eigen, Puhrsch and Fergus (NIPS 2014).

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

__all__ = ["depth_metrics", "DEPTH_METRICS"]

DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")


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


def depth_metrics(pred, gt, mask=None, *, median_scaling=False, reduce="mean"):
    """Eigen et al. depth errors of predicted against true depth maps.

    Args:
        pred: (H, W), (B, H, W) or (B, 1, H, W) predicted depth (numpy or torch).
        gt: true depth of the same shape; 0, negative, NaN or inf mean "no ground truth".
        mask: optional bool array of the same shape: the pixels to evaluate (and'ed with validity).
        median_scaling: rescale each prediction by median(gt) / median(pred) over its valid pixels.
        reduce: "mean" averages each measure over the images that have a valid pixel; "none" returns
            (B,) arrays (NaN for images without valid pixels).

    Returns:
        dict with the keys of :data:`DEPTH_METRICS` (floats, or (B,) arrays), plus ``"count"``: the
        number of images that were evaluated.

    Example:
        >>> g = np.full((4, 4), 2.0); p = np.full((4, 4), 2.2)
        >>> round(depth_metrics(p, g)["abs_rel"], 3), depth_metrics(p, g)["delta1"]
        (0.1, 1.0)
        >>> depth_metrics(p, g, median_scaling=True)["abs_rel"]
        0.0
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
    if reduce not in ("mean", "none"):
        raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")
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
    count = int(np.count_nonzero(valid.any(axis=(1, 2))))
    if reduce == "none":
        out["count"] = count
        return out
    res = {k: (float(np.nanmean(a)) if count else float("nan")) for k, a in out.items()}
    res["count"] = count
    return res
