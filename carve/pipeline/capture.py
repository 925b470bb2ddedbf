"""One capture, start to finish: load, silhouettes, hull, mesh, write. What ``carve reconstruct`` runs.

:func:`reconstruct` is the library form of the command: ``carve reconstruct`` calls it and prints,
and every task of ``carve batch`` (:mod:`carve.batch`) calls it on a worker, so one dataset gives
the same files whichever way it is carved. It returns a :class:`Reconstruction`, the record of what
was done: voxels, seconds per stage, files written.

Importing this module costs nothing (the standard library only).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["OptionError", "Reconstruction", "reconstruct", "check_fits"]


class OptionError(ValueError):
    """An option the dataset cannot satisfy (``silhouettes="given"`` without masks, a tolerance of
    as many views as there are): the command line reports it as bad usage (exit status 2)."""


@dataclass
class Reconstruction:
    """What :func:`reconstruct` did to one dataset.

    Attributes:
        name: base name of the outputs. dataset: the dataset's path. voxels: occupied voxels of the hull.
        shape: the grid's shape. times: stage -> seconds (load, silhouettes, carve, mesh, write, snapshot).
        outputs: the files written, the per-view report ``NAME_views.json`` first when there is one.
        views, mesh: the loaded :class:`data.MultiView` and the mesh in the dataset's frame, for a
            viewer in the same process (not part of :meth:`record`).
    """

    name: str
    dataset: str
    voxels: int
    shape: tuple
    times: dict
    outputs: list
    views: object = field(default=None, repr=False)
    mesh: object = field(default=None, repr=False)

    def record(self) -> dict:
        """The JSON-able fields: name, dataset, voxels, shape, times_s (rounded), outputs (strings).

        Example:
            >>> Reconstruction("torus", "d/torus", 12, (4, 4, 2), {"carve": 0.012345}, [Path("o/torus.ply")]).record()
            {'name': 'torus', 'dataset': 'd/torus', 'voxels': 12, 'shape': [4, 4, 2], 'times_s': {'carve': 0.0123}, 'outputs': ['o/torus.ply']}
        """
        return {"name": self.name, "dataset": self.dataset, "voxels": int(self.voxels),
                "shape": [int(n) for n in self.shape], "times_s": {k: round(float(s), 4) for k, s in self.times.items()},
                "outputs": [str(p) for p in self.outputs]}


def check_fits(views, *, resolution: int, method: str, backend: str, limit: int | None) -> None:
    """MemoryError, before carving, when the carve of ``views`` would not fit in ``limit`` bytes.

    The estimate is :func:`carve.hull.checks.memory_estimate` for a cube of ``resolution`` voxels a
    side (the largest grid that resolution gives), plus the dataset's images and masks in memory.
    ``limit`` None: no limit of the caller's; :func:`carve.carve` still checks the machine's memory.
    """
    if not limit:
        return
    from carve.hull.checks import memory_estimate

    held = sum(getattr(a, "nbytes", 0) for stack in (views.images, views.silhouettes) if stack is not None
               for a in stack)
    need = memory_estimate((resolution,) * 3, len(views), (views.height, views.width), method, backend) + held
    if need > limit:
        raise MemoryError(f"{views.path or 'the dataset'} needs about {need / 2**30:.2f} GiB at resolution "
                          f"{resolution}, over the memory limit of {limit / 2**30:.2f} GiB; lower the resolution "
                          "or give each worker more memory")


def reconstruct(path, out, *, name: str | None = None, mesh_path=None, format: str | None = None,
                silhouettes: str = "default", mask_object: str | None = None, allow_outside_paths: bool = False,
                resolution: int = 256, method: str = "octree", backend: str = "numba", device=None,
                exact: bool = False, tolerance: int | None = None, bounds="auto", refine: str | None = None,
                texture: bool = False, quiet: bool = True, memory_limit: int | None = None) -> Reconstruction:
    """Carve the dataset at ``path`` and write its mesh, grid, snapshot and per-view report to ``out``.

    The steps are those of :mod:`carve.pipeline.steps`; the outputs are ``NAME.ply`` (or
    ``mesh_path``), ``NAME.npz``, ``NAME.png`` in the dataset's frame (with ``texture``, also the
    textured ``NAME.glb`` and ``NAME.obj``), and ``NAME_views.json``
    (not with ``exact``), each written atomically.

    Args:
        path: a dataset folder, or its transforms.json / .mat / _par.txt file. out: the output folder
            (made on the first write). name: the outputs' base name (default: the folder's name).
        format, silhouettes, mask_object, allow_outside_paths: how to load it and where its masks come
            from (see ``carve reconstruct --help``).
        resolution, method, backend, device, bounds: as for :func:`carve.carve`; ``bounds`` is "auto"
            or ([x0, y0, z0], [x1, y1, z1]) in the dataset's frame.
        exact, tolerance: the exact intersection (with ``tolerance`` views' vetoes ignored) instead
            of the robust hull.
        refine: None, or carve beyond the hull: "photo" (space carving by colour) or "depth" (fused
            monocular depth); see :func:`carve.pipeline.steps.refine_hull`. Needs the images.
        texture: also write ``NAME.glb`` and ``NAME.obj`` (+ ``.mtl``, ``NAME_texture.png``): the mesh with
            a UV atlas and a texture baked from the images (:func:`carve.pipeline.steps.textured_mesh`).
        quiet: print nothing; otherwise a line per stage and the per-view table, as the command does.
        memory_limit: bytes the carve may use (a Dask worker's limit): :func:`check_fits` before carving.

    Returns:
        a :class:`Reconstruction`.

    Raises:
        OptionError: the dataset cannot satisfy the options. HullFailure: the hull is empty or
        degenerate (one line; only the per-view report is written). MemoryError: over ``memory_limit``.
        Whatever :func:`data.load` raises for a dataset it cannot read.
    """
    import data
    from carve.pipeline import steps
    from carve.pipeline.outputs import Stages, to_dataset_frame, write_results

    path, out = Path(path), Path(out)
    if tolerance is not None and tolerance < 0:
        raise OptionError(f"--tolerance must be a number of views >= 0, got {tolerance}")
    stages = Stages(quiet)
    with stages("load"):
        options = {"mask_object": mask_object} if mask_object else {}
        views = data.load(path, format=format, verbose=False, allow_outside=allow_outside_paths,
                          **options)  # stderr is for the error alone
    problem = steps.masks_problem(views, silhouettes)
    if problem:
        raise OptionError(problem)
    if refine is not None and refine not in steps.REFINE:
        raise OptionError(f"--refine must be one of {', '.join(steps.REFINE)}, got {refine!r}")
    if refine is not None and views.images is None:
        raise OptionError(f"--refine {refine} needs the dataset's photographs, but it holds masks only")
    if texture and views.images is None:
        raise OptionError("--texture needs the dataset's photographs, but it holds masks only")
    stages.say(f"{views.format} dataset{'' if format else ' (detected)'}: {len(views)} views of "
               f"{views.width}x{views.height} px"
               + ("" if views.images is not None else ", masks only (the mesh is not coloured)"))
    if tolerance is not None and tolerance >= len(views):
        raise OptionError(f"--tolerance must be smaller than the number of views ({len(views)}), got {tolerance}")
    if bounds != "auto":  # the user's box is in the dataset's frame; carving runs in the views' frame
        from data.frames import transform_bounds

        bounds = tuple(transform_bounds(bounds, views.world_from_dataset))
    check_fits(views, resolution=resolution, method=method, backend=backend, limit=memory_limit)
    with stages("silhouettes"):
        masks, source = steps.choose_masks(views, silhouettes, stages.say)
    outside = steps.outside_policy(masks, views.names, stages.say)
    with stages("carve"):
        grid, report = steps.carve_hull(masks, views, outside, exact=exact or tolerance is not None,
                                        tolerance=tolerance or 0, resolution=resolution, bounds=bounds,
                                        method=method, backend=backend, device=device)
    stages.say(f"{grid.count():,} occupied voxels of {'x'.join(map(str, grid.shape))}, voxel size "
               f"{grid.voxel_size:.4g}" if grid.count() else "no voxel is left")
    if report is not None and not quiet:
        print(report.table(), flush=True)  # it ends with the report's diagnosis, if any
    reason, mesh = steps.failure(grid, report), None
    if reason is None and refine is not None:
        with stages("refine"):
            grid = steps.refine_hull(grid, views, refine, stages.say)
    if reason is None:
        with stages("mesh"):
            mesh = steps.mesh_of(grid, views, masks, outside, report)
        reason = steps.failure(grid, report, mesh)
    textured = None
    if reason is None and texture:
        with stages("texture"):
            textured = steps.textured_mesh(mesh, views, grid.voxel_size, stages.say)
        textured = to_dataset_frame(views, None, textured)[1]
    voxels, shape = grid.count(), tuple(grid.shape)
    grid, mesh = to_dataset_frame(views, grid, mesh) if reason is None else (None, None)
    name = name or path.resolve().name
    written = []
    if report is not None:
        record = steps.views_record(report, views=views, name=name, resolution=resolution, masks=source,
                                    times=stages.times, grid=grid)
        written.append(steps.write_views(record, out / f"{name}_views.json"))
        stages.say(f"wrote {written[-1]}")
    if reason is not None:
        stages.say("skipping the mesh, the grid file and the snapshot: there is nothing to write")
        raise steps.HullFailure(reason)
    written += write_results(grid, mesh, out, name, stages, mesh_path=mesh_path, textured=textured)
    stages.say("times: " + stages.summary())
    return Reconstruction(name=name, dataset=str(path), voxels=voxels, shape=shape, times=dict(stages.times),
                          outputs=written, views=views, mesh=mesh)
