"""What a batch runs on: the datasets named by folders, list files and globs, their output names, and
the hash of each one's inputs and options that makes a rerun resumable.

The standard library only.
"""
from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path

__all__ = ["expand_inputs", "output_names", "inputs_hash", "SMALL_FILE"]

#: files up to this size are hashed by content; larger ones (images) by size and modification time
SMALL_FILE = 64 * 1024
#: list files are text files of dataset paths; a Middlebury ``*_par.txt`` is a dataset, not a list
LIST_SUFFIXES = (".txt", ".lst", ".list")


def is_list_file(path: Path) -> bool:
    """Whether ``path`` is a text file listing datasets (not a dataset's own file)."""
    return path.is_file() and path.suffix.lower() in LIST_SUFFIXES and not path.name.lower().endswith("_par.txt")


def expand_inputs(items) -> list[Path]:
    """The datasets that ``items`` name, in order, each once.

    Each item is a dataset (a folder, or its transforms.json / .mat / _par.txt file), a glob pattern
    (``scans/*``), or a list file (``.txt``, ``.lst``, ``.list``): one dataset path per line, relative
    to the list's folder, blank lines and ``#`` comments skipped.

    Raises:
        ValueError: an item names nothing (a missing path, a glob that matches nothing, a list naming a
        missing path), or ``items`` is empty; one line naming it.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("a", "b", "c"): (root / name).mkdir()
        >>> _ = (root / "list.txt").write_text("# scans\\nc\\n\\na\\n")
        >>> [p.name for p in expand_inputs([str(root / "list.txt"), str(root / "[ab]")])]
        ['c', 'a', 'b']
    """
    items = [items] if isinstance(items, (str, Path)) else list(items)
    if not items:
        raise ValueError("inputs must name at least one dataset, got none")
    found: list[Path] = []
    for item in items:
        text, path = str(item), Path(item)
        if path.exists() and is_list_file(path):
            lines = [line.strip() for line in path.read_text().splitlines()]
            named = [path.parent / line for line in lines if line and not line.startswith("#")]
            missing = next((p for p in named if not p.exists()), None)
            if missing is not None:
                raise ValueError(f"inputs: the list {text} names {missing}, which does not exist")
            found += named
        elif path.exists():
            found.append(path)
        elif glob.has_magic(text):
            matched = sorted(glob.glob(text))
            if not matched:
                raise ValueError(f"inputs: the pattern {text!r} matches no file or folder")
            found += [Path(m) for m in matched]
        else:
            raise ValueError(f"inputs must name existing datasets, list files or glob patterns, got {text}")
    unique, seen = [], set()
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def dataset_name(path: Path) -> str:
    """The outputs' base name of a dataset: its folder's name (a dataset file's parent folder)."""
    path = path.resolve()
    return (path.parent if path.is_file() else path).name or "dataset"


def output_names(paths) -> list[str]:
    """A distinct output name for each dataset: its folder's name, with a short hash of its full path
    when two datasets share a name (stable from run to run, whatever the order).

    Example:
        >>> output_names([Path("/scans/a/torus"), Path("/scans/b/torus"), Path("/scans/mug")])
        ['torus-dc4a2d3d', 'torus-14b00505', 'mug']
    """
    names = [dataset_name(Path(p)) for p in paths]
    return [f"{n}-{hashlib.sha256(str(Path(p).resolve()).encode()).hexdigest()[:8]}" if names.count(n) > 1 else n
            for n, p in zip(names, paths)]


def inputs_hash(path, options: dict) -> str:
    """SHA-256 (hex) of a dataset's files and the options it is carved with.

    Every file under the dataset's folder (a dataset file: its folder) counts by its relative name
    and, up to :data:`SMALL_FILE` bytes, its content (calibration, lists), else its size and
    modification time (images): an edited file or an added view changes the hash, a copy that
    keeps the times does not. ``options`` count as canonical JSON (sorted keys).

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "calib.txt").write_text("1 0 0")
        >>> a = inputs_hash(root, {"resolution": 64})
        >>> a == inputs_hash(root, {"resolution": 64}), a == inputs_hash(root, {"resolution": 128})
        (True, False)
    """
    path = Path(path).resolve()
    folder = path.parent if path.is_file() else path
    digest = hashlib.sha256()
    digest.update(json.dumps({"dataset": path.name, "options": options}, sort_keys=True, default=str).encode())
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"\0{file.relative_to(folder).as_posix()}\0".encode())
        if stat.st_size <= SMALL_FILE:
            digest.update(file.read_bytes())
        else:
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()
