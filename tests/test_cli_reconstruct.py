"""``carve reconstruct`` with no flags: estimated masks, the robust hull and its report, failures that stop cleanly.

Small rendered datasets (a few views at ~100 px), through the command in a subprocess, headless.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ENV = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
SIZE = (112, 84)  # small enough to be quick, large enough for auto's colour models and a 40-voxel hull


def carve_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "carve", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=300)


def rendered(path, obj="sphere", views=12, masks=True, edit=None):
    """A TUM dataset of a built-in object at ``path``; ``edit(masks)`` may change the masks first."""
    import data

    mv = data.synthetic(obj, views=views, size=SIZE)
    if edit is not None:
        mv = mv.replace(silhouettes=edit([m.copy() for m in mv.silhouettes]))
    data.save(mv if masks else mv.replace(silhouettes=None), path)
    return mv


def occupied_at(grid, points) -> np.ndarray:
    """Whether each (N, 3) point lies in an occupied voxel of ``grid``."""
    idx = np.floor((points - grid.lo) / grid.voxel_size).astype(int)
    ok = np.all((idx >= 0) & (idx < grid.shape), axis=1)
    hit = np.zeros(len(points), bool)
    hit[ok] = grid.occupancy[tuple(idx[ok].T)]
    return hit


def inside_points(n=4000, seed=0):
    """Points inside the true sphere (``data.objects.sphere``, radius 0.8), at least 0.05 (a voxel at 40
    over the hull's ~2-unit box) from its surface."""
    pts = np.random.default_rng(seed).uniform(-0.8, 0.8, (n, 3))
    return pts[np.linalg.norm(pts, axis=1) < 0.8 - 0.05]


def test_no_flags_without_masks_estimates_them_and_says_so(tmp_path):
    rendered(tmp_path / "ds", masks=False)
    result = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "out", "--resolution", 40)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "estimating them jointly" in line]
    assert len(lines) == 1 and "has none" in lines[0] and "co-segmentation" in lines[0], result.stdout
    assert any("views agree with the hull at IoU" in line for line in result.stdout.splitlines()), result.stdout
    assert {"ds.ply", "ds.npz", "ds.png", "ds_views.json"} <= {p.name for p in (tmp_path / "out").iterdir()}
    record = json.loads((tmp_path / "out" / "ds_views.json").read_text())
    assert record["masks"] == "co-segmentation" and record["resolution"] == 40 and record["name"] == "ds"
    given = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "out", "--silhouettes", "given")
    assert given.returncode == 2 and "--silhouettes given needs a dataset with silhouettes" in given.stderr


def bite(views):
    """Erase the upper half of the masks of ``views``: those views cut the object's top away."""
    def edit(masks):
        for i in views:
            masks[i][: SIZE[1] // 2] = False
        return masks
    return edit


def test_two_corrupted_masks_are_excluded_and_the_hull_keeps_the_shape(tmp_path):
    from carve import VoxelGrid

    rendered(tmp_path / "ds", views=20, edit=bite([2, 7]))  # 10% of 20 views may be excluded
    result = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "out", "--resolution", 40)
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((tmp_path / "out" / "ds_views.json").read_text())
    excluded = sorted(row["name"] for row in record["views"] if row["excluded"])
    assert excluded == ["0002", "0007"], record
    assert "0002" in result.stdout and "0007" in result.stdout  # the per-view table
    points = inside_points()
    robust = VoxelGrid.load(tmp_path / "out" / "ds.npz")
    assert occupied_at(robust, points).mean() > 0.99
    exact = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "exact", "--resolution", 40, "--exact",
                      "--quiet")
    assert exact.returncode == 0, exact.stderr
    assert occupied_at(VoxelGrid.load(tmp_path / "exact" / "ds.npz"), points).mean() < 0.8  # the bites cut it
    assert not (tmp_path / "exact" / "ds_views.json").exists()


def test_exact_reproduces_the_exact_hull(tmp_path):
    import data
    from carve import VoxelGrid, carve

    rendered(tmp_path / "ds", obj="torus", views=8)
    views = data.load(tmp_path / "ds", verbose=False)
    for flags, tolerance in ((["--exact"], 0), (["--tolerance", "1"], 1)):
        result = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "out", "--resolution", 36,
                           "--quiet", *flags)
        assert result.returncode == 0, result.stderr
        got = VoxelGrid.load(tmp_path / "out" / "ds.npz")
        want = carve(views.silhouettes, views.cameras, resolution=36, tolerance=tolerance)
        np.testing.assert_array_equal(got.occupancy, want.occupancy)
        np.testing.assert_allclose(got.lo, want.lo)
        assert got.voxel_size == want.voxel_size
    too_many = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "no", "--tolerance", 8, "--quiet")
    assert too_many.returncode == 2 and "--tolerance must be smaller than the number of views (8), got 8" in \
        too_many.stderr, too_many.stderr
    assert not (tmp_path / "no").exists()


def scatter(masks):
    """Each view's mask a small disc at a different place: cones that miss each other."""
    h, w = masks[0].shape
    yy, xx = np.mgrid[:h, :w]
    out = []
    for i, _ in enumerate(masks):
        angle = 2 * np.pi * i / len(masks)
        cx, cy = w / 2 + 0.4 * w * np.cos(angle), h / 2 + 0.4 * h * np.sin(angle)
        out.append((xx - cx) ** 2 + (yy - cy) ** 2 < 3 ** 2)
    return out


@pytest.mark.parametrize("bounds", ["auto", "-1,-1,-1,1,1,1"])
def test_an_impossible_dataset_fails_in_one_line_and_writes_no_mesh(tmp_path, bounds):
    rendered(tmp_path / "ds", views=8, edit=scatter)
    out = tmp_path / "out"
    result = carve_cli("reconstruct", tmp_path / "ds", "--out", out, "--resolution", 32, f"--bounds={bounds}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("carve reconstruct: error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    written = {p.name for p in out.iterdir()}
    assert not written & {"ds.ply", "ds.npz", "ds.png"} and not [n for n in written if n.startswith(".")], written
    assert "hull is empty" in result.stderr


def test_a_view_that_rejects_everything_is_named_excluded_and_the_rest_written(tmp_path):
    def move_one(masks):
        masks[4] = scatter(masks)[1]  # a speck far from where the other cones meet
        return masks

    rendered(tmp_path / "ds", views=10, edit=move_one)
    result = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "out", "--resolution", 32)
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("0004 ")]
    assert "yes: " in line and "reject" in line, result.stdout  # the table names it, and why
    record = json.loads((tmp_path / "out" / "ds_views.json").read_text())
    assert [row["name"] for row in record["views"] if row["excluded"]] == ["0004"]
    assert record["excluded_views"] == ["0004"] and record["exact_voxels"] == 0  # the exact hull was empty
    assert record["excluded"] == [4] and record["occupied"] > 0
    assert (tmp_path / "out" / "ds.ply").stat().st_size > 0


def test_a_masks_only_dataset_gives_an_uncoloured_mesh(tmp_path):
    import shutil

    import trimesh

    rendered(tmp_path / "ds", obj="torus", views=8)
    shutil.rmtree(tmp_path / "ds" / "images")
    result = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "out", "--resolution", 32)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "masks only (the mesh is not coloured)" in result.stdout
    mesh = trimesh.load(tmp_path / "out" / "ds.ply")
    assert len(mesh.faces) > 100 and mesh.visual.kind is None
    estimate = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "out", "--silhouettes", "otsu")
    assert estimate.returncode == 2 and "got a dataset of masks only" in estimate.stderr


def test_a_mirrored_dataset_gives_the_mirrored_hull_in_its_own_frame(tmp_path):
    import shutil

    import trimesh

    from carve import VoxelGrid

    rendered(tmp_path / "ds", obj="torus", views=8)
    shutil.copytree(tmp_path / "ds", tmp_path / "mirrored")
    for calib in sorted((tmp_path / "mirrored" / "calib").glob("*.txt")):
        P = np.loadtxt(calib, skiprows=1) @ np.diag([1.0, 1.0, -1.0, 1.0])  # the world's z reflected
        np.savetxt(calib, P, header="CONTOUR", comments="", fmt="%.17g")
    (tmp_path / "mirrored" / "bounds.txt").unlink()  # a box in the old frame would be wrong in the new
    grids, meshes = {}, {}
    for name in ("ds", "mirrored"):
        result = carve_cli("reconstruct", tmp_path / name, "--out", tmp_path / "out", "--resolution", 32, "--quiet")
        assert result.returncode == 0, result.stderr
        grids[name] = VoxelGrid.load(tmp_path / "out" / f"{name}.npz")
        meshes[name] = trimesh.load(tmp_path / "out" / f"{name}.ply")
    plain, mirrored = grids["ds"], grids["mirrored"]
    np.testing.assert_array_equal(mirrored.occupancy, plain.occupancy[:, :, ::-1])
    np.testing.assert_allclose(mirrored.lo, [plain.lo[0], plain.lo[1], -plain.hi[2]])
    flipped = meshes["ds"].vertices * [1, 1, -1]
    np.testing.assert_allclose(meshes["mirrored"].bounds, [flipped.min(0), flipped.max(0)], atol=1e-9)
    assert meshes["mirrored"].volume > 0  # faces re-wound: outward normals in the mirrored frame


def test_bounds_are_read_in_the_dataset_frame_of_a_mirrored_dataset(tmp_path):
    from carve import VoxelGrid

    rendered(tmp_path / "ds", obj="torus", views=8)
    for calib in sorted((tmp_path / "ds" / "calib").glob("*.txt")):
        P = np.loadtxt(calib, skiprows=1) @ np.diag([1.0, 1.0, -1.0, 1.0])
        np.savetxt(calib, P, header="CONTOUR", comments="", fmt="%.17g")
    (tmp_path / "ds" / "bounds.txt").unlink()
    box = "--bounds=-1.5,-1.5,-0.2,1.5,1.5,1.0"  # in the mirrored frame: z runs from -0.2 to 1.0
    result = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "out", "--resolution", 30, "--exact",
                       box, "--quiet")
    assert result.returncode == 0, result.stderr
    grid = VoxelGrid.load(tmp_path / "out" / "ds.npz")
    np.testing.assert_allclose(grid.lo, [-1.5, -1.5, -0.2], atol=1e-9)  # the box comes back where it was given
    assert grid.count() > 0


def test_mask_polarity_the_border_cannot_tell_is_set_with_mask_object(tmp_path):
    import data

    mv = rendered(tmp_path / "src", views=6, masks=False)
    data.save(mv.replace(silhouettes=None), tmp_path / "ds")
    (tmp_path / "ds" / "masks").mkdir()
    for i in range(len(mv)):  # the object in the left half of every view: half the border each
        half = np.zeros((SIZE[1], SIZE[0]), np.uint8)
        half[:, : SIZE[0] // 2] = 255
        data.images.write_image(tmp_path / "ds" / "masks" / f"{i:04d}.png", half)
    result = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "out", "--resolution", 16, "--quiet")
    assert result.returncode == 1 and "--mask-object" in result.stderr
    # every mask touches the border, so no view pins the box down: it is given
    result = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "out", "--resolution", 16, "--quiet",
                       "--mask-object", "bright", "--bounds=-2,-2,-2,2,2,2")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out" / "ds_views.json").read_text())
    assert record["masks"] == "given" and record["occupied"] > 0


def test_refine_photo_space_carves_the_bowl_and_says_how_much(tmp_path):
    import data
    from carve.grid import VoxelGrid
    from data.renderer import THREE_LIGHTS

    bowl = data.objects.textured(data.objects.bowl(resolution=48))
    mv = data.synthetic(bowl, views=16, size=SIZE, light=THREE_LIGHTS, min_elevation=-20, max_elevation=80)
    data.save(mv, tmp_path / "bowl")
    common = ("--out", tmp_path / "out", "--resolution", 48, "--silhouettes", "given")
    plain = carve_cli("reconstruct", tmp_path / "bowl", *common, "--name", "hull")
    photo = carve_cli("reconstruct", tmp_path / "bowl", *common, "--name", "photo", "--refine", "photo")
    assert plain.returncode == 0 and photo.returncode == 0, photo.stdout + photo.stderr
    assert "voxels were photo-inconsistent" in photo.stdout
    hull, carved = (VoxelGrid.load(tmp_path / "out" / f"{n}.npz") for n in ("hull", "photo"))
    assert carved.count() < 0.9 * hull.count() and not (carved.occupancy & ~hull.occupancy).any()
    assert carved.colors is not None


def test_refine_needs_photographs(tmp_path):
    import shutil

    rendered(tmp_path / "ds", obj="torus", views=8)
    shutil.rmtree(tmp_path / "ds" / "images")
    result = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "out", "--refine", "photo")
    assert result.returncode == 2 and "needs the dataset's photographs" in result.stderr


def test_refine_depth_keeps_the_hull_when_the_model_cannot_beat_a_constant(tmp_path):
    rendered(tmp_path / "ds", obj="mug", views=8)
    result = carve_cli("reconstruct", tmp_path / "ds", "--out", tmp_path / "out", "--resolution", 32,
                       "--silhouettes", "given", "--refine", "depth")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "depth fusion: rim error" in result.stdout
    assert "refused, nothing carved" in result.stdout and "so the hull is kept" in result.stdout
