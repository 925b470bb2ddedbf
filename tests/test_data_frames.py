"""Frames from the wild (data.frames): P signs, mirrored worlds, non-metric K, outputs in the dataset's frame."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import carve
import data
from carve import VoxelGrid
from carve.pipeline.outputs import to_dataset_frame
from data.frames import (MIRROR, NonMetricWarning, orient_poses, orient_projections, to_dataset_mesh,
                         to_dataset_points, transform_bounds)
from data.tum import read_projection
from geometry import Camera, project

BUNNY = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bunny"
BOX = np.array([[-7.5, -10.0, -7.5], [7.5, 10.0, 15.0]])  # the bunny README's box
RES = 64  # small: the mirrored hull must match voxel for voxel at any resolution


def same_pixels(a: Camera, b: Camera, points) -> bool:
    """Both batches put every point at the same pixel and the same positive-or-not depth."""
    ua, da, va = project(points, a)
    ub, db, vb = project(points, b)
    return bool((va == vb).all() and np.allclose(ua, ub, atol=1e-6) and np.allclose(da, db, rtol=1e-9))


def write_calibs(root: Path, P, link_from: Path | None = None):
    (root / "calib").mkdir(parents=True)
    for i, p in enumerate(P):
        rows = "\n".join(" ".join(f"{v:.17g}" for v in r) for r in p)
        (root / "calib" / f"{i:04d}.txt").write_text(f"CONTOUR\n{rows}\n")
    if link_from is not None:  # the real images and masks, not copied
        for sub in ("images", "silhouettes"):
            (root / sub).symlink_to(link_from / sub, target_is_directory=True)


# ------------------------------------------------------------------------------------- the real bunny
@pytest.fixture(scope="module")
def bunny_files():
    if not BUNNY.is_dir():
        pytest.skip(f"bunny dataset not found at {BUNNY} (it lives beside the repository, not in it)")
    P = np.stack([read_projection(f) for f in sorted((BUNNY / "calib").glob("*.txt"))])
    mv = data.load(BUNNY, verbose=False)
    grid = carve.carve(mv.silhouettes, mv.cameras, resolution=RES, bounds=(BOX[0], BOX[1]))
    return P, mv, grid


def test_bunny_is_right_handed_as_published(bunny_files):
    P, mv, grid = bunny_files
    assert np.array_equal(mv.world_from_dataset, np.eye(4))
    assert grid.count() > 1000  # the hull the mirrored tests compare with is the bunny, not nothing


def test_mirrored_bunny_gives_the_mirrored_hull_voxel_for_voxel(bunny_files, tmp_path):
    P, mv, grid = bunny_files
    write_calibs(tmp_path / "mirror", P @ MIRROR, link_from=BUNNY)  # P' = P diag(1, 1, -1, 1)
    box_d = transform_bounds(BOX, MIRROR)  # the bunny's box in the mirrored dataset's frame
    (tmp_path / "mirror" / "bounds.txt").write_text("\n".join(" ".join(map(str, r)) for r in box_d) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bunny's K is metric: no NonMetricWarning
        mirrored = data.load(tmp_path / "mirror", verbose=False)
    assert np.array_equal(mirrored.world_from_dataset, MIRROR)
    assert np.allclose(mirrored.bounds, BOX)  # bounds.txt read in the dataset's frame, carried to the world
    X_d = np.random.default_rng(0).uniform(BOX[0], BOX[1], (300, 3)) * [1, 1, -1]  # dataset-frame points
    uv_file = np.einsum("bij,nj->bni", P @ MIRROR, np.c_[X_d, np.ones(len(X_d))])
    uv, depth, _ = project(X_d @ MIRROR[:3, :3], mirrored.cameras)  # X_world = MIRROR @ X_dataset
    assert (depth > 0).all()  # in front of every camera, where the old det > 0 rule put it behind
    assert np.allclose(uv, uv_file[..., :2] / uv_file[..., 2:], atol=1e-6)
    hull = carve.carve(mirrored.silhouettes, mirrored.cameras, resolution=RES, bounds=tuple(mirrored.bounds))
    in_dataset = hull.in_dataset_frame(mirrored.world_from_dataset)
    assert np.array_equal(in_dataset.occupancy, grid.occupancy[:, :, ::-1])  # the original hull, z flipped
    assert np.allclose(in_dataset.lo, [grid.lo[0], grid.lo[1], -grid.hi[2]])
    assert np.allclose(in_dataset.hi, [grid.hi[0], grid.hi[1], -grid.lo[2]])
    points = to_dataset_points(hull.points(), mirrored.world_from_dataset)
    assert np.allclose(np.sort(points[:, 2]), np.sort(-grid.points()[:, 2]))


def test_random_signs_and_scales_give_the_same_hull(bunny_files):
    P, mv, grid = bunny_files
    rng = np.random.default_rng(7)
    factors = rng.choice([-1.0, 1.0], len(P)) * rng.uniform(0.01, 100.0, len(P))
    assert (factors < 0).any() and (factors > 0).any()
    for mirror in (np.eye(4), MIRROR):  # and the same for the mirrored bunny, in the world it is carved in
        P_world, frame = orient_projections(P @ mirror * factors[:, None, None], mv.width, mv.height)
        assert np.array_equal(frame, mirror)
        assert np.allclose(P_world / P_world[:, 2:3, 3:], P / P[:, 2:3, 3:], rtol=1e-12)  # positive scale of P
        cameras = [Camera.from_projection(P_world, mv.width, mv.height, orient=False)]
        if mirror is not MIRROR:  # Camera.from_projection itself refuses a mirrored frame
            cameras.append(Camera.from_projection(P * factors[:, None, None], mv.width, mv.height))
        for cams in cameras:
            hull = carve.carve(mv.silhouettes, cams, resolution=RES, bounds=(BOX[0], BOX[1]))
            assert np.array_equal(hull.occupancy, grid.occupancy)


# ---------------------------------------------------------------------------------- synthetic rigs
@pytest.mark.parametrize("rig", [
    lambda: data.turntable(12, elevation=25, radius=3.5, width=64, height=48),
    lambda: data.hemisphere(15, radius=3.0, width=64, height=48),
    lambda: Camera.look_at([[3 * np.cos(a), 3 * np.sin(a), 0.5] for a in np.radians([0, 10, 20, 30, 40])],
                           fov=45, width=64, height=48),  # an arc of 40 degrees
], ids=["turntable", "hemisphere", "arc"])
def test_rigs_with_negated_or_mirrored_P(rig):
    cams = rig()
    P = cams.P
    X = np.random.default_rng(1).uniform(-0.5, 0.5, (100, 3))
    for P_in, want in ((-P, np.eye(4)), (-P @ MIRROR, MIRROR), (P * np.sign(np.arange(len(P)) % 3 - 0.5)[:, None, None],
                                                                    np.eye(4))):
        P_world, frame = orient_projections(P_in, cams.width, cams.height)
        assert np.array_equal(frame, want)
        back = Camera.from_projection(P_world, cams.width, cams.height)
        assert same_pixels(back, cams, X) and (project(X, back)[1] > 0).all()


def test_synthetic_rig_with_negated_P_loads_and_carves_right(tmp_path):
    mv = data.synthetic("mug", views=10, size=(64, 48))
    root = tmp_path / "neg"
    write_calibs(root, -mv.cameras.P)
    (root / "silhouettes").mkdir()
    for i, m in enumerate(mv.silhouettes):
        data.images.write_image(root / "silhouettes" / f"{i:04d}.png", np.where(m, 0, 255).astype(np.uint8))
    loaded = data.load(root, format="tum", verbose=False)
    assert np.array_equal(loaded.world_from_dataset, np.eye(4))
    assert same_pixels(loaded.cameras, mv.cameras, np.random.default_rng(2).uniform(-0.5, 0.5, (100, 3)))
    a = carve.carve(mv.silhouettes, mv.cameras, resolution=32)
    b = carve.carve(loaded.silhouettes, loaded.cameras, resolution=32)
    assert a.count() > 0 and np.array_equal(a.occupancy, b.occupancy) and np.allclose(a.lo, b.lo)


def test_one_camera_keeps_the_det_convention():
    cam = Camera.look_at([3.0, 0, 1], fov=50, width=64, height=48)
    for P_in in (cam.P, -cam.P):
        assert np.allclose(Camera.from_projection(P_in, 64, 48).P, cam.P)
    P_world, frame = orient_projections(-cam.P @ MIRROR, 64, 48)  # no evidence: det > 0, not mirrored
    assert np.array_equal(frame, np.eye(4)) and np.linalg.det(P_world[0, :, :3]) > 0


def test_forward_facing_rig_keeps_the_det_convention():
    eyes = np.array([[x, y, 0.0] for x in (-0.2, 0.0, 0.2) for y in (-0.1, 0.1)])
    cams = Camera.look_at(eyes, eyes + [0, 0, 5.0], up=(0, -1, 0), fov=60, width=64, height=48)
    for P_in in (cams.P, -cams.P):
        P_world, frame = orient_projections(P_in, 64, 48)
        assert np.array_equal(frame, np.eye(4)) and np.allclose(P_world, cams.P)


def test_inconsistent_set_names_the_views():
    cams = data.turntable(8, elevation=20, width=64, height=48)
    P = cams.P.copy()
    P[3] = P[3] @ MIRROR
    P[5] = -P[5] @ MIRROR
    names = [f"view{i}" for i in range(8)]
    with pytest.raises(ValueError, match=r"mixed signs: views view3, view5 are mirrored relative to the other 6"):
        orient_projections(P, 64, 48, names)
    with pytest.raises(ValueError, match=r"views \[3, 5\] are mirrored"):
        Camera.from_projection(P, 64, 48)
    with pytest.raises(ValueError, match="frame is mirrored.*orient_projections"):
        Camera.from_projection(cams.P @ MIRROR, 64, 48)


def test_inconsistent_tum_set_is_a_format_error(tmp_path):
    cams = data.turntable(6, elevation=20, width=32, height=24)
    P = cams.P.copy()
    P[2] = P[2] @ MIRROR
    write_calibs(tmp_path / "bad", P)
    (tmp_path / "bad" / "silhouettes").mkdir()
    mask = np.full((24, 32), 255, np.uint8)
    mask[8:16, 10:22] = 0  # the object, black as the layout has it
    for i in range(6):
        data.images.write_image(tmp_path / "bad" / "silhouettes" / f"{i:04d}.png", mask)
    with pytest.raises(data.FormatError, match=r"calib.*views 0002 are mirrored"):
        data.load(tmp_path / "bad", format="tum", verbose=False)


# -------------------------------------------------------------------------------------- non-metric K
@pytest.mark.parametrize("skew, fy, warns", [(0.0, 100.0, False), (0.5, 100.0, False), (3.0, 100.0, True),
                                             (0.0, 102.0, False), (0.0, 110.0, True)])
def test_non_metric_K_warns(skew, fy, warns):
    K = np.array([[100.0, skew, 31.5], [0, fy, 23.5], [0, 0, 1]])
    cams = Camera.look_at([[3.0, 0, 1], [0, 3.0, 1], [-3.0, 0, 1]], K=K, width=64, height=48)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        P_world, _ = orient_projections(cams.P, 64, 48)
    hits = [w for w in caught if issubclass(w.category, NonMetricWarning)]
    assert len(hits) == int(warns)
    if warns:
        assert "units are not metres" in str(hits[0].message)
    assert np.allclose(P_world, cams.P)  # carving keeps the exact P either way


# ------------------------------------------------------------------------------ outputs and round trips
def test_save_load_round_trip_of_a_mirrored_set(tmp_path):
    mv = data.synthetic("torus", views=8, size=(48, 36))
    box = np.array([[-1.0, -1.5, -0.5], [1.0, 1.5, 0.8]])
    mirrored = mv.replace(world_from_dataset=MIRROR, bounds=box)  # carving frame = mv's; dataset = mirrored
    for fmt in ("tum", "blender"):
        path = data.save(mirrored, tmp_path / fmt, format=fmt)
        if fmt == "tum":
            P_file = read_projection(path / "calib" / "0003.txt")
            assert np.allclose(P_file, mv.cameras.P[3] @ MIRROR)
            assert np.allclose(np.loadtxt(path / "bounds.txt"), transform_bounds(box, MIRROR))
        else:
            c2w = np.array(json.loads((path / "transforms.json").read_text())["frames"][3]["transform_matrix"])
            assert np.linalg.det(c2w[:3, :3]) < 0  # a mirrored pose, as the dataset's frame has it
        back = data.load(path, verbose=False)
        assert np.array_equal(back.world_from_dataset, MIRROR), fmt
        assert np.allclose(back.bounds, box), fmt
        assert same_pixels(back.cameras, mv.cameras, np.random.default_rng(3).uniform(-1, 1, (100, 3))), fmt


def test_orient_poses():
    c2w = data.turntable(4, width=32, height=24).c2w()
    out, frame = orient_poses(c2w)
    assert out is c2w and np.array_equal(frame, np.eye(4))
    out, frame = orient_poses(MIRROR @ c2w)
    assert np.allclose(out, c2w) and np.array_equal(frame, MIRROR)
    bad = c2w.copy()
    bad[1] = MIRROR @ bad[1]
    with pytest.raises(ValueError, match="views 1 are mirrored relative to the other 3"):
        orient_poses(bad)


def test_mesh_and_grid_in_the_dataset_frame():
    trimesh = pytest.importorskip("trimesh")
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    box.apply_translation([0.5, 0.0, 2.0])
    box.visual.vertex_colors = np.tile([10, 20, 30, 255], (len(box.vertices), 1)).astype(np.uint8)
    out = to_dataset_mesh(box, MIRROR)
    assert np.allclose(out.vertices, box.vertices * [1, 1, -1])
    assert out.is_winding_consistent and out.volume > 0  # re-wound: outward normals, positive volume
    assert np.array_equal(out.visual.vertex_colors, box.visual.vertex_colors)
    assert to_dataset_mesh(box, np.eye(4)) is box
    occ = np.zeros((3, 4, 5), bool)
    occ[0, 1, 2] = occ[2, 3, 4] = True
    grid = VoxelGrid(occ, [1.0, 2.0, 3.0], 0.5)
    swap = np.array([[0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])  # a rotation of axes
    scaled = np.diag([2.0, 2.0, -2.0, 1.0])
    scaled[:3, 3] = [1, 2, 3]
    for frame in (MIRROR, swap, scaled):
        mapped = grid.in_dataset_frame(frame)
        assert np.allclose(np.sort(mapped.points(), 0), np.sort(to_dataset_points(grid.points(), frame), 0))
        assert np.allclose(np.sort(transform_bounds([grid.lo, grid.hi], np.linalg.inv(frame)), 0),
                           [mapped.lo, mapped.hi])
    assert grid.in_dataset_frame(np.eye(4)) is grid
    turn = np.eye(4)
    turn[:2, :2] = [[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]]
    with pytest.raises(ValueError, match="must map axes to axes"):
        grid.in_dataset_frame(turn)
    views = data.synthetic("torus", views=2, size=(32, 24))
    assert to_dataset_frame(views, grid, box) == (grid, box)
    g2, m2 = to_dataset_frame(views.replace(world_from_dataset=MIRROR), grid, None)
    assert m2 is None and np.array_equal(g2.occupancy, occ[:, :, ::-1])


def test_projective_then_metric_frame_like_the_dinosaur():
    """A mirrored, sheared world (det < 0, skew and aspect in every K): found, warned about, carved."""
    mv = data.synthetic("mug", views=12, size=(64, 48))
    A = np.eye(4)
    A[:3, :3] = [[1.0, 0.15, 0.0], [0.0, 1.1, 0.05], [0.0, 0.0, -0.9]]  # dataset_from_world
    A[:3, 3] = [0.3, -0.2, 1.0]
    P_dataset = mv.cameras.P @ np.linalg.inv(A) * np.random.default_rng(4).choice([-1.0, 1.0], (12, 1, 1))
    with pytest.warns(NonMetricWarning, match="units are not metres"):
        P_world, frame = orient_projections(P_dataset, mv.width, mv.height)
    assert np.array_equal(frame, MIRROR)
    cams = Camera.from_projection(P_world, mv.width, mv.height, orient=False)
    centre = (MIRROR @ A @ [0, 0, 0, 1.0])[:3]  # the object's centre, in the world we carve in
    uv, depth, valid = project(centre[None], cams)
    assert valid.all() and (depth > 0).all()
    hull = carve.carve(mv.silhouettes, cams, resolution=32)
    truth = carve.carve(mv.silhouettes, mv.cameras, resolution=32)
    # the same solid seen through a map of |det| 0.99: the same volume times 0.99, up to the voxels
    assert abs(hull.count() * hull.voxel_size ** 3 / (truth.count() * truth.voxel_size ** 3 * 0.99) - 1) < 0.05
