"""Output files: atomic writing, and the mesh formats the project reads and writes.

Every writer (datasets, grids, meshes, pictures, checkpoints) goes through :func:`atomic_path`, so an
error or Ctrl-C half-way through never leaves a truncated file behind. This module imports nothing
heavy: the command line checks file names with it before any work starts.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["atomic_path", "new_folders", "MESH_SUFFIXES"]

#: mesh file extensions, lower case, that trimesh writes and the viewer reads back (a .gltf is written
#: with its buffers embedded, one file: ``mesh.export(path, file_type="gltf", embed_buffers=True)``)
MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".stl", ".off")

_STEM_CHARS = 64  # of the target's stem in the temporary name: with the suffix and 16 random hex
#                   digits it stays far below NAME_MAX (255) however long the target's name is
_TRIES = 16  # fresh random names before giving up (a collision of 64 random bits is not expected)


def _create_temporary(path: Path) -> Path:
    """Create an empty, new file beside ``path`` (same suffix) with the usual mode, and return its path.

    ``os.open(..., 0o666)`` lets the kernel apply the process umask: nothing reads or changes the umask,
    which is process-wide and would race between threads.
    """
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TRIES):
        tmp = path.with_name(f".{path.stem[:_STEM_CHARS]}-{secrets.token_hex(8)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, flags, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {str(path)!r} after {_TRIES} tries")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a new, empty temporary path beside ``path`` (same suffix); on success it replaces ``path``.

    The temporary file gets the mode a plain ``open(path, "w")`` gives (``0o666 & ~umask``). On any
    exception in the block, ``KeyboardInterrupt`` included, or when the block wrote nothing, it is
    removed and ``path`` is left as it was (absent, or its old content).

    Raises:
        FileNotFoundError: the folder of ``path`` does not exist. RuntimeError: the block wrote no
        data. OSError: the file system's own errors (no space, no permission), after the clean-up,
        naming ``path`` (not the temporary file).

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "hello.txt"
        >>> with atomic_path(out) as tmp:
        ...     _ = tmp.write_text("hi")
        >>> out.read_text(), [p.name for p in out.parent.iterdir()]
        ('hi', ['hello.txt'])
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output directory {str(path.parent)!r} does not exist")
    name = None
    try:
        tmp = _create_temporary(path)
        name = str(tmp)
        yield tmp
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise RuntimeError(f"writing {str(path)!r} produced no data")
        os.replace(name, path)
    except OSError as err:  # a failure on the temporary file names the file the caller asked for
        if err.errno is None or err.filename not in (None, name):
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err  # the errno's subclass, e.g. PermissionError
    finally:  # also on BaseException (Ctrl-C, SystemExit): no temporary file outlives the block
        if name is not None:
            try:  # os.unlink of a str runs no Python code first, where a pending Ctrl-C would fire
                os.unlink(name)
            except OSError:  # already renamed into place (FileNotFoundError), or the folder went away
                pass


@contextlib.contextmanager
def new_folders(folder):
    """Create ``folder`` and its missing parents for the block's writes; when the block fails, the
    folders it created go again if they are still empty, so a failed run leaves no empty folder.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "a" / "b"
        >>> try:
        ...     with new_folders(out):
        ...         raise OSError("disk full")
        ... except OSError:
        ...     pass
        >>> out.parent.exists()
        False
    """
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # innermost first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for made in created:
            with contextlib.suppress(OSError):  # not empty (something else wrote there): it stays
                made.rmdir()
        raise
