"""Model files: write them atomically, read them safely, build the model they hold.

A checkpoint is a dict saved with ``torch.save`` holding only tensors and plain values, so it loads
with ``torch.load(weights_only=True)``: a model file is untrusted input, and a corrupt or foreign
file raises :class:`CheckpointError` naming the file and what is wrong with it. It stores the task's
name; :func:`load_checkpoint` checks it against the task the caller expects.

Keys: ``format`` ("carve3d-unet"), ``version``, ``task`` (the task's name), ``model_config`` (the
network keywords), ``state_dict``, ``metadata`` (config, metrics, command...), ``tensors`` (extra
named tensors, e.g. the mean depth map) and, in a resumable ``last.pt``, ``train_state``.

Example:
    >>> import tempfile, pathlib
    >>> from carve.learn.nets import ImageModel
    >>> class Demo(ImageModel):
    ...     task = "demo"
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.pt"
    >>> save_model(Demo(widths=(4, 8)), path, metadata={"note": "hi"})
    >>> ck = load_checkpoint(path)
    >>> ck["task"], ck["model_config"]["widths"], ck["metadata"]
    ('demo', [4, 8], {'note': 'hi'})
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from data.files import atomic_path

__all__ = ["FORMAT", "FORMAT_VERSION", "MODELS_DIR", "CheckpointError", "save_model", "load_checkpoint",
           "build_model", "load_model", "model_file", "shipped_model_path"]

FORMAT = "carve3d-unet"
FORMAT_VERSION = 1
#: where the shipped default models live inside the package
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, corrupt, foreign, or for another task."""


def _plain(obj):
    """JSON-able copy (tuples -> lists) of a metadata value."""
    return json.loads(json.dumps(obj))


def save_model(model, path, *, metadata=None, extra_tensors=None, train_state=None) -> None:
    """Write a checkpoint loadable with ``torch.load(weights_only=True)``.

    Args:
        model: an :class:`carve.learn.nets.ImageModel` subclass (unwrapped).
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
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _task_name(task) -> str | None:
    return task if task is None or isinstance(task, str) else task.name


def load_checkpoint(path, task=None) -> dict:
    """Read and validate a checkpoint written by :func:`save_model` (``weights_only=True``).

    Args:
        path: file path.
        task: the :class:`carve.learn.task.Task` the caller expects (or its name, e.g. "depth"),
            or None for any.

    Returns:
        the checkpoint dict (see the module notes for its keys).

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
    _check_format(ck, path)
    expected = _task_name(task)
    if expected is not None and ck["task"] != expected:
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {ck['task']!r} model, expected a {expected!r} model")
    return ck


def _check_format(ck, path: Path) -> None:
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


def build_model(ck: dict, task, path="<checkpoint>"):
    """The model of a validated checkpoint dict of ``task``, with its weights, in eval mode.

    The extra tensors become attributes (``model.mean_depth``), the metadata ``model.metadata``.
    """
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


def load_model(path, task):
    """Load a model file of ``task`` (a :class:`carve.learn.task.Task`) -> model in eval mode (CPU).

    Raises:
        CheckpointError: see :func:`load_checkpoint` and :func:`build_model`.
    """
    return build_model(load_checkpoint(path, task), task, path)


def shipped_model_path(task) -> Path:
    """Where the shipped model of ``task`` (a :class:`carve.learn.task.Task`) lives in the package."""
    return MODELS_DIR / task.shipped_model


def model_file(path, task) -> str:
    """The model file to load: ``path``, or the shipped model of ``task`` when None.

    Raises:
        CheckpointError: ``path`` is None and the shipped file is missing (the message says how to
        train one: ``task.retrain_hint``).
    """
    p = shipped_model_path(task) if path is None else Path(path)
    if path is None and not p.is_file():
        raise CheckpointError(f"the shipped {task.name} model {str(p)!r} is missing from this installation; "
                              f"reinstall carve3d or train one with `{task.retrain_hint}`")
    return str(p.resolve())
