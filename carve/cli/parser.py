"""The ``carve`` command line: demo, reconstruct, batch, view, render, depth, train-depth and bench.

Exit status: 0 on success, 2 for bad usage (unknown option, missing input path, malformed value),
1 when the work itself fails (an unreadable file, a dataset that does not parse). Errors are one line
on stderr; ``--debug`` shows the traceback. Outputs are written atomically.

Building the parser imports nothing heavy (no numpy, torch, OpenCV, Open3D or ``geometry``; of
``data`` only the lazy package and :mod:`data.files`), so ``carve --help`` and every usage error
answer at once; a command imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import os
import sys

from carve.cli.commands import (UsageError, cmd_batch, cmd_bench, cmd_demo, cmd_depth, cmd_reconstruct,
                                cmd_render, cmd_train_depth, cmd_view)
from carve.learn.cli import add_arguments as add_training_arguments  # torch-free
from carve.viz.controls import CONTROLS  # text only: `carve view --help` lists the viewer's controls
from data.files import MESH_SUFFIXES  # the standard library only

__all__ = ["main", "build_parser", "EXAMPLES"]


EXAMPLES = {
    "demo": "examples:\n  carve demo\n  carve demo --out /tmp/demo --object mug --no-view",
    "reconstruct": ("examples:\n  carve reconstruct ../shared/datasets/bunny\n"
                    "  carve reconstruct scans/temple --format middlebury --silhouettes threshold "
                    "--resolution 512 --mesh temple.glb\n"
                    "  carve reconstruct data/ --bounds=-1,-1,-1,1,1,1 --backend torch --device cuda\n"
                    "  carve reconstruct ../shared/datasets/bunny --exact --tolerance 1"),
    "batch": ("examples:\n  carve batch 'scans/*' --out batch-out --resolution 128\n"
              "  carve batch scans.txt --workers 8 --silhouettes given\n"
              "  carve batch 'scans/*' --scheduler tcp://head-node:8786 --out /shared/batch-out"),
    "view": ("examples:\n  carve view carve-out/demo.ply\n"
             "  carve view carve-out/bunny.npz --cameras ../shared/datasets/bunny --snapshot bunny.png\n\n"
             + CONTROLS),
    "render": "examples:\n  carve render torus /tmp/torus --views 24 --format blender\n"
              "  carve render table /tmp/table --views 36 --size 320x240",
    "bench": "examples:\n  carve bench project\n  carve bench carve -- --quick",
    "depth": "examples:\n  carve depth photo.jpg\n  carve depth shots/*.png --out depth-out --fov 70",
    "train-depth": ("examples:\n  carve train-depth --out runs/depth --size 128 --render-size 256 --scale-min 0.5 "
                    "--epochs 22\n  torchrun --nproc_per_node=2 -m carve train-depth --out runs/depth-ddp"),
}


def add_allow_outside(p) -> None:
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let the dataset's files name images or masks outside its folder (../x.png, /abs/x.png); "
                        "refused by default, so a downloaded dataset cannot read files elsewhere")


def _add_demo(command) -> None:
    p = command("demo", "render a built-in object from 36 views, estimate silhouettes, carve, mesh, snapshot",
                cmd_demo)
    p.add_argument("--out", default="carve-out", help="output directory (default: ./carve-out)")
    p.add_argument("--object",
                   help="built-in object: sphere, box, torus, mug, bowl, table, pretzel, urchin (default: pretzel; "
                        "with --refine photo, mug)")
    p.add_argument("--views", type=int, default=36, help="number of views (default: 36)")
    p.add_argument("--resolution", type=int, default=256, help="voxels along the longest side (default: 256)")
    p.add_argument("--size", default="320x240", help="rendered image size WxH (default: 320x240)")
    p.add_argument("--no-view", action="store_true", help="do not open the viewer even when a display exists")
    p.add_argument("--refine", choices=["photo"],
                   help="photo: render the object with a procedural texture under three lights and space-carve "
                        "the hull by colour (a cup no silhouette sees into); prints both IoUs")


def _add_reconstruct(command) -> None:
    p = command("reconstruct", "carve a dataset (TUM, Middlebury, Oxford, COLMAP, NeRF) into a mesh and a grid",
                cmd_reconstruct)
    p.add_argument("path", help="dataset folder (or its transforms.json / .mat / _par.txt file)")
    add_carving_options(p)
    p.add_argument("--out", default="carve-out",
                   help="output directory (default: ./carve-out): NAME.ply, NAME.npz, NAME.png, in the dataset's "
                        "frame, and NAME_views.json, the per-view report")
    p.add_argument("--name", help="base name of the outputs (default: the dataset folder's name)")
    p.add_argument("--mesh", help=f"mesh file to write, its format by extension: {', '.join(MESH_SUFFIXES)} "
                                  "(default: OUT/NAME.ply)")
    p.add_argument("--view", action="store_true", help="open the viewer on the result")


def _add_batch(command) -> None:
    p = command("batch", "carve many datasets, one task each on a Dask cluster (local by default): resumable, "
                "failures kept to their dataset (needs carve3d[cluster])", cmd_batch)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="dataset folders (or files), text files listing them one per line, or glob patterns "
                        "(quoted: 'scans/*')")
    p.add_argument("--out", default="carve-batch",
                   help="output directory (default: ./carve-batch): NAME/ per dataset, as reconstruct writes it, "
                        "and manifest.jsonl, a record per dataset")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786); its workers "
                                           "must see the inputs and --out at the same paths")
    where.add_argument("--workers", type=int, help="worker processes of the local cluster (default: one per core)")
    p.add_argument("--no-resume", action="store_true",
                   help="carve every dataset again (default: skip those whose inputs and options are unchanged)")
    p.add_argument("--retry-failed", action="store_true",
                   help="run the datasets that failed last time again, though their inputs are unchanged")
    add_carving_options(p)


def add_carving_options(p) -> None:
    """The options of how a dataset is read and carved, shared by ``reconstruct`` and ``batch``."""
    p.add_argument("--format", choices=["tum", "middlebury", "oxford", "colmap", "blender"],
                   help="dataset format (default: detected)")
    p.add_argument("--silhouettes", default="default",
                   choices=["default", "given", "auto", "threshold", "otsu", "color", "grabcut", "learned"],
                   help="default: the dataset's silhouettes when it has them, else estimated jointly over the views "
                        "(co-segmentation from 'auto'); "
                        "given: the dataset's (an error when it has none); or estimate them with a method")
    add_allow_outside(p)
    p.add_argument("--mask-object", choices=["bright", "dark"],
                   help="which value of the dataset's mask files is the object, when neither the format's "
                        "convention nor the image border tells (default: decided from the masks)")
    p.add_argument("--resolution", type=int, default=256, help="voxels along the longest side (default: 256)")
    p.add_argument("--method", default="octree", choices=["octree", "dense"], help="carving method")
    p.add_argument("--backend", default="numba", choices=["numba", "torch"], help="carving backend")
    p.add_argument("--device", default=None, help="torch device for --backend torch (cpu, cuda, cuda:1)")
    p.add_argument("--exact", action="store_true",
                   help="carve the exact intersection of every view (no per-view scores, no excluded views, "
                        "no slack); default: a first exact carve, then a robust one without the views whose "
                        "masks cut the object, with slack for calibration error")
    p.add_argument("--tolerance", type=int, default=None,
                   help="keep voxels rejected by at most this many views (implies --exact)")
    p.add_argument("--bounds", default="auto", help="'auto' or x0,y0,z0,x1,y1,z1 (use --bounds=-1,... for negatives)")
    p.add_argument("--refine", choices=["photo", "depth"],
                   help="carve beyond the hull: photo = space carving (remove surface voxels the views disagree "
                        "about in colour, for concavities; needs textured surfaces), depth = fuse monocular depth "
                        "inside the hull (only where it beats a constant depth)")
    p.add_argument("--texture", action="store_true",
                   help="also write NAME.glb and NAME.obj (+ .mtl, NAME_texture.png): the mesh with a UV atlas "
                        "(xatlas) and a texture baked from the photographs")


def _add_view_render_depth(command) -> None:
    p = command("view", "show meshes, point clouds and .npz grids (a snapshot when there is no display)", cmd_view)
    p.add_argument("files", nargs="+", help="mesh, point cloud or grid files")
    p.add_argument("--cameras", help="dataset whose cameras to draw as frustums")
    add_allow_outside(p)
    p.add_argument("--snapshot", help="write this PNG instead of opening a window")
    p.add_argument("--size", help="window size WxH (default: fitted to the screen, at most 1280x960); with "
                                  "--snapshot, the picture's size (default 960x720)")
    p.add_argument("--title", help="window title (default: carve view FILES)")
    p.add_argument("--report", help="NAME_views.json of carve reconstruct on the --cameras dataset: frustums of the "
                                    "views it flagged (excluded) are red, the others green")
    p.add_argument("--hide", default="",
                   help="groups hidden at first, comma-separated: mesh, grid, points, lines, cameras, images "
                        "(the window's toggles; a --snapshot leaves them out too)")

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


def _add_train_and_bench(command) -> None:
    p = command("train-depth", "train a monocular depth model on procedural scenes (torchrun for several "
                "processes)", cmd_train_depth)
    add_training_arguments(p, "depth")

    p = command("bench", "run a benchmark script and print its table", cmd_bench)
    p.add_argument("which", choices=["project", "carve", "depth", "captures", "silhouettes", "batch"], help="which benchmark")
    p.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments passed to the script (after --)")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each subcommand's ``func`` default is its ``cmd_*`` function.

    Example:
        >>> args = build_parser().parse_args(["reconstruct", "scans/temple", "--resolution", "64"])
        >>> args.command, args.resolution, args.func.__name__
        ('reconstruct', 64, 'cmd_reconstruct')
        >>> [build_parser().parse_args(a).quiet for a in (["--quiet", "demo"], ["demo", "--quiet"], ["demo"])]
        [True, True, False]
    """
    def flags(default):
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--quiet", action="store_true", default=default,
                            help="print nothing but errors; no progress bars")
        common.add_argument("--debug", action="store_true", default=default, help="show the full traceback on errors")
        return common

    parser = argparse.ArgumentParser(prog="carve", description="Voxel visual hulls from calibrated images.",
                                     parents=[flags(False)])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # the subcommands' copies of the flags set nothing unless given, so `carve --quiet CMD` holds
    after = flags(argparse.SUPPRESS)

    def command(name, help_text, func):
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[after], epilog=EXAMPLES.get(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    for add in (_add_demo, _add_reconstruct, _add_batch, _add_view_render_depth, _add_train_and_bench):
        add(command)
    return parser


def _parse(argv) -> argparse.Namespace:
    """Parse and check the options; exits with status 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "script_args", None) and args.script_args[0] == "--":
        args.script_args = args.script_args[1:]
    for name in ("views", "resolution"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) <= 0:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run ``carve`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = _parse(argv)
    quiet_before = os.environ.get("TQDM_DISABLE")
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
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
    finally:  # a caller in the same process (a test, a notebook) keeps its own setting
        if quiet_before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = quiet_before
