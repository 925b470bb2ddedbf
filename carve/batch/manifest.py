"""The batch manifest: one JSON line per finished dataset, read back to resume a run.

Each record: ``name``, ``dataset``, ``status`` ("done" or "failed"), ``voxels``, ``times_s`` (seconds
per stage), ``error`` (one line, or None), ``hash`` (:func:`carve.batch.inputs.inputs_hash`),
``outputs`` (files, relative to the output folder), ``seconds`` (the task's wall time), ``worker``.
The last record of a name is the one that counts.

Writing: only the process that runs the batch writes (the workers return their records to it).
At the start of a run the file is rewritten through :func:`data.files.atomic_path`, keeping one
record per name (so it does not grow from run to run); then every finished task appends its
record with one ``os.write`` of one line, shorter than ``PIPE_BUF`` (the error is cut to fit), to a
descriptor opened with ``O_APPEND``, and ``fsync``. A crash can lose at most the line being
written; a torn last line is skipped on reading and ended before the next append.

The standard library only.
"""
from __future__ import annotations

import json
import os
import select
from pathlib import Path

__all__ = ["Manifest", "MANIFEST_NAME", "MAX_LINE"]

MANIFEST_NAME = "manifest.jsonl"
#: bytes of one record line at most: a single write of at most PIPE_BUF bytes is never interleaved
MAX_LINE = getattr(select, "PIPE_BUF", 4096)


def encode(record: dict) -> bytes:
    """``record`` as one JSON line of at most :data:`MAX_LINE` bytes (its error and outputs cut to fit).

    Example:
        >>> len(encode({"name": "x", "error": "e" * 10000})) <= MAX_LINE
        True
    """
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    if len(line) > MAX_LINE:
        record = dict(record, outputs=record.get("outputs", [])[:8])
        error = record.get("error") or ""
        over = len((json.dumps(record, sort_keys=True) + "\n").encode()) - MAX_LINE
        if over > 0:
            record["error"] = error[:max(0, len(error) - over - 8)] + "..."
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
    if len(line) > MAX_LINE:
        raise ValueError(f"a manifest record must fit in {MAX_LINE} bytes, got {len(line)}")
    return line


class Manifest:
    """The manifest file of an output folder.

    Example:
        >>> import tempfile, pathlib
        >>> m = Manifest(pathlib.Path(tempfile.mkdtemp()) / MANIFEST_NAME)
        >>> m.append({"name": "a", "status": "failed"}); m.append({"name": "a", "status": "done"})
        >>> m.latest()["a"]["status"], len(m.path.read_text().splitlines())
        ('done', 2)
        >>> m.compact(); len(m.path.read_text().splitlines())
        1
    """

    def __init__(self, path):
        self.path = Path(path)

    def records(self) -> list[dict]:
        """Every record in the file, in order; lines that do not parse (a torn last line) are skipped."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_bytes().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "name" in record:
                out.append(record)
        return out

    def latest(self) -> dict[str, dict]:
        """name -> its last record."""
        return {record["name"]: record for record in self.records()}

    def compact(self) -> None:
        """Rewrite the file atomically with the last record of each name, when it holds more than those."""
        from data.files import atomic_path

        latest = self.latest()
        body = b"".join(encode(r) for r in latest.values())
        if not latest or body == self.path.read_bytes():  # nothing to drop: the file is left untouched
            return
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())

    def append(self, record: dict) -> None:
        """Add ``record`` as one line: a single ``os.write`` with ``O_APPEND``, then ``fsync``."""
        line = encode(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            size = os.fstat(fd).st_size
            if size:  # a line torn by a crash is ended first, so that this record stays readable
                with open(self.path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        os.write(fd, b"\n")
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)
