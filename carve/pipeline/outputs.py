"""What a reconstruction leaves behind: timed stages, and result files written atomically.

Importing this module costs nothing (the standard library only); the writers import what they need.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator

__all__ = ["Stages", "write_mesh", "write_results", "to_dataset_frame"]


class Stages:
    """Times the stages of a command and prints one line per stage, and other news (unless quiet).

    Example:
        >>> stages = Stages(quiet=True)
        >>> with stages("load"):
        ...     pass
        >>> list(stages.times)
        ['load']
    """

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self.say(f"{name} ...")
        try:
            yield
        finally:
            self.times[name] = time.perf_counter() - start
        self.say(f"  {name}: {self.times[name]:.2f} s")  # only when the stage succeeded

    def say(self, message: str) -> None:
        """Print ``message`` (one line) unless quiet."""
        if not self.quiet:
            print(message, flush=True)

    def summary(self) -> str:
        """The stages and their seconds on one line: ``"load 0.12 s, carve 1.50 s"``."""
        return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.times.items())


def write_mesh(mesh, path) -> Path:
    """Write a trimesh mesh or point cloud to ``path`` atomically, in the format its suffix names.

    Args:
        mesh: ``trimesh.Trimesh`` or ``trimesh.PointCloud``.
        path: ending in one of :data:`data.files.MESH_SUFFIXES` (``.ply .obj .glb .gltf .stl .off``);
            a ``.gltf`` is one self-contained file (its buffers embedded), never a .gltf plus .bin files.

    Example:
        >>> import tempfile, pathlib, trimesh
        >>> out = write_mesh(trimesh.creation.box(), pathlib.Path(tempfile.mkdtemp()) / "box.gltf")
        >>> sorted(p.name for p in out.parent.iterdir())
        ['box.gltf']
    """
    from data.files import MESH_SUFFIXES, atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(f"path must end in {', '.join(MESH_SUFFIXES)}, got {path.name}")
    options = {"embed_buffers": True} if suffix == ".gltf" else {}
    with atomic_path(path) as tmp:
        mesh.export(tmp, file_type=suffix[1:], **options)
    return path


def to_dataset_frame(views, grid, mesh):
    """The grid and mesh in the dataset's own frame, so that they line up with the user's data.

    Args:
        views: the :class:`data.MultiView` they were carved from (its ``world_from_dataset``).
        grid: a :class:`carve.VoxelGrid` in the carving frame, or None.
        mesh: a ``trimesh.Trimesh`` / ``PointCloud`` in the carving frame, or None.

    Returns:
        (grid, mesh) in the dataset's frame; the same objects when the frames agree (the identity).
    """
    from data.frames import is_identity, to_dataset_mesh

    frame = views.world_from_dataset
    if is_identity(frame):
        return grid, mesh
    return (None if grid is None else grid.in_dataset_frame(frame),
            None if mesh is None else to_dataset_mesh(mesh, frame))


def write_results(grid, mesh, out: Path, name: str, stages: Stages, mesh_path=None, textured=None) -> list[Path]:
    """Write ``name.ply`` (or ``mesh_path``), ``name.npz`` and the snapshot ``name.png`` atomically;
    with a ``textured`` mesh also ``name.glb`` and ``name.obj`` (+ ``name.mtl``, ``name_texture.png``).

    Args:
        grid: the :class:`carve.VoxelGrid`. mesh: its ``trimesh.Trimesh``. out: the output directory.
        name: base name of the files. stages: times the writing and says what was written.
        mesh_path: where the mesh goes instead of ``out / (name + ".ply")``.
        textured: the mesh with its texture (:func:`carve.texture.texture_mesh`), or None.

    Returns:
        [mesh path, grid path, (textured files,) snapshot path].
    """
    from carve import viz
    from data.files import new_folders

    mesh_path = Path(mesh_path) if mesh_path else out / f"{name}.ply"
    grid_path, picture = out / f"{name}.npz", out / f"{name}.png"
    with new_folders(out):  # first made here, and gone again if nothing could be written
        with stages("write"):
            write_mesh(mesh, mesh_path)
            grid.save(grid_path)  # atomic itself
            extra = []
            if textured is not None:
                from carve.texture import texture_png, write_textured

                png = texture_png(textured)  # one encoding for both files
                extra = write_textured(textured, out / f"{name}.glb", png=png)
                # the .obj's texture is NAME_texture.png: NAME.png is the snapshot
                extra += write_textured(textured, out / f"{name}.obj", image=out / f"{name}_texture.png", png=png)
        with stages("snapshot"):
            viz.snapshot(mesh, path=picture)
    written = [mesh_path, grid_path, *extra, picture]
    stages.say("wrote " + ", ".join(map(str, written)))
    return written
