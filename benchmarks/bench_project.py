"""Projection throughput: ours against the seed notebook's form, cv2.projectPoints, plain torch and
the memory-copy floor, all in one run on the same points.

    python benchmarks/bench_project.py [--points 10000000] [--repeats 5]

Every variant projects the same float32 (N, 3) world points into one 640x480 camera and returns pixel
coordinates; "ours" also returns depth and the validity mask. Ratios are against the seed form
measured in this run, which starts from the same (N, 3) array and so builds its homogeneous (N, 4)
copy; the row "seed form, Xh prebuilt" leaves that copy out of its time, for the record.
"""
import argparse
import os

import numpy as np

from timing import median_time, print_table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=10_000_000, help="number of points (default 10M)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per variant (median reported)")
    parser.add_argument("--skip-cv2", action="store_true", help="skip cv2.projectPoints (seconds per call at 10M)")
    args = parser.parse_args(argv)
    if args.points <= 0 or args.repeats <= 0:
        parser.error("--points and --repeats must be positive")

    import cv2
    import torch

    from geometry import Camera, project

    rng = np.random.default_rng(0)
    n = args.points
    X = (rng.standard_normal((n, 3)) * [1.0, 1.0, 0.5]).astype(np.float32)
    cam = Camera.look_at([0.0, -6.0, 2.0], [0.0, 0.0, 0.0], fov=60, width=640, height=480)
    K, R, T = cam.K[0], cam.R[0], cam.T[0]
    Rt = np.hstack([R, T[:, None]]).astype(np.float32)
    K32 = K.astype(np.float32)
    Xh = np.hstack([X, np.ones((n, 1), np.float32)])

    def seed_form_prebuilt():
        U = (K32 @ Rt @ Xh.T).T
        return U[:, :2] / U[:, 2:3]

    def seed_form():
        Xh = np.hstack([X, np.ones((n, 1), np.float32)])
        U = (K32 @ Rt @ Xh.T).T
        return U[:, :2] / U[:, 2:3]

    rvec = cv2.Rodrigues(R)[0]

    def opencv():
        return cv2.projectPoints(X, rvec, T, K, None)[0]

    Xt = torch.from_numpy(X)
    Pt = torch.from_numpy((K @ np.hstack([R, T[:, None]])).astype(np.float32))

    def plain_torch():
        h = Xt @ Pt[:, :3].T + Pt[:, 3]
        return h[:, :2] / h[:, 2:3]

    dst = np.empty_like(X)
    buffers = (np.empty((1, n, 2), np.float32), np.empty((1, n), np.float32), np.empty((1, n), bool))

    rows, results = [], {}
    variants = [
        ("ours, numpy (Numba kernel)", lambda: project(X, cam)),
        ("ours, numpy, out= buffers reused", lambda: project(X, cam, out=buffers)),
        ("ours, torch CPU", lambda: project(Xt, cam)),
        ("seed form (K @ P @ Xh.T).T / z", seed_form),
        ("seed form, Xh prebuilt", seed_form_prebuilt),
        ("plain torch matmul / z", plain_torch),
        ("copy of the points to a new array (floor)", lambda: X.copy()),
        ("copy of the points into a buffer (floor)", lambda: np.copyto(dst, X)),
    ]
    if not args.skip_cv2:
        variants.append(("cv2.projectPoints", opencv))
    for name, fn in variants:
        repeats = min(args.repeats, 3) if name.startswith("cv2") else args.repeats
        results[name] = median_time(fn, repeats=repeats, warmup=1)

    # correctness in the same run: our pixels against the seed form's on points in front
    uv, depth, valid = project(X, cam)
    ref = seed_form()
    front = depth[0] > 0
    err = float(np.abs(uv[0][front] - ref[front]).max())

    seed = results["seed form (K @ P @ Xh.T).T / z"]
    # like with like: fresh outputs against a copy to a new array, reused buffers against a copy into one
    fresh_floor = results["copy of the points to a new array (floor)"]
    buffer_floor = results["copy of the points into a buffer (floor)"]
    for name, seconds in results.items():
        floor = buffer_floor if "buffer" in name else fresh_floor
        rows.append((name, f"{seconds * 1e3:.1f}", f"{n / seconds / 1e6:.0f}",
                     f"{seed / seconds:.2f}x", f"{seconds / floor:.2f}x"))
    print(f"Projection of {n:,} float32 points, 1 camera, {os.cpu_count()} cores, median of {args.repeats}")
    print_table(["variant", "ms", "Mpts/s", "vs seed", "vs floor"], rows)
    print("vs floor: rows that write into existing buffers against the copy into a buffer, the rest "
          "against the copy to a new array (both pay the same first-touch page faults)")
    print(f"max |ours - seed form| over points in front: {err:.2e} px (float32 seed arithmetic)")
    if torch.cuda.is_available():
        _cuda_rows(n, cam)


def _cuda_rows(n, cam):
    import torch

    from geometry import project

    X = torch.randn(n, 3, device="cuda")
    dst = torch.empty_like(X)

    def timed(fn):
        def run():
            fn()
            torch.cuda.synchronize()
        return median_time(run, repeats=10, warmup=2)

    ours = timed(lambda: project(X, cam))
    floor = timed(lambda: dst.copy_(X))
    print(f"CUDA ({torch.cuda.get_device_name()}): ours {ours * 1e3:.2f} ms, device-to-device copy "
          f"{floor * 1e3:.2f} ms, ratio {ours / floor:.2f}x")


if __name__ == "__main__":
    main()
