"""The ``carve`` command line: demo, reconstruct, view, render, depth, train-depth and bench.

Exit status: 0 on success, 2 for bad usage (unknown option, missing input path, malformed value),
1 when the work itself fails (an unreadable file, a dataset that does not parse). Errors are one line
on stderr; ``--debug`` shows the traceback. Outputs are written atomically.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = {
    "demo": "examples:\n  carve demo\n  carve demo --out /tmp/demo --object mug --no-view",
    "reconstruct": ("examples:\n  carve reconstruct ../shared/datasets/bunny\n"
                    "  carve reconstruct scans/temple --format middlebury --silhouettes threshold "
                    "--resolution 512 --mesh temple.glb\n"
                    "  carve reconstruct data/ --bounds=-1,-1,-1,1,1,1 --backend torch --device cuda"),
    "view": ("examples:\n  carve view carve-out/demo.ply\n"
             "  carve view carve-out/bunny.npz --cameras ../shared/datasets/bunny --snapshot bunny.png"),
    "render": "examples:\n  carve render torus /tmp/torus --views 24 --format blender\n"
              "  carve render table /tmp/table --views 36 --size 320x240",
    "bench": "examples:\n  carve bench project\n  carve bench carve -- --quick",
    "depth": "examples:\n  carve depth photo.jpg\n  carve depth shots/*.png --out depth-out --fov 70",
    "train-depth": ("examples:\n  carve train-depth --out runs/depth --size 128 --render-size 256 --scale-min 0.5 "
                    "--epochs 22\n  torchrun --nproc_per_node=2 -m carve train-depth --out runs/depth-ddp"),
}


MESH_SUFFIXES = (".ply", ".obj", ".glb", ".stl", ".off")


class UsageError(Exception):
    """Bad command-line usage: exit status 2."""


# ------------------------------------------------------------------------------------------- helpers
class Stages:
    """Times the stages of a command and prints one line per stage (unless quiet)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.times: dict[str, float] = {}

    def __call__(self, name: str):
        stages = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()
                if not stages.quiet:
                    print(f"{name} ...", flush=True)

            def __exit__(self, *exc):
                stages.times[name] = time.perf_counter() - self.start
                if not stages.quiet and exc[0] is None:
                    print(f"  {name}: {stages.times[name]:.2f} s", flush=True)

        return _Stage()

    def summary(self) -> str:
        return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.times.items())


def _say(args, message: str) -> None:
    if not args.quiet:
        print(message, flush=True)


def _existing_path(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise UsageError(f"no such file or directory: {text}")
    return path


def _bounds(text: str):
    if text == "auto":
        return "auto"
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 6:
        raise UsageError(f"--bounds must be 'auto' or six numbers x0,y0,z0,x1,y1,z1, got {text!r}")
    return values[:3], values[3:]


def _size(text: str):
    try:
        width, height = (int(v) for v in text.lower().split("x"))
        if width > 0 and height > 0:
            return width, height
    except ValueError:
        pass
    raise UsageError(f"--size must look like 640x480, got {text!r}")


def _mesh_file(text):
    """The --mesh option: None, or a path whose extension names a mesh format trimesh writes."""
    if text is not None and Path(text).suffix.lower() not in MESH_SUFFIXES:
        raise UsageError(f"--mesh must end in {', '.join(MESH_SUFFIXES)}, got {Path(text).name}")
    return text


def _output_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a directory, got the file {path}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def has_display() -> bool:
    """True when a window can open (an X or Wayland display on Linux; always elsewhere)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def write_results(grid, mesh, out: Path, name: str, args, stages: Stages, mesh_path=None):
    """Write ``name.ply`` (or ``mesh_path``), ``name.npz`` and the snapshot ``name.png`` atomically."""
    from carve import viz
    from carve.files import atomic_path

    mesh_path = Path(mesh_path) if mesh_path else out / f"{name}.ply"
    with stages("write"):
        with atomic_path(mesh_path) as tmp:
            mesh.export(tmp, file_type=mesh_path.suffix[1:].lower())
        grid.save(out / f"{name}.npz")  # atomic itself
    with stages("snapshot"):
        viz.snapshot(mesh, path=out / f"{name}.png")
    _say(args, f"wrote {mesh_path}, {out / (name + '.npz')}, {out / (name + '.png')}")


def open_viewer(args, mesh, name: str, snapshot: Path, cameras=None) -> None:
    """Show ``mesh`` in a window when one can open; otherwise say where the snapshot is."""
    from carve import viz

    if has_display():
        viz.show(mesh, cameras=cameras, title=name)
    else:
        _say(args, f"no display: not opening the viewer; see the snapshot {snapshot}")


# ------------------------------------------------------------------------------------------ commands
def cmd_demo(args) -> int:
    from carve.demo import run_demo

    run_demo(out=_output_dir(args.out), object_name=args.object, views=args.views, resolution=args.resolution,
             size=_size(args.size), quiet=args.quiet, view=not args.no_view)
    return 0


def cmd_reconstruct(args) -> int:
    import numpy as np

    import data
    from carve import carve as carve_hull
    from carve import silhouettes as estimate_silhouettes
    from carve.engine import border_views

    path = _existing_path(args.path)
    bounds = _bounds(args.bounds)
    mesh_file = _mesh_file(args.mesh)
    out = _output_dir(args.out)
    stages = Stages(args.quiet)
    with stages("load"):
        views = data.load(path, format=args.format)
    _say(args, f"{len(views.cameras)} views of {views.images[0].shape[1]}x{views.images[0].shape[0]} px")
    with stages("silhouettes"):
        if args.silhouettes == "given":
            if views.silhouettes is None:
                raise UsageError(f"{path} has no silhouettes; pass --silhouettes auto (or another method)")
            masks = views.silhouettes
        else:
            masks = estimate_silhouettes(views.images, method=args.silhouettes)
    outside = "carve"
    leaving = border_views(masks)
    if leaving.any():
        outside = ["keep" if flag else "carve" for flag in leaving]
        _say(args, f"{int(leaving.sum())} views show the object leaving the frame "
                   f"({', '.join(views.names[i] for i in np.flatnonzero(leaving))}): centres outside those "
                   "images are not carved")
    with stages("carve"):
        grid = carve_hull(masks, views.cameras, resolution=args.resolution, bounds=bounds, method=args.method,
                          backend=args.backend, device=args.device, tolerance=args.tolerance, outside=outside)
    _say(args, f"{grid.count():,} occupied voxels of {'x'.join(map(str, grid.shape))}, "
               f"voxel size {grid.voxel_size:.4g}")
    with stages("mesh"):
        mesh = grid.to_mesh(images=views.images, cameras=views.cameras)
    name = args.name or path.resolve().name
    write_results(grid, mesh, out, name, args, stages, mesh_path=mesh_file)
    _say(args, "times: " + stages.summary())
    if args.view:
        open_viewer(args, mesh, name, out / f"{name}.png", cameras=views.cameras)
    return 0


def cmd_view(args) -> int:
    from carve import viz

    items = [_existing_path(p) for p in args.files]
    cameras = None
    if args.cameras:
        import data

        cameras = data.load(_existing_path(args.cameras)).cameras
    if args.snapshot or not has_display():
        path = Path(args.snapshot or Path(items[0]).with_suffix(".png").name)
        written = viz.snapshot(*items, path=path, cameras=cameras)
        if not args.snapshot:
            _say(args, "no display: wrote a snapshot instead of opening a window")
        _say(args, f"wrote {written}")
    else:
        viz.show(*items, cameras=cameras)
    return 0


def cmd_render(args) -> int:
    import data

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"OUT must be a new or empty directory, got {args.out} with files in it")
    width, height = _size(args.size)
    stages = Stages(args.quiet)
    with stages("render"):
        views = data.synthetic(args.object, views=args.views, size=(width, height))
    with stages("write"):
        data.save(views, out, format=args.format)
    _say(args, f"wrote {args.views} views of {args.object!r} as {args.format} to {out}")
    return 0


def cmd_depth(args) -> int:
    import cv2
    import numpy as np
    import trimesh

    from carve import depth as mono
    from carve.files import atomic_path
    from geometry import Camera, intrinsics_from_fov

    paths = [_existing_path(p) for p in args.images]
    out = _output_dir(args.out)
    images = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RuntimeError(f"{path} is not an image OpenCV can read")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    stages = Stages(args.quiet)
    with stages("depth"):
        depths = mono.predict(images, model=args.model, progress=False if args.quiet else None)
    clouds = []
    with stages("write"):
        for path, image, depth in zip(paths, images, depths):
            height, width = depth.shape
            # a photograph has no calibration: an assumed horizontal field of view, camera at the origin
            camera = Camera(intrinsics_from_fov(args.fov, width, height), np.eye(3), np.zeros(3), width, height)
            points, colors = mono.to_points(image, depth, camera)
            clouds.append((points, colors))
            with atomic_path(out / f"{path.stem}_depth.png") as tmp:
                cv2.imwrite(str(tmp), colorize_depth(depth))
            with atomic_path(out / f"{path.stem}.ply") as tmp:
                trimesh.PointCloud(points, colors=colors).export(tmp)
            _say(args, f"{path.name}: depth {np.nanmin(depth):.2f}..{np.nanmax(depth):.2f}, "
                       f"wrote {out / (path.stem + '_depth.png')} and {out / (path.stem + '.ply')}")
    if args.view:
        from carve import viz

        if has_display():
            viz.show(*clouds)
        else:
            _say(args, "no display: not opening the viewer")
    return 0


def colorize_depth(depth):
    """(H, W) depth -> (H, W, 3) BGR uint8, near warm and far cool (turbo colour map on inverse depth)."""
    import cv2
    import numpy as np

    inverse = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-6), 0.0)
    lo, hi = np.percentile(inverse[depth > 0], [1, 99]) if (depth > 0).any() else (0.0, 1.0)
    scaled = np.clip((inverse - lo) / max(hi - lo, 1e-12), 0, 1)
    return cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)


def cmd_train_depth(args) -> int:
    from carve.depth import run_train_depth

    return run_train_depth(args)


def cmd_bench(args) -> int:
    scripts = {"project": "bench_project.py", "carve": "bench_carve.py", "depth": "eval_depth.py"}
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    script = root / scripts[args.which]
    if not script.exists():
        raise UsageError(f"the benchmark scripts live in the source tree; {script} is not there")
    return subprocess.call([sys.executable, str(script), *args.script_args], cwd=root)


# -------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="print nothing but errors; no progress bars")
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser = argparse.ArgumentParser(prog="carve", description="Voxel visual hulls from calibrated images.",
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_text, func):
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common], epilog=EXAMPLES.get(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = command("demo", "render a built-in object from 36 views, estimate silhouettes, carve, mesh, snapshot",
                cmd_demo)
    p.add_argument("--out", default="carve-out", help="output directory (default: ./carve-out)")
    p.add_argument("--object", default="pretzel",
                   help="built-in object: sphere, box, torus, mug, table, pretzel (default), urchin")
    p.add_argument("--views", type=int, default=36, help="number of views (default: 36)")
    p.add_argument("--resolution", type=int, default=256, help="voxels along the longest side (default: 256)")
    p.add_argument("--size", default="320x240", help="rendered image size WxH (default: 320x240)")
    p.add_argument("--no-view", action="store_true", help="do not open the viewer even when a display exists")

    p = command("reconstruct", "carve a dataset (TUM, Middlebury, Oxford, COLMAP, NeRF) into a mesh and a grid",
                cmd_reconstruct)
    p.add_argument("path", help="dataset folder (or its transforms.json / .mat / _par.txt file)")
    p.add_argument("--format", choices=["tum", "middlebury", "oxford", "colmap", "blender"],
                   help="dataset format (default: detected)")
    p.add_argument("--silhouettes", default="given",
                   choices=["given", "auto", "threshold", "otsu", "color", "grabcut", "learned"],
                   help="use the dataset's silhouettes (default) or estimate them with a method")
    p.add_argument("--resolution", type=int, default=256, help="voxels along the longest side (default: 256)")
    p.add_argument("--method", default="octree", choices=["octree", "dense"], help="carving method")
    p.add_argument("--backend", default="numba", choices=["numba", "torch"], help="carving backend")
    p.add_argument("--device", default=None, help="torch device for --backend torch (cpu, cuda, cuda:1)")
    p.add_argument("--tolerance", type=int, default=0, help="keep voxels rejected by at most this many views")
    p.add_argument("--bounds", default="auto", help="'auto' or x0,y0,z0,x1,y1,z1 (use --bounds=-1,... for negatives)")
    p.add_argument("--out", default="carve-out", help="output directory (default: ./carve-out)")
    p.add_argument("--name", help="base name of the outputs (default: the dataset folder's name)")
    p.add_argument("--mesh", help="mesh file to write; .ply, .obj or .glb by extension (default: OUT/NAME.ply)")
    p.add_argument("--view", action="store_true", help="open the viewer on the result")

    p = command("view", "show meshes, point clouds and .npz grids (a snapshot when there is no display)", cmd_view)
    p.add_argument("files", nargs="+", help="mesh, point cloud or grid files")
    p.add_argument("--cameras", help="dataset whose cameras to draw as frustums")
    p.add_argument("--snapshot", help="write this PNG instead of opening a window")

    p = command("render", "write a synthetic dataset of a built-in object to disk", cmd_render)
    p.add_argument("object", help="built-in object name")
    p.add_argument("out", help="new or empty output directory")
    p.add_argument("--views", type=int, default=36, help="number of views (default: 36)")
    p.add_argument("--format", default="tum", choices=["tum", "blender"], help="dataset format (default: tum)")
    p.add_argument("--size", default="640x480", help="image size WxH (default: 640x480)")

    p = command("depth", "monocular depth of photographs: colour-mapped PNGs and coloured point clouds", cmd_depth)
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--out", default="carve-out", help="output directory (default: ./carve-out)")
    p.add_argument("--model", help="depth model file (default: the shipped model)")
    p.add_argument("--fov", type=float, default=55.0,
                   help="the camera's horizontal field of view, degrees, to place the points "
                        "(default: 55, the lens of the depth model's training scenes)")
    p.add_argument("--view", action="store_true", help="open the viewer on the point clouds")

    from carve.depth import add_train_depth_arguments

    p = command("train-depth", "train a monocular depth model on procedural scenes (torchrun for several "
                "processes)", cmd_train_depth)
    add_train_depth_arguments(p)

    p = command("bench", "run a benchmark script and print its table", cmd_bench)
    p.add_argument("which", choices=["project", "carve", "depth"], help="which benchmark")
    p.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments passed to the script (after --)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on bad usage
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    if getattr(args, "script_args", None) and args.script_args[0] == "--":
        args.script_args = args.script_args[1:]
    for name in ("views", "resolution"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) <= 0:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    try:
        return args.func(args)
    except UsageError as err:
        print(f"carve {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"carve {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a failure of the work itself: one line, or the traceback with --debug
        if args.debug:
            raise
        print(f"carve {args.command}: error: {err}", file=sys.stderr)
        return 1
