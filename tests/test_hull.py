"""The carving engine: the visual hull rule, exactness of octree vs dense and Numba vs torch, depth
carving, and the errors bad input gets (auto bounds: test_hull_bounds.py)."""
import numpy as np
import pytest

from geometry import Camera

import carve
from carve.hull import EmptyHullWarning, border_views, memory_estimate
from hull_scenes import BUNNY_BOX, load_bunny, random_scene, reference_carve

pytestmark = pytest.mark.filterwarnings("ignore::carve.hull.EmptyHullWarning")


# ------------------------------------------------------------------------------------ exactness
CASES = [  # seed, tolerance, outside, near, noise
    (0, 0, "carve", False, 0.0),
    (1, 0, "keep", True, 0.0),
    (2, 1, "carve", False, 0.02),
    (3, 2, "keep", True, 0.03),
    (4, 0, "mixed", True, 0.0),
    (5, 1, "mixed", False, 0.01),
]


def _outside_for(outside, n, seed):
    if outside != "mixed":
        return outside
    rng = np.random.default_rng(seed + 100)
    return ["keep" if k else "carve" for k in rng.random(n) < 0.5]


@pytest.mark.parametrize("seed,tolerance,outside,near,noise", CASES)
def test_numba_dense_and_octree_match_the_reference(seed, tolerance, outside, near, noise):
    cams, sil, _, (lo, hi), _ = random_scene(seed, near=near, noise=noise)
    outside = _outside_for(outside, len(cams), seed)
    resolution = 29 + seed  # odd sizes: blocks clipped at the grid's end
    ref = reference_carve(sil, cams, lo, hi, resolution, tolerance, outside)
    for method in ("dense", "octree"):
        grid = carve.carve(sil, cams, resolution, (lo, hi), method=method, tolerance=tolerance, outside=outside)
        assert grid.shape == ref.shape
        np.testing.assert_array_equal(grid.occupancy, ref, err_msg=f"{method}, seed {seed}")
    assert ref.any() and not ref.all()


@pytest.mark.parametrize("seed,tolerance,outside,near,noise", CASES[:4])
def test_torch_matches_numba(seed, tolerance, outside, near, noise):
    pytest.importorskip("torch")
    cams, sil, _, (lo, hi), _ = random_scene(seed, near=near, noise=noise)
    outside = _outside_for(outside, len(cams), seed)
    kw = dict(resolution=27 + seed, bounds=(lo, hi), tolerance=tolerance, outside=outside)
    expected = carve.carve(sil, cams, **kw).occupancy
    for method in ("octree", "dense"):
        grid = carve.carve(sil, cams, method=method, backend="torch", device="cpu", **kw)
        np.testing.assert_array_equal(grid.occupancy, expected, err_msg=f"torch {method}, seed {seed}")


def _tie_scene():
    """A camera for which many centres project exactly onto pixel borders (u + 0.5 an integer)."""
    K = np.array([[8.0, 0, 0.25], [0, 8.0, 0.25], [0, 0, 1]])
    cam_a = Camera(K, np.eye(3), [0.0, 0.0, 4.0], width=16, height=16)
    cam_b = Camera.look_at([4.0, 1.0, 1.5], [2.0, 2.0, 1.5], up=(0, 0, 1), fov=60, width=16, height=16)
    cams = Camera.concat([cam_a, cam_b])
    rng = np.random.default_rng(7)
    sil = rng.random((2, 16, 16)) < 0.7
    bounds = (np.array([0.0, 0.0, -0.125]), np.array([4.0, 4.0, 3.875]))  # centres 0.125 + 0.25 i
    return cams, sil, bounds


def test_ties_round_half_up_and_agree_everywhere():
    cams, sil, (lo, hi) = _tie_scene()
    # in view 0 the layer z = 0 has depth 4, u = 2 x + 0.25: centre x = 0.125 gives u = 0.5 exactly
    P = cams.P[0]
    u = ((P[0, 0] * 0.125 + P[0, 1] * 0.125) + P[0, 3]) + P[0, 2] * 0.0
    assert u / 4.0 == 0.5
    ref = reference_carve(sil, cams, lo, hi, 16, outside="keep")
    results = {(m, b): carve.carve(sil, cams, 16, (lo, hi), method=m, backend=b, outside="keep").occupancy
               for m in ("dense", "octree") for b in ("numba", "torch")}
    for key, occ in results.items():
        np.testing.assert_array_equal(occ, ref, err_msg=str(key))
    # the half-pixel tie goes to the upper pixel: only pixel column 1 of row 1 decides voxel (0, 0, 0)
    one = np.ones((1, 16, 16), bool)
    for keep_col, expected in ((1, True), (0, False)):
        mask = one.copy()
        mask[0, 1, keep_col ^ 1] = False
        grid = carve.carve(mask, cams[0], 16, (lo, hi), outside="keep")
        assert grid.occupancy[0, 0, 0] == expected


@pytest.mark.parametrize("seed,tolerance,outside,missing,count", [
    (10, 0, "carve", "carve", 1033), (11, 1, "keep", "keep", 17476), (12, 0, "mixed", "carve", 733)])
def test_depth_carving_is_exact_and_consistent(seed, tolerance, outside, missing, count):
    cams, sil, depth, (lo, hi), (centres, radii) = random_scene(seed, near=outside != "carve")
    outside = _outside_for(outside, len(cams), seed)
    kw = dict(resolution=26, bounds=(lo, hi), tolerance=tolerance, outside=outside, missing=missing, margin=0.02)
    grids = {(m, b): carve.carve_depth(depth, cams, method=m, backend=b, **kw).occupancy
             for m in ("dense", "octree") for b in ("numba", "torch")}
    first = grids[("dense", "numba")]
    for key, occ in grids.items():
        np.testing.assert_array_equal(occ, first, err_msg=str(key))
    assert first.any()
    grid = carve.carve_depth(depth, cams, **kw)
    # the grid of the box (an empty or misplaced one fails here), and the count the rule gives: it is
    # exact (float64, fixed order of operations), so any change of this figure is a change of the rule
    assert grid.shape == reference_carve(sil, cams, lo, hi, 26).shape and max(grid.shape) == 26
    np.testing.assert_allclose(grid.lo, lo)
    assert grid.count() == count
    pts = grid.points()
    # free-space carving keeps what lies on or behind the surfaces: centres deep inside a sphere stay
    size = grid.voxel_size
    all_pts = grid.lo + (np.argwhere(np.ones(grid.shape, bool)) + 0.5) * size
    deep = np.zeros(len(all_pts), bool)
    for c, r in zip(centres, radii):
        deep |= np.linalg.norm(all_pts - c, axis=1) < r - 2 * size
    kept = grid.occupancy.reshape(-1)
    assert deep.sum() >= 6 and kept[deep].all()
    if missing == "carve" and tolerance == 0 and outside == "carve":
        # with masked depth maps it is contained in the visual hull of the masks
        hull = carve.carve(sil, cams, 26, (lo, hi))
        assert not (grid.occupancy & ~hull.occupancy).any()
        assert len(pts) < hull.count()


def test_tolerance_counts_rejecting_views():
    cams, sil, _, (lo, hi), _ = random_scene(3, noise=0.05)
    counts = [carve.carve(sil, cams, 24, (lo, hi), tolerance=k).count() for k in range(3)]
    assert counts[0] < counts[1] < counts[2]


# ------------------------------------------------------------------------------------------ bunny
def test_bunny_counts_match_the_readme():
    cams, sil = load_bunny()
    octree = carve.carve(sil, cams, 128, BUNNY_BOX)
    assert octree.shape == (86, 114, 128)
    assert octree.count() == 151_456
    dense = carve.carve(sil, cams, 128, BUNNY_BOX, method="dense")
    np.testing.assert_array_equal(dense.occupancy, octree.occupancy)
    pytest.importorskip("torch")
    torch_octree = carve.carve(sil, cams, 128, BUNNY_BOX, backend="torch", device="cpu")
    np.testing.assert_array_equal(torch_octree.occupancy, octree.occupancy)


def test_bunny_border_views_and_auto_outside():
    cams, sil = load_bunny()
    assert np.flatnonzero(border_views(sil)).tolist() == [3, 8, 9, 10, 11]
    with pytest.warns(UserWarning, match=r"views \[3, 8, 9, 10, 11\] touch the image border"):
        kept = carve.carve(sil, cams, 64, BUNNY_BOX, outside="auto")
    per_view = ["keep" if b else "carve" for b in border_views(sil)]
    np.testing.assert_array_equal(kept.occupancy, carve.carve(sil, cams, 64, BUNNY_BOX, outside=per_view).occupancy)
    assert kept.count() > carve.carve(sil, cams, 64, BUNNY_BOX).count()



# ----------------------------------------------------------------------------------- input forms
def test_input_forms_give_the_same_grid():
    cams, sil, _, (lo, hi), _ = random_scene(30)
    expected = carve.carve(sil, cams, 20, (lo, hi)).occupancy
    u8 = sil.astype(np.uint8) * 255
    np.testing.assert_array_equal(carve.carve(u8, cams, 20, (lo, hi)).occupancy, expected)
    np.testing.assert_array_equal(carve.carve(list(sil), cams, 20, (lo, hi)).occupancy, expected)
    np.testing.assert_array_equal(carve.carve(sil.astype(np.uint8), cams, 20, (lo, hi)).occupancy, expected)
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(carve.carve(torch.from_numpy(sil), cams, 20, (lo, hi), backend="torch",
                                              device="cpu").occupancy, expected)
    np.testing.assert_array_equal(carve.carve(sil, cams.to(dtype=torch.float64), 20, (lo, hi)).occupancy, expected)


def test_empty_hull_is_a_result_with_a_warning():
    cams, sil, _, (lo, hi), _ = random_scene(31, n_views=2)
    sil = np.zeros_like(sil)
    sil[0, :3, :3] = True  # two views that agree on nothing
    sil[1, -3:, -3:] = True
    with pytest.warns(EmptyHullWarning):
        grid = carve.carve(sil, cams, 16, (lo, hi))
    assert grid.count() == 0
    with pytest.warns(EmptyHullWarning):
        assert carve.carve(sil, cams, 16).count() == 0


def test_memory_estimate_scales_and_is_checked_up_front():
    small = memory_estimate((128, 128, 128), 36, (768, 1024))
    big = memory_estimate((1024, 1024, 1024), 36, (768, 1024))
    assert big > 2**30 > small
    assert big < 2 * 2**30  # 1024^3 fits the 2 GB budget
    cams, sil, _, (lo, hi), _ = random_scene(32, n_views=2)
    with pytest.raises(MemoryError, match=r"needs about .* GiB"):
        carve.carve(sil, cams, 30000, (lo, hi))


# ------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def scene():
    cams, sil, depth, bounds, _ = random_scene(40, n_views=3)
    return cams, sil, depth, bounds


@pytest.mark.parametrize("change,error,pattern", [
    (lambda s, c, b: (s[:2], c, b, {}), ValueError, r"silhouettes must hold one mask per camera \(3\), got 2"),
    (lambda s, c, b: (np.swapaxes(s, 1, 2), c, b, {}), ValueError, r"matching the cameras' \(30, 40\).*transposed"),
    (lambda s, c, b: (s.astype(np.float32), c, b, {}), TypeError, r"silhouettes must be bool masks.*float32"),
    (lambda s, c, b: (s.astype(np.uint8) * 128, c, b, {}), ValueError, r"only 0 and 255"),
    (lambda s, c, b: (np.concatenate([s[:2], np.zeros_like(s[:1])]), c, b, {}), ValueError, r"silhouettes \[2\] hold no object"),
    (lambda s, c, b: (np.concatenate([s[:2], np.ones_like(s[:1])]), c, b, {}), ValueError, r"silhouettes \[2\] are object everywhere"),
    (lambda s, c, b: (s, c.P, b, {}), TypeError, r"cameras must be a geometry.Camera.*from_projection"),
    (lambda s, c, b: (s, c, (b[1], b[0]), {}), ValueError, r"bounds must have lo < hi"),
    (lambda s, c, b: (s, c, ([0, 0], [1, 1]), {}), ValueError, r"bounds must be 'auto' or \(lo, hi\)"),
    (lambda s, c, b: (s, c, ([0, 0, np.nan], [1, 1, 1]), {}), ValueError, r"bounds must hold finite"),
    (lambda s, c, b: (s, c, "box", {}), ValueError, r"bounds must be 'auto'"),
    (lambda s, c, b: (s, c, b, {"resolution": 0}), ValueError, r"resolution must be a positive integer"),
    (lambda s, c, b: (s, c, b, {"resolution": -5}), ValueError, r"resolution must be a positive integer"),
    (lambda s, c, b: (s, c, b, {"resolution": 12.5}), TypeError, r"resolution must be a positive integer"),
    (lambda s, c, b: (s, c, b, {"resolution": 10**6}), ValueError, r"resolution must be at most"),
    (lambda s, c, b: (s, c, b, {"method": "sparse"}), ValueError, r"method must be 'octree' or 'dense'"),
    (lambda s, c, b: (s, c, b, {"backend": "jax"}), ValueError, r"backend must be 'numba' or 'torch'"),
    (lambda s, c, b: (s, c, b, {"device": "cuda"}), ValueError, r"device must be None or 'cpu' for backend='numba'"),
    (lambda s, c, b: (s, c, b, {"tolerance": -1}), ValueError, r"tolerance must be an integer >= 0"),
    (lambda s, c, b: (s, c, b, {"tolerance": 3}), ValueError, r"tolerance must be smaller than the number of views"),
    (lambda s, c, b: (s, c, b, {"outside": "drop"}), ValueError, r"outside must be 'carve', 'keep', 'auto'"),
    (lambda s, c, b: (s, c, b, {"outside": ["keep"] * 2}), ValueError, r"outside must list 'carve' or 'keep' for each of the 3"),
    (lambda s, c, b: ([s[0], s[1][:, :20], s[2]], c, b, {}), ValueError, r"silhouettes must all have one size"),
    (lambda s, c, b: ("masks", c, b, {}), TypeError, r"silhouettes must be a \(B, H, W\) array"),
    (lambda s, c, b: (s, c, b, {"slack": -1}), ValueError, r"slack must be a finite number of pixels >= 0, got -1"),
    (lambda s, c, b: (s, c, b, {"slack": np.nan}), ValueError, r"slack must be a finite number of pixels >= 0"),
    (lambda s, c, b: (s, c, b, {"slack": True}), ValueError, r"slack must be a finite number of pixels >= 0"),
    (lambda s, c, b: (s, c, b, {"slack": "1"}), ValueError, r"slack must be a finite number of pixels >= 0"),
    (lambda s, c, b: (s.astype(np.uint8) * 128, c, b, {"slack": 1.0}), ValueError, r"only 0 and 255"),
    (lambda s, c, b: (np.concatenate([s[:2], np.zeros_like(s[:1])]), c, b, {"slack": 2}), ValueError,
     r"silhouettes \[2\] hold no object"),
])
def test_bad_input_gets_a_named_error(scene, change, error, pattern):
    cams, sil, _, bounds = scene
    s, c, b, kw = change(sil, cams, bounds)
    with pytest.raises(error, match=pattern):
        carve.carve(s, c, bounds=b, **{"resolution": 16, **kw})


def test_nan_camera_is_refused(scene):
    cams, sil, _, bounds = scene
    bad = cams[0:3]
    bad.T = bad.T.copy()
    bad.T[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"cameras must hold finite numbers, got NaN or inf in cameras \[1\]"):
        carve.carve(sil, bad, 16, bounds)


def test_depth_bad_input(scene):
    cams, _, depth, bounds = scene
    with pytest.raises(ValueError, match=r"depth_maps must hold one map per camera"):
        carve.carve_depth(depth[:2], cams, 16, bounds)
    with pytest.raises(TypeError, match=r"depth_maps must hold real depths"):
        carve.carve_depth(depth > 0, cams, 16, bounds)
    empty = depth.copy()
    empty[1] = 0
    with pytest.raises(ValueError, match=r"depth_maps \[1\] hold no valid depth"):
        carve.carve_depth(empty, cams, 16, bounds)
    assert carve.carve_depth(empty, cams, 16, bounds, missing="keep").count() > 0
    with pytest.raises(ValueError, match=r"margin must be a finite number >= 0"):
        carve.carve_depth(depth, cams, 16, bounds, margin=-1)
    with pytest.raises(ValueError, match=r"missing must be 'carve' or 'keep'"):
        carve.carve_depth(depth, cams, 16, bounds, missing="zero")


def test_border_views_on_masks():
    masks = np.zeros((4, 10, 12), bool)
    masks[0, 4:6, 4:6] = True  # inside
    masks[1, 0, 5] = True  # top row
    masks[2, 5, -1] = True  # right column
    masks[3, 1:9, 1:11] = True  # touches nothing
    assert border_views(masks).tolist() == [False, True, True, False]
    assert border_views(masks[1]).tolist() == [True]
    assert border_views(list(masks.astype(np.uint8) * 255)).tolist() == [False, True, True, False]



def test_torch_tables_built_on_the_device_match_numba():
    torch = pytest.importorskip("torch")
    from carve.hull.numba_kernels import Tables as NumbaTables
    from carve.hull.torch_kernels import Tables as TorchTables

    rng = np.random.default_rng(3)
    masks = (rng.random((3, 17, 23)) < 0.5).astype(np.uint8) * 255
    masks[1, 2, 3] = 7  # another value: must be reported
    expected, counts, values = NumbaTables.from_silhouettes(masks)
    # the path CUDA takes (torch.cumsum), run here on the CPU
    tables, t_counts, t_values = TorchTables.from_silhouettes(torch.from_numpy(masks))
    np.testing.assert_array_equal(tables.sat.numpy(), expected.sat.reshape(-1))
    np.testing.assert_array_equal(t_counts, counts)
    np.testing.assert_array_equal(t_values, values)
    assert values[1, 2] and not values[0, 2]


def test_many_views_and_tiny_grids():
    cams, sil, _, (lo, hi), _ = random_scene(50, n_views=70, size=(20, 16), noise=0.01)
    expected = reference_carve(sil, cams, lo, hi, 21, tolerance=3, outside="keep")
    assert expected.any()
    for method in ("octree", "dense"):
        for backend in ("numba", "torch"):  # 70 views: two 64-bit words of undecided views per block
            grid = carve.carve(sil, cams, 21, (lo, hi), method=method, backend=backend, tolerance=3, outside="keep")
            np.testing.assert_array_equal(grid.occupancy, expected, err_msg=f"{method} {backend}")
    for resolution in (1, 2, 3):
        occ = {m: carve.carve(sil, cams, resolution, (lo, hi), method=m, tolerance=3).occupancy
               for m in ("octree", "dense")}
        np.testing.assert_array_equal(occ["octree"], occ["dense"])
        assert max(occ["dense"].shape) == resolution


def test_torch_device_must_exist(scene):
    torch = pytest.importorskip("torch")
    cams, sil, _, bounds = scene
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=r"device must be available, got 'cuda'"):
        carve.carve(sil, cams, 16, bounds, backend="torch", device="cuda")
    with pytest.raises(ValueError, match=r"device must be a torch device"):
        carve.carve(sil, cams, 16, bounds, backend="torch", device="gpu0")


# ----------------------------------------------------------------------------------------- slack
def _naive_dilation(sil, slack):
    """Every pixel within ``slack`` of an object pixel's centre, by brute force over all pairs."""
    B, H, W = sil.shape
    rows, cols = np.mgrid[:H, :W]
    out = np.zeros_like(sil)
    for b in range(B):
        obj = np.argwhere(sil[b])
        d2 = (rows.ravel()[:, None] - obj[None, :, 0]) ** 2 + (cols.ravel()[:, None] - obj[None, :, 1]) ** 2
        out[b] = (d2.min(1) <= slack * slack).reshape(H, W)
    return out


@pytest.mark.parametrize("slack", [0.5, 1.0, 1.5, np.sqrt(2), 2.3, 4.0])
def test_slack_is_a_dilation_of_each_mask(slack):
    from carve.hull.rule import dilate_masks

    cams, sil, _, (lo, hi), _ = random_scene(11, noise=0.01)
    grown = dilate_masks(sil, slack)
    np.testing.assert_array_equal(grown, _naive_dilation(sil, slack))
    ref = reference_carve(grown, cams, lo, hi, 27, outside="carve")
    for method in ("dense", "octree"):
        grid = carve.carve(sil, cams, 27, (lo, hi), method=method, slack=slack)
        np.testing.assert_array_equal(grid.occupancy, ref, err_msg=f"{method}, slack {slack}")
    assert ref.any()


@pytest.mark.parametrize("slack,tolerance,outside", [(1.0, 0, "carve"), (2.5, 1, "keep"), (1.5, 0, "mixed")])
def test_slack_torch_matches_numba(slack, tolerance, outside):
    pytest.importorskip("torch")
    cams, sil, _, (lo, hi), _ = random_scene(12, near=True)
    outside = _outside_for(outside, len(cams), 12)
    kw = dict(resolution=25, bounds=(lo, hi), tolerance=tolerance, outside=outside, slack=slack)
    expected = carve.carve(sil, cams, **kw).occupancy
    for method in ("octree", "dense"):
        grid = carve.carve(sil, cams, method=method, backend="torch", device="cpu", **kw)
        np.testing.assert_array_equal(grid.occupancy, expected, err_msg=f"torch {method}, slack {slack}")
    import torch

    as_tensor = carve.carve(torch.from_numpy(sil), cams, backend="torch", device="cpu", **kw)
    np.testing.assert_array_equal(as_tensor.occupancy, expected)


def test_slack_zero_is_the_exact_rule_and_slack_only_grows_the_hull():
    cams, sil, _, (lo, hi), _ = random_scene(13)
    exact = carve.carve(sil, cams, 30, (lo, hi))
    np.testing.assert_array_equal(carve.carve(sil, cams, 30, (lo, hi), slack=0.0).occupancy, exact.occupancy)
    np.testing.assert_array_equal(carve.carve(sil, cams, 30, (lo, hi), slack=0.9).occupancy, exact.occupancy)
    previous = exact.occupancy
    for slack in (1, 2, 3.5):
        grown = carve.carve(sil, cams, 30, (lo, hi), slack=slack).occupancy
        assert not (previous & ~grown).any() and grown.sum() > previous.sum()
        previous = grown
    as_uint8 = carve.carve(sil.astype(np.uint8) * 255, cams, 30, (lo, hi), slack=2).occupancy
    np.testing.assert_array_equal(as_uint8, carve.carve(sil, cams, 30, (lo, hi), slack=2).occupancy)


def test_slack_auto_bounds_hold_the_slack_hull():
    cams, sil, _, (lo, hi), _ = random_scene(14, n_views=8)
    auto = carve.carve(sil, cams, 32, slack=2.0)
    boxed = carve.carve(sil, cams, 64, bounds=(lo - 0.5, hi + 0.5), slack=2.0)
    inside = (boxed.points() >= auto.lo) & (boxed.points() <= auto.hi)
    assert inside.all(), "the auto box of a slack carve must hold every voxel the slack keeps"
