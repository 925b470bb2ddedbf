"""What only the commands show: the viewer, when a window can open, and the depth colour map.

The timed stages and the result files are :mod:`carve.pipeline.outputs` (below the command line,
shared with :mod:`carve.batch`). Importing this module costs nothing (the standard library only).
"""
from __future__ import annotations

from pathlib import Path

from carve.pipeline.outputs import Stages

__all__ = ["open_viewer", "colorize_depth"]


def open_viewer(*items, title: str, stages: Stages, snapshot: Path | None = None, cameras=None,
                **view_options) -> None:
    """Show the items in a window when one can open; otherwise say why not (one line) and go on.

    A missing or stale display (:func:`carve.viz.display.display_problem`) is no failure: the
    command's files are written, and the line names the ``snapshot`` to look at instead.
    """
    from carve.viz.display import display_problem

    problem = display_problem()
    if problem is None:
        from carve import viz

        viz.show(*items, cameras=cameras, title=title, **view_options)
    else:
        stages.say(f"{problem}: not opening the viewer" + (f"; see the snapshot {snapshot}" if snapshot else ""))


def colorize_depth(depth):
    """(H, W) depth -> (H, W, 3) BGR uint8, near warm and far cool (turbo colour map on inverse depth).

    Depth <= 0 (no depth) maps like the farthest depth.

    Example:
        >>> import numpy as np
        >>> picture = colorize_depth(np.array([[1.0, 2.0], [0.0, 4.0]]))
        >>> picture.shape, picture.dtype.name
        ((2, 2, 3), 'uint8')
    """
    import cv2
    import numpy as np

    inverse = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-6), 0.0)
    lo, hi = np.percentile(inverse[depth > 0], [1, 99]) if (depth > 0).any() else (0.0, 1.0)
    scaled = np.clip((inverse - lo) / max(hi - lo, 1e-12), 0, 1)
    return cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
