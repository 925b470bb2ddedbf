"""The contract between the training loop and what it trains: the :class:`Task` protocol.

A task (monocular depth, learned silhouettes) is an object passed to :func:`carve.learn.loop.fit`,
:func:`carve.learn.checkpoints.load_model` and :func:`carve.learn.inference.inference_model`; the
learn package never imports a task's module. ``carve.depth.DEPTH`` and
``carve.segmentation.network.SILHOUETTE`` are the two that ship. A checkpoint stores the task's
``name``, and loading it with another task is an error.

Shapes, for a split of N scenes at H x W (see :class:`carve.learn.scenes.RenderedScenes`): a
training sample is a dict of per-image tensors (``"image"``: (3, H, W) float in [0, 1], labels such
as (H, W)); the loader stacks them into a batch with a leading B, and the loop may resize and crop
every entry whose last two dimensions are (H, W) (see :func:`carve.learn.augment.scale_and_crop`).

Example:
    A task is any object with these attributes (a class with static methods is the usual form):

    >>> from carve.learn.task import Task
    >>> sorted(n for n in Task.__annotations__) + sorted(n for n in Task.__dict__
    ...     if not n.startswith("_") and callable(Task.__dict__[n]))   # doctest: +NORMALIZE_WHITESPACE
    ['metric_names', 'name', 'primary', 'retrain_hint', 'shipped_model', 'better', 'build', 'evaluate',
     'extra_tensors', 'init_from_data', 'loss', 'train_sample', 'val_batch']
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # only for the annotations: this module imports nothing heavy
    import numpy as np
    import torch

    from carve.learn.config import TrainConfig
    from carve.learn.nets import ImageModel
    from carve.learn.scenes import RenderedScenes

__all__ = ["Task"]


@runtime_checkable
class Task(Protocol):
    """What :func:`carve.learn.loop.fit` needs to know about a learned module.

    Attributes:
        name: the task's name ("depth", "silhouette"), one of :data:`carve.learn.config.TASK_NAMES`;
            stored in checkpoints and in :attr:`TrainConfig.task`.
        primary: the validation record key that picks the best epoch (e.g. "val_abs_rel").
        metric_names: names of the per-image validation metrics :meth:`evaluate` returns; the
            records hold their means as ``"val_<name>"``.
        shipped_model: file name of the model that ships in ``carve/models`` (the default of the
            task's predict function).
        retrain_hint: the command that trains one, for the error when the shipped file is missing.
    """

    name: str
    primary: str
    metric_names: tuple[str, ...]
    shipped_model: str
    retrain_hint: str

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` of :attr:`primary` beats ``b`` (``a < b`` for an error)."""

    def build(self, **network) -> "ImageModel":
        """A fresh model with the given network keywords (``widths``, ``coord_channels``,
        ``global_context``, ``context_size``, ``resolution_channel``, as stored in checkpoints)."""

    def init_from_data(self, model: "ImageModel", scenes: "RenderedScenes") -> None:
        """Set what the labeled training scenes tell before training (e.g. the head's bias)."""

    def extra_tensors(self, scenes: "RenderedScenes") -> dict[str, "torch.Tensor"]:
        """Named tensors saved with the model (e.g. the training set's (H, W) mean depth map)."""

    def train_sample(self, scenes: "RenderedScenes", i: int, g: "torch.Generator") -> dict[str, "torch.Tensor"]:
        """Training sample ``i``, augmented with random numbers drawn only from ``g``:
        ``{"image": (3, H, W) float in [0, 1], <labels>}``."""

    def val_batch(self, scenes: "RenderedScenes", idx: list[int]) -> dict[str, "torch.Tensor"]:
        """The fixed (unaugmented or deterministically augmented) validation batch of scenes ``idx``:
        ``{"image": (b, 3, H, W), <labels>}``."""

    def loss(self, model: "torch.nn.Module", batch: dict, cfg: "TrainConfig") -> tuple["torch.Tensor", dict[str, float]]:
        """(scalar loss, {part: float}) of a training batch. Call ``model(...)`` (not a method of it),
        so that DistributedDataParallel syncs the gradients; pass
        ``window=carve.learn.augment.window_of(batch)`` for crops."""

    def evaluate(self, model: "ImageModel", batch: dict, cfg: "TrainConfig") -> dict[str, "np.ndarray"]:
        """Per-image metrics of a validation batch: {name: (b,) values} for every :attr:`metric_names`."""
