"""Training curves: the loss and every validation metric per epoch, as one PNG.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "curves.png"
    >>> plot_history([{"epoch": 1, "train_loss": 1.0, "val_iou": 0.5},
    ...               {"epoch": 2, "train_loss": 0.5, "val_iou": 0.7}], out, title="demo")
    >>> out.read_bytes()[:4]
    b'\\x89PNG'
"""
from __future__ import annotations

from pathlib import Path

from data.files import atomic_path

__all__ = ["plot_history"]


def plot_history(history: list[dict], path, title: str = "") -> None:
    """Save the loss curves and each validation metric's curve, per epoch, as one PNG.

    Args:
        history: per-epoch records with ``epoch``, ``train_*`` losses and ``val_*`` metrics.
        path: the PNG to write (atomically); nothing is written for an empty history.
        title: prefix of the loss panel's title.

    Uses matplotlib's Agg canvas directly (no pyplot), so it never changes an interactive backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not history:
        return
    nan = float("nan")
    epochs = [h["epoch"] for h in history]
    loss_keys = [k for k in history[-1] if k.startswith("train_")]
    metric_keys = [k for k in history[-1] if k.startswith("val_")]
    n = 1 + len(metric_keys)
    fig = Figure(figsize=(4 * n, 3.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for k in loss_keys:
        axes[0].plot(epochs, [h.get(k, nan) for h in history], marker=".", label=k[6:])
    axes[0].set_yscale("log")
    axes[0].set_title(f"{title} training loss".strip())
    axes[0].legend(fontsize=8)
    for ax, k in zip(axes[1:], metric_keys):
        ax.plot(epochs, [h.get(k, nan) for h in history], marker=".", color="C3")
        ax.set_title(f"validation {k[4:]}")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
