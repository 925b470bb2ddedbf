"""The configuration of a training run: :class:`TrainConfig` (stored in every checkpoint it writes).

This module imports neither torch nor numpy: the command line builds its parser from it
(:mod:`carve.learn.cli`), and ``carve --help`` must stay fast.

Example:
    >>> cfg = TrainConfig(task="depth", size=64, widths=(8, 16, 32), epochs=2)
    >>> cfg.train_render_size, cfg.resolution_channel
    (64, False)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

__all__ = ["TrainConfig", "TASK_NAMES"]

#: the names of the tasks carve trains (the ``name`` of :data:`carve.depth.DEPTH` and
#: :data:`carve.segmentation.network.SILHOUETTE`), as stored in configs and checkpoints
TASK_NAMES = ("depth", "silhouette")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoints).

    Attributes:
        task: the task's name, one of :data:`TASK_NAMES` ("depth" or "silhouette").
        out: output directory.
        size: the network trains on ``size x size`` images (and validates on ``size x size`` renders).
        render_size: training scenes are rendered at ``render_size x render_size`` (0: ``size``).
        train, val: number of train and validation scenes.
        label_fraction: share of the train scenes whose labels are used (the first ones).
        widths, coord_channels, global_context, context_size, resolution_channel: the
            :class:`carve.learn.nets.UNet`; ``resolution_channel`` None means on exactly when batches
            mix resolutions (crops, ``render_size > size``, and ``scale_min < 1``), the only way it can
            be learned: BatchNorm removes what a whole batch shares.
        epochs, batch_size (global, over all ranks), lr (peak), weight_decay, warmup (share of the
            steps with a linear warm-up; the rest decays on a cosine to 1% of lr), clip (grad norm).
        scale_min: each training batch is resized by a factor drawn in [scale_min, 1] of the render
            (same field of view, fewer pixels), so that the network sees objects at several pixel
            sizes and keeps working at other resolutions; 1 turns this off. Resized batches larger
            than ``size`` are cut into random ``size x size`` crops whose coordinates and global
            context still describe the whole picture (see ``window`` in :class:`carve.learn.nets.UNet`):
            with ``render_size = 2 size`` the network learns the pixel scales of images up to twice
            its training input for the price of ``size``-pixel inputs.
        silog_lambda, grad_weight: the depth loss (:func:`carve.learn.losses.depth_loss`).
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
        if self.task not in TASK_NAMES:
            raise ValueError(f"task must be one of {sorted(TASK_NAMES)}, got {self.task!r}")
        self._check_counts()
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction!r}")
        if self.pretrain not in (None, "rotation"):
            raise ValueError(f"pretrain must be None or 'rotation', got {self.pretrain!r}")
        if self.size % (2 ** (len(self.widths) - 1)):
            raise ValueError(f"size must be a multiple of 2**(len(widths)-1) = {2 ** (len(self.widths) - 1)} "
                             f"for training, got {self.size}")
        if not 0 < self.scale_min <= 1:
            raise ValueError(f"scale_min must be in (0, 1], got {self.scale_min!r}")
        self._set_resolution_channel()
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")  # inf trains NaN weights
        for name in ("weight_decay", "silog_lambda", "grad_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (isinstance(self.warmup, (int, float)) and 0 <= self.warmup < 1):
            raise ValueError(f"warmup must be a share of the steps in [0, 1), got {self.warmup!r}")
        for name in ("pretrain_epochs", "seed", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")

    def _check_counts(self):
        for name in ("size", "train", "val", "epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "val" else 1):
                kind = "non-negative" if name == "val" else "positive"
                raise ValueError(f"{name} must be a {kind} int, got {v!r}")
        if not isinstance(self.render_size, int) or isinstance(self.render_size, bool) or self.render_size < 0:
            raise ValueError(f"render_size must be a non-negative int (0 = size), got {self.render_size!r}")

    def _set_resolution_channel(self):
        mixed = self.train_render_size > self.size and self.scale_min < 1  # crops at per-image scales
        if self.resolution_channel is None:
            self.resolution_channel = mixed
        elif self.resolution_channel and not mixed:
            raise ValueError(f"resolution_channel needs batches that mix resolutions, i.e. render_size > size and "
                             f"scale_min < 1, got render_size {self.render_size}, size {self.size}, scale_min "
                             f"{self.scale_min}")

    @property
    def train_render_size(self) -> int:
        """Size at which the training scenes are rendered."""
        return self.render_size or self.size

    @property
    def network(self) -> dict:
        """The keyword arguments of the task's ``build`` (the network's shape)."""
        return dict(widths=self.widths, coord_channels=self.coord_channels, global_context=self.global_context,
                    context_size=self.context_size, resolution_channel=self.resolution_channel)

    def to_dict(self) -> dict:
        """The fields as plain JSON-able values (``widths`` as a list)."""
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config of :meth:`to_dict`'s output; unknown keys (from other versions) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
