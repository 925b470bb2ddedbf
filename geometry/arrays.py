"""numpy / torch interoperability: one place that knows which array library a value belongs to.

torch is never imported here unless the caller already handed us a tensor, so numpy-only users do
not pay its import time.
"""
from __future__ import annotations

import sys

import numpy as np


def is_tensor(x) -> bool:
    """True if ``x`` is a torch tensor (checked without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def describe(x) -> str:
    """Short text for error messages: the shape and dtype of an array, or the type of anything else."""
    shape = getattr(x, "shape", None)
    if shape is None:
        return f"a {type(x).__name__}"
    dims = ", ".join(str(int(d)) for d in shape)
    return f"shape ({dims}{',' if len(shape) == 1 else ''}) {str(x.dtype).replace('torch.', '')}"


def shape_text(shape) -> str:
    dims = ", ".join(str(int(d)) for d in shape)
    return f"({dims}{',' if len(shape) == 1 else ''})"


def to_numpy(x, name: str, dtype=np.float64) -> np.ndarray:
    """``x`` (array-like or tensor) as a numpy array of ``dtype``; a clear TypeError for non-numbers."""
    if is_tensor(x):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__} ({err})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False) if dtype is not None else arr


def to_tensor(x, name: str, like):
    """``x`` as a floating tensor on the device and dtype of the tensor ``like``."""
    import torch

    if is_tensor(x):
        if not x.is_floating_point():
            x = x.to(like.dtype)
        return x.to(device=like.device, dtype=like.dtype)
    return torch.as_tensor(to_numpy(x, name), dtype=like.dtype, device=like.device)


def float_dtype_of(x):
    """The floating dtype results should carry for input ``x`` (float32 stays float32, rest float64)."""
    if is_tensor(x):
        import torch

        return x.dtype if x.is_floating_point() else torch.get_default_dtype()
    return x.dtype if x.dtype in (np.float32, np.float64) else np.float64


def check_finite(x, name: str) -> None:
    finite = x.isfinite().all().item() if is_tensor(x) else bool(np.isfinite(x).all())
    if not finite:
        raise ValueError(f"{name} must contain only finite numbers, got NaN or inf")
