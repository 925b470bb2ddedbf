"""Training losses of the learned modules: depth (scale-invariant log + gradient matching), masks.

Every loss is a mean over images of a per-image value, so that N processes with local batches of b
average (DistributedDataParallel) to exactly the loss of one process with a batch of N b.

Shapes: predictions and targets are (B, H, W) or (B, 1, H, W); ``valid`` is a (B, H, W) bool mask of
the pixels with a usable target (padding and pixels without depth are False).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["silog_loss", "gradient_matching_loss", "depth_loss", "mask_loss"]


def _flat(name, t):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(t).__name__}")
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W) or (B, 1, H, W), got {tuple(t.shape)}")
    return t


def _check(log_pred, log_gt, valid):
    log_pred = _flat("log_pred", log_pred)
    log_gt = _flat("log_gt", log_gt)
    if valid is None:
        valid = torch.isfinite(log_gt)
    valid = _flat("valid", valid)
    if log_pred.shape != log_gt.shape or valid.shape != log_gt.shape:
        raise ValueError(f"log_pred, log_gt and valid must have the same shape, got {tuple(log_pred.shape)}, "
                         f"{tuple(log_gt.shape)} and {tuple(valid.shape)}")
    if valid.dtype != torch.bool:
        raise TypeError(f"valid must be a bool tensor, got dtype {valid.dtype}")
    return log_pred, log_gt, valid


def silog_loss(log_pred, log_gt, valid=None, *, lam=0.5):
    """Scale-invariant log loss of Eigen, Puhrsch and Fergus (NIPS 2014), eq. 4, per image, averaged.

    ``L = 1/n sum d_i^2 - lam / n^2 (sum d_i)^2`` with ``d = log_pred - log_gt`` over the n valid
    pixels of an image. ``lam = 1`` is fully scale invariant, ``lam = 0`` is the plain log-MSE; Eigen et
    al. train with 0.5, which keeps some pressure on the absolute scale.

    Args:
        log_pred, log_gt: (B, H, W) natural logs of predicted and true depth.
        valid: (B, H, W) bool; default: where ``log_gt`` is finite. Images with no valid pixel add 0.
    Returns:
        scalar tensor.
    """
    log_pred, log_gt, valid = _check(log_pred, log_gt, valid)
    v = valid.to(log_pred.dtype)
    d = torch.where(valid, log_pred - torch.where(valid, log_gt, torch.zeros_like(log_gt)),
                    torch.zeros_like(log_pred))
    n = v.sum(dim=(1, 2))
    safe = n.clamp_min(1)
    per = (d * d).sum(dim=(1, 2)) / safe - lam * (d.sum(dim=(1, 2)) / safe) ** 2
    return per.mean()


def gradient_matching_loss(log_pred, log_gt, valid=None, *, scales=4):
    """Multi-scale gradient matching on log depth (Li and Snavely 2018; Ranftl et al. 2020), per image.

    At each scale k (pixels subsampled by 2^k) the L1 norm of the x and y finite differences of
    ``R = log_pred - log_gt`` is averaged over pixel pairs that are both valid; the loss is the mean
    over scales. Being a loss on differences of R it ignores a global scale and rewards sharp,
    correctly placed depth edges.

    Args:
        log_pred, log_gt: (B, H, W) log depths.
        valid: (B, H, W) bool; default: where ``log_gt`` is finite.
        scales: number of scales (>= 1).
    Returns:
        scalar tensor.
    """
    log_pred, log_gt, valid = _check(log_pred, log_gt, valid)
    if not isinstance(scales, int) or scales < 1:
        raise ValueError(f"scales must be a positive int, got {scales!r}")
    r = torch.where(valid, log_pred - torch.where(valid, log_gt, torch.zeros_like(log_gt)),
                    torch.zeros_like(log_pred))
    total = log_pred.new_zeros(())
    used = 0
    for k in range(scales):
        step = 2 ** k
        rk, vk = r[:, ::step, ::step], valid[:, ::step, ::step]
        if rk.shape[1] < 2 and rk.shape[2] < 2:
            break
        vx = vk[:, :, 1:] & vk[:, :, :-1]
        vy = vk[:, 1:, :] & vk[:, :-1, :]
        gx = (rk[:, :, 1:] - rk[:, :, :-1]).abs() * vx
        gy = (rk[:, 1:, :] - rk[:, :-1, :]).abs() * vy
        n = vx.sum(dim=(1, 2)) + vy.sum(dim=(1, 2))
        per = (gx.sum(dim=(1, 2)) + gy.sum(dim=(1, 2))) / n.clamp_min(1)
        total = total + per.mean()
        used += 1
    return total / max(used, 1)


def depth_loss(log_pred, log_gt, valid=None, *, lam=0.5, grad_weight=0.5, scales=4):
    """The depth training loss: ``silog_loss + grad_weight * gradient_matching_loss``.

    Returns:
        (loss, parts): the scalar loss and a dict of detached floats {"silog", "grad"}.
    """
    a = silog_loss(log_pred, log_gt, valid, lam=lam)
    b = gradient_matching_loss(log_pred, log_gt, valid, scales=scales) if grad_weight else a.new_zeros(())
    return a + grad_weight * b, {"silog": float(a.detach()), "grad": float(b.detach())}


def mask_loss(logits, target, valid=None, *, dice_weight=1.0):
    """Foreground-mask loss: per-image mean binary cross-entropy plus soft Dice, averaged over images.

    Args:
        logits: (B, H, W) raw scores (foreground > 0).
        target: (B, H, W) bool or {0, 1} float.
        valid: (B, H, W) bool of the pixels that count (default: all).
    Returns:
        (loss, parts): scalar loss and {"bce", "dice"} floats.
    """
    logits = _flat("logits", logits)
    target = _flat("target", target).to(logits.dtype)
    if target.shape != logits.shape:
        raise ValueError(f"target must have the shape of logits {tuple(logits.shape)}, got {tuple(target.shape)}")
    v = torch.ones_like(logits) if valid is None else _flat("valid", valid).to(logits.dtype)
    n = v.sum(dim=(1, 2)).clamp_min(1)
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * v).sum(dim=(1, 2)) / n
    p = torch.sigmoid(logits) * v
    inter = (p * target).sum(dim=(1, 2))
    dice = 1 - (2 * inter + 1) / (p.sum(dim=(1, 2)) + (target * v).sum(dim=(1, 2)) + 1)
    bce, dice = bce.mean(), dice.mean()
    return bce + dice_weight * dice, {"bce": float(bce.detach()), "dice": float(dice.detach())}
