"""The steps of ``carve reconstruct`` after loading: masks, the robust hull, its checks, the per-view report.

:func:`carve.pipeline.reconstruct` runs them in order (for ``carve reconstruct`` and every task of
``carve batch``); ``benchmarks/eval_captures.py`` runs the same functions, so the benchmark measures
what the command does:

1. :func:`choose_masks`: the dataset's silhouettes, or masks estimated by a method; when the
   dataset has none, by default jointly over the views (:func:`carve.segmentation.co_segment`,
   from ``auto``'s masks), and the command says so.
2. :func:`outside_policy`: ``"keep"`` for the views where the object leaves the frame.
3. :func:`carve_hull`: by default a first exact carve, the per-view scores, and a second carve
   without the views whose masks cut the object and with slack for calibration error
   (:func:`carve.hull.agreement.robust_carve`); with ``exact=True`` the exact intersection alone.
4. :func:`mesh_of` and :func:`failure`: the surface; an empty or degenerate hull stops the command
   with the hull's diagnosis.
5. :func:`views_record` and :func:`write_views`: the per-view report as ``NAME_views.json``.

Importing this module costs nothing (the standard library only); each step imports what it needs.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

__all__ = ["AUTO_REASON", "LOW_CONFIDENCE", "HullFailure", "choose_masks", "masks_problem", "outside_policy",
           "carve_hull", "mesh_of", "failure", "first_line", "views_record", "write_views"]

#: why the command estimates masks jointly when a dataset has none: "auto" is the best single-view
#: method measured against ground truth (benchmarks/eval_silhouettes.py), and co-segmentation makes
#: the views agree, so a few bad masks cannot carve the object away
AUTO_REASON = "starting from 'auto', the best single-view method measured, and making the views agree"


#: a view whose mask agrees with the co-segmented hull at an IoU below this is named: views that
#: agree sit at 0.88-0.97 (the cubes of a 128 grid overhang the silhouette by a pixel or two)
LOW_CONFIDENCE = 0.85


class HullFailure(RuntimeError):
    """The hull is empty or degenerate: nothing to mesh. The message is one line."""


def choose_masks(views, choice: str, say) -> tuple[list, str]:
    """The silhouettes to carve, and where they came from.

    Args:
        views: the :class:`data.MultiView`; ``views.images`` may be None (a masks-only dataset).
        choice: "default" (the dataset's masks when it has them, else "auto"), "given" (the dataset's),
            or a method of :data:`carve.segmentation.METHODS`.
        say: prints one line (``Stages.say``).

    Returns:
        (B masks, each (H, W) bool; "given" or the name of the method that estimated them).

    Raises:
        ValueError: ``choice`` needs what the dataset lacks (masks for "given", images for a method).
    """
    problem = masks_problem(views, choice)
    if problem:
        raise ValueError(problem)
    if choice in ("default", "given") and views.silhouettes is not None:
        return views.silhouettes, "given"
    from carve import silhouettes

    if choice == "default":
        say(f"silhouettes: the dataset has none; estimating them jointly from the {len(views)} calibrated views "
            f"(co-segmentation), {AUTO_REASON}")
        masks = silhouettes(views.images, "auto", cameras=views.cameras)
        low = [name for name, c in zip(views.names, masks.confidence) if c < LOW_CONFIDENCE]
        least = f"; least: {', '.join(low[:8])}{' ...' if len(low) > 8 else ''}" if low else ""
        say(f"silhouettes: {masks.iterations} rounds, views agree with the hull at IoU "
            f"{statistics.median(masks.confidence.tolist()):.3f} (median){least}")
        return list(masks), "co-segmentation"
    return silhouettes(views.images, method=choice), choice


def masks_problem(views, choice: str) -> str | None:
    """Why ``choice`` (see :func:`choose_masks`) cannot give masks for ``views`` (one line), or None."""
    if choice == "given" and views.silhouettes is None:
        return (f"--silhouettes given needs a dataset with silhouettes, got {views.path or 'one'} without; "
                "omit --silhouettes to estimate them with 'auto', or name a method")
    if views.images is None and not (choice == "default" and views.silhouettes is not None) and choice != "given":
        return f"--silhouettes {choice} estimates masks from images, got a dataset of masks only"
    return None


def outside_policy(masks, names, say):
    """The ``outside=`` rule of :func:`carve.carve`: "keep" for the views whose masks touch the image
    border (the object leaves the frame there, see :func:`carve.hull.border_views`), "carve" elsewhere.

    Args:
        masks: B (H, W) bool masks. names: the B view names. say: prints one line.

    Returns:
        "carve", or a list of B "carve"/"keep".
    """
    from carve.hull import border_views

    leaving = border_views(masks)
    if not leaving.any():
        return "carve"
    listed = ", ".join(name for name, flag in zip(names, leaving) if flag)
    say(f"{int(leaving.sum())} views show the object leaving the frame ({listed}): centres outside those "
        "images are not carved")
    return ["keep" if flag else "carve" for flag in leaving]


def carve_hull(masks, views, outside, *, exact: bool = False, tolerance: int = 0, resolution: int = 256,
               bounds="auto", method: str = "octree", backend: str = "numba", device=None):
    """The hull of ``masks`` seen by ``views.cameras``: robust by default, the exact rule on request.

    Args:
        masks: B (H, W) bool masks. views: the :class:`data.MultiView` (its cameras and names).
        outside: the policy of :func:`outside_policy`.
        exact: carve the exact intersection with ``tolerance`` (:func:`carve.carve`) instead of
            :func:`carve.hull.agreement.robust_carve` (first carve, per-view scores, second carve).
        tolerance: for ``exact``: keep voxels rejected by at most this many views.
        resolution, bounds, method, backend, device: as for :func:`carve.carve`.

    Returns:
        (the :class:`carve.VoxelGrid` in the carving frame, the ``HullReport``, or None when exact).
    """
    options = dict(resolution=resolution, bounds=bounds, method=method, backend=backend, device=device,
                   outside=outside)
    if exact:
        import warnings

        from carve import carve
        from carve.hull import EmptyHullWarning

        with warnings.catch_warnings():  # failure() says it, in the command's one line
            warnings.simplefilter("ignore", EmptyHullWarning)
            return carve(masks, views.cameras, tolerance=tolerance, **options), None
    from carve.hull.agreement import robust_carve

    return robust_carve(masks, views.cameras, names=views.names, **options)


def mesh_of(grid, views, masks, outside, report=None):
    """The hull's surface (``trimesh.Trimesh``, carving frame) with its vertices on the hull's own
    surface (:func:`carve.surface.snap_to_hull`), coloured from the images when there are any.

    Args:
        grid: the carved :class:`carve.VoxelGrid`. views: its :class:`data.MultiView`.
        masks, outside: the B masks and the per-view policy it was carved with.
        report: the robust carve's ``HullReport`` (None for the exact rule): the vertices are found
            on the hull it carved, without its excluded views and with its slack.
    """
    import numpy as np

    from carve.mesh import vertex_colors

    kept = [i for i in range(len(masks)) if report is None or i not in report.excluded]
    sil = np.stack([np.asarray(masks[i]) > 0 for i in kept])
    if report is not None and report.slack > 0:
        from carve.hull.rule import dilate_masks

        sil = dilate_masks(sil, report.slack)
    policy = [outside[i] for i in kept] if isinstance(outside, (list, tuple)) else outside
    mesh = grid.to_mesh(masks=sil, cameras=views.cameras[np.asarray(kept)], outside=policy)
    if views.images is not None and len(mesh.vertices):
        mesh.visual.vertex_colors = vertex_colors(mesh, views.images, views.cameras, grid.voxel_size)
    return mesh


#: faces above which a mesh is decimated before its atlas: xatlas's charting grows faster than the
#: faces (lego hull at 128: 3 s at 30k faces, 31 s at 127k); the texture carries the detail, and on
#: that hull the vertices moved 0.007 voxel on average (99th percentile 0.1)
TEXTURE_FACES = 30_000


def textured_mesh(mesh, views, voxel_size: float, say):
    """The mesh (carving frame) with a UV atlas and a texture baked from the views
    (:func:`carve.texture.texture_mesh`), decimated first to :data:`TEXTURE_FACES`, with a line saying so."""
    from carve.mesh import decimate
    from carve.texture import texture_mesh

    if len(mesh.faces) > TEXTURE_FACES:
        small, moved = decimate(mesh, TEXTURE_FACES)
        say(f"texture: the mesh decimated from {len(mesh.faces):,} to {len(small.faces):,} faces for its atlas "
            f"(the surface moved at most {moved / voxel_size:.2f} voxel)")
        mesh = small
    return texture_mesh(mesh, views.images, views.cameras, voxel_size)


#: what ``refine=`` accepts: carving beyond the hull by colour (space carving) or by fused monocular depth
REFINE = ("photo", "depth")


def refine_hull(grid, views, how: str, say):
    """The hull carved further by ``how`` ("photo": :func:`carve.refine.space_carve`; "depth":
    :func:`carve.refine.fuse_depth`), with a line saying how much went; ``grid`` when nothing could.

    Args:
        grid: the carved :class:`carve.VoxelGrid` (carving frame). views: its :class:`data.MultiView`,
            with images. say: prints a line (the stages' ``say``).
    """
    before = grid.count()
    if how == "photo":
        from carve.refine import space_carve

        refined = space_carve(views.images, views.cameras, grid)
        say(f"space carving: {before - refined.count():,} of {before:,} voxels were photo-inconsistent "
            f"({len(refined.sweeps)} sweeps; per sweep {refined.sweeps[:8]}{' ...' if len(refined.sweeps) > 8 else ''})")
    else:
        import warnings

        from carve.refine import DepthGateWarning, fuse_depth

        with warnings.catch_warnings():  # the summary below says it, with the numbers
            warnings.simplefilter("ignore", DepthGateWarning)
            refined, fusion = fuse_depth(views.images, views.cameras, grid)
        say(fusion.summary() + ("" if fusion.allowed else ": the monocular depth does not beat a constant here, "
                                "so the hull is kept"))
    return refined


def failure(grid, report, mesh=None) -> str | None:
    """Why the hull cannot be meshed (one line), or None when it can.

    Empty: no voxel is left (the report's diagnosis then names the views that reject everything).
    Degenerate: the hull has voxels but its surface has no face. A diagnosis beside a hull that is
    not empty (the exact hull was, the robust one without the excluded views is not) is news, not
    a failure: the per-view table shows it.

    Args:
        grid: the carved :class:`carve.VoxelGrid`. report: its ``HullReport`` or None.
        mesh: its surface (``trimesh.Trimesh``) once meshed, or None before.
    """
    diagnosis = getattr(report, "diagnosis", None)
    if grid.count() == 0:
        if not diagnosis:
            return ("the hull is empty: the silhouettes or the cameras disagree, or the box misses the object "
                    "(without --exact the command names the views at fault)")
        line = first_line(diagnosis)
        return line if "hull is empty" in line else f"the hull is empty: {line}"
    if mesh is not None and len(mesh.faces) == 0:
        return f"the hull of {grid.count()} voxels has no surface to mesh (thinner than a voxel)"
    return None


def first_line(text: str) -> str:
    """The first non-empty line of ``text``, stripped (errors are one line).

    Example:
        >>> first_line("\\n  views 3, 7 reject everything\\n  view 3: ...")
        'views 3, 7 reject everything'
    """
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def views_record(report, *, views, name: str, resolution: int, masks: str, times: dict, grid=None) -> dict:
    """The JSON-able per-view report written as ``NAME_views.json``.

    Args:
        report: the ``HullReport`` (its ``to_dict()`` is the body: ``views`` rows, ``excluded``
            indices, ``slack``, ``diagnosis``, ...).
        views: the :class:`data.MultiView` (its path, view names). name: the outputs' base name.
        resolution: voxels along the longest side. masks: "given" or the method that estimated them.
        times: stage -> seconds.
        grid: the hull in the dataset's frame, for its box, shape and voxel count; None when the
            command stopped before meshing.

    Example:
        >>> import numpy as np
        >>> from types import SimpleNamespace
        >>> class Report:
        ...     def to_dict(self): return {"views": [], "excluded": [1]}
        >>> views = SimpleNamespace(path="data/bunny", names=["0000", "0001"])
        >>> r = views_record(Report(), views=views, name="bunny", resolution=128, masks="given",
        ...                  times={"carve": 1.234567})
        >>> r["name"], r["resolution"], r["times_s"], r["excluded"], r["excluded_views"]
        ('bunny', 128, {'carve': 1.2346}, [1], ['0001'])
    """
    record = {"name": name, "dataset": str(views.path), "resolution": int(resolution), "masks": masks,
              "times_s": {stage: round(float(s), 4) for stage, s in times.items()}}
    if grid is not None:
        record.update(shape=list(grid.shape), occupied=grid.count(), voxel_size=grid.voxel_size,
                      box=[grid.lo.tolist(), grid.hi.tolist()])
    body = report.to_dict()
    return {**record, **body, "excluded_views": [views.names[i] for i in body["excluded"]]}


def write_views(record: dict, path) -> Path:
    """Write ``record`` as indented JSON to ``path`` atomically (:func:`data.files.atomic_path`)."""
    from data.files import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return path
