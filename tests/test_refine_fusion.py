"""Depth fusion (carve.refine.fuse_depth): true depth carves the mug's cavity without eating the mug,
depth that carries no shape is refused by the gate, one wrong view cannot carve, our kernel agrees
with Open3D's TSDF, and bad input gets a one-sentence error naming the argument."""
import warnings

import numpy as np
import pytest

import carve
import data
from carve.refine import DepthGateWarning, fuse_depth
from carve.refine.fusion import TRUNCATION
from carve.refine.fusion_kernels import fusion_kernel, tsdf_open3d
from data import objects

VIEWS, SIZE, RESOLUTION = 24, (160, 120), 64


@pytest.fixture(scope="module")
def mug():
    """(views, hull, truth): the textured mug in 24 views 160 x 120, its hull at resolution 64, and
    which of the hull's voxels (in ``points()`` order) are inside the true mug."""
    mesh = objects.textured(objects.mug())
    mv = data.synthetic(mesh, views=VIEWS, size=SIZE, seed=0)
    hull = carve.carve(mv.silhouettes, mv.cameras, resolution=RESOLUTION)
    return mv, hull, objects.contains(mesh, hull.points())


def scores(grid, hull, truth):
    """(IoU with the truth, precision: the share of carved voxels that are truly empty, carved)."""
    assert grid.shape == hull.shape and np.array_equal(grid.lo, hull.lo)
    assert not (grid.occupancy & ~hull.occupancy).any(), "the result must be a subset of the start"
    kept = grid.occupancy[hull.occupancy]
    both = np.count_nonzero(kept & truth)
    iou = both / (np.count_nonzero(kept) + np.count_nonzero(truth) - both)
    carved = ~kept
    precision = float(np.mean(~truth[carved])) if carved.any() else 1.0
    return iou, precision, int(carved.sum())


def true_depth(mv):
    return np.stack(mv.depths).astype(np.float32)


# ---------------------------------------------------------------------------------- true depth
def test_true_depth_carves_the_cavity_and_not_the_mug(mug):
    mv, hull, truth = mug
    hull_iou, _, _ = scores(hull, hull, truth)
    grid, report = fuse_depth(None, mv.cameras, hull, depths=mv.depths)
    iou, precision, carved = scores(grid, hull, truth)
    assert report.allowed and report.carved == carved > 0
    assert iou >= hull_iou + 0.08, f"IoU {iou:.3f} against the hull's {hull_iou:.3f}"  # measured 0.455 vs 0.354
    assert precision >= 0.97
    assert report.ratio < 0.25 and report.views_used.sum() >= 20  # true depth: ratio 0.12, all 24 views
    assert np.all(np.abs(report.scale - 1) < 0.1)  # the hull is tight on the rims: scale ~1, shift ~0
    assert report.truncation == pytest.approx(TRUNCATION * hull.voxel_size)
    assert "carved" in report.summary() and f"{report.ratio:.2f}" in report.summary()


@pytest.mark.parametrize("kind", ["affine", "inverse"])
def test_depth_in_another_scale_shift_or_as_disparity_is_aligned(mug, kind):
    mv, hull, truth = mug
    depth = true_depth(mv)
    reference, _ = fuse_depth(None, mv.cameras, hull, depths=depth)
    if kind == "affine":
        other = np.where(depth > 0, 2.5 * depth + 1.0, 0)
        grid, report = fuse_depth(None, mv.cameras, hull, depths=other)
        assert np.all(np.abs(2.5 * report.scale - 1) < 0.1)
    else:  # a disparity map, up to scale and shift
        other = np.where(depth > 0, 3.0 / np.maximum(depth, 1e-6) + 0.2, 0)
        grid, report = fuse_depth(None, mv.cameras, hull, depths=other, inverse=True)
    assert report.allowed
    same = np.count_nonzero(grid.occupancy == reference.occupancy) / grid.occupancy.size
    assert same > 0.99
    assert scores(grid, hull, truth)[1] >= 0.97


def test_depth_wrong_inside_a_few_views_cannot_carve_the_mug(mug):
    """Three views see the mug's inside 30 % farther than it is (their rims are right, so the gate
    passes them): the other views that see those voxels near the surface keep them."""
    import cv2

    mv, hull, truth = mug
    depth = true_depth(mv)
    for b in (3, 11, 19):
        inner = cv2.distanceTransform((depth[b] > 0).astype(np.uint8), cv2.DIST_L2, 5) > 8
        depth[b][inner] *= 1.3
    grid, report = fuse_depth(None, mv.cameras, hull, depths=depth)
    iou, precision, carved = scores(grid, hull, truth)
    assert report.allowed and carved > 0
    assert precision >= 0.97


def test_a_view_without_depth_is_left_out(mug):
    mv, hull, truth = mug
    depth = true_depth(mv)
    depth[0] = np.nan
    grid, report = fuse_depth(None, mv.cameras, hull, depths=depth)
    assert report.rim_pixels[0] == 0 and not report.views_used[0] and np.isnan(report.scale[0])
    assert report.allowed and scores(grid, hull, truth)[1] >= 0.97


# ------------------------------------------------------------------------------------- the gate
def test_random_depth_is_refused_and_the_hull_comes_back(mug):
    mv, hull, _ = mug
    noise = np.random.default_rng(0).uniform(0.5, 5.0, (VIEWS, SIZE[1], SIZE[0])).astype(np.float32)
    with pytest.warns(DepthGateWarning, match=r"refused.*is \d\.\d{4} against a constant's \d\.\d{4}") as caught:
        grid, report = fuse_depth(None, mv.cameras, hull, depths=noise)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert grid is hull and not report.allowed and report.carved == 0
    assert report.ratio > 0.8 and report.views_used.sum() < 3


def test_a_constant_depth_is_refused(mug):
    mv, hull, _ = mug
    with pytest.warns(DepthGateWarning):
        grid, report = fuse_depth(None, mv.cameras, hull, depths=np.full((VIEWS, SIZE[1], SIZE[0]), 3.0))
    assert grid is hull and not report.allowed and np.all(report.scale[np.isfinite(report.scale)] == 0)


def test_the_shipped_model_does_not_eat_the_mug(mug, one_torch_thread):
    """Its depth of the synthetic mug is not yet evidence (the gate refuses it, ratio 1.1); whatever
    the gate says, what comes back keeps the mug."""
    mv, hull, truth = mug
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DepthGateWarning)
        grid, report = fuse_depth(mv.images, mv.cameras, hull)
    assert scores(grid, hull, truth)[1] >= 0.97
    assert np.isfinite(report.ratio) and report.rim_pixels.min() > 0


# ------------------------------------------------------------------------------------ the kernel
def test_our_kernel_agrees_with_open3d(mug):
    pytest.importorskip("open3d")
    mv, hull, _ = mug
    depth = true_depth(mv)
    t = TRUNCATION * hull.voxel_size
    flat = np.flatnonzero(hull.occupancy)
    tsdf, weight = np.empty(len(flat), np.float32), np.empty(len(flat), np.int32)
    everywhere = np.full(depth.shape, np.inf)  # no visibility limit: the plain TSDF
    fusion_kernel(flat, hull.shape[1], hull.shape[2], hull.lo, hull.voxel_size, np.ascontiguousarray(mv.cameras.numpy().P),
                  depth, np.ones(VIEWS, bool), t, everywhere, 0.0, tsdf, weight)
    o3d_tsdf, o3d_weight = tsdf_open3d(hull, mv.cameras, depth, t)
    assert np.mean(o3d_weight == weight) > 0.97
    ours, theirs = (weight >= 3) & (tsdf == 1), (o3d_weight >= 3) & (o3d_tsdf >= 1 - 1e-6)
    assert ours.sum() > 1000 and np.mean(ours == theirs) > 0.995
    both = (weight > 0) & (o3d_weight == weight)
    assert np.median(np.abs(tsdf[both] - o3d_tsdf[both])) < 1e-3


# ---------------------------------------------------------------------------------------- errors
def test_bad_inputs_are_named(mug):
    mv, hull, _ = mug
    depth = true_depth(mv)
    cams = mv.cameras
    cases = [
        (TypeError, "start must be a carve.VoxelGrid", lambda: fuse_depth(None, cams, hull.occupancy, depths=depth)),
        (TypeError, "cameras must be a geometry.Camera", lambda: fuse_depth(None, "cams", hull, depths=depth)),
        (ValueError, r"depths must have shape \(B, H, W\) = \(24, 120, 160\).*one map for all views",
         lambda: fuse_depth(None, cams, hull, depths=depth[0])),
        (ValueError, r"depths must have shape .* got \(24, 160, 120\)",
         lambda: fuse_depth(None, cams, hull, depths=np.swapaxes(depth, 1, 2))),
        (ValueError, "depths must all be 160x120 maps", lambda: fuse_depth(None, cams, hull, depths=[depth[0], depth[1, :10]])),
        (TypeError, "depths must hold numbers", lambda: fuse_depth(None, cams, hull, depths=depth.astype(str))),
        (ValueError, "images must be given when depths is None", lambda: fuse_depth(None, cams, hull)),
        (ValueError, r"images must hold one image per camera \(24\), got 2",
         lambda: fuse_depth(mv.images[:2], cams, hull, depths=depth)),
        (ValueError, "truncation must be a finite number of voxels > 0, got 0",
         lambda: fuse_depth(None, cams, hull, depths=depth, truncation=0)),
        (ValueError, "truncation must be", lambda: fuse_depth(None, cams, hull, depths=depth, truncation=float("nan"))),
        (ValueError, "min_views must be an int >= 1, got 0", lambda: fuse_depth(None, cams, hull, depths=depth, min_views=0)),
        (TypeError, "inverse must be True or False", lambda: fuse_depth(None, cams, hull, depths=depth, inverse="yes")),
    ]
    for kind, message, call in cases:
        with pytest.raises(kind, match=message) as info:
            call()
        assert "\n" not in str(info.value)
