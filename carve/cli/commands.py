"""The commands of ``carve``: one ``cmd_<name>(args) -> exit status`` each, and the checks of their options.

Every command checks its options before it imports anything heavy, so a usage error (exit status
2, raised as :class:`UsageError`) comes back at once. Importing this module costs nothing.
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from carve.cli.outputs import colorize_depth, open_viewer
from carve.pipeline.outputs import Stages, write_mesh
from data.files import MESH_SUFFIXES  # the standard library only

__all__ = ["UsageError", "cmd_demo", "cmd_reconstruct", "cmd_batch", "reconstruct_options", "cmd_view", "cmd_render", "cmd_depth", "cmd_train_depth",
           "cmd_bench", "existing_path", "parse_bounds", "parse_size", "plain_name", "object_name", "torch_device",
           "mesh_file", "output_dir"]


class UsageError(Exception):
    """Bad command-line usage: exit status 2."""


# ------------------------------------------------------------------------------------- option checks
def existing_path(text: str, option: str | None = None) -> Path:
    """``text`` as a Path that exists; UsageError otherwise (naming ``option`` when it is one)."""
    path = Path(text)
    if not path.exists():
        raise UsageError(f"{option} must name an existing file, got {text}" if option else f"no such file or directory: {text}")
    return path


def parse_bounds(text: str):
    """``"auto"``, or six numbers ``x0,y0,z0,x1,y1,z1`` as ([x0, y0, z0], [x1, y1, z1]).

    Example:
        >>> parse_bounds("-1,-1,-1,1,1,2")
        ([-1.0, -1.0, -1.0], [1.0, 1.0, 2.0])
    """
    if text == "auto":
        return "auto"
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 6:
        raise UsageError(f"--bounds must be 'auto' or six numbers x0,y0,z0,x1,y1,z1, got {text!r}")
    lo, hi = values[:3], values[3:]
    if not all(math.isfinite(v) for v in values) or any(a >= b for a, b in zip(lo, hi)):
        raise UsageError(f"--bounds must be six finite numbers x0,y0,z0,x1,y1,z1 with x0 < x1, y0 < y1 and z0 < z1, "
                         f"got {text!r}")
    return lo, hi


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` as (640, 480).

    Example:
        >>> parse_size("320X240")
        (320, 240)
    """
    try:
        width, height = (int(v) for v in text.lower().split("x"))
        if width > 0 and height > 0:
            return width, height
    except ValueError:
        pass
    raise UsageError(f"--size must look like 640x480, got {text!r}")


def plain_name(text: str | None, option: str = "--name") -> str | None:
    """A base name for output files: None, or a name with no folder in it (the outputs stay in --out).

    Example:
        >>> plain_name("bunny")
        'bunny'
    """
    if text is not None and (text in ("", ".", "..") or Path(text).name != text or "\\" in text):
        raise UsageError(f"{option} must be a file name without folders, got {text!r} (use --out for the folder)")
    return text


def object_name(text: str, option: str) -> str:
    """A built-in object's name (``data.objects.NAMES``); UsageError otherwise."""
    from data.objects import NAMES

    if text not in NAMES:
        raise UsageError(f"{option} must be one of {', '.join(NAMES)}, got {text!r}")
    return text


def torch_device(text: str | None, backend: str) -> str | None:
    """The --device option: None, or a torch device that exists here (only with --backend torch)."""
    if text is None:
        return None
    if backend != "torch":
        raise UsageError(f"--device needs --backend torch, got --device {text} with --backend {backend}")
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device must be a torch device such as cpu, cuda or cuda:1, got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device must be a device this machine has, got {text!r} but torch sees no CUDA device")
    return text


def mesh_file(text: str | None) -> str | None:
    """The --mesh option: None, or a path ending in one of :data:`data.files.MESH_SUFFIXES`."""
    if text is not None and Path(text).suffix.lower() not in MESH_SUFFIXES:
        raise UsageError(f"--mesh must end in {', '.join(MESH_SUFFIXES)}, got {Path(text).name}")
    return text


def output_dir(path: str, option: str = "--out") -> Path:
    """An output directory option; UsageError when a file has its name. It is created by the first
    write, so a run that fails before writing leaves no empty folder behind."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{option} must be a directory, got the file {path}")
    blocking = next((p for p in out.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise UsageError(f"{option} must be a directory, got a path under the file {blocking}")
    return out


# ------------------------------------------------------------------------------------------ commands
def cmd_demo(args) -> int:
    chosen = args.object or ("mug" if args.refine == "photo" else "pretzel")  # a cup shows what colour adds
    size, _ = parse_size(args.size), object_name(chosen, "--object")
    from carve.cli.demo import run_demo

    run_demo(out=output_dir(args.out), object_name=chosen, views=args.views, resolution=args.resolution,
             size=size, quiet=args.quiet, view=not args.no_view, refine=args.refine)
    return 0


def reconstruct_options(args) -> dict:
    """The options of :func:`carve.pipeline.reconstruct` that ``reconstruct`` and ``batch`` share, checked
    (UsageError): format, masks, resolution, method, backend, device, exact, tolerance, bounds, refine, texture."""
    if args.tolerance is not None and args.tolerance < 0:
        raise UsageError(f"--tolerance must be a number of views >= 0, got {args.tolerance}")
    return dict(format=args.format, silhouettes=args.silhouettes, mask_object=args.mask_object,
                allow_outside_paths=args.allow_outside_paths, resolution=args.resolution, method=args.method,
                backend=args.backend, device=torch_device(args.device, args.backend), exact=args.exact,
                tolerance=args.tolerance, bounds=parse_bounds(args.bounds), refine=args.refine,
                texture=args.texture)


def cmd_reconstruct(args) -> int:
    """Load, masks, hull (robust unless --exact), mesh, write: :func:`carve.pipeline.reconstruct`, which prints.

    An empty or degenerate hull prints its diagnosis, writes only ``NAME_views.json`` (the report
    that names the views at fault) and fails with one line (exit status 1): no mesh, grid or picture.
    """
    path = existing_path(args.path)
    mesh_path, out, name = mesh_file(args.mesh), output_dir(args.out), plain_name(args.name)
    options = reconstruct_options(args)
    from carve.pipeline import OptionError, reconstruct

    try:
        result = reconstruct(path, out, name=name, mesh_path=mesh_path, quiet=args.quiet, **options)
    except OptionError as err:
        raise UsageError(str(err)) from None
    if args.view:
        from carve.viz.scene import flagged_from_report

        views = result.views
        report = next((p for p in result.outputs if str(p).endswith("_views.json")), None)
        flagged = flagged_from_report(report, views.names) if report is not None else None
        open_viewer(*_in_camera_frame([result.mesh], views.world_from_dataset), title=result.name,
                    stages=Stages(args.quiet), snapshot=result.outputs[-1], cameras=views.cameras,
                    names=views.names, photos=views.images, flagged=flagged)
    return 0


def cmd_batch(args) -> int:
    """``reconstruct`` on many datasets at once (:func:`carve.batch.reconstruct_many`): a bar, the summary
    table, and exit status 1 when a dataset failed (the manifest has its one-line error)."""
    out = output_dir(args.out)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be a number of processes >= 1, got {args.workers}")
    options = reconstruct_options(args)
    from carve.batch import reconstruct_many
    from carve.batch.inputs import expand_inputs

    try:
        expand_inputs(args.inputs)  # a missing input is bad usage, before a cluster starts
    except ValueError as err:
        raise UsageError(str(err)) from None
    report = reconstruct_many(args.inputs, out, workers=args.workers, scheduler=args.scheduler,
                              resume=not args.no_resume, retry_failed=args.retry_failed,
                              progress=False if args.quiet else None, **options)
    Stages(args.quiet).say(report.table())
    if report.failed:
        raise RuntimeError(f"{len(report.failed)} of {len(report.records)} datasets failed; their errors are in "
                           f"{report.manifest}")
    return 0


def cmd_view(args) -> int:
    if args.snapshot is not None and Path(args.snapshot).suffix.lower() != ".png":
        raise UsageError(f"--snapshot must end in .png, got {Path(args.snapshot).name}")
    size = parse_size(args.size) if args.size else None
    paths = [existing_path(p) for p in args.files]
    cameras_path = existing_path(args.cameras) if args.cameras else None
    report_path = existing_path(args.report, "--report") if args.report else None
    if report_path is not None and cameras_path is None:
        raise UsageError(f"--report needs --cameras (the dataset it reports on), got --report {args.report} alone")
    from carve.viz.convert import DRAWABLE_SUFFIXES
    from carve.viz.scene import check_hide

    for p in paths:
        if p.suffix.lower() not in DRAWABLE_SUFFIXES:
            raise UsageError(f"FILES must end in {', '.join(DRAWABLE_SUFFIXES)}, got {p.name}")
    try:
        hide = check_hide(args.hide)
    except ValueError as err:
        raise UsageError(f"--{err}") from None
    from carve import viz
    from carve.viz.convert import load_item
    from carve.viz.display import display_problem

    items = [load_item(p, name="FILES") for p in paths]
    cameras = None
    views_options = {}
    if cameras_path is not None:
        views, items = _view_dataset(cameras_path, items, args.allow_outside_paths)
        cameras = views.cameras
        views_options = dict(names=views.names, photos=views.images)
        if report_path is not None:
            from carve.viz.scene import flagged_from_report

            try:
                views_options["flagged"] = flagged_from_report(report_path, views.names)
            except ValueError as err:
                raise UsageError(f"--{err}") from None
    problem = None if args.snapshot else display_problem()
    if args.snapshot or problem:
        written = viz.snapshot(*items, path=Path(args.snapshot or paths[0].with_suffix(".png").name),
                               cameras=cameras, size=size, hide=hide, **views_options)
        stages = Stages(args.quiet)
        if problem:
            stages.say(f"{problem}: wrote a snapshot instead of opening a window")
        stages.say(f"wrote {written}")
    else:
        viz.show(*items, cameras=cameras, size=size, hide=hide, **views_options,
                 title=args.title or "carve view " + " ".join(p.name for p in paths))
    return 0


def _view_dataset(path: Path, items: list, allow_outside: bool):
    """(views, items): the dataset whose cameras ``carve view`` draws, and the items moved into the
    frame of those cameras (:func:`_in_camera_frame`)."""
    import data

    views = data.load(path, allow_outside=allow_outside)
    return views, _in_camera_frame(items, views.world_from_dataset)


def _in_camera_frame(items: list, world_from_dataset) -> list:
    """The items (written in a dataset's own frame) in the frame its cameras live in: a mirrored
    dataset's cameras live in its reflection (see :mod:`data.frames`)."""
    import numpy as np

    M = np.asarray(world_from_dataset)
    if np.allclose(M, np.eye(4)):
        return items
    from carve.viz.convert import to_open3d_geometry

    moved = []
    for i, item in enumerate(items):
        g = to_open3d_geometry(item, name=f"FILES[{i}]")
        if g is None:
            continue
        g.transform(M)
        if hasattr(g, "triangles"):  # a reflection turns the faces inside out: flip them back
            g.triangles = type(g.triangles)(np.asarray(g.triangles)[:, ::-1].copy())
            g.compute_vertex_normals()
        moved.append(g)
    return moved


def cmd_render(args) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"OUT must be a new or empty directory, got the file {args.out}")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"OUT must be a new or empty directory, got {args.out} with files in it")
    width, height = parse_size(args.size)
    object_name(args.object, "OBJECT")
    import data

    stages = Stages(args.quiet)
    with stages("render"):
        views = data.synthetic(args.object, views=args.views, size=(width, height))
    with stages("write"):
        data.save(views, out, format=args.format)
    stages.say(f"wrote {args.views} views of {args.object!r} as {args.format} to {out}")
    return 0


def _read_rgb(path: Path):
    """(H, W, 3) uint8 RGB of an image file; RuntimeError when OpenCV cannot read it."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RuntimeError(f"{path} is not an image OpenCV can read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def cmd_depth(args) -> int:
    if not 0 < args.fov < 180:
        raise UsageError(f"--fov must be a horizontal field of view in degrees in (0, 180), got {args.fov:g}")
    paths, out = [existing_path(p) for p in args.images], output_dir(args.out)
    if args.model is not None:
        existing_path(args.model, "--model")
    import numpy as np
    import trimesh

    from carve import depth as mono
    from data.files import new_folders
    from data.images import write_image
    from geometry import Camera, intrinsics_from_fov

    images = [_read_rgb(path) for path in paths]
    stages = Stages(args.quiet)
    with stages("depth"):
        depths = mono.predict(images, model=args.model, progress=False if args.quiet else None)
    clouds = []
    with stages("write"), new_folders(out):
        for path, image, depth in zip(paths, images, depths):
            height, width = depth.shape
            # a photograph has no calibration: an assumed horizontal field of view, camera at the origin
            camera = Camera(intrinsics_from_fov(args.fov, width, height), np.eye(3), np.zeros(3), width, height)
            points, colors = mono.to_points(image, depth, camera)
            clouds.append((points, colors))
            picture, cloud = out / f"{path.stem}_depth.png", out / f"{path.stem}.ply"
            write_image(picture, colorize_depth(depth)[..., ::-1])  # colorize_depth gives OpenCV's BGR
            write_mesh(trimesh.PointCloud(points, colors=colors), cloud)
            stages.say(f"{path.name}: depth {np.nanmin(depth):.2f}..{np.nanmax(depth):.2f}, wrote {picture} and {cloud}")
    if args.view:
        # the clouds are in the camera frame (y down): look through the camera, image up on screen
        open_viewer(*clouds, title="depth", stages=stages, view=camera, up=(0.0, -1.0, 0.0))
    return 0


def cmd_train_depth(args) -> int:
    import re

    from carve.learn.cli import config_from_args

    output_dir(args.out)
    if args.cache_dir is not None:
        output_dir(args.cache_dir, "--cache-dir")
    if args.resume is not None:
        existing_path(args.resume, "--resume")
    if args.stop_after is not None and args.stop_after < 1:
        raise UsageError(f"--stop-after must be a number of epochs >= 1, got {args.stop_after}")
    try:  # a bad option value is a usage error (exit 2), named as the option is spelt
        config_from_args(args, "depth")
    except ValueError as err:
        raise UsageError(re.sub(r"^([a-z_]+) ", lambda m: f"--{m.group(1).replace('_', '-')} ", str(err))) from None
    from carve.depth import run_train_depth

    return run_train_depth(args)


BENCHMARKS = {"project": "bench_project.py", "carve": "bench_carve.py", "depth": "eval_depth.py",
              "captures": "eval_captures.py", "silhouettes": "eval_silhouettes.py", "batch": "bench_batch.py"}


def cmd_bench(args) -> int:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / BENCHMARKS[args.which]
    if not script.exists():
        raise UsageError(f"the benchmark scripts live in the source tree; {script} is not there")
    return subprocess.call([sys.executable, str(script), *args.script_args], cwd=script.parent)
