"""How fast ``data.scenes.sample`` makes training samples, in one process and in a pool.

    python benchmarks/bench_scenes.py [--n 400] [--size 128] [--workers 2]

Prints samples per second and the time 2,000 samples would take. Open3D's ray caster is itself
multithreaded, but a 128x128 sample spends most of its time in Python (building the meshes and
shading), so a pool of processes scales further. The first call in each process (imports, Open3D
start-up) is kept out of the timing.
"""
from __future__ import annotations

import argparse
import os
import time
from multiprocessing import get_context


def _warm(_=None):
    from data import scenes

    scenes.sample(0, size=(32, 32))
    return os.getpid()


def _work(args):
    seed, size = args
    from data import scenes

    s = scenes.sample(seed, size=size)
    return int(s["mask"].sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="samples per measurement")
    ap.add_argument("--size", type=int, default=128, help="image side in pixels")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="pool size")
    args = ap.parse_args()
    size = (args.size, args.size)

    _warm()
    from data import scenes

    t = time.perf_counter()
    for seed in range(args.n):
        scenes.sample(seed, size=size)
    single = args.n / (time.perf_counter() - t)

    ctx = get_context("spawn")
    with ctx.Pool(args.workers, initializer=_warm) as pool:
        pool.map(_warm, range(args.workers))
        t = time.perf_counter()
        pool.map(_work, [(seed, size) for seed in range(args.n)], chunksize=8)
        pooled = args.n / (time.perf_counter() - t)

    print(f"data.scenes.sample at {args.size}x{args.size}, {args.n} samples")
    print(f"{'setting':<28}{'samples/s':>12}{'2,000 samples':>16}")
    print(f"{'1 process':<28}{single:>12.1f}{2000 / single:>15.0f}s")
    print(f"{f'pool of {args.workers} workers':<28}{pooled:>12.1f}{2000 / pooled:>15.0f}s")


if __name__ == "__main__":
    main()
