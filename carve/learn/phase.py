"""One optimisation phase (pretraining, training): its optimiser, schedule, data and epochs.

A :class:`Phase` holds what :func:`train_epochs` steps: the network, its DDP wrapper, AdamW (no
weight decay on biases and norms), a linear warm-up and cosine decay to 1% of the peak rate
(:func:`lr_lambda`), and a seeded, rank-split loader. Each epoch it logs a record (``train_loss``,
the loss's parts as ``train_<part>``, ``lr``, ``seconds`` and what ``validate`` adds) on rank 0.

Example:
    >>> f = lr_lambda(100, 0.1)
    >>> round(f(0), 2), f(9), round(f(99), 3)
    (0.1, 1.0, 0.01)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from carve.learn import distributed
from carve.learn.augment import generator, scale_and_crop
from data.progress import progress as progress_bar

__all__ = ["Phase", "make_phase", "train_epochs", "lr_lambda", "param_groups", "seed_all"]


def seed_all(seed: int) -> None:
    """Seed torch's and numpy's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))


def lr_lambda(total: int, warmup: float) -> Callable[[int], float]:
    """The learning-rate factor per step: linear warm-up over ``warmup`` of ``total`` steps, then a
    cosine from 1 to 0.01."""
    w = max(1, int(round(total * warmup)))

    def f(step):
        if step < w:
            return (step + 1) / w
        t = (step - w) / max(1, total - w)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return f


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on weight matrices and kernels, none on biases and norm scales."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class Phase:
    """What :func:`train_epochs` steps.

    Attributes:
        name: the label of logs and bars ("depth", "pretrain").
        net: the unwrapped network; ddp: the one the steps call (``net`` itself in one process).
        opt, sched: AdamW and its LambdaLR schedule over ``epochs * len(loader)`` steps.
        data, loader, sampler: the :class:`carve.learn.augment.Samples`, its loader and sampler.
        epochs: the number of epochs the schedule spans.
        step: ``step(ddp, batch) -> (loss, {part: float})``.
        validate: ``validate(epoch) -> {"val_<metric>": float}`` after each epoch.
        last_loss: the loss of the latest step (for the progress bar).
    """

    name: str
    net: torch.nn.Module
    ddp: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    data: torch.utils.data.Dataset
    loader: torch.utils.data.DataLoader
    sampler: torch.utils.data.Sampler
    epochs: int
    step: Callable
    validate: Callable[[int], dict]
    last_loss: float = 0.0


def make_phase(name: str, net, data, cfg, device, *, epochs: int, step: Callable, validate: Callable,
               seed: int, find_unused: bool = False) -> Phase:
    """A :class:`Phase` for ``net`` on dataset ``data``, with ``cfg``'s batch, rate and decay.

    Raises:
        ValueError: a global batch the ranks cannot split, or larger than the dataset.
    """
    loader, sampler = distributed.loader(data, distributed.local_batch(cfg.batch_size), shuffle=True, seed=seed,
                                         drop_last=True)
    if len(loader) == 0:
        raise ValueError(f"batch_size ({cfg.batch_size}) must not exceed the number of labeled train scenes "
                         f"({len(data)})")
    ddp = distributed.wrap(net, device, find_unused=find_unused)
    opt = torch.optim.AdamW(param_groups(net, cfg.weight_decay), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(epochs * len(loader), cfg.warmup))
    return Phase(name, net, ddp, opt, sched, data, loader, sampler, epochs, step, validate)


def _batches(phase: Phase, cfg, device, epoch: int, progress: bool) -> Iterator[dict]:
    """The epoch's batches on ``device``, rescaled and cropped as ``cfg`` asks."""
    shown = None if progress and distributed.rank() == 0 else False
    bar = progress_bar(phase.loader, desc=f"{phase.name} epoch {epoch + 1}/{phase.epochs}", enabled=shown)
    for k, batch in enumerate(bar):
        batch = {n: v.to(device, non_blocking=True) for n, v in batch.items()}
        if cfg.scale_min < 1 or batch["image"].shape[-1] > cfg.size:
            batch = scale_and_crop(batch, cfg, generator(cfg.seed, 5, epoch * len(phase.loader) + k))
        yield batch
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{phase.last_loss:.4f}", lr=f"{phase.sched.get_last_lr()[0]:.2e}")


def _optimise(phase: Phase, batch: dict, clip: float) -> tuple[float, dict]:
    loss, parts = phase.step(phase.ddp, batch)
    if not bool(torch.isfinite(loss.detach()).all()):  # before the backward pass: the weights stay finite
        raise FloatingPointError(f"training stopped: the {phase.name} loss became {float(loss.detach())} at step "
                                 f"{phase.sched.last_epoch + 1} (the run diverged); lower the learning rate "
                                 f"(lr={phase.opt.defaults['lr']:g}) and train again (the files of earlier epochs "
                                 "are kept)")
    phase.opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(phase.ddp.parameters(), clip)
    phase.opt.step()
    phase.sched.step()
    return float(loss.detach()), parts


def _epoch(phase: Phase, cfg, device, epoch: int, progress: bool) -> dict:
    """Train one epoch; returns its record (without validation)."""
    phase.sampler.set_epoch(epoch)
    phase.data.set_epoch(epoch)
    phase.ddp.train()
    t0 = time.perf_counter()
    tot = torch.zeros(2, dtype=torch.float64)
    parts_tot = {}
    for batch in _batches(phase, cfg, device, epoch, progress):
        phase.last_loss, parts = _optimise(phase, batch, cfg.clip)
        tot += torch.tensor([phase.last_loss, 1.0], dtype=torch.float64)
        for k, v in parts.items():
            parts_tot[k] = parts_tot.get(k, 0.0) + v
    tot = distributed.all_sum(tot)
    record = {"epoch": epoch + 1, "train_loss": float(tot[0] / max(tot[1], 1)),
              "lr": phase.sched.get_last_lr()[0], "seconds": time.perf_counter() - t0}
    steps = max(float(tot[1]) / distributed.world(), 1)  # per-rank sums of per-step parts
    record.update({f"train_{k}": v / steps for k, v in parts_tot.items()})
    return record


def train_epochs(phase: Phase, cfg, device, history: list, *, start: int = 0, end: int | None = None,
                 progress: bool = True) -> Iterator[tuple[int, dict]]:
    """Train epochs ``start .. end - 1`` (default: to ``phase.epochs``); yields (epoch, record).

    Each record (with ``phase.validate``'s metrics) is appended to ``history`` and logged on rank 0.
    """
    for epoch in range(start, phase.epochs if end is None else end):
        record = _epoch(phase, cfg, device, epoch, progress)
        record.update(phase.validate(epoch))
        history.append(record)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch")
        distributed.log(f"[{phase.name}] epoch {epoch + 1}/{phase.epochs}: {shown}")
        yield epoch, record
