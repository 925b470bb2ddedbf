"""Scenes for the carving tests: random spheres seen by random cameras (ray cast, so exact), a naive
reference of the carving rule, and the bunny dataset (skipped where absent)."""
from pathlib import Path

import numpy as np
import pytest

from geometry import Camera

BUNNY = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bunny"
BUNNY_BOX = ([-7.5, -10.0, -7.5], [7.5, 10.0, 15.0])


def ray_cast(cams, centres, radii):
    """Silhouettes (B, H, W) and depth maps (0 = no hit) of a union of spheres, one ray per pixel centre."""
    H, W = cams.height, cams.width
    rows, cols = np.mgrid[:H, :W]
    pix = np.stack([cols.ravel(), rows.ravel(), np.ones(H * W)], 1).astype(float)
    sil = np.zeros((len(cams), H, W), bool)
    depth = np.zeros((len(cams), H, W))
    for b in range(len(cams)):
        d_cam = pix @ np.linalg.inv(cams.K[b]).T  # camera-frame rays with unit depth
        d = d_cam @ cams.R[b]  # world directions, R^T d
        o = cams.center[b]
        best = np.full(H * W, np.inf)
        for c, r in zip(centres, radii):
            oc = o - c
            a = np.einsum("ij,ij->i", d, d)
            bq = 2 * d @ oc
            disc = bq ** 2 - 4 * a * (oc @ oc - r * r)
            t = (-bq - np.sqrt(np.maximum(disc, 0))) / (2 * a)
            best = np.where((disc >= 0) & (t > 0), np.minimum(best, t), best)
        hit = np.isfinite(best)
        sil[b] = hit.reshape(H, W)
        depth[b] = np.where(hit, best, 0).reshape(H, W)  # t is the depth: the ray has unit z
    return sil, depth


def random_scene(seed, n_views=6, size=(40, 30), near=False, noise=0.0):
    """Random spheres seen by random cameras; returns cams, silhouettes, depth maps, bounds, spheres."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 4))
    centres = rng.uniform(-0.4, 0.4, (k, 3))
    radii = rng.uniform(0.2, 0.45, k)
    dirs = rng.normal(size=(n_views, 3))
    dirs[:, 2] = np.clip(dirs[:, 2], -0.8, 0.8)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    dist = rng.uniform(1.7, 2.2, n_views) if near else rng.uniform(2.8, 4.0, n_views)
    cams = Camera.look_at(dirs * dist[:, None], rng.uniform(-0.1, 0.1, 3), up=(0, 0, 1), fov=55,
                          width=size[0], height=size[1])
    sil, depth = ray_cast(cams, centres, radii)
    if noise:
        flip = rng.random(sil.shape) < noise
        sil = sil ^ flip
    lo = rng.uniform(-1.05, -0.95, 3)
    hi = rng.uniform(0.95, 1.05, 3)
    return cams, sil, depth, (lo, hi), (centres, radii)


def reference_carve(sil, cams, lo, hi, resolution, tolerance=0, outside="carve"):
    """Naive numpy reference of the rule, in the engine's order of float64 operations."""
    P = cams.P
    size = float(np.max(hi - lo)) / resolution
    shape = np.maximum(np.ceil((hi - lo) / size - 1e-9), 1).astype(int)
    xs, ys, zs = (lo[a] + (np.arange(shape[a]) + 0.5) * size for a in range(3))
    x, y, z = np.meshgrid(xs, ys, zs, indexing="ij")
    policies = [outside] * len(P) if isinstance(outside, str) else list(outside)
    H, W = sil.shape[1:]
    n_rej = np.zeros(x.shape, int)
    for b in range(len(P)):
        h = [((P[b, r, 0] * x + P[b, r, 1] * y) + P[b, r, 3]) + P[b, r, 2] * z for r in range(3)]
        w = h[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            cu = h[0] / w + 0.5
            cv = h[1] / w + 0.5
        inside = (w > 1e-9) & (cu >= 0) & (cu < W) & (cv >= 0) & (cv < H)
        col = np.where(inside, cu, 0).astype(int)
        row = np.where(inside, cv, 0).astype(int)
        rejected = np.where(inside, ~sil[b, row, col], policies[b] == "carve")
        n_rej += rejected
    return n_rej <= tolerance


def load_bunny():
    if not BUNNY.is_dir():
        pytest.skip(f"bunny dataset not found at {BUNNY}")
    cv2 = pytest.importorskip("cv2")
    calibs = sorted((BUNNY / "calib").glob("*.txt"))
    P = np.stack([np.array([[float(v) for v in line.split()] for line in f.read_text().splitlines()[1:4]])
                  for f in calibs])
    sil = np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) == 0
                    for f in sorted((BUNNY / "silhouettes").glob("*.png"))])
    return Camera.from_projection(P, 1024, 768), sil
