"""The training loop shared by the learned modules: :func:`fit` trains a task from a config.

:func:`fit` trains one :class:`~carve.learn.config.TrainConfig` of a
:class:`~carve.learn.task.Task` from scratch or resumes it, in one process or under
``torchrun --nproc_per_node=N`` with DistributedDataParallel (gloo on the CPU, NCCL on GPUs; see
:mod:`carve.learn.distributed`): N processes with local batches of ``batch_size / N`` take the same
steps as one process with ``batch_size``, and only rank 0 logs, plots and saves.

Data: procedural scenes rendered once per run into memory (:mod:`carve.learn.scenes`). Everything
random is derived from ``seed``, the epoch and the sample index, so a run is reproducible and a
resumed run continues exactly where it stopped.

Outputs in ``out``: ``last.pt`` (resumable: model, optimiser, schedule, history, config),
``best.pt`` (best validation epoch), ``model.pt`` (the best weights alone, what ships),
``history.json`` and ``curves.png`` (loss and metric curves per epoch), each written atomically.

A run that diverges stops with a ``FloatingPointError`` at the first step whose loss is NaN or inf
(or an epoch that ends with non-finite weights), and no model with non-finite weights is written.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from carve.learn import distributed
from carve.learn.augment import Samples
from carve.learn.checkpoints import CheckpointError, first_nonfinite, load_checkpoint, save_model
from carve.learn.config import TrainConfig
from carve.learn.phase import Phase, make_phase, seed_all, lr_lambda, train_epochs
from carve.learn.plots import plot_history
from carve.learn.pretrain import pretrain_rotation
from carve.learn.scenes import render_split
from carve.learn.task import Task
from data.files import atomic_path

__all__ = ["fit", "evaluate", "command_line"]


@dataclass
class Run:
    """The state of one training run, as :func:`fit` goes through its phases."""

    cfg: TrainConfig
    task: Task
    device: torch.device
    scenes: dict
    model: torch.nn.Module = None
    history: list = field(default_factory=list)
    pre_history: list = field(default_factory=list)
    start: int = 0  # the first epoch still to train
    best: dict | None = None
    render_seconds: float = 0.0
    prior_seconds: float = 0.0  # training time of the run before it was resumed
    t_train: float = field(default_factory=time.perf_counter)
    extra: dict = field(default_factory=dict)  # the task's extra tensors, saved with the model

    @property
    def labeled(self):
        """The train scenes whose labels are used (the first ``label_fraction`` of them)."""
        return self.scenes["train"].subset(max(1, int(round(self.cfg.train * self.cfg.label_fraction))))

    def is_better(self, record: dict) -> bool:
        key = self.task.primary
        return key in record and (self.best is None or self.task.better(record[key], self.best[key]))


def command_line() -> str:
    """The command that started this process, as a user would type it (``python -m carve.depth ...``)."""
    script = Path(sys.argv[0])
    here, carve_dir = script.resolve(), Path(__file__).resolve().parent.parent
    if script.suffix == ".py" and carve_dir in here.parents:
        parts = here.with_suffix("").relative_to(carve_dir.parent).parts
        head = ["python", "-m", ".".join(parts[:-1] if parts[-1] == "__main__" else parts)]
    else:
        head = [script.name]
    return " ".join(head + sys.argv[1:])


def evaluate(model, task: Task, scenes, cfg: TrainConfig, device) -> dict:
    """Validation metrics averaged over all images of ``scenes`` (each rank takes every N-th).

    Returns:
        {"val_<metric>": mean} for each of ``task.metric_names`` ({} for no scenes).
    """
    model.eval()
    idx = list(range(distributed.rank(), len(scenes), distributed.world()))
    names = list(task.metric_names)
    sums = torch.zeros(len(names) + 1, dtype=torch.float64)
    bs = max(1, cfg.batch_size)
    with torch.no_grad():
        for k in range(0, len(idx), bs):
            part = idx[k:k + bs]
            batch = {n: v.to(device) for n, v in task.val_batch(scenes, part).items()}
            per = task.evaluate(model, batch, cfg)  # dict name -> (b,) per-image values
            sums += torch.tensor([float(np.sum(per[n])) for n in names] + [float(len(part))], dtype=torch.float64)
    sums = distributed.all_sum(sums)
    if sums[-1] == 0:
        return {}
    return {f"val_{name}": float(sums[i]) / float(sums[-1]) for i, name in enumerate(names)}


def _resumed(cfg: TrainConfig, resume):
    """(the config to train, the checkpoint to resume or None): a resumed run keeps its stored
    config but for ``out`` and ``epochs``."""
    if not resume:
        return cfg, None
    ck = load_checkpoint(resume, cfg.task)
    if "train_state" not in ck:
        raise CheckpointError(f"checkpoint {str(resume)!r} holds no training state (it is an exported "
                              f"model); resume from a run's last.pt")
    state = ck["train_state"]
    try:
        stored = TrainConfig.from_dict(ck["metadata"]["config"])
        if not (isinstance(state["epoch"], int) and state["epoch"] >= 0 and isinstance(state["history"], list)
                and isinstance(state["optimizer"], dict) and isinstance(state["scheduler"], dict)):
            raise TypeError("epoch, history, optimizer or scheduler of the wrong type")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {str(resume)!r} is damaged: its training state or stored config cannot "
                              f"be resumed ({type(e).__name__}: {e})") from None
    stored.out, stored.epochs = cfg.out, cfg.epochs
    return stored, ck


def _render(cfg: TrainConfig, progress: bool, cache_dir) -> dict:
    train = render_split("train", cfg.train, cfg.train_render_size, progress=progress, cache_dir=cache_dir)
    val = render_split("val", cfg.val, cfg.size, progress=progress, cache_dir=cache_dir) if cfg.val else None
    return {"train": train, "val": val}


def _start(run: Run, ck, progress: bool, resume=None) -> None:
    """Build the model; restore it from ``ck``, or pretrain it when the config asks."""
    cfg, task = run.cfg, run.task
    run.model = task.build(**cfg.network)
    task.init_from_data(run.model, run.labeled)
    run.model.to(run.device)
    run.extra = task.extra_tensors(run.labeled)
    if ck is not None:
        state = ck["train_state"]
        try:
            run.model.load_state_dict(ck["state_dict"])
        except RuntimeError as e:  # missing, unexpected or reshaped weights
            raise CheckpointError(f"checkpoint {str(resume)!r} does not match the network of its stored config: "
                                  f"{(str(e).strip().splitlines() or ['?'])[0][:300]}") from None
        run.history = list(state["history"])
        run.pre_history = list(state.get("pretrain_history", []))
        run.start = int(state["epoch"])
        run.prior_seconds = float(ck["metadata"].get("train_seconds", 0.0))
        for rec in run.history:
            if run.is_better(rec):
                run.best = rec
    elif cfg.pretrain == "rotation":
        distributed.log(f"[pretrain] rotation prediction on {len(run.scenes['train'])} unlabeled renders")
        run.pre_history = pretrain_rotation(run.model, run.scenes["train"], cfg, run.device, progress=progress)
        seed_all(cfg.seed + 1)


def _training_phase(run: Run, ck, resume=None) -> Phase:
    cfg, task, val = run.cfg, run.task, run.scenes.get("val")
    phase = make_phase(cfg.task, run.model, Samples(run.labeled, task.train_sample, cfg.seed, 1), cfg, run.device,
                       epochs=cfg.epochs, step=lambda model, batch: task.loss(model, batch, cfg),
                       validate=lambda epoch: evaluate(run.model, task, val, cfg, run.device) if val is not None else {},
                       seed=cfg.seed)
    if ck is not None:
        try:
            phase.opt.load_state_dict(ck["train_state"]["optimizer"])
            phase.sched.load_state_dict(ck["train_state"]["scheduler"])
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {str(resume)!r} is damaged: its optimiser state does not fit the "
                                  f"model ({type(e).__name__}: {e})") from None
        phase.sched.lr_lambdas[0] = lr_lambda(cfg.epochs * len(phase.loader), cfg.warmup)
    return phase


def _save(run: Run, phase: Phase, epoch: int, record: dict, is_best: bool) -> None:
    """Write last.pt (and best.pt, model.pt for a best epoch), history.json and curves.png (rank 0)."""
    cfg, out = run.cfg, Path(run.cfg.out)
    meta = {"config": cfg.to_dict(), "epoch": epoch + 1, "metrics": record, "best": run.best,
            "pretrain_history": run.pre_history, "torch": torch.__version__, "command": command_line(),
            "render_seconds": run.render_seconds,
            "train_seconds": run.prior_seconds + time.perf_counter() - run.t_train, "device": str(run.device),
            "processes": distributed.world(), "threads": torch.get_num_threads()}
    train_state = {"optimizer": phase.opt.state_dict(), "scheduler": phase.sched.state_dict(), "epoch": epoch + 1,
                   "history": run.history, "pretrain_history": run.pre_history}
    extra = run.extra
    save_model(run.model, out / "last.pt", metadata=meta, extra_tensors=extra, train_state=train_state)
    if is_best or run.scenes.get("val") is None:
        save_model(run.model, out / "best.pt", metadata=meta, extra_tensors=extra, train_state=train_state)
        save_model(run.model, out / "model.pt", metadata=meta, extra_tensors=extra)
    with atomic_path(out / "history.json") as tmp:
        tmp.write_text(json.dumps({"history": run.history, "pretrain": run.pre_history, "config": cfg.to_dict()},
                                  indent=1))
    plot_history(run.history, out / "curves.png", title=cfg.task)


def _describe(run: Run, phase: Phase) -> str:
    cfg = run.cfg
    n = sum(p.numel() for p in run.model.parameters())
    return (f"[{cfg.task}] {len(run.labeled)} labeled train scenes at {cfg.train_render_size}x{cfg.train_render_size} "
            f"(inputs {cfg.size}x{cfg.size}), {cfg.val} val scenes at {cfg.size}x{cfg.size}; {n:,} parameters; "
            f"{distributed.world()} process(es) on {run.device}; epochs {run.start + 1}..{cfg.epochs}")


def fit(cfg: TrainConfig, task: Task, *, resume=None, progress: bool = True, scenes: dict | None = None,
        cache_dir=None, stop_after: int | None = None) -> dict:
    """Train (or resume) a task; see the module notes for what is written.

    Args:
        cfg: the run's :class:`TrainConfig`; ``cfg.task`` must be ``task.name``.
        task: what to train (a :class:`carve.learn.task.Task`, e.g. ``carve.depth.DEPTH``).
        resume: path of a ``last.pt`` to continue from (its stored config is used; ``cfg.out`` and
            ``cfg.epochs`` may differ, so a finished run can be extended).
        progress: show progress bars (on rank 0, on a tty) and log rendering.
        scenes: optional dict {"train": RenderedScenes, "val": RenderedScenes or None} to skip rendering.
        cache_dir: keep the rendered scenes there for later runs (see :func:`render_split`).
        stop_after: stop after this many epochs of this call (the schedule still spans
            ``cfg.epochs``); resume later from ``last.pt``. For time-sliced jobs.

    Returns:
        dict with ``model`` (the trained, unwrapped model on the CPU, last epoch), ``history``,
        ``best`` (the best validation record), ``pretrain_history`` and ``config``.

    Raises:
        FloatingPointError: the loss became NaN or inf, or the weights did (the run diverged); the
            files written by earlier epochs are kept, nothing non-finite is written.
        CheckpointError: ``resume`` is not a usable ``last.pt`` of this task.
        ValueError: ``cfg`` does not fit ``task`` or the data.
    """
    if cfg.task != task.name:
        raise ValueError(f"cfg.task must be the name of the task trained, {task.name!r}, got {cfg.task!r}")
    device, started = distributed.setup()
    try:
        return _fit(cfg, task, device, resume, progress, scenes, cache_dir, stop_after)
    finally:
        distributed.teardown(started)


def _fit(cfg, task, device, resume, progress, scenes, cache_dir, stop_after) -> dict:
    cfg, ck = _resumed(cfg, resume)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if distributed.rank() == 0:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
    seed_all(cfg.seed)
    t0 = time.perf_counter()
    run = Run(cfg, task, device, scenes if scenes is not None else _render(cfg, progress, cache_dir))
    run.render_seconds, run.t_train = time.perf_counter() - t0, time.perf_counter()
    _start(run, ck, progress, resume)
    phase = _training_phase(run, ck, resume)
    distributed.log(_describe(run, phase))
    end = cfg.epochs if stop_after is None else min(cfg.epochs, run.start + int(stop_after))
    for epoch, record in train_epochs(phase, cfg, device, run.history, start=run.start, end=end, progress=progress):
        bad = first_nonfinite(run.model.state_dict())  # the same on every rank: DDP keeps the weights equal
        if bad is not None:
            raise FloatingPointError(f"training stopped after epoch {epoch + 1}: weight {bad!r} is NaN or inf (the run "
                                     f"diverged); lower the learning rate (lr={cfg.lr:g}) and train again")
        is_best = run.is_better(record)
        if is_best:
            run.best = record
        if distributed.rank() == 0:
            _save(run, phase, epoch, record, is_best)
    run.model.to("cpu").eval()
    return {"model": run.model, "history": run.history, "best": run.best, "pretrain_history": run.pre_history,
            "config": cfg}
