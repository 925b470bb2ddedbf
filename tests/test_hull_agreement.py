"""Per-view agreement and the robust hull, against ground truth: rendered objects with masks that cut
them, cameras off by a pixel or two, clean sets, degenerate sets, and the real bunny."""
import json

import numpy as np
import pytest

from geometry import Camera

import carve
from carve.hull.agreement import robust_carve, silhouette_shifts, view_scores
from carve.hull.reprojection import reproject, rejections
from hull_scenes import load_bunny

pytestmark = pytest.mark.filterwarnings("ignore::carve.hull.EmptyHullWarning")

SIZE = (160, 120)
RES = 64
CUT_VIEWS = (3, 15)


@pytest.fixture(scope="module")
def urchin():
    """The urchin (thin spikes in every direction) seen by 24 cameras on a hemisphere, exact masks."""
    from data import objects
    from data.renderer import render
    from data.rigs import hemisphere

    mesh = objects.urchin()
    cams = hemisphere(24, radius=3.6, min_elevation=10, max_elevation=70, fov=40, width=SIZE[0], height=SIZE[1])
    return mesh, cams, render(mesh, cams).silhouettes


def _lattice(grid):
    """(nx, ny, nz, 3) centres of every voxel of the grid's box."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1)
    return grid.lo + (idx + 0.5) * grid.voxel_size


def _truth(mesh, grid):
    from data import objects

    return objects.contains(mesh, _lattice(grid).reshape(-1, 3)).reshape(grid.shape)


def _exact_on(grid, sil, cams, **kw):
    """The exact hull on the same lattice as ``grid``."""
    exact = carve.carve(sil, cams, max(grid.shape), bounds=(grid.lo, grid.hi), **kw)
    assert exact.shape == grid.shape
    return exact


def _shifted(cams, magnitude, seed=0):
    """The cameras with each principal point moved by ``magnitude`` px in a random direction."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, len(cams))
    K = cams.K.copy()
    K[:, 0, 2] += magnitude * np.cos(angle)
    K[:, 1, 2] += magnitude * np.sin(angle)
    return Camera(K, cams.R, cams.T, width=cams.width, height=cams.height)


# ------------------------------------------------------------------------------ reprojection
def test_reprojection_is_the_ray_cast_silhouette_of_the_cubes():
    import trimesh

    from data.renderer import render
    from data.rigs import hemisphere

    rng = np.random.default_rng(3)
    occ = rng.random((6, 5, 4)) < 0.4
    grid = carve.VoxelGrid(occ, lo=[-0.6, -0.5, -0.4], voxel_size=0.2)
    cams = hemisphere(5, radius=3.0, width=48, height=40)
    boxes = []
    for p in grid.points():
        box = trimesh.creation.box(extents=[grid.voxel_size] * 3)
        box.apply_translation(p)
        boxes.append(box)
    expected = render(trimesh.util.concatenate(boxes), cams).silhouettes
    np.testing.assert_array_equal(reproject(grid, cams.P, 40, 48), expected)
    assert expected.any()


def test_rejections_follow_the_carving_rule(urchin):
    _, cams, sil = urchin
    grid = carve.carve(sil, cams, 24, tolerance=3)
    n_rej = rejections(grid.points(), sil, cams.P, np.ones(len(cams), bool)).sum(1)
    assert n_rej.max() <= 3 and n_rej.min() == 0
    exact = carve.carve(sil, cams, 24, bounds=(grid.lo, grid.hi))
    np.testing.assert_array_equal(exact.occupancy[grid.occupancy], n_rej == 0)


def test_silhouette_shifts_recover_a_displacement_despite_a_missing_chunk():
    yy, xx = np.mgrid[:80, :90]
    consensus = ((xx - 45.0) / 25) ** 2 + ((yy - 40.0) / 18) ** 2 < 1
    mask = ((xx - 46.5) / 25) ** 2 + ((yy - 38.0) / 18) ** 2 < 1
    mask[30:36, 60:75] = False  # a notch in the mask: a few wrong stretches of outline
    shift = silhouette_shifts(mask[None], consensus[None])[0]
    np.testing.assert_allclose(shift, [-1.5, 2.0], atol=0.35)


# ------------------------------------------------------------------------------ the robust hull
def test_clean_set_excludes_nothing_and_keeps_the_exact_hull(urchin):
    _, cams, sil = urchin
    grid, report = robust_carve(sil, cams, RES)
    assert report.excluded == [] and report.slack == 0.0 and report.misalignment_px < 0.5
    assert report.ok and report.voxels == report.exact_voxels == grid.count()
    np.testing.assert_array_equal(grid.occupancy, _exact_on(grid, sil, cams).occupancy)
    assert np.median([v.iou for v in report.views]) > 0.9
    assert len(report.table().splitlines()) == len(cams) + 3  # header, a line a view, legend, summary
    row = json.loads(json.dumps(report.to_dict()))["views"][0]
    assert set(row) == {"name", "iou", "missed_pixels", "missed_fraction", "unique_rejections", "excluded", "reason"}


def test_masks_that_cut_the_object_are_found_and_the_robust_hull_holds_the_truth(urchin):
    mesh, cams, clean = urchin
    sil = clean.copy()
    for b in CUT_VIEWS:  # erase a chunk of the object in 2 of 24 masks
        ys, xs = np.nonzero(sil[b])
        cy, cx = int(ys.mean()), int(xs.mean())
        sil[b, cy - 4:cy + 30, cx:cx + 40] = False
    names = [f"view{b:02d}" for b in range(len(cams))]
    grid, report = robust_carve(sil, cams, RES, names=names)
    assert report.excluded == list(CUT_VIEWS)
    for b, row in enumerate(report.views):
        assert row.excluded == (b in CUT_VIEWS) and (row.reason != "") == (b in CUT_VIEWS)
        assert row.name == names[b]
    worst = sorted(range(len(cams)), key=lambda b: -report.views[b].unique_rejections)[:2]
    assert sorted(worst) == list(CUT_VIEWS)
    truth = _truth(mesh, grid)
    cut_exact = np.count_nonzero(truth & ~_exact_on(grid, sil, cams).occupancy)
    cut_robust = np.count_nonzero(truth & ~grid.occupancy)
    baseline = np.count_nonzero(truth & ~_exact_on(grid, clean, cams).occupancy)  # the masks' own sampling
    assert cut_robust <= baseline * 1.1 + 10, (cut_robust, baseline)
    assert cut_exact > 10 * baseline, (cut_exact, baseline)
    assert report.exact_voxels < 0.5 * report.voxels


@pytest.mark.parametrize("magnitude", [1.5, 2.0])
def test_calibration_error_is_estimated_and_the_spikes_are_kept(urchin, magnitude):
    mesh, cams, sil = urchin
    off = _shifted(cams, magnitude)
    grid, report = robust_carve(sil, off, RES)
    assert report.excluded == []
    assert magnitude / 2 <= report.misalignment_px <= 2 * magnitude, report.misalignment_px
    assert report.slack == pytest.approx(report.misalignment_px)
    exact = _exact_on(grid, sil, off)
    assert not (exact.occupancy & ~grid.occupancy).any()
    truth = _truth(mesh, grid)
    spikes = truth & (np.linalg.norm(_lattice(grid), axis=-1) > 0.6)  # the sphere has radius 0.45
    kept_exact = np.count_nonzero(spikes & exact.occupancy)
    kept_robust = np.count_nonzero(spikes & grid.occupancy)
    assert kept_robust >= 2 * kept_exact and kept_robust >= 0.6 * spikes.sum(), (kept_robust, kept_exact, spikes.sum())
    assert np.count_nonzero(truth & ~grid.occupancy) < 0.5 * np.count_nonzero(truth & ~exact.occupancy)


def test_slack_is_capped(urchin):
    _, cams, sil = urchin
    _, report = robust_carve(sil, _shifted(cams, 2.0), RES, max_slack=1.0)
    assert report.misalignment_px > 1.0 and report.slack == 1.0


# ------------------------------------------------------------------------------ degenerate sets
def test_an_empty_mask_is_set_aside_not_fatal(urchin):
    _, cams, clean = urchin
    sil = clean.copy()
    sil[7] = False
    with pytest.raises(ValueError, match=r"silhouettes \[7\] hold no object pixel"):
        carve.carve(sil, cams, RES)
    grid, report = robust_carve(sil, cams, RES)
    assert report.excluded == [7] and "no object pixel" in report.views[7].reason
    assert report.ok and grid.count() > 0.9 * carve.carve(clean, cams, RES).count()


def test_a_view_that_rejects_everything_is_named(urchin):
    _, cams, clean = urchin
    wrong = Camera.concat([cams[:5], Camera.look_at([[3.6, 0, 0.5]], [3.0, 2.0, 0.5], up=(0, 0, 1), fov=40,
                                                   width=SIZE[0], height=SIZE[1]), cams[6:]])
    assert carve.carve(clean, wrong, RES).count() == 0  # its cone misses the others'
    grid, report = robust_carve(clean, wrong, RES)
    assert report.exact_voxels == 0 and report.excluded == [5]
    assert "rejects every voxel the other views keep" in report.views[5].reason
    assert report.ok and grid.count() > 0.9 * carve.carve(clean, cams, RES).count()
    grid, report = robust_carve(clean, wrong, RES, exclude=False)  # or forgiven by a tolerance of 1
    assert report.tolerance == 1 and report.excluded == [] and grid.count() > 0


def test_views_that_agree_nowhere_get_a_diagnosis_not_a_crash():
    yy, xx = np.mgrid[:48, :64]
    left = (xx - 10.0) ** 2 + (yy - 24.0) ** 2 < 36
    centre = (xx - 31.5) ** 2 + (yy - 23.5) ** 2 < 36
    cams = Camera.look_at([[0, -4, 0], [0, 4, 0], [0, 0, 4], [0, 0, -4]], up=(0, 1, 1), fov=40, width=64, height=48)
    sil, box = np.stack([left, left, centre, centre]), ([-1.5] * 3, [1.5] * 3)  # opposite views: mirrored cones
    assert carve.carve(sil, cams, 16, box).count() == 0
    grid, report = robust_carve(sil, cams, 16, bounds=box, exclude=False)
    assert report.exact_voxels == 0 and report.voxels == grid.count()
    assert report.diagnosis.startswith("the hull is") and len(report.views) == 4
    grid, report = robust_carve(np.zeros((4, 48, 64), bool), cams, 16, bounds=box)
    assert grid.count() == 0 and report.excluded == [0, 1, 2, 3] and "every mask is empty" in report.diagnosis
    assert all(v.iou == 0 and v.missed_pixels == 0 for v in report.views)


def test_bad_arguments_get_named_errors(urchin):
    _, cams, sil = urchin
    with pytest.raises(ValueError, match=r"names must give one name per view \(24\), got 2"):
        robust_carve(sil, cams, 16, names=["a", "b"])
    with pytest.raises(ValueError, match=r"max_slack must be a finite number of pixels >= 0"):
        robust_carve(sil, cams, 16, max_slack=-1)
    with pytest.raises(ValueError, match=r"silhouettes must hold one mask per camera"):
        view_scores(carve.carve(sil, cams, 16), sil[:3], cams)


# ------------------------------------------------------------------------------ the real bunny
def test_bunny_robust_hull_holds_the_exact_one():
    cams, sil = load_bunny()
    grid, report = robust_carve(sil, cams, 96, outside="auto")
    assert report.ok and report.excluded == []
    assert np.median([v.iou for v in report.views]) >= 0.95
    exact = _exact_on(grid, sil, cams, outside="auto")
    assert exact.count() == report.exact_voxels or exact.count() > 0
    assert not (exact.occupancy & ~grid.occupancy).any()
    assert 0 <= report.misalignment_px <= 3


def test_cutting_views_can_be_forgiven_by_tolerance_instead(urchin):
    _, cams, clean = urchin
    sil = clean.copy()
    for b in CUT_VIEWS:
        ys, xs = np.nonzero(sil[b])
        cy, cx = int(ys.mean()), int(xs.mean())
        sil[b, cy - 4:cy + 30, cx:cx + 40] = False
    grid, report = robust_carve(sil, cams, RES, exclude=False)
    assert report.excluded == [] and report.tolerance == 2
    assert [b for b, v in enumerate(report.views) if v.reason] == list(CUT_VIEWS)
    excluded, _ = robust_carve(sil, cams, RES)
    assert grid.count() >= excluded.count()
