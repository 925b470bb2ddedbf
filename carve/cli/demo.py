"""The demo: the whole pipeline on an object the project renders itself, with no download.

Render a built-in object from views on a hemisphere over a textured background, estimate silhouettes
from the RGB images jointly over the calibrated views (co-segmentation from ``method="auto"``, not the
renderer's exact masks), carve coarse to fine with automatic bounds, mesh and colour the hull, and
score it against the true shape.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from carve.cli.outputs import open_viewer
from carve.pipeline.outputs import Stages, write_results
from carve.pipeline.steps import HullFailure

__all__ = ["run_demo", "true_occupancy"]


def true_occupancy(mesh, grid) -> np.ndarray:
    """Ground truth on the grid: which voxel centres lie inside the watertight ``mesh``.

    Args:
        mesh: a watertight ``trimesh.Trimesh``. grid: a :class:`carve.VoxelGrid` of shape (X, Y, Z).

    Returns:
        (X, Y, Z) bool, indexed like ``grid.occupancy``.

    Example:
        >>> import numpy as np, trimesh
        >>> from carve.grid import VoxelGrid
        >>> grid = VoxelGrid(np.zeros((4, 4, 4), bool), lo=[-1, -1, -1], voxel_size=0.5)
        >>> int(true_occupancy(trimesh.creation.box((1.0, 1.0, 1.0)), grid).sum())
        8
    """
    from data.objects import contains

    axes = [grid.lo[a] + (np.arange(grid.shape[a]) + 0.5) * grid.voxel_size for a in range(3)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return contains(mesh, centres).reshape(grid.shape)


def _score_hull(mesh, grid) -> tuple[float, int]:
    """(IoU of the hull with the true shape, true voxels the hull misses) on the grid."""
    truth = true_occupancy(mesh, grid)
    union = np.logical_or(truth, grid.occupancy).sum()
    iou = float(np.logical_and(truth, grid.occupancy).sum() / max(union, 1))
    return iou, int(np.logical_and(truth, ~grid.occupancy).sum())


def run_demo(out: Path, object_name: str = "pretzel", views: int = 36, resolution: int = 256,
             size: tuple[int, int] = (320, 240), quiet: bool = False, view: bool = False,
             refine: str | None = None) -> dict:
    """Run the demo and write ``demo.ply``, ``demo.npz`` and ``demo.png`` to ``out``.

    With ``refine="photo"`` the object is rendered with a procedural texture (:func:`data.objects.textured`)
    under :data:`data.renderer.THREE_LIGHTS`, and the hull is space-carved
    (:func:`carve.refine.space_carve`) before it is meshed: what colour adds to the silhouettes.

    Returns:
        dict with the silhouette IoU (mean over views), the hull's IoU against the true shape (and
        ``photo_iou`` with ``refine``), the occupied voxel count and the seconds each stage took.

    Raises:
        HullFailure: the hull is empty or has no surface (a resolution too coarse for the object),
            before anything is written.

    Example:
        >>> import tempfile
        >>> result = run_demo(tempfile.mkdtemp(), "sphere", views=8, resolution=32, size=(64, 48),
        ...                   quiet=True)  # doctest: +SKIP
        >>> result["hull_iou"] > 0.6  # doctest: +SKIP
        True
    """
    import data
    from carve import carve, silhouettes
    from carve.hull import EmptyHullWarning
    from carve.metrics import mask_iou

    stages = Stages(quiet)
    width, height = size
    with stages("render"):
        mesh = data.objects.get(object_name)
        light = {}
        if refine == "photo":  # colour is the evidence: give the surface some, and light every side
            from data.renderer import THREE_LIGHTS

            mesh, light = data.objects.textured(mesh), {"light": THREE_LIGHTS}
        rendered = data.synthetic(mesh, views=views, size=(width, height), **light)
        images, cameras, true_masks = rendered.images, rendered.cameras, rendered.silhouettes
    with stages("silhouettes"):
        masks = list(silhouettes(images, method="auto", cameras=cameras))  # co-segmented: the views agree
    mask_score = float(np.mean([mask_iou(m, t) for m, t in zip(masks, true_masks)]))
    with stages("carve"), warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyHullWarning)  # an empty hull is the one-line error below
        grid = carve(masks, cameras, resolution=resolution, bounds="auto")
    coarse = f"at --resolution {resolution} the voxels are coarser than the object's parts; raise --resolution"
    if not grid.count():
        raise HullFailure(f"the hull is empty: {coarse}")
    photo_score = None
    if refine == "photo":
        from carve.refine import space_carve

        hull_score, _ = _score_hull(mesh, grid)
        with stages("space carving"):
            photo = space_carve(images, cameras, grid)
        stages.say(f"space carving: {grid.count() - photo.count():,} voxels carved in {len(photo.sweeps)} sweeps")
        grid = photo
    with stages("mesh"):
        hull_mesh = grid.to_mesh(images=images, cameras=cameras, masks=masks, outside="carve")  # as carved
    if not len(hull_mesh.faces):
        raise HullFailure(f"the hull of {grid.count()} voxels has no surface to mesh: {coarse}")
    with stages("evaluate"):
        if refine == "photo":
            photo_score, missed = _score_hull(mesh, grid)
        else:
            hull_score, missed = _score_hull(mesh, grid)
    write_results(grid, hull_mesh, Path(out), "demo", stages)
    result = {"object": object_name, "views": views, "silhouette_iou": mask_score, "hull_iou": hull_score,
              "true_voxels_missed": missed, "occupied": grid.count(), "shape": grid.shape,
              "seconds": dict(stages.times), **({"photo_iou": photo_score} if refine else {})}
    stages.say(f"{object_name}: {views} views at {width}x{height}, grid {'x'.join(map(str, grid.shape))}, "
               f"{grid.count():,} occupied voxels")
    stages.say(f"silhouettes (co-segmented from auto) IoU vs exact masks: {mask_score:.3f}; hull IoU vs true shape: {hull_score:.3f} "
               f"(a visual hull contains the shape; concavities no silhouette sees stay filled)")
    if photo_score is not None:
        stages.say(f"after space carving, IoU vs true shape: {photo_score:.3f}")
    stages.say("times: " + stages.summary() + f"; total {sum(stages.times.values()):.1f} s")
    if view:
        open_viewer(hull_mesh, title="demo", stages=stages, snapshot=Path(out) / "demo.png", cameras=cameras)
    return result
