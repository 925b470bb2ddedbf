"""Datasets per second of ``carve batch`` (Dask, 1 and 2 worker processes) against a plain loop over
``carve reconstruct``'s function in one process, and the scheduling overhead per task.

Every row carves the same rendered datasets with the same options, the full task (load, masks, robust
hull, coloured mesh, files, snapshot): the loop calls :func:`carve.pipeline.reconstruct`, the batch
runs :func:`carve.batch.reconstruct_many`, whose tasks call it too. Warm-up is out of the timings: the
loop carves one extra dataset first; each cluster is started, and every worker carves once, before
its clock starts (a real batch pays that once, a few seconds, for thousands of tasks).

Overhead per task: the batch's wall time times its workers, less the seconds the tasks themselves took
(their records' ``seconds``), over the tasks: what scheduling, hashing, the manifest and idle workers
cost each dataset. Datasets per core-hour: the 2-worker rate, per core, times 3600, to size a cluster.

Usage: python benchmarks/bench_batch.py [--datasets 32] [--size 160x120] [--views 12] [--resolution 64] [--repeats 3]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import print_table, write_json  # noqa: E402

OBJECTS = ["torus", "sphere", "box", "mug"]  # objects inside every view (a table leaves the frame)


def render(root: Path, count: int, size, views: int) -> list[Path]:
    import data

    paths = []
    for i in range(count):
        path = root / f"{OBJECTS[i % len(OBJECTS)]}{i:03d}"
        data.save(data.synthetic(OBJECTS[i % len(OBJECTS)], views=views, size=size), path)
        paths.append(path)
    return paths


def warm_worker(path: str, out: str, options: dict) -> None:
    """One carve on a worker's carving thread: compiles, loads Open3D, starts the renderer once."""
    from carve.batch.run import carving_thread
    from carve.pipeline import reconstruct

    carving_thread().submit(reconstruct, path, out, **options).result()


def time_loop(paths, warm, out: Path, options: dict) -> float:
    from carve.pipeline import reconstruct

    reconstruct(warm, out / "warm", **options)
    start = time.perf_counter()
    for path in paths:
        reconstruct(path, out / path.name, **options)
    return time.perf_counter() - start


def time_batch(paths, warm, out: Path, workers: int, options: dict):
    from carve.batch import reconstruct_many
    from carve.batch.cluster import open_client

    with open_client(workers=workers) as client:
        client.wait_for_workers(workers)
        client.run(warm_worker, str(warm), str(out / "warm"), options)
        start = time.perf_counter()
        report = reconstruct_many(paths, out / "batch", client=client, resume=False, progress=False, **options)
        seconds = time.perf_counter() - start
    assert not report.failed, report.table()
    busy = sum(r["seconds"] for r in report.records)
    return seconds, (seconds * workers - busy) / len(paths)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=32)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of loop, 1 worker, 2 workers (interleaved); medians are reported")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    options = {"resolution": args.resolution}
    from carve.batch.cluster import own_cores

    root = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        paths = render(root / "in", args.datasets, size, args.views)
        warm = render(root / "warm", 1, size, args.views)[0]
        rounds = []  # (loop s, 1-worker s, its overhead, 2-worker s, its overhead) per round
        for r in range(args.repeats):
            loop = time_loop(paths, warm, root / f"loop{r}", options)
            one, one_overhead = time_batch(paths, warm, root / f"one{r}", 1, options)
            two, two_overhead = time_batch(paths, warm, root / f"two{r}", 2, options)
            rounds.append((loop, one, one_overhead, two, two_overhead))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    loop, one, one_overhead, two, two_overhead = (float(v) for v in np.median(np.array(rounds), axis=0))
    speedup_one = float(np.median([r[0] / r[1] for r in rounds]))  # ratios within a round, then the median
    speedup_two = float(np.median([r[0] / r[3] for r in rounds]))
    n, cores = args.datasets, own_cores()
    rows = [["loop over reconstruct (1 process)", f"{n / loop:.2f}", "1.00x", "", f"{n / loop * 3600:,.0f}"],
            ["carve batch, 1 worker", f"{n / one:.2f}", f"{speedup_one:.2f}x", f"{one_overhead * 1000:.0f}",
             f"{n / one * 3600:,.0f}"],
            ["carve batch, 2 workers", f"{n / two:.2f}", f"{speedup_two:.2f}x", f"{two_overhead * 1000:.0f}",
             f"{n / two * 3600:,.0f}"]]
    print(f"{n} datasets of {args.views} views at {size[0]}x{size[1]} px, resolution {args.resolution}, "
          f"{cores} cores, median of {args.repeats} rounds (goal: 2 workers >= 1.6x the loop, overhead < 50 ms "
          f"per task); 2-worker ratio per round: {', '.join(f'{r[0] / r[3]:.2f}x' for r in rounds)}")
    print_table(["run", "datasets/s", "vs loop", "overhead ms/task", "datasets/hour"], rows)
    per_core = n / two * 3600 / min(2, cores)
    print(f"one core sustains about {per_core:,.0f} datasets per hour at these settings "
          f"(2-worker rate over {min(2, cores)} cores)")
    if args.json:
        write_json({"datasets": n, "size": list(size), "views": args.views, "resolution": args.resolution,
                    "cores": cores, "repeats": args.repeats, "rounds_s": [list(r) for r in rounds],
                    "loop_s": loop, "one_worker_s": one, "two_workers_s": two,
                    "speedup": {"one": speedup_one, "two": speedup_two},
                    "overhead_ms": {"one": one_overhead * 1000, "two": two_overhead * 1000},
                    "per_core_hour": per_core}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
