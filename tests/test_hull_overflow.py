"""Carving where the float64 projection overflows (issue 16): the torch backend must not index out of
range (a device-side assert on CUDA), and must decide every centre as the Numba backend and the naive
rule do: a non-finite pixel coordinate is off the image, so the ``outside`` policy applies."""
import numpy as np
import pytest

from geometry import Camera

import carve
from hull_scenes import random_scene, reference_carve

pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::carve.hull.EmptyHullWarning")

RESOLUTION = 16  # small grids: the overflow happens at every size, the test only needs a few voxels


def _huge_box(seed):
    """A box near the float64 limit: P[r, j] * x overflows to +-inf, and inf - inf is NaN."""
    cams, sil, depth, (lo, hi), _ = random_scene(seed)
    return cams, sil, depth, (lo * 1e307, hi * 1e307)


def _huge_focal(seed):
    """A camera of focal length 1e300 (a far, narrow view) before a box of side 1e10: same overflow."""
    cams, sil, depth, (lo, hi), _ = random_scene(seed)
    K = cams.K.copy()
    K[:, :2, :2] *= 1e300
    far = Camera(K, cams.R, cams.T, width=cams.width, height=cams.height)
    return far, sil, depth, (lo * 1e10, hi * 1e10)


SCENES = [(_huge_box, 0), (_huge_box, 1), (_huge_focal, 2)]


def _overflows(cams, lo, hi):
    """True if some voxel-centre projection of the box is non-finite (the scene tests what it claims)."""
    xs, ys, zs = (np.linspace(lo[a], hi[a], 9) for a in range(3))
    X = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), -1).reshape(-1, 3)
    with np.errstate(all="ignore"):
        h = np.einsum("brj,nj->bnr", cams.P[:, :, :3], X) + cams.P[:, None, :, 3]
        return not np.isfinite(h[..., :2] / h[..., 2:]).all()


@pytest.mark.parametrize("outside", ["carve", "keep"])
@pytest.mark.parametrize("make,seed", SCENES)
def test_masks_overflowing_projection_agree_with_numba_and_the_rule(make, seed, outside):
    cams, sil, _, (lo, hi) = make(seed)
    assert _overflows(cams, lo, hi)
    with np.errstate(all="ignore"):
        expected = reference_carve(sil, cams, lo, hi, RESOLUTION, outside=outside)
    for method in ("dense", "octree"):
        for backend, kw in (("numba", {}), ("torch", {"device": "cpu"})):
            grid = carve.carve(sil, cams, RESOLUTION, (lo, hi), method=method, backend=backend, outside=outside, **kw)
            np.testing.assert_array_equal(grid.occupancy, expected, err_msg=f"{method} {backend}")


@pytest.mark.parametrize("missing", ["carve", "keep"])
@pytest.mark.parametrize("outside", ["carve", "keep"])
@pytest.mark.parametrize("make,seed", SCENES)
def test_depth_overflowing_projection_agrees_with_numba(make, seed, outside, missing):
    cams, _, depth, (lo, hi) = make(seed)
    kw = dict(resolution=RESOLUTION, bounds=(lo, hi), outside=outside, missing=missing)
    first = carve.carve_depth(depth, cams, method="dense", backend="numba", **kw).occupancy
    for method in ("dense", "octree"):
        for backend, extra in (("numba", {}), ("torch", {"device": "cpu"})):
            occ = carve.carve_depth(depth, cams, method=method, backend=backend, **kw, **extra).occupancy
            np.testing.assert_array_equal(occ, first, err_msg=f"{method} {backend}")

