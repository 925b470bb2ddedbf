"""``bounds="auto"``: the box found from the data never cuts the object, is tight, and refuses views
that do not enclose it."""
import numpy as np
import pytest

from geometry import Camera

import carve
from carve.hull import border_views
from hull_scenes import BUNNY_BOX, load_bunny, random_scene

pytestmark = pytest.mark.filterwarnings("ignore::carve.hull.EmptyHullWarning")


def test_bunny_auto_bounds_do_not_cut():
    cams, sil = load_bunny()
    auto = carve.carve(sil, cams, 96)
    occ = auto.occupancy
    # a margin of empty voxels on every face of the box
    for axis in range(3):
        assert not occ.take(0, axis).any() and not occ.take(-1, axis).any()
    # every voxel the README box keeps at this voxel size lies inside the auto box
    ref = carve.carve(sil, cams, int(round(22.5 / auto.voxel_size)), BUNNY_BOX)
    pts = ref.points()
    assert np.all(pts >= auto.lo) and np.all(pts <= auto.hi)
    assert abs(auto.count() - ref.count()) < 0.03 * ref.count()



@pytest.mark.parametrize("seed,tolerance,near", [(20, 0, False), (21, 1, False), (25, 0, True), (28, 1, True)])
def test_auto_bounds_hold_everything_a_large_box_keeps(seed, tolerance, near):
    cams, sil, _, _, _ = random_scene(seed, n_views=6, near=near)
    outside = ["keep" if b else "carve" for b in border_views(sil)]  # views 1, 3, 5 / 0, 3, 5 leave the frame
    assert outside.count("keep") == (3 if near else 0)
    auto = carve.carve(sil, cams, 40, tolerance=tolerance, outside=outside)
    big = carve.carve(sil, cams, 160, ([-3.0] * 3, [3.0] * 3), tolerance=tolerance, outside=outside)
    pts = big.points()
    assert len(pts) > 0
    assert np.all(pts >= auto.lo) and np.all(pts <= auto.hi), "the auto box cut the object"
    if tolerance == 0:  # and tight: close to the object's extent (conservative to a pixel's footprint; with
        # a tolerance, thin slivers where only some cones meet are kept at any point, not just at centres)
        assert np.all(auto.hi - auto.lo <= 1.3 * (np.ptp(pts, axis=0) + 2 * big.voxel_size))



def test_auto_bounds_needs_views_that_enclose_the_object():
    cams, sil, _, _, _ = random_scene(40, n_views=3)
    with pytest.raises(ValueError, match=r"bounds='auto' needs views with outside='carve'"):
        carve.carve(sil, cams, 16, outside="keep")
    one = Camera.look_at([0.0, -3.0, 0.0], [0.0, 0.0, 0.0], up=(0, 0, 1), fov=50, width=40, height=30)
    with pytest.raises(ValueError, match=r"bounds='auto' found no finite region"):
        carve.carve(sil[:1], one, 16)



def test_depth_auto_bounds_hold_the_carved_region():
    cams, _, depth, _, _ = random_scene(41, n_views=6)
    auto = carve.carve_depth(depth, cams, 32, margin=0.02)
    big = carve.carve_depth(depth, cams, 120, ([-3.0] * 3, [3.0] * 3), margin=0.02)
    pts = big.points()
    assert len(pts) > 0 and auto.count() > 0
    assert np.all(pts >= auto.lo) and np.all(pts <= auto.hi)



@pytest.mark.parametrize("seed,tolerance,near,depth", [(50, 0, False, False), (51, 1, True, False),
                                                       (52, 2, True, False), (53, 0, False, True),
                                                       (54, 1, True, True)])
def test_blocked_cell_test_decides_every_cell_as_the_cell_by_cell_test(seed, tolerance, near, depth):
    from carve.hull.carving import _effective_depth
    from carve.hull.numba_kernels import CELL_BLOCK, Tables, carve_cells
    from carve.hull.rule import error_bounds

    cams, sil, depth_maps, _, _ = random_scene(seed, n_views=7, near=near)
    P = np.ascontiguousarray(cams.P, np.float64)
    if depth:
        tables = Tables.from_depth(np.ascontiguousarray(_effective_depth(depth_maps, "carve", 0.02)[1]))
    else:
        tables = Tables.from_silhouettes(np.ascontiguousarray(sil, np.uint8))[0]
    carve_out = np.ones(len(P), np.bool_)
    carve_out[::3] = not near  # with near cameras, some views keep what leaves their frame
    lo, size, shape = np.array([-1.3, -1.1, -1.2]), 0.061, (37, 30, 41)  # not multiples of the block
    edges = [lo[a] + np.arange(shape[a] + 1) * size for a in range(3)]
    bnd = error_bounds(P, lo, lo + np.array(shape) * size, size)
    blocked = carve_cells(P, *edges, tables, carve_out, tolerance, bnd)
    one_by_one = carve_cells(P, *edges, tables, carve_out, tolerance, bnd, block=1)
    assert CELL_BLOCK > 1 and blocked.shape == shape
    assert 0 < one_by_one.sum() < one_by_one.size
    np.testing.assert_array_equal(blocked, one_by_one)
