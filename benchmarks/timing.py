"""Timing shared by the benchmark scripts: median wall time of repeats, after warm-up calls.

Warm-up keeps one-off costs (Numba compilation, first-touch page faults of caches) out of the figure;
the median of several repeats tames the noise of a shared machine.
"""
import json
import statistics
import time
from pathlib import Path


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds of ``repeats`` calls of ``fn()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(headers, rows) -> None:
    """Print rows (sequences of already formatted cells) as an aligned plain-text table."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


def write_json(record, path) -> Path:
    """Write ``record`` as indented JSON to ``path`` atomically (no partial file on failure); returns the path."""
    from data.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return path
