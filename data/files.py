"""Output files: atomic writing, and the mesh formats the project reads and writes.

Every writer (datasets, grids, meshes, pictures, checkpoints) goes through :func:`atomic_path`, so an
error or Ctrl-C half-way through never leaves a truncated file behind. This module imports nothing
heavy: the command line checks file names with it before any work starts.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "MESH_SUFFIXES"]

#: mesh file extensions, lower case, that trimesh writes and the viewer reads back (a .gltf is written
#: with its buffers embedded, one file: ``mesh.export(path, file_type="gltf", embed_buffers=True)``)
MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".stl", ".off")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` (same suffix); on success it replaces ``path``.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "hello.txt"
        >>> with atomic_path(out) as tmp:
        ...     _ = tmp.write_text("hi")
        >>> out.read_text()
        'hi'
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output directory {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise RuntimeError(f"writing {str(path)!r} produced no data")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes private files; results get the usual mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
