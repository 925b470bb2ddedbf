"""Inference: THE loop that runs a trained image model over images of any sizes.

:func:`predict_padded` takes a list of (3, H_i, W_i) images and batches together those whose sizes
round up to the same canvas (a multiple of the network's ``unet.multiple``), padded (edge-replicated,
bottom and right) to it with a validity mask, never resized, so that the network's coordinates and
global context follow each image's own extent; each output comes back cropped to its image. The
network pads a lone image to that same canvas, so every output equals the image's own single-image
prediction up to float noise: a larger canvas would feed the convolutions at the image's right and
bottom edges replicated pixels where the lone image has the zero padding of its own border (once
up to 1.2% of the depth). It runs in eval mode under ``torch.inference_mode`` (and restores the model's
mode afterwards), ``batch_size`` images per forward pass, with the project's progress bar.
:func:`inference_model` loads a model file once per process and prepares it for speed.

Example:
    >>> from carve.learn.nets import ImageModel
    >>> class Net(ImageModel):
    ...     def forward(self, images, mask=None):
    ...         return self.features(images, mask)[:, 0]
    >>> net = Net(widths=(4, 8))
    >>> outs = predict_padded(net, [torch.rand(3, 5, 7), torch.rand(3, 9, 4)])
    >>> [tuple(o.shape) for o in outs], net.training
    ([(5, 7), (9, 4)], True)
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from carve.learn.checkpoints import load_model, model_file
from carve.learn.nets import fold_batchnorm
from data.progress import progress as progress_bar

__all__ = ["image_tensors", "run_padded", "predict_padded", "inference_model", "network"]


def image_tensors(images: list[np.ndarray]) -> list[torch.Tensor]:
    """(H, W, 3) float32 arrays in [0, 1] (e.g. from :func:`data.images.rgb_images`) -> (3, H, W) tensors."""
    return [torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32)).permute(2, 0, 1) for im in images]


def run_padded(model: torch.nn.Module, xs: list[torch.Tensor], device) -> list[torch.Tensor]:
    """One forward pass over images of possibly different sizes, padded to one canvas with a mask.

    Args:
        model: a model taking ``(images (B, 3, H, W), mask (B, H, W) bool or None)``, with a ``unet``.
        xs: list of (3, H_i, W_i) float tensors.
        device: where to run.

    Returns:
        list of the outputs cropped to each image: (..., H_i, W_i) (on ``device``).
    """
    m = model.unet.multiple
    h_max = max(x.shape[1] for x in xs)
    w_max = max(x.shape[2] for x in xs)
    ph, pw = -(-h_max // m) * m, -(-w_max // m) * m
    if all(x.shape[1:] == xs[0].shape[1:] for x in xs):
        batch, mask = torch.stack(xs).to(device), None
    else:
        batch = torch.stack([F.pad(x[None], (0, pw - x.shape[2], 0, ph - x.shape[1]), mode="replicate")[0]
                             for x in xs]).to(device)
        mask = torch.zeros((len(xs), ph, pw), dtype=torch.bool, device=device)
        for i, x in enumerate(xs):
            mask[i, :x.shape[1], :x.shape[2]] = True
    out = model(batch.contiguous(memory_format=torch.channels_last), mask)
    return [out[i, ..., :x.shape[1], :x.shape[2]] for i, x in enumerate(xs)]


def predict_padded(model: torch.nn.Module, xs: list[torch.Tensor], *, batch_size: int = 8, device=None,
                   desc: str = "inference", progress: bool | None = None) -> list[torch.Tensor]:
    """The model's outputs for every image of ``xs``, ``batch_size`` at a time (see the module notes).

    Args:
        model: as for :func:`run_padded`.
        xs: list of (3, H_i, W_i) float tensors in [0, 1].
        batch_size: images per forward pass (bounds memory).
        device: where to run (default: the model's); the model is moved there.
        desc: the progress bar's label.
        progress: True/False to force the bar, None for the default (more than 4 batches on a tty).

    Returns:
        list of float32 CPU tensors (..., H_i, W_i).
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model = model.to(device).eval()
    outs = [None] * len(xs)
    try:
        with torch.inference_mode():
            for batch in progress_bar(_canvas_batches(xs, model.unet.multiple, batch_size), desc=desc,
                                      enabled=progress):
                for i, o in zip(batch, run_padded(model, [xs[i] for i in batch], device)):
                    outs[i] = o.float().cpu()
    finally:
        model.train(was_training)
    return outs


def _canvas_batches(xs: list[torch.Tensor], multiple: int, batch_size: int) -> list[list[int]]:
    """Indices of ``xs`` in batches of at most ``batch_size`` whose sizes round up to one canvas."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, x in enumerate(xs):
        groups.setdefault((-(-x.shape[1] // multiple), -(-x.shape[2] // multiple)), []).append(i)
    return [g[k:k + batch_size] for g in groups.values() for k in range(0, len(g), batch_size)]


@functools.lru_cache(maxsize=8)
def _cached(path: str, task, mtime_ns: int):  # mtime in the key: a retrained file is reloaded
    return fold_batchnorm(load_model(path, task)).to(memory_format=torch.channels_last)


def inference_model(path, task):
    """The model of ``task`` in file ``path``, ready for inference: BatchNorm folded, channels-last,
    loaded once per file (and again when the file changes). Raises :class:`CheckpointError`."""
    try:
        mtime = Path(path).stat().st_mtime_ns if Path(path).is_file() else None
    except OSError:  # removed between the two calls
        mtime = None
    if mtime is None:
        return load_model(path, task)  # raises the CheckpointError that names the file
    return _cached(str(path), task, mtime)


def network(model, task, model_class):
    """The network to run for a ``model`` argument of a task's predict function.

    Args:
        model: None (the task's shipped model) or a path: that file's model, from
            :func:`inference_model`; an instance of ``model_class``, or one wrapped in
            DistributedDataParallel: that network itself.
        task: the :class:`carve.learn.task.Task`.
        model_class: the task's model class (``DepthModel``, ``SilhouetteModel``).

    Raises:
        TypeError: anything else. CheckpointError: an unusable model file.
    """
    if model is None or isinstance(model, (str, Path)):
        return inference_model(model_file(model, task), task)
    if isinstance(model, model_class):
        return model
    if isinstance(model, torch.nn.Module) and isinstance(getattr(model, "module", None), model_class):
        return model.module
    raise TypeError(f"model must be None (the shipped model), a path or a {model_class.__name__}, "
                    f"got {type(model).__name__}")
