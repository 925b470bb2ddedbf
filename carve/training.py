"""The training loop shared by the learned modules (monocular depth, learned silhouettes).

:func:`fit` trains one :class:`TrainConfig` from scratch or resumes it, in one process or under
``torchrun --nproc_per_node=N`` with DistributedDataParallel (gloo on the CPU, NCCL on GPUs): a
DistributedSampler splits each global batch over the ranks, BatchNorm statistics span all ranks
(:class:`carve.nets.GlobalBatchNorm2d`), and only rank 0 logs, plots and saves. N processes with
local batches of ``batch_size / N`` take the same steps as one process with ``batch_size``.

Data: procedural scenes of :mod:`data.scenes`, rendered once per run into memory. The three splits
draw disjoint scene seeds (:data:`SPLIT_SEEDS`): train seeds are ``0 .. n-1``, validation seeds
start at 10,000,000 and test seeds at 20,000,000, whatever the run's own ``seed`` (which drives
initialisation, shuffling and augmentation). Everything random is derived from ``seed``, the epoch
and the sample index, so a run is reproducible and a resumed run continues exactly where it stopped.

Outputs in ``out``: ``last.pt`` (resumable: model, optimiser, schedule, history, config),
``best.pt`` (best validation epoch), ``model.pt`` (the best weights alone, what ships),
``history.json`` and ``curves.png`` (loss and metric curves per epoch).

Checkpoints are read with ``torch.load(weights_only=True)``: a model file is untrusted input, and a
corrupt or foreign file raises :class:`CheckpointError` naming the file and what is wrong with it.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["TrainConfig", "fit", "CheckpointError", "load_checkpoint", "save_model", "SPLIT_SEEDS",
           "render_split", "RenderedScenes", "ImageModel", "TASKS", "pretrain_rotation"]

FORMAT = "carve3d-unet"
FORMAT_VERSION = 1
SPLIT_SEEDS = {"train": 0, "val": 10_000_000, "test": 20_000_000}
# The network sees images scaled to [0, 1] and then standardised with these (fixed, not learned).
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.25, 0.25, 0.25)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, corrupt, foreign, or for another task."""


# ----------------------------------------------------------------------------------------------
# configuration


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoints).

    Attributes:
        task: "depth" or "silhouette".
        out: output directory.
        size: the network trains on ``size x size`` images (and validates on ``size x size`` renders).
        render_size: training scenes are rendered at ``render_size x render_size`` (0: ``size``).
        train, val: number of train and validation scenes.
        label_fraction: share of the train scenes whose labels are used (the first ones).
        widths, coord_channels, global_context, context_size, resolution_channel: the
            :class:`carve.nets.UNet`; ``resolution_channel`` None means on exactly when batches mix
            resolutions (crops, ``render_size > size``, and ``scale_min < 1``), the only way it can be
            learned: BatchNorm removes what a whole batch shares.
        epochs, batch_size (global, over all ranks), lr (peak), weight_decay, warmup (share of the
            steps with a linear warm-up; the rest decays on a cosine to 1% of lr), clip (grad norm).
        scale_min: each training batch is resized by a factor drawn in [scale_min, 1] of the render
            (same field of view, fewer pixels), so that the network sees objects at several pixel
            sizes and keeps working at other resolutions; 1 turns this off. Resized batches larger
            than ``size`` are cut into random ``size x size`` crops whose coordinates and global
            context still describe the whole picture (see ``window`` in :class:`carve.nets.UNet`):
            with ``render_size = 2 size`` the network learns the pixel scales of images up to twice
            its training input for the price of ``size``-pixel inputs.
        silog_lambda, grad_weight: the depth loss (:func:`carve.losses.depth_loss`).
        pretrain: None, or "rotation" to first pretrain the encoder on the unlabeled train renders
            by predicting 0/90/180/270 degree rotations for ``pretrain_epochs`` epochs.
        seed: drives initialisation, shuffling and augmentation.
        threads: torch intra-op threads per process (0 = leave torch's default).
    """

    task: str = "depth"
    out: str = "runs/depth"
    size: int = 128
    render_size: int = 0
    train: int = 2000
    val: int = 200
    label_fraction: float = 1.0
    widths: tuple = (8, 16, 32, 64, 128)
    coord_channels: bool = True
    global_context: bool = True
    context_size: int = 64
    resolution_channel: bool | None = None
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    clip: float = 1.0
    scale_min: float = 1.0
    silog_lambda: float = 0.5
    grad_weight: float = 0.5
    pretrain: str | None = None
    pretrain_epochs: int = 10
    seed: int = 0
    threads: int = 0

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")
        for name in ("size", "train", "val", "epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "val" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'val' else 'positive'} int, got {v!r}")
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction!r}")
        if self.pretrain not in (None, "rotation"):
            raise ValueError(f"pretrain must be None or 'rotation', got {self.pretrain!r}")
        if not isinstance(self.render_size, int) or isinstance(self.render_size, bool) or self.render_size < 0:
            raise ValueError(f"render_size must be a non-negative int (0 = size), got {self.render_size!r}")
        if self.size % (2 ** (len(self.widths) - 1)):
            raise ValueError(f"size must be a multiple of 2**(len(widths)-1) = {2 ** (len(self.widths) - 1)} "
                             f"for training, got {self.size}")
        if not 0 < self.scale_min <= 1:
            raise ValueError(f"scale_min must be in (0, 1], got {self.scale_min!r}")
        mixed = self.train_render_size > self.size and self.scale_min < 1  # crops at per-image scales
        if self.resolution_channel is None:
            self.resolution_channel = mixed
        elif self.resolution_channel and not mixed:
            raise ValueError(f"resolution_channel needs batches that mix resolutions, i.e. render_size > size and "
                             f"scale_min < 1, got render_size {self.render_size}, size {self.size}, scale_min "
                             f"{self.scale_min}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")

    @property
    def train_render_size(self):
        """Size at which the training scenes are rendered."""
        return self.render_size or self.size

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ----------------------------------------------------------------------------------------------
# distributed helpers


def _dist():
    import torch.distributed as dist
    return dist if dist.is_available() and dist.is_initialized() else None


def _rank():
    d = _dist()
    return d.get_rank() if d else 0


def _world():
    d = _dist()
    return d.get_world_size() if d else 1


def _setup_distributed():
    """Join the process group torchrun describes in the environment; returns (device, started)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            dist.init_process_group("nccl")
            return torch.device("cuda", local), True
        dist.init_process_group("gloo")
        return torch.device("cpu"), True
    if dist.is_available() and dist.is_initialized():
        dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        return dev, False
    return torch.device("cuda" if torch.cuda.is_available() else "cpu"), False


def _all_sum(t):
    d = _dist()
    if d:
        d.all_reduce(t)
    return t


def _log(msg):
    if _rank() == 0:
        print(msg, flush=True)


# ----------------------------------------------------------------------------------------------
# data


@dataclass
class RenderedScenes:
    """A split of procedural scenes held in memory.

    Attributes:
        images: (N, H, W, 3) uint8 RGB.  depth: (N, H, W) float32 metric depth (0 = none).
        mask: (N, H, W) bool object masks.  seeds: (N,) int64 scene seeds.
    """

    images: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    seeds: torch.Tensor

    def __len__(self):
        return len(self.images)

    def subset(self, n):
        return RenderedScenes(self.images[:n], self.depth[:n], self.mask[:n], self.seeds[:n])


def _cache_file(cache_dir, split, count, size):
    """Cache path keyed by split, count, size and the source of the scene generator and renderer."""
    import hashlib
    import importlib

    h = hashlib.sha1()
    for name in ("data.scenes", "data.render"):
        h.update(Path(importlib.import_module(name).__file__).read_bytes())
    return Path(cache_dir) / f"scenes-{split}-{count}-{size}-{h.hexdigest()[:10]}.npz"


def render_split(split, count, size, *, progress=True, cache_dir=None):
    """Render ``count`` scenes of a split (see :data:`SPLIT_SEEDS`) at ``size x size``.

    Under torch.distributed each rank renders every N-th scene and the parts are summed over ranks.
    With ``cache_dir``, the renders are saved there (npz, keyed by split, count, size and a hash of
    the generator's source) and read back by later runs.

    Returns:
        :class:`RenderedScenes`.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {list(SPLIT_SEEDS)}, got {split!r}")
    from data import scenes

    if cache_dir is not None:
        f = _cache_file(cache_dir, split, count, size)
        missing = _all_sum(torch.tensor([0.0 if f.is_file() else 1.0]))  # one decision for all ranks
        if float(missing) == 0:
            with np.load(f) as z:
                return RenderedScenes(torch.from_numpy(z["images"]), torch.from_numpy(z["depth"]),
                                      torch.from_numpy(z["mask"]), torch.from_numpy(z["seeds"]))
        res = render_split(split, count, size, progress=progress)
        if _rank() == 0:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_name(f.stem + ".tmp.npz")
            np.savez(tmp, images=res.images.numpy(), depth=res.depth.numpy(), mask=res.mask.numpy(),
                     seeds=res.seeds.numpy())
            os.replace(tmp, f)
        return res

    rank, world = _rank(), _world()
    t0 = time.perf_counter()
    if progress:
        _log(f"[data] rendering {count} {split} scenes at {size}x{size} over {world} process(es)")
    images = torch.zeros((count, size, size, 3), dtype=torch.uint8)
    depth = torch.zeros((count, size, size), dtype=torch.float32)
    mask = torch.zeros((count, size, size), dtype=torch.uint8)
    seeds = torch.arange(count, dtype=torch.int64) + SPLIT_SEEDS[split]
    mine = range(rank, count, world)
    it = mine
    if progress and rank == 0:
        from tqdm.auto import tqdm
        it = tqdm(mine, desc=f"render {split}", leave=False, disable=None)  # auto: off when not a tty
    for i in it:
        s = scenes.sample(int(seeds[i]), size=(size, size))
        images[i] = torch.from_numpy(np.ascontiguousarray(s["image"]))
        d = np.asarray(s["depth"], dtype=np.float32)
        depth[i] = torch.from_numpy(np.where(np.isfinite(d) & (d > 0), d, 0).astype(np.float32))
        mask[i] = torch.from_numpy(np.asarray(s["mask"], dtype=np.uint8))
    if world > 1:  # every scene was rendered by one rank, zeros elsewhere: a sum gathers them
        for t in (images, depth, mask):
            for k in range(0, count, 256):  # in chunks, to bound the int32 copies of uint8 data
                part = t[k:k + 256]
                wide = part.to(torch.int32) if t.dtype == torch.uint8 else part.clone()
                _all_sum(wide)
                part.copy_(wide.to(t.dtype))
    if progress:
        _log(f"[data] {split}: {count} scenes in {time.perf_counter() - t0:.0f} s")
    return RenderedScenes(images, depth, mask.bool(), seeds)


def _generator(*keys):
    """A torch Generator seeded from integers (seed, purpose, epoch, index, ...)."""
    g = torch.Generator()
    h = 0
    for k in keys:
        h = (h * 1_000_003 + int(k) + 0x9E3779B9) % (2 ** 62)
    g.manual_seed(h)
    return g


class _Samples(torch.utils.data.Dataset):
    """Index -> training sample dict for one task; augmentation depends on (seed, epoch, index)."""

    def __init__(self, scenes, make, seed, purpose):
        self.scenes, self.make, self.seed, self.purpose, self.epoch = scenes, make, seed, purpose, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.scenes)

    def __getitem__(self, i):
        g = _generator(self.seed, self.purpose, self.epoch, i)
        return self.make(self.scenes, i, g)


def to_input(images):
    """(B, H, W, 3) uint8 or float [0, 1] -> (B, 3, H, W) float32 in [0, 1]."""
    x = images.permute(0, 3, 1, 2)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _color_jitter(x, g, strength=0.15):
    """x: (3, H, W) in [0, 1]; random brightness, contrast and per-channel gain."""
    b = 1 + strength * (2 * torch.rand(1, generator=g) - 1)
    c = 1 + strength * (2 * torch.rand(1, generator=g) - 1)
    gain = 1 + 0.5 * strength * (2 * torch.rand(3, 1, 1, generator=g) - 1)
    m = x.mean()
    return ((x - m) * c + m * b).mul(gain).clamp(0, 1)


# ----------------------------------------------------------------------------------------------
# models


class ImageModel(nn.Module):
    """A UNet on standardised RGB images; subclasses add the task's head.

    Shapes: ``images`` (B, 3, H, W) float in [0, 1]; ``mask`` optional (B, H, W) bool (padding);
    ``window`` optional (full images, offsets (B, 2)) when ``images`` are crops (see
    :class:`carve.nets.UNet`).
    """

    task = None

    def __init__(self, widths=(8, 16, 32, 64, 128), coord_channels=True, global_context=True, context_size=64,
                 out_channels=1, resolution_channel=False):
        super().__init__()
        from carve.nets import UNet

        self.unet = UNet(3, out_channels, widths=widths, coord_channels=coord_channels,
                         global_context=global_context, context_size=context_size,
                         resolution_channel=resolution_channel)
        self.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    def config(self):
        c = self.unet.config()
        return {k: c[k] for k in ("widths", "coord_channels", "global_context", "context_size", "resolution_channel")}

    def features(self, images, mask=None, window=None):
        if window is not None:
            window = ([(f - self.image_mean[0]) / self.image_std[0] for f in window[0]], window[1])
        return self.unet((images - self.image_mean) / self.image_std, mask, window=window)

    def encoder_features(self, images):
        """Deepest encoder features (B, C, h, w) of the standardised images (for pretraining)."""
        return self.unet.encoder_features((images - self.image_mean) / self.image_std)


def _task(name):
    import importlib
    return importlib.import_module(TASKS[name]).TASK


TASKS = {"depth": "carve.depth", "silhouette": "carve.learned_silhouettes"}


# ----------------------------------------------------------------------------------------------
# checkpoints


def _plain(obj):
    """JSON-able copy (tuples -> lists) of a metadata value."""
    return json.loads(json.dumps(obj))


def save_model(model, path, *, metadata=None, extra_tensors=None, train_state=None):
    """Write a checkpoint loadable with ``torch.load(weights_only=True)``.

    Args:
        model: an :class:`ImageModel` subclass (unwrapped).
        path: destination; written atomically (temporary file, then rename).
        metadata: JSON-able dict (config, metrics, command...), stored as given.
        extra_tensors: dict of named tensors kept with the model (e.g. the training mean depth map).
        train_state: dict with optimiser/scheduler state and the epoch, for resuming.
    """
    state = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "task": model.task,
        "model_config": _plain(model.config()),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": _plain(metadata or {}),
        "tensors": {k: v.detach().cpu() for k, v in (extra_tensors or {}).items()},
    }
    if train_state is not None:
        state["train_state"] = train_state
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, task=None):
    """Read and validate a checkpoint written by :func:`save_model` (``weights_only=True``).

    Args:
        path: file path.
        task: the task the caller expects ("depth", "silhouette"), or None for any.

    Returns:
        the checkpoint dict (keys format, version, task, model_config, state_dict, metadata, tensors
        and, for resumable ones, train_state).

    Raises:
        CheckpointError: missing, unreadable, corrupt or foreign file, or a model for another task.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, zip errors, truncation, disallowed globals...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} is not a readable carve3d model file "
                              f"(corrupt, truncated or not a safe torch checkpoint): {first[:200]}") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        kind = type(ck).__name__ if not isinstance(ck, dict) else f"a dict without format={FORMAT!r}"
        raise CheckpointError(f"checkpoint {str(path)!r} is not a carve3d model file: expected a dict with "
                              f"format={FORMAT!r}, got {kind}")
    if ck.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has format version {ck.get('version')!r}; this "
                              f"carve3d reads version {FORMAT_VERSION}")
    for key, typ in (("task", str), ("model_config", dict), ("state_dict", dict)):
        if not isinstance(ck.get(key), typ):
            raise CheckpointError(f"checkpoint {str(path)!r} is damaged: its {key!r} entry is missing or not a "
                                  f"{typ.__name__}")
    if task is not None and ck["task"] != task:
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {ck['task']!r} model, expected a {task!r} model")
    return ck


def build_model(ck, path="<checkpoint>"):
    """The model of a validated checkpoint dict, with its weights, in eval mode."""
    task = _task(ck["task"])
    try:
        model = task.build(**ck["model_config"])
        model.load_state_dict(ck["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {str(path)!r} does not match its declared {ck['task']!r} model: "
                              f"{first[:300]}") from None
    for k, v in ck.get("tensors", {}).items():
        setattr(model, k, v)
    model.metadata = ck.get("metadata", {})
    return model.eval()


#: where the shipped default models live inside the package
MODELS_DIR = Path(__file__).resolve().parent / "models"


def model_file(path, task, default_name, retrain_hint):
    """The model file to load: ``path``, or the shipped ``MODELS_DIR / default_name`` when None."""
    p = MODELS_DIR / default_name if path is None else Path(path)
    if path is None and not p.is_file():
        raise CheckpointError(f"the shipped {task} model {str(p)!r} is missing from this installation; "
                              f"reinstall carve3d or train one with `{retrain_hint}`")
    return str(p.resolve())


@functools.lru_cache(maxsize=8)
def _cached_inference_model(path, task, mtime_ns):  # mtime in the key: a retrained file is reloaded
    from carve.nets import fold_batchnorm

    return fold_batchnorm(load_model(path, task)).to(memory_format=torch.channels_last)


def inference_model(path, task):
    """The model in file ``path`` ready for inference: BatchNorm folded, channels-last, cached per file."""
    return _cached_inference_model(path, task, Path(path).stat().st_mtime_ns)


def load_model(path, task):
    """Load a model file of ``task`` -> model in eval mode (CPU). Raises :class:`CheckpointError`."""
    return build_model(load_checkpoint(path, task), path)


# ----------------------------------------------------------------------------------------------
# schedule and plotting


def _lr_lambda(total, warmup):
    w = max(1, int(round(total * warmup)))

    def f(step):
        if step < w:
            return (step + 1) / w
        t = (step - w) / max(1, total - w)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return f


def _param_groups(model, weight_decay):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def plot_history(history, path, title=""):
    """Save the loss curves and each validation metric's curve, per epoch, as one PNG.

    Uses matplotlib's Agg canvas directly (no pyplot), so it never changes an interactive backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not history:
        return
    epochs = [h["epoch"] for h in history]
    loss_keys = [k for k in history[-1] if k.startswith("train_")]
    metric_keys = [k for k in history[-1] if k.startswith("val_")]
    n = 1 + len(metric_keys)
    fig = Figure(figsize=(4 * n, 3.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for k in loss_keys:
        axes[0].plot(epochs, [h.get(k, np.nan) for h in history], marker=".", label=k[6:])
    axes[0].set_yscale("log")
    axes[0].set_title(f"{title} training loss".strip())
    axes[0].legend(fontsize=8)
    for ax, k in zip(axes[1:], metric_keys):
        ax.plot(epochs, [h.get(k, np.nan) for h in history], marker=".", color="C3")
        ax.set_title(f"validation {k[4:]}")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = Path(str(path) + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# the loop


def _seed_all(seed):
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))


def _loader(ds, batch, shuffle, seed, drop_last):
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = DistributedSampler(ds, num_replicas=_world(), rank=_rank(), shuffle=shuffle, seed=seed,
                                 drop_last=drop_last)
    return DataLoader(ds, batch_size=batch, sampler=sampler, drop_last=drop_last, num_workers=0), sampler


def _evaluate(model, task, scenes, cfg, device):
    """Validation metrics averaged over all images of ``scenes`` (each rank takes every N-th)."""
    model.eval()
    rank, world = _rank(), _world()
    idx = list(range(rank, len(scenes), world))
    names = list(task.metric_names)
    sums = torch.zeros(len(names) + 1, dtype=torch.float64)
    bs = max(1, cfg.batch_size)
    with torch.no_grad():
        for k in range(0, len(idx), bs):
            part = idx[k:k + bs]
            batch = task.val_batch(scenes, part)
            batch = {n: v.to(device) for n, v in batch.items()}
            per = task.evaluate(model, batch, cfg)  # dict name -> (b,) per-image values
            sums += torch.tensor([float(np.sum(per[n])) for n in names] + [float(len(part))], dtype=torch.float64)
    sums = _all_sum(sums)
    if sums[-1] == 0:
        return {}
    n = float(sums[-1])
    return {f"val_{name}": float(sums[i]) / n for i, name in enumerate(names)}


def _train_epochs(model, ddp_model, opt, sched, ds, loader, sampler, epochs, start, step_fn, cfg, device,
                  history, on_epoch, desc, end=None, progress=True):
    rank = _rank()
    for epoch in range(start, epochs if end is None else end):
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        ddp_model.train()
        t0 = time.perf_counter()
        tot = torch.zeros(2, dtype=torch.float64)
        parts_tot = {}
        it = loader
        if rank == 0:
            from tqdm.auto import tqdm
            it = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{epochs}", leave=False,
                      disable=None if progress else True)
        for k, batch in enumerate(it):
            batch = {n: v.to(device, non_blocking=True) for n, v in batch.items()}
            if cfg.scale_min < 1 or batch["image"].shape[-1] > cfg.size:
                batch = _scale_and_crop(batch, cfg, _generator(cfg.seed, 5, epoch * len(loader) + k))
            loss, parts = step_fn(ddp_model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                torch.nn.utils.clip_grad_norm_(ddp_model.parameters(), cfg.clip)
            opt.step()
            sched.step()
            tot += torch.tensor([float(loss.detach()), 1.0], dtype=torch.float64)
            for k, v in parts.items():
                parts_tot[k] = parts_tot.get(k, 0.0) + v
            if rank == 0 and hasattr(it, "set_postfix"):
                it.set_postfix(loss=f"{float(loss.detach()):.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        tot = _all_sum(tot)
        record = {"epoch": epoch + 1, "train_loss": float(tot[0] / max(tot[1], 1)),
                  "lr": sched.get_last_lr()[0], "seconds": time.perf_counter() - t0}
        steps = max(float(tot[1]) / _world(), 1)  # per-rank sums of per-step parts
        for k, v in parts_tot.items():
            record[f"train_{k}"] = v / steps
        record.update(on_epoch(epoch))
        history.append(record)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch",))
        _log(f"[{desc}] epoch {epoch + 1}/{epochs}: {shown}")
        yield epoch, record


def _scale_and_crop(batch, cfg, g):
    """Resize a batch by random factors in [cfg.scale_min, 1] (image: area-averaged; labels: nearest).

    Renders no larger than ``cfg.size`` share one factor (the batch keeps one size). Larger renders
    are training on crops: each image gets its own factor (sizes below ``cfg.size`` are raised to
    it) and a random ``size x size`` crop, so that every batch mixes resolutions, and the batch
    gains ``full_image`` (the list of resized images) and ``offset`` (B, 2) (top, left): the model's
    ``window`` (see :func:`window_of`).
    """
    m = 2 ** (len(cfg.widths) - 1)
    h, w = batch["image"].shape[-2:]
    b = len(batch["image"])
    crop = max(h, w) > cfg.size
    factors = cfg.scale_min + (1 - cfg.scale_min) * torch.rand(b if crop else 1, generator=g)
    sizes = [(max(m, int(round(h * float(s) / m)) * m), max(m, int(round(w * float(s) / m)) * m)) for s in factors]
    if crop:
        sizes = [(max(sh, min(cfg.size, h)), max(sw, min(cfg.size, w))) for sh, sw in sizes]
    per_pixel = [n for n, v in batch.items() if v.ndim >= 3 and v.shape[-2:] == (h, w)]

    def resized(v, name, size):
        if size == (h, w):
            return v
        if name == "image":
            return F.interpolate(v, size=size, mode="bilinear", antialias=True, align_corners=False)
        return F.interpolate(v[:, None].float(), size=size, mode="nearest")[:, 0].to(v.dtype)

    if not crop:
        return {n: resized(v, n, sizes[0]) if n in per_pixel else v for n, v in batch.items()}
    ch, cw = min(cfg.size, h), min(cfg.size, w)
    out = {n: v for n, v in batch.items() if n not in per_pixel}
    parts = {n: [] for n in per_pixel}
    full, offset = [], []
    for i, (sh, sw) in enumerate(sizes):
        t = int(torch.randint(0, sh - ch + 1, (1,), generator=g))
        l = int(torch.randint(0, sw - cw + 1, (1,), generator=g))
        for n in per_pixel:
            v = resized(batch[n][i:i + 1], n, (sh, sw))
            if n == "image":
                full.append(v[0])
            parts[n].append(v[0, ..., t:t + ch, l:l + cw])
        offset.append((t, l))
    out.update({n: torch.stack(p) for n, p in parts.items()})
    out["full_image"], out["offset"] = full, torch.tensor(offset, device=batch["image"].device)
    return out


def window_of(batch):
    """The model's ``window`` argument for a training batch: None, or (list of full images, offsets) of crops."""
    return (batch["full_image"], batch["offset"]) if "full_image" in batch else None


def pretrain_rotation(model, scenes, cfg, device, epochs=None, progress=True):
    """Self-supervised pretraining of ``model``'s encoder: classify 0/90/180/270-degree rotations.

    Uses only the images of ``scenes`` (no labels). The rotation head (global average pool + linear)
    is discarded afterwards; the encoder weights stay in ``model``.

    Returns:
        history (list of per-epoch dicts with train_loss and val_rot_acc on the last 10% of images).
    """
    epochs = cfg.pretrain_epochs if epochs is None else epochs
    head = nn.Linear(model.unet.widths[-1], 4).to(device)

    class Rot(nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.head = model, head

        def forward(self, x):
            return self.head(self.model.encoder_features(x).mean(dim=(2, 3)))

    net = Rot()
    n_hold = max(1, len(scenes) // 10)
    train_scenes = RenderedScenes(scenes.images[:-n_hold], scenes.depth[:-n_hold], scenes.mask[:-n_hold],
                                  scenes.seeds[:-n_hold])
    hold = scenes.images[-n_hold:]

    def make(sc, i, g):
        k = int(torch.randint(0, 4, (1,), generator=g))
        x = _color_jitter(to_input(sc.images[i:i + 1])[0], g)
        return {"image": torch.rot90(x, k, dims=(1, 2)), "label": torch.tensor(k)}

    ds = _Samples(train_scenes, make, cfg.seed, 7)
    local = _local_batch(cfg)
    loader, sampler = _loader(ds, local, True, cfg.seed + 1, True)
    ddp = _wrap(net, device, find_unused=True)  # the decoder takes no part
    opt = torch.optim.AdamW(_param_groups(net, cfg.weight_decay), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(epochs * len(loader), cfg.warmup))

    def step(m, batch):
        logits = m(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        return loss, {}

    def on_epoch(epoch):
        net.eval()
        correct = torch.zeros(2, dtype=torch.float64)
        with torch.no_grad():
            mine = range(_rank(), len(hold), _world())
            for k in range(0, len(mine), 64):
                ids = list(mine)[k:k + 64]
                x = to_input(hold[ids]).to(device)
                for r in range(4):
                    pred = net(torch.rot90(x, r, dims=(2, 3))).argmax(1)
                    correct += torch.tensor([float((pred == r).sum()), float(len(ids))], dtype=torch.float64)
        correct = _all_sum(correct)
        return {"val_rot_acc": float(correct[0] / max(correct[1], 1))}

    history = []
    for _ in _train_epochs(net, ddp, opt, sched, ds, loader, sampler, epochs, 0, step, cfg, device,
                           history, on_epoch, "pretrain", progress=progress):
        pass
    return history


def _local_batch(cfg):
    world = _world()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size must be divisible by the number of processes ({world}), got {cfg.batch_size}")
    return cfg.batch_size // world


def _wrap(model, device, find_unused=False):
    if _world() > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        from carve.nets import use_global_batchnorm

        use_global_batchnorm(model)
        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                   find_unused_parameters=find_unused)
    return model


def fit(cfg: TrainConfig, *, resume=None, progress=True, scenes=None, cache_dir=None, stop_after=None):
    """Train (or resume) a learned module; see the module docstring for what is written.

    Args:
        cfg: the run's :class:`TrainConfig`.
        resume: path of a ``last.pt`` to continue from (its stored config is used; ``cfg.out`` and
            ``cfg.epochs`` may differ, so a finished run can be extended).
        progress: show tqdm bars (on rank 0, on a tty).
        scenes: optional dict {"train": RenderedScenes, "val": RenderedScenes} to skip rendering.
        cache_dir: keep the rendered scenes there for later runs (see :func:`render_split`).
        stop_after: stop after this many epochs of this call (the schedule still spans
            ``cfg.epochs``); resume later from ``last.pt``. For time-sliced jobs.

    Returns:
        dict with ``model`` (the trained, unwrapped model on the CPU, last epoch), ``history``, and
        ``best`` (the best validation record).
    """
    device, started = _setup_distributed()
    try:
        return _fit(cfg, resume, progress, scenes, device, cache_dir, stop_after)
    finally:
        if started:
            import torch.distributed as dist
            dist.barrier()
            dist.destroy_process_group()


def _fit(cfg, resume, progress, scenes, device, cache_dir, stop_after):
    ck = None
    if resume:
        ck = load_checkpoint(resume)
        if "train_state" not in ck:
            raise CheckpointError(f"checkpoint {str(resume)!r} holds no training state (it is an exported "
                                  f"model); resume from a run's last.pt")
        stored = TrainConfig.from_dict(ck["metadata"]["config"])
        stored.out, stored.epochs = cfg.out, cfg.epochs
        cfg = stored
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    task = _task(cfg.task)
    out = Path(cfg.out)
    rank = _rank()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    _seed_all(cfg.seed)

    t_render = time.perf_counter()
    if scenes is None:
        scenes = {"train": render_split("train", cfg.train, cfg.train_render_size, progress=progress,
                                        cache_dir=cache_dir),
                  "val": render_split("val", cfg.val, cfg.size, progress=progress, cache_dir=cache_dir)
                  if cfg.val else None}
    render_seconds = time.perf_counter() - t_render
    t_train = time.perf_counter()
    n_labeled = max(1, int(round(cfg.train * cfg.label_fraction)))
    labeled = scenes["train"].subset(n_labeled)

    model = task.build(widths=cfg.widths, coord_channels=cfg.coord_channels, global_context=cfg.global_context,
                       context_size=cfg.context_size, resolution_channel=cfg.resolution_channel)
    task.init_from_data(model, labeled)
    model.to(device)
    history, pre_history = [], []
    start, prior_seconds = 0, 0.0
    if ck is not None:
        model.load_state_dict(ck["state_dict"])
        history = list(ck["train_state"]["history"])
        pre_history = list(ck["train_state"].get("pretrain_history", []))
        start = int(ck["train_state"]["epoch"])
        prior_seconds = float(ck["metadata"].get("train_seconds", 0.0))
    elif cfg.pretrain == "rotation":
        _log(f"[pretrain] rotation prediction on {len(scenes['train'])} unlabeled renders")
        pre_history = pretrain_rotation(model, scenes["train"], cfg, device, progress=progress)
        _seed_all(cfg.seed + 1)

    ds = _Samples(labeled, task.train_sample, cfg.seed, 1)
    loader, sampler = _loader(ds, _local_batch(cfg), True, cfg.seed, True)
    if len(loader) == 0:
        raise ValueError(f"batch_size ({cfg.batch_size}) must not exceed the number of labeled train scenes "
                         f"({n_labeled})")
    ddp = _wrap(model, device)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.epochs * len(loader), cfg.warmup))
    if ck is not None:
        opt.load_state_dict(ck["train_state"]["optimizer"])
        sched.load_state_dict(ck["train_state"]["scheduler"])
        sched.lr_lambdas[0] = _lr_lambda(cfg.epochs * len(loader), cfg.warmup)
    extra = task.extra_tensors(labeled)
    best = None
    for rec in history:
        if task.primary in rec and (best is None or task.better(rec[task.primary], best[task.primary])):
            best = rec
    _log(f"[{cfg.task}] {n_labeled} labeled train scenes at {cfg.train_render_size}x{cfg.train_render_size} "
         f"(inputs {cfg.size}x{cfg.size}), {cfg.val} val scenes at {cfg.size}x{cfg.size}; "
         f"{sum(p.numel() for p in model.parameters()):,} parameters; {_world()} process(es) on {device}; "
         f"epochs {start + 1}..{cfg.epochs}")

    def step(m, batch):
        return task.loss(m, batch, cfg)

    def on_epoch(epoch):
        return _evaluate(model, task, scenes["val"], cfg, device) if scenes.get("val") is not None else {}

    end = cfg.epochs if stop_after is None else min(cfg.epochs, start + int(stop_after))
    for epoch, record in _train_epochs(model, ddp, opt, sched, ds, loader, sampler, cfg.epochs, start, step,
                                       cfg, device, history, on_epoch, cfg.task, end, progress):
        is_best = task.primary in record and (best is None or task.better(record[task.primary], best[task.primary]))
        if is_best:
            best = record
        if rank == 0:
            meta = {"config": cfg.to_dict(), "epoch": epoch + 1, "metrics": record, "best": best,
                    "pretrain_history": pre_history, "torch": torch.__version__,
                    "command": _command_line(), "render_seconds": render_seconds,
                    "train_seconds": prior_seconds + time.perf_counter() - t_train, "device": str(device),
                    "processes": _world(), "threads": torch.get_num_threads()}
            train_state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch + 1,
                           "history": history, "pretrain_history": pre_history}
            cpu_model = model
            save_model(cpu_model, out / "last.pt", metadata=meta, extra_tensors=extra, train_state=train_state)
            if is_best or scenes.get("val") is None:
                save_model(cpu_model, out / "best.pt", metadata=meta, extra_tensors=extra, train_state=train_state)
                save_model(cpu_model, out / "model.pt", metadata=meta, extra_tensors=extra)
            (out / "history.json").write_text(json.dumps({"history": history, "pretrain": pre_history,
                                                          "config": cfg.to_dict()}, indent=1))
            plot_history(history, out / "curves.png", title=cfg.task)
    model.to("cpu").eval()
    return {"model": model, "history": history, "best": best, "pretrain_history": pre_history, "config": cfg}


# ----------------------------------------------------------------------------------------------
# command line (shared by `carve train-depth` and `python -m carve.training`)


def add_arguments(parser, task="depth"):
    """Add the training options of :class:`TrainConfig` to an argparse parser."""
    d = TrainConfig(task=task)
    parser.add_argument("--out", default=f"runs/{task}", help="output directory (default: %(default)s)")
    parser.add_argument("--size", type=int, default=d.size, help="training input size in pixels (square)")
    parser.add_argument("--render-size", type=int, default=d.render_size,
                        help="render training scenes at this size and train on --size crops (0 = --size)")
    parser.add_argument("--train", type=int, default=d.train, help="number of training scenes")
    parser.add_argument("--val", type=int, default=d.val, help="number of validation scenes")
    parser.add_argument("--label-fraction", type=float, default=d.label_fraction,
                        help="share of training scenes whose labels are used")
    parser.add_argument("--widths", type=lambda s: tuple(int(x) for x in s.split(",")),
                        default=d.widths, help="UNet widths per level, e.g. 8,16,32,64,128")
    parser.add_argument("--no-coord-channels", action="store_true", help="drop the CoordConv channels")
    parser.add_argument("--no-global-context", action="store_true", help="drop the global-context branch")
    parser.add_argument("--no-resolution-channel", action="store_true",
                        help="drop the resolution channel (by default on when --render-size exceeds --size)")
    parser.add_argument("--context-size", type=int, default=d.context_size,
                        help="thumbnail size seen by the global-context branch (power of two)")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch over all processes")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup", type=float, default=d.warmup, help="share of steps with linear warm-up")
    parser.add_argument("--scale-min", type=float, default=d.scale_min,
                        help="resize each batch by a random factor in [scale-min, 1] (1 = off)")
    if task == "depth":
        parser.add_argument("--silog-lambda", type=float, default=d.silog_lambda)
        parser.add_argument("--grad-weight", type=float, default=d.grad_weight)
    parser.add_argument("--pretrain", choices=["rotation"], default=None,
                        help="pretrain the encoder on unlabeled renders (rotation prediction)")
    parser.add_argument("--pretrain-epochs", type=int, default=d.pretrain_epochs)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = default)")
    parser.add_argument("--resume", default=None, help="continue from this last.pt")
    parser.add_argument("--cache-dir", default=None, help="keep rendered training scenes here for later runs")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many epochs (resume later with --resume OUT/last.pt)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def config_from_args(args, task="depth"):
    """The :class:`TrainConfig` of parsed :func:`add_arguments` options."""
    kw = dict(task=task, out=args.out, size=args.size, render_size=args.render_size, train=args.train, val=args.val,
              label_fraction=args.label_fraction, widths=args.widths,
              coord_channels=not args.no_coord_channels, global_context=not args.no_global_context,
              resolution_channel=False if args.no_resolution_channel else None,
              context_size=args.context_size,
              epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
              warmup=args.warmup, scale_min=args.scale_min, pretrain=args.pretrain, pretrain_epochs=args.pretrain_epochs,
              seed=args.seed, threads=args.threads)
    if task == "depth":
        kw.update(silog_lambda=args.silog_lambda, grad_weight=args.grad_weight)
    return TrainConfig(**kw)


def run(args, task="depth"):
    """Run a training from parsed options; returns 0. Prints the best validation record."""
    cfg = config_from_args(args, task)
    res = fit(cfg, resume=args.resume, progress=not args.no_progress, cache_dir=args.cache_dir,
              stop_after=args.stop_after)
    if res["best"]:
        _log(f"best epoch {res['best']['epoch']}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in res["best"].items() if k.startswith("val_")))
    _log(f"outputs in {cfg.out}: model.pt (best weights), last.pt (resumable), history.json, curves.png")
    return 0


def model_card(path, evaluation=None):
    """A Markdown model card for a model file: what it is, how it was trained, what it scores.

    Args:
        path: a model file written by :func:`fit` (``model.pt``).
        evaluation: optional text (e.g. the table printed by ``benchmarks/eval_depth.py``) to include.

    Returns:
        str (Markdown).
    """
    ck = load_checkpoint(path)
    meta = ck["metadata"]
    cfg = meta.get("config", {})
    size_mb = Path(path).stat().st_size / 2 ** 20
    n_params = sum(v.numel() for k, v in ck["state_dict"].items() if not k.endswith("num_batches_tracked")
                   and "running" not in k)
    best = meta.get("metrics") or {}
    render = cfg.get("render_size") or cfg.get("size")
    lines = [
        f"## {Path(path).name}: {ck['task']} model",
        "",
        f"- Network: UNet widths {cfg.get('widths')}, CoordConv {cfg.get('coord_channels')}, "
        f"resolution channel {cfg.get('resolution_channel', False)}, "
        f"global context {cfg.get('global_context')} (thumbnail {cfg.get('context_size')} px); "
        f"{n_params:,} parameters, {size_mb:.2f} MB (float32).",
        f"- Data: procedural scenes of `data.scenes` rendered at {render}x{render}"
        + (f" and seen as {cfg.get('size')}x{cfg.get('size')} crops" if render != cfg.get("size") else "") + "; "
        f"train scene seeds 0..{cfg.get('train', 0) - 1} ({cfg.get('label_fraction', 1.0):.0%} of their labels used), "
        f"validation seeds {SPLIT_SEEDS['val']}..{SPLIT_SEEDS['val'] + cfg.get('val', 0) - 1}; test seeds start at "
        f"{SPLIT_SEEDS['test']:,} and were never seen in training.",
        f"- Training: epoch {meta.get('epoch')} of {cfg.get('epochs')} (best validation), global batch {cfg.get('batch_size')}, AdamW lr {cfg.get('lr')} "
        f"(warm-up {cfg.get('warmup')}, cosine), weight decay {cfg.get('weight_decay')}, batch rescaling in "
        f"[{cfg.get('scale_min')}, 1], seed {cfg.get('seed')}"
        + (f", encoder pretrained by rotation prediction for {cfg.get('pretrain_epochs')} epochs" if cfg.get("pretrain") else "")
        + ".",
        f"- Command: `{meta.get('command', '?')}` (torch {meta.get('torch', '?')}).",
        "- Validation at the saved epoch: " + ", ".join(f"{k[4:]} {v:.4g}" for k, v in best.items()
                                                         if k.startswith("val_")) + ".",
        f"- Wall time up to the saved epoch: {meta.get('render_seconds', 0):.0f} s rendering, "
        f"{meta.get('train_seconds', 0):.0f} s training (incl. pretraining and validation), on {meta.get('device', '?')} "
        f"with {meta.get('processes', 1)} process(es) x {meta.get('threads', '?')} thread(s).",
    ]
    if evaluation:
        lines += ["", "```", evaluation.strip(), "```"]
    return "\n".join(lines) + "\n"


def _command_line() -> str:
    """The command that started this run, as a user would type it: ``python -m carve.depth ...``."""
    script = Path(sys.argv[0])
    package = Path(__file__).resolve().parent
    if script.suffix == ".py" and script.resolve().parent == package:
        head = ["python", "-m", f"carve.{script.stem}"]
    else:
        head = [script.name]
    return " ".join(head + sys.argv[1:])


def train_command(task, argv=None, *, prog, description):
    """A training command line for ``task``: parse :func:`add_arguments`' options from ``argv`` and run."""
    import argparse

    p = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(p, task)
    return run(p.parse_args(argv), task)


def main(argv=None):
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["card"]:
        c = argparse.ArgumentParser(prog="python -m carve.training card",
                                    description="Print a Markdown model card for a model file.")
        c.add_argument("model")
        c.add_argument("--evaluation", default=None, help="a text file (e.g. eval_depth.py output) to include")
        a = c.parse_args(argv[1:])
        print(model_card(a.model, Path(a.evaluation).read_text() if a.evaluation else None))
        return 0
    p = argparse.ArgumentParser(prog="python -m carve.training",
                                description="Train a learned module on procedural scenes "
                                            "(works under torchrun --nproc_per_node=N); "
                                            "`python -m carve.training card MODEL` prints a model card.")
    p.add_argument("task", choices=sorted(TASKS))
    args, rest = p.parse_known_args(argv)
    return train_command(args.task, rest, prog=f"python -m carve.training {args.task}", description=None)


if __name__ == "__main__":
    raise SystemExit(main())
