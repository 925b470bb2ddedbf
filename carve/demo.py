"""The demo: the whole pipeline on an object the project renders itself, with no download.

Render a built-in object from views on a hemisphere over a textured background, estimate silhouettes
from the RGB images (``method="auto"``, not the renderer's exact masks), carve coarse to fine with
automatic bounds, mesh and colour the hull, and score it against the true shape.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def true_occupancy(mesh, grid) -> np.ndarray:
    """Ground truth on the grid: which voxel centres lie inside the watertight ``mesh``, (X, Y, Z) bool."""
    from data.objects import contains

    axes = [grid.lo[a] + (np.arange(grid.shape[a]) + 0.5) * grid.voxel_size for a in range(3)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return contains(mesh, centres).reshape(grid.shape)


def run_demo(out: Path, object_name: str = "pretzel", views: int = 36, resolution: int = 256,
             size=(320, 240), quiet: bool = False, view: bool = False) -> dict:
    """Run the demo and write ``demo.ply``, ``demo.npz`` and ``demo.png`` to ``out``.

    Returns:
        dict with the silhouette IoU (mean over views), the hull's IoU against the true shape, the
        occupied voxel count and the seconds each stage took.
    """
    import data
    from carve import carve, silhouettes
    from carve.cli import Stages, open_viewer, write_results
    from carve.metrics import mask_iou

    stages = Stages(quiet)
    width, height = size
    with stages("render"):
        mesh = data.objects.get(object_name)
        rendered = data.synthetic(mesh, views=views, size=(width, height))
        images, cameras, true_masks = rendered.images, rendered.cameras, rendered.silhouettes
    with stages("silhouettes"):
        masks = silhouettes(images, method="auto")
    mask_score = float(np.mean([mask_iou(m, t) for m, t in zip(masks, true_masks)]))
    with stages("carve"):
        grid = carve(masks, cameras, resolution=resolution, bounds="auto")
    with stages("mesh"):
        hull_mesh = grid.to_mesh(images=images, cameras=cameras)
    with stages("evaluate"):
        truth = true_occupancy(mesh, grid)
        union = np.logical_or(truth, grid.occupancy).sum()
        hull_score = float(np.logical_and(truth, grid.occupancy).sum() / max(union, 1))
        missed = int(np.logical_and(truth, ~grid.occupancy).sum())

    args = argparse.Namespace(quiet=quiet)  # what the command line's writers read
    write_results(grid, hull_mesh, Path(out), "demo", args, stages)
    result = {"object": object_name, "views": views, "silhouette_iou": mask_score, "hull_iou": hull_score,
              "true_voxels_missed": missed, "occupied": grid.count(), "shape": grid.shape,
              "seconds": dict(stages.times)}
    if not quiet:
        print(f"{object_name}: {views} views at {width}x{height}, grid {'x'.join(map(str, grid.shape))}, "
              f"{grid.count():,} occupied voxels")
        print(f"silhouettes (auto) IoU vs exact masks: {mask_score:.3f}; hull IoU vs true shape: {hull_score:.3f} "
              f"(a visual hull contains the shape; concavities no silhouette sees stay filled)")
        print("times: " + stages.summary() + f"; total {sum(stages.times.values()):.1f} s")
    if view:
        open_viewer(args, hull_mesh, "demo", Path(out) / "demo.png", cameras=cameras)
    return result
