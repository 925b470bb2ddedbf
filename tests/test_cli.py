"""The command line end to end, through subprocesses, headless (no DISPLAY)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BUNNY = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bunny"
ENV = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}


def carve_cli(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "carve", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=timeout)


def png_size(path):
    import cv2

    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable image"
    return image.shape[1], image.shape[0]


def test_help_lists_commands_with_examples():
    result = carve_cli("--help")
    assert result.returncode == 0
    for command in ("demo", "reconstruct", "view", "render", "bench"):
        assert command in result.stdout
    sub = carve_cli("reconstruct", "--help")
    assert sub.returncode == 0 and "examples:" in sub.stdout and "--silhouettes" in sub.stdout


@pytest.mark.slow
def test_demo_writes_mesh_grid_snapshot_and_scores(tmp_path):
    out = tmp_path / "demo"
    result = carve_cli("demo", "--out", out, "--resolution", 128, "--views", 24)
    assert result.returncode == 0, result.stderr
    assert {"demo.ply", "demo.npz", "demo.png"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert all((p.stat().st_mode & 0o777) == 0o666 & ~umask for p in out.iterdir()), "outputs must get the usual mode"
    assert png_size(out / "demo.png") == (960, 720)
    hull_iou = float(re.search(r"hull IoU vs true shape: ([0-9.]+)", result.stdout).group(1))
    assert hull_iou > 0.9, result.stdout  # 0.95 with co-segmented masks (0.75 with auto view by view)
    assert "no display" in result.stdout  # it says why no window opened

    import trimesh

    from carve import VoxelGrid

    mesh = trimesh.load(out / "demo.ply")
    grid = VoxelGrid.load(out / "demo.npz")
    assert grid.count() > 1000 and mesh.vertices.shape[0] > 1000
    assert np.all(mesh.bounds[0] >= grid.lo - 1e-6) and np.all(mesh.bounds[1] <= grid.hi + 1e-6)


@pytest.mark.slow
def test_reconstruct_bunny(tmp_path):
    if not BUNNY.is_dir():
        pytest.skip(f"real test data not found at {BUNNY}")
    result = carve_cli("reconstruct", BUNNY, "--out", tmp_path, "--resolution", 96, "--quiet")
    assert result.returncode == 0, result.stderr
    import trimesh

    mesh = trimesh.load(tmp_path / "bunny.ply")
    lo, hi = np.array([-7.5, -10, -7.5]), np.array([7.5, 10, 15])  # the dataset's approximate box
    assert np.all(mesh.bounds[0] > lo - 1.5) and np.all(mesh.bounds[1] < hi + 1.5)
    extent = mesh.bounds[1] - mesh.bounds[0]
    assert np.all(extent > 0.5 * (hi - lo) * [0.8, 0.8, 0.5]), extent
    box_volume = float(np.prod(hi - lo))
    assert 0.1 * box_volume < abs(mesh.volume) < 0.6 * box_volume
    assert (tmp_path / "bunny.npz").exists() and png_size(tmp_path / "bunny.png") == (960, 720)


def test_view_writes_a_snapshot_without_display(tmp_path):
    import trimesh

    path = tmp_path / "sphere.ply"
    trimesh.creation.icosphere(subdivisions=2).export(path)
    result = carve_cli("view", path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no display" in result.stdout
    assert png_size(tmp_path / "sphere.png") == (960, 720)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="display detection is for Linux")
def test_view_with_a_stale_display_falls_back_to_a_snapshot(tmp_path):
    if Path("/tmp/.X11-unix/X97").exists():
        pytest.skip("an X server listens at :97")
    import trimesh

    path = tmp_path / "box.ply"
    trimesh.creation.box().export(path)
    result = subprocess.run([sys.executable, "-m", "carve", "view", str(path)], capture_output=True, text=True,
                            env={**ENV, "DISPLAY": ":97"}, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "no X server listens at /tmp/.X11-unix/X97" in result.stdout
    assert png_size(tmp_path / "box.png") == (960, 720)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="display detection is for Linux")
def test_viewer_with_a_stale_display_says_so_and_goes_on(monkeypatch, capsys):
    from carve.cli.outputs import open_viewer
    from carve.pipeline.outputs import Stages

    monkeypatch.setenv("DISPLAY", ":97")  # no X server listens there
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    open_viewer(np.zeros((4, 3)), title="demo", stages=Stages(), snapshot=Path("out/demo.png"))
    line = capsys.readouterr().out.strip()
    assert "no X server" in line and line.endswith("not opening the viewer; see the snapshot out/demo.png")
    assert "\n" not in line


def test_every_mesh_suffix_is_written_as_one_file_and_read_back(tmp_path):
    import trimesh

    from carve.pipeline.outputs import write_mesh
    from carve.viz import to_open3d_geometry
    from data.files import MESH_SUFFIXES

    mesh = trimesh.creation.icosphere(subdivisions=1)
    mesh.visual.vertex_colors = np.tile([200, 30, 30, 255], (len(mesh.vertices), 1)).astype(np.uint8)
    for suffix in MESH_SUFFIXES:
        folder = tmp_path / suffix[1:]
        folder.mkdir()
        write_mesh(mesh, folder / f"ball{suffix}")
        assert [p.name for p in folder.iterdir()] == [f"ball{suffix}"], suffix  # no side files, no temporaries
        back = to_open3d_geometry(folder / f"ball{suffix}")
        assert len(back.triangles) == len(mesh.faces), suffix
        np.testing.assert_allclose(np.asarray(back.get_axis_aligned_bounding_box().get_extent()),
                                   mesh.extents, atol=1e-5, err_msg=suffix)
    with pytest.raises(ValueError, match="path must end in .ply"):
        write_mesh(mesh, tmp_path / "ball.xyz")


def test_render_then_reconstruct_round_trip(tmp_path):
    out = tmp_path / "torus"
    result = carve_cli("render", "torus", out, "--views", 12, "--size", "96x72", "--quiet")
    assert result.returncode == 0, result.stderr
    import data

    views = data.load(out)
    assert len(views.cameras) == 12 and views.images[0].shape == (72, 96, 3) and views.silhouettes is not None
    result = carve_cli("reconstruct", out, "--out", tmp_path / "res", "--resolution", 48, "--mesh",
                       tmp_path / "torus.obj", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "torus.obj").stat().st_size > 0


@pytest.mark.parametrize("args, code, message", [
    (("reconstruct", "/no/such/dataset"), 2, "no such file or directory: /no/such/dataset"),
    (("reconstruct", ".", "--format", "ply"), 2, "invalid choice: 'ply'"),
    (("reconstruct", ".", "--bounds", "1,2,3"), 2, "--bounds must be 'auto' or six numbers"),
    (("demo", "--resolution", "0"), 2, "--resolution must be a positive integer"),
    (("reconstruct", ".", "--mesh", "out.xyz"), 2,
     "--mesh must end in .ply, .obj, .glb, .gltf, .stl, .off, got out.xyz"),
    (("view", "/no/such/mesh.ply"), 2, "no such file or directory"),
    (("render", "teapot", "OUT"), 2, "OBJECT must be one of sphere, box, torus"),
    (("render", "torus", "a_file"), 2, "OUT must be a new or empty directory, got the file a_file"),
    (("demo", "--object", "teapot"), 2, "--object must be one of sphere, box, torus"),
    (("reconstruct", ".", "--bounds=1,1,1,0,0,0"), 2, "with x0 < x1, y0 < y1 and z0 < z1"),
    (("reconstruct", ".", "--bounds=nan,0,0,1,1,1"), 2, "--bounds must be six finite numbers"),
    (("reconstruct", ".", "--backend", "torch", "--device", "tpu"), 2, "--device must be a torch device"),
    (("reconstruct", ".", "--device", "cpu"), 2, "--device needs --backend torch"),
    (("reconstruct", ".", "--name", "../elsewhere"), 2, "--name must be a file name without folders"),
    (("reconstruct", ".", "--out", "a_file/x"), 2, "--out must be a directory, got a path under the file a_file"),
    (("view", "a_file"), 2, "FILES must end in .ply"),
    (("view", "bad.ply", "--snapshot", "s.png"), 1, "FILES must be a readable .ply file, got 'bad.ply'"),
    (("depth", "a_file", "--model", "no_model.pt"), 2, "--model must name an existing file, got no_model.pt"),
    (("train-depth", "--out", "a_file/run"), 2, "--out must be a directory, got a path under the file a_file"),
    (("train-depth", "--resume", "no_last.pt"), 2, "--resume must name an existing file"),
    (("train-depth", "--stop-after", "0"), 2, "--stop-after must be a number of epochs >= 1"),
])
def test_error_paths_one_line_and_exit_codes(tmp_path, args, code, message):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "bad.ply").write_text("not a ply")
    result = carve_cli(*args, cwd=tmp_path)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_too_coarse_fails_before_writing(tmp_path):
    """--resolution 1 once wrote an empty mesh and then failed: now it fails first, with the remedy."""
    result = carve_cli("demo", "--object", "torus", "--views", 8, "--size", "64x48", "--resolution", 1,
                       "--out", tmp_path / "out", "--no-view", "--quiet")  # the one voxel sits in the hole
    assert result.returncode == 1 and "raise --resolution" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_unreadable_dataset_fails_with_file_and_line(tmp_path):
    (tmp_path / "calib").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "calib" / "0000.txt").write_text("CONTOUR\n1 2 3 4\n5 6 7\n9 10 11 12\n")
    (tmp_path / "images" / "0000.png").write_bytes(b"not a png")
    result = carve_cli("reconstruct", tmp_path, "--out", tmp_path / "out")
    assert result.returncode == 1
    assert not (tmp_path / "out").exists()  # a run that fails before writing leaves no empty folder
    assert "0000.txt" in result.stderr and "line 3" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    debug = carve_cli("reconstruct", tmp_path, "--out", tmp_path / "out", "--debug")
    assert "Traceback" in debug.stderr
    before = carve_cli("--debug", "reconstruct", tmp_path, "--out", tmp_path / "out")  # before the command too
    assert "Traceback" in before.stderr


def test_depth_writes_colour_mapped_png_and_point_cloud(tmp_path):
    from carve.depth import default_model_path

    if not default_model_path().is_file():
        pytest.skip("the shipped depth model has not been trained yet")
    import cv2
    import trimesh

    import data

    sample = data.scenes.sample(3, size=(96, 128))
    cv2.imwrite(str(tmp_path / "photo.png"), sample["image"][..., ::-1])
    result = carve_cli("depth", "photo.png", "--out", "out", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert png_size(tmp_path / "out" / "photo_depth.png") == (128, 96)
    cloud = trimesh.load(tmp_path / "out" / "photo.ply")
    assert len(cloud.vertices) == 96 * 128 and np.all(cloud.vertices[:, 2] > 0)  # in front of the camera
    missing = carve_cli("depth", "nothing.png", cwd=tmp_path)
    assert missing.returncode == 2 and "no such file or directory: nothing.png" in missing.stderr


@pytest.mark.parametrize("shadow", ["data.py", "data", "geometry"])
def test_a_module_that_shadows_ours_is_named_in_one_line(tmp_path, shadow):
    """Our top-level names are generic: a user's data.py or data/ in the working directory must not
    end in a traceback, but say what is in the way."""
    path = tmp_path / shadow
    path.mkdir() if not shadow.endswith(".py") else path.write_text("x = 1\n")
    name = shadow.removesuffix(".py")
    cli = subprocess.run([sys.executable, "-m", "carve", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr, cli.stderr
    [line] = cli.stderr.strip().splitlines()
    assert f"'{name}'" in line and str(path) in line and "rename" in line
    library = subprocess.run([sys.executable, "-c", "import carve"], cwd=tmp_path, capture_output=True, text=True)
    assert library.returncode == 1 and "ImportError: carve needs its own" in library.stderr


@pytest.mark.parametrize("argv, option", [
    (["depth", "photo.png", "--fov", "0"], "--fov"),
    (["view", "grid.npz", "--snapshot", "s.jpg"], "--snapshot"),
    (["train-depth", "--epochs", "0"], "--epochs"),
    (["train-depth", "--lr", "inf"], "--lr"),
    (["train-depth", "--warmup", "1.5"], "--warmup"),
    (["reconstruct", "ds", "--tolerance", "-1"], "--tolerance"),
    (["demo", "--out", "a-file/sub"], "--out"),
])
def test_bad_option_values_are_usage_errors_that_name_the_option(tmp_path, argv, option):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "ds").mkdir()
    (tmp_path / "photo.png").write_bytes(b"")
    (tmp_path / "grid.npz").write_bytes(b"")
    result = carve_cli(*argv, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert option in line, line
