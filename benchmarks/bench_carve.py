"""Visual-hull carving of the bunny (36 views, 1024x768): ours against Open3D and a naive numpy carve,
all in one run.

    python benchmarks/bench_carve.py [--repeats 5] [--quick] [--baseline-repeats 1] [--threads N]

Rows: ours (Numba octree, the default; Numba dense; torch octree on the CPU, and on CUDA when there
is a GPU) at N = 128, 256, 512, 1024 voxels along the longest side of the README's box, and at 128
and 256 Open3D's ``VoxelGrid.carve_silhouette`` (dense grid, float32 masks: uint8 ones silently carve
everything) and a naive numpy carve (every centre projected in every view, no early exit). Times are
medians of repeats after an untimed warm-up (Numba compilation excluded); "IoU" is against our Numba
octree at the same N; "x Open3D" is Open3D's time over the row's, both measured in this run.

Open3D keeps a voxel when any of its 8 corners projects into the mask (a dilated hull), ours and the
naive carve use the voxel centre (DESIGN.md), hence Open3D's IoU below 1. The peak memory of the
1024 run is measured with tracemalloc (numpy allocations during the call) and the process's max RSS.
``--quick`` skips N = 1024, the dense and torch 512 rows and the baselines.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from timing import print_table

BUNNY = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bunny"
BOX = (np.array([-7.5, -10.0, -7.5]), np.array([7.5, 10.0, 15.0]))
README_COUNTS = {128: 151_456, 256: 1_211_347}


def load_bunny():
    """Cameras and (36, 768, 1024) bool silhouettes, parsed here until a data loader exists."""
    import cv2

    from geometry import Camera

    calibs = sorted((BUNNY / "calib").glob("*.txt"))
    masks = sorted((BUNNY / "silhouettes").glob("*.png"))
    if not calibs or len(calibs) != len(masks):
        sys.exit(f"bench_carve: {BUNNY} must hold calib/*.txt and silhouettes/*.png, one per view")
    P = []
    for f in calibs:
        lines = f.read_text().split("\n")
        if lines[0].strip() != "CONTOUR":
            sys.exit(f"bench_carve: {f} does not start with CONTOUR")
        P.append(np.array([[float(v) for v in line.split()] for line in lines[1:4]]))
    sil = np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) == 0 for f in masks])  # 0 is the object
    return Camera.from_projection(np.stack(P), sil.shape[2], sil.shape[1]), sil


def grid_of(N):
    size = float(np.max(BOX[1] - BOX[0])) / N
    shape = tuple(int(n) for n in np.ceil((BOX[1] - BOX[0]) / size - 1e-9))
    return size, shape


def naive_numpy(sil, cams, N):
    """Every voxel centre projected in every view (homogeneous matmul), looked up at round-half-up."""
    size, shape = grid_of(N)
    axes = [BOX[0][a] + (np.arange(shape[a]) + 0.5) * size for a in range(3)]
    X = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    Xh = np.concatenate([X, np.ones((len(X), 1))], 1)
    keep = np.ones(len(X), bool)
    H, W = sil.shape[1:]
    for P, mask in zip(cams.P, sil):
        h = Xh @ P.T
        u = np.floor(h[:, 0] / h[:, 2] + 0.5)
        v = np.floor(h[:, 1] / h[:, 2] + 0.5)
        ok = (h[:, 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        keep &= ok & mask[np.where(ok, v, 0).astype(int), np.where(ok, u, 0).astype(int)]
    return keep.reshape(shape)


def open3d_carve(sil, cams, N):
    """Open3D: a dense VoxelGrid over the box, carved by each view's float32 mask."""
    import open3d as o3d

    size, shape = grid_of(N)
    params = cams.to_open3d()
    masks = [o3d.geometry.Image(m.astype(np.float32)) for m in sil]

    def run():
        grid = o3d.geometry.VoxelGrid.create_dense(BOX[0], [0.5, 0.5, 0.5], size, shape[0] * size,
                                                   shape[1] * size, shape[2] * size)
        for mask, param in zip(masks, params):
            grid.carve_silhouette(mask, param, keep_voxels_outside_image=False)
        return grid

    return run


def open3d_occupancy(grid, N):
    _, shape = grid_of(N)
    occ = np.zeros(shape, bool)
    idx = np.array([v.grid_index for v in grid.get_voxels()]).reshape(-1, 3)
    if not np.allclose(np.asarray(grid.origin), BOX[0]):
        raise RuntimeError(f"Open3D placed the grid at {np.asarray(grid.origin)}, expected {BOX[0]}")
    occ[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return occ


def peak_rss():
    """Peak resident memory of this process in bytes (VmHWM: unlike ru_maxrss it restarts at exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_probe():
    """Print the peak memory of one N=1024 Numba carve in this (fresh) process."""
    import carve
    from carve.hull import numba_kernels

    cams, sil = load_bunny()
    numba_kernels.warm_up()
    carve.carve(sil, cams, 64, BOX)
    before = peak_rss()
    tracemalloc.start()
    start = time.perf_counter()
    grid = carve.carve(sil, cams, 1024, BOX)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = peak_rss()
    runs = grid.runs  # the grid as carved: run-length rows, no dense array (that would be nx * ny * nz bytes)
    print(f"N=1024 memory: {peak / 2**30:.2f} GiB allocated at the peak of the call (tracemalloc; the occupancy's "
          f"run-length rows {(runs.start.nbytes + runs.toggles.nbytes) / 2**30:.3f} GiB of it, a dense array "
          f"{'made' if grid.holds_dense else 'not made'}), process max RSS {after / 2**30:.2f} GiB "
          f"({before / 2**30:.2f} GiB before the call: interpreter, libraries, the 36 masks); "
          f"{elapsed:.2f} s under tracemalloc")


def time_median(fn, repeats, warmup):
    """(median seconds of ``repeats`` calls after ``warmup`` untimed ones, the last call's result)."""
    for _ in range(warmup):
        fn()
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def iou(a, b):
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of our variants (median reported)")
    parser.add_argument("--baseline-repeats", type=int, default=1,
                        help="timed repeats of Open3D and the naive carve (seconds each at N=256)")
    parser.add_argument("--quick", action="store_true", help="skip N=1024, Open3D, the naive carve and slow rows")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for Numba and torch (default: their own, one per core); 1 gives steadier "
                             "figures on a machine shared with other work")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats <= 0 or args.baseline_repeats <= 0:
        parser.error("--repeats and --baseline-repeats must be positive")
    if not BUNNY.is_dir():
        sys.exit(f"bench_carve: the bunny dataset was not found at {BUNNY}; it lives beside the repository in "
                 "../shared/datasets/bunny (see its README)")

    if args.memory_child:
        return memory_probe()

    import numba
    import torch

    import carve
    from carve.hull import numba_kernels

    if args.threads:
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        torch.set_num_threads(args.threads)
    cams, sil = load_bunny()
    numba_kernels.warm_up()
    resolutions = [128, 256, 512] if args.quick else [128, 256, 512, 1024]
    rows, notes = [], []
    cuda = torch.cuda.is_available()

    for N in resolutions:
        size, shape = grid_of(N)
        ours = carve.carve(sil, cams, N, BOX)  # the reference of this N (also a warm-up)
        occ = ours.occupancy
        count = ours.count()
        if N in README_COUNTS and count != README_COUNTS[N]:
            notes.append(f"N={N}: occupied {count:,} differs from the README's {README_COUNTS[N]:,}")
        results = {}  # variant -> (seconds, occupancy)

        def timed(name, fn, repeats, get=lambda r: r.occupancy):
            seconds, last = time_median(fn, repeats=repeats, warmup=1 if repeats > 1 else 0)
            results[name] = (seconds, get(last))

        timed("ours: Numba octree", lambda: carve.carve(sil, cams, N, BOX), args.repeats)
        if N <= 256 or not args.quick:
            if N <= 512:
                timed("ours: Numba dense", lambda: carve.carve(sil, cams, N, BOX, method="dense"),
                      max(1, args.repeats // 2 if N >= 512 else args.repeats))
            timed("ours: torch octree, CPU", lambda: carve.carve(sil, cams, N, BOX, backend="torch", device="cpu"),
                  max(1, args.repeats if N <= 256 else 2))
        if cuda:
            def on_gpu():
                grid = carve.carve(sil, cams, N, BOX, backend="torch", device="cuda")
                torch.cuda.synchronize()
                return grid

            timed("ours: torch octree, CUDA", on_gpu, args.repeats)
        if N in (128, 256) and not args.quick:
            run = open3d_carve(sil, cams, N)
            timed("Open3D carve_silhouette", run, args.baseline_repeats, get=lambda g: open3d_occupancy(g, N))
            timed("naive numpy carve", lambda: naive_numpy(sil, cams, N), args.baseline_repeats, get=lambda o: o)
        o3d_seconds = results.get("Open3D carve_silhouette", (None,))[0]
        for name, (seconds, result) in results.items():
            ratio = f"{o3d_seconds / seconds:.0f}x" if o3d_seconds else "-"
            rows.append((str(N), "x".join(map(str, shape)), name, f"{seconds:.4f}", f"{np.count_nonzero(result):,}",
                         f"{iou(result, occ):.4f}", ratio))
        numba_s = results["ours: Numba octree"][0]
        if "ours: torch octree, CPU" in results:
            notes.append(f"N={N}: torch CPU / Numba = {results['ours: torch octree, CPU'][0] / numba_s:.1f}x")
        results.clear()
    if 1024 in resolutions:
        # in a fresh process, so that no other row's memory counts
        out = subprocess.run([sys.executable, __file__, "--memory-child"], capture_output=True, text=True)
        notes.append(out.stdout.strip() or f"N=1024 memory probe failed: {out.stderr.strip()[-300:]}")

    print(f"Visual hull of the bunny: {len(cams)} views of {sil.shape[2]}x{sil.shape[1]}, box {BOX[0].tolist()} .. "
          f"{BOX[1].tolist()}; {os.cpu_count()} cores, Numba {numba.get_num_threads()} threads, torch "
          f"{torch.get_num_threads()} threads; median of {args.repeats} (baselines: {args.baseline_repeats})")
    print_table(["N", "grid", "variant", "seconds", "occupied", "IoU vs ours", "x Open3D"], rows)
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
