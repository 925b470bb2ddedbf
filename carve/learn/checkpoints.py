"""Model files: write them atomically, read them safely, build the model they hold.

A checkpoint is a dict saved with ``torch.save`` holding only tensors and plain values, so it loads
with ``torch.load(weights_only=True)``: a model file is untrusted input, and a corrupt or foreign
file raises :class:`CheckpointError` naming the file and what is wrong with it. It stores the task's
name; :func:`load_checkpoint` checks it against the task the caller expects. Sizes are checked before
they cost memory: the zip's members must not declare more bytes than the file holds (``torch.save``
stores them uncompressed), and :func:`build_model` matches the weights against the declared network
built on the ``meta`` device (no memory) before it builds the real one. Weights must be finite.

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

import io
import json
import os
import zipfile
from pathlib import Path

import torch

from data.files import atomic_path

__all__ = ["FORMAT", "FORMAT_VERSION", "MODELS_DIR", "CheckpointError", "save_model", "load_checkpoint",
           "build_model", "load_model", "model_file", "shipped_model_path", "first_nonfinite"]

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
        path: destination; written atomically (temporary file, then rename): a failure or Ctrl-C
            leaves no partial file.
        metadata: JSON-able dict (config, metrics, command...), stored as given.
        extra_tensors: dict of named tensors kept with the model (e.g. the training mean depth map).
        train_state: dict with optimiser/scheduler state and the epoch, for resuming.

    Raises:
        ValueError: a weight or extra tensor is not finite (NaN or inf): such a model only predicts
            NaN, so it is never written.
    """
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    extra = {k: v.detach().cpu() for k, v in (extra_tensors or {}).items()}
    bad = first_nonfinite(weights) or first_nonfinite(extra)
    if bad is not None:
        raise ValueError(f"model must have finite weights to be saved to {str(path)!r}, but tensor {bad!r} holds "
                         f"NaN or inf (training diverged: lower the learning rate)")
    state = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "task": model.task,
        "model_config": _plain(model.config()),
        "state_dict": weights,
        "metadata": _plain(metadata or {}),
        "tensors": extra,
    }
    if train_state is not None:
        state["train_state"] = train_state
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # serialised in memory, then written by Python: torch's own file writer aborts the process
    # (std::terminate) when Ctrl-C comes while a full disk fails its write
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def first_nonfinite(tensors: dict) -> str | None:
    """The name of the first floating-point tensor of ``tensors`` ({name: tensor}) holding NaN or inf, or None."""
    for name, t in tensors.items():
        inexact = isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())
        if inexact and not bool(torch.isfinite(t).all()):
            return name
    return None


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
        CheckpointError: missing, unreadable, corrupt or foreign file, members that declare more
        bytes than the file holds, malformed entries, non-finite weights (naming the first bad
        tensor), or a model for another task.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    _check_sizes(path)
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


def _check_sizes(path: Path) -> None:
    """A CheckpointError when the zip's members declare more bytes than the file holds: ``torch.save``
    stores them uncompressed, and ``torch.load`` would allocate what a compressed member declares."""
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
        size = os.path.getsize(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as e:  # Runtime: unknown zip version
        raise CheckpointError(f"checkpoint {str(path)!r} is not a readable carve3d model file (corrupt, truncated or "
                              f"not a torch zip checkpoint): {e}") from None
    if declared > size:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a carve3d model file: its members declare {declared} "
                              f"bytes uncompressed in a file of {size} bytes (torch.save stores them uncompressed)")


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
    for key in ("metadata", "train_state"):
        if key in ck and not isinstance(ck[key], dict):
            raise CheckpointError(f"checkpoint {str(path)!r} is damaged: its {key!r} entry must be a dict, got "
                                  f"{type(ck[key]).__name__}")
    for key in ("model_config", "state_dict"):
        if not all(isinstance(k, str) for k in ck[key]):
            raise CheckpointError(f"checkpoint {str(path)!r} is damaged: its {key!r} entry must have str keys")
    for key in ("state_dict", "tensors"):
        entry = ck.get(key, {})
        if not isinstance(entry, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in entry.items()):
            raise CheckpointError(f"checkpoint {str(path)!r} is damaged: its {key!r} entry must be a dict of named "
                                  f"tensors, got {_describe(entry)}")
        bad = first_nonfinite(entry)
        if bad is not None:
            raise CheckpointError(f"checkpoint {str(path)!r} holds non-finite weights (NaN or inf) in tensor {bad!r}, "
                                  f"first of its {key!r}: the training that wrote it diverged; retrain with a lower "
                                  f"learning rate")
    for name in ck.get("tensors", {}):
        if not name.isidentifier() or name.startswith("_"):
            raise CheckpointError(f"checkpoint {str(path)!r} is damaged: its extra tensor name {name!r} is not a "
                                  f"public attribute name")


def _describe(entry) -> str:
    """What a malformed dict entry holds, in a few words."""
    if not isinstance(entry, dict):
        return type(entry).__name__
    for k, v in entry.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            return f"{k!r}: {type(v).__name__}"
    return "a dict"


def build_model(ck: dict, task, path="<checkpoint>"):
    """The model of a validated checkpoint dict of ``task``, with its weights, in eval mode.

    The declared network is first built on the ``meta`` device (no memory) and its weights' names
    and shapes compared with the stored ones, so a small file that declares a large network is
    refused before the network costs memory. The extra tensors become attributes
    (``model.mean_depth``), the metadata ``model.metadata``.

    Raises:
        CheckpointError: the stored weights do not fit the declared network, or an extra tensor's
        name is taken by the model.
    """
    def mismatch(reason):
        return CheckpointError(f"checkpoint {str(path)!r} does not match its declared {ck['task']!r} model: {reason}")

    try:
        with torch.device("meta"):
            skeleton = task.build(**ck["model_config"])
        expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    except (TypeError, ValueError, RuntimeError, KeyError, OverflowError) as e:
        raise mismatch((str(e).strip().splitlines() or [type(e).__name__])[0][:300]) from None
    stored = {k: tuple(v.shape) for k, v in ck["state_dict"].items()}
    if stored != expected:
        missing = sorted(set(expected) - set(stored))
        extra = sorted(set(stored) - set(expected))
        shape = next((k for k in expected if k in stored and stored[k] != expected[k]), None)
        raise mismatch(f"missing weights {missing[:3]}" if missing else f"unexpected weights {extra[:3]}" if extra
                       else f"weight {shape!r} has shape {stored[shape]}, the model needs {expected[shape]}")
    taken = next((k for k in ck.get("tensors", {}) if hasattr(skeleton, k)), None)
    if taken is not None:
        raise CheckpointError(f"checkpoint {str(path)!r} is damaged: its extra tensor {taken!r} would replace the "
                              f"model's own attribute of that name")
    try:
        model = task.build(**ck["model_config"])
        model.load_state_dict(ck["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise mismatch((str(e).strip().splitlines() or [type(e).__name__])[0][:300]) from None
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
        train one: ``task.retrain_hint``), or ``path`` cannot name a file (a symlink loop, a NUL byte).
    """
    p = shipped_model_path(task) if path is None else Path(path)
    if path is None and not p.is_file():
        raise CheckpointError(f"the shipped {task.name} model {str(p)!r} is missing from this installation; "
                              f"reinstall carve3d or train one with `{task.retrain_hint}`")
    try:
        return str(p.resolve())
    except (OSError, RuntimeError, ValueError) as e:  # a symlink loop, a NUL byte in the name
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist or is not a file ({e})") from None
