"""carve.viz: headless snapshots (Open3D OffscreenRenderer), camera frustums, item conversion, errors.

Rendering tests skip, with the reason, where Open3D cannot render headlessly (no Vulkan driver:
Debian needs libvulkan1 and mesa-vulkan-drivers); everything else runs everywhere.
"""
import sys

import cv2
import numpy as np
import open3d as o3d
import pytest
import trimesh

from geometry import Camera, project

from carve import viz
from carve.viz import offscreen
from carve.grid import VoxelGrid

BG = np.round(np.array(viz.BACKGROUND) * 255)


@pytest.fixture(scope="module")
def headless():
    try:
        viz.check_headless()
    except RuntimeError as err:
        pytest.skip(str(err))


def read_png(path):
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"{path} is not a readable image"
    return image[:, :, ::-1]


def foreground(image):
    return np.abs(image.astype(int) - BG).max(axis=-1) > 12


def sphere(radius=0.3, center=(0.0, 0.0, 0.0)):
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    mesh.apply_translation(center)
    return mesh


def ring_cameras(n=3, radius=4.0, width=64, height=48):
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    eyes = np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full(n, 1.5)], axis=1)
    return Camera.look_at(eyes, [0, 0, 0], up=[0, 0, 1], fov=50, width=width, height=height)


# ----------------------------------------------------------------------------------------- snapshots
def test_snapshot_writes_a_png_of_the_mesh(headless, tmp_path):
    out = viz.snapshot(trimesh.creation.icosphere(), path=tmp_path / "ball.png", size=(160, 120))
    assert out == tmp_path / "ball.png"
    assert [p.name for p in tmp_path.iterdir()] == ["ball.png"]  # no temporary left behind
    image = read_png(out)
    assert image.shape == (120, 160, 3)
    np.testing.assert_allclose(image[0, 0], BG, atol=1)  # the light background, exactly as asked
    mask = foreground(image)
    assert 0.05 < mask.mean() < 0.8
    assert not mask[0].any() and not mask[-1].any()  # the default view frames the whole object
    shading = image[mask].mean(axis=1)
    assert shading.max() - shading.min() > 40  # lit: the sphere is not one flat disc


def test_view_camera_puts_the_object_where_project_says(headless):
    center = np.array([0.4, -0.2, 0.1])
    cam = Camera.look_at([2.5, -3.0, 1.8], [0, 0, 0], up=[0, 0, 1], fov=50, width=200, height=150)
    (uv,), _, _ = project(center[None], cam)
    mask = foreground(viz.render(sphere(0.3, center), view=cam))
    rows, cols = np.nonzero(mask)
    # the pixel convention must match geometry's to well under half a pixel
    np.testing.assert_allclose([cols.mean(), rows.mean()], uv[0], atol=0.25)
    # a size other than the camera's renders the camera resized
    small = cam.resized(100, 75)
    (uv_small,), _, _ = project(center[None], small)
    rows, cols = np.nonzero(foreground(viz.render(sphere(0.3, center), view=cam, size=(100, 75))))
    np.testing.assert_allclose([cols.mean(), rows.mean()], uv_small[0], atol=0.3)


def test_points_frustums_and_grids_render(headless, tmp_path):
    occ = np.zeros((12, 12, 12), bool)
    occ[3:9, 3:9, 2:8] = True
    grid = VoxelGrid(occ, lo=[-0.6, -0.6, -0.6], voxel_size=0.1)
    points = np.random.default_rng(0).normal(size=(400, 3)) * 0.1 + [1.0, 1.0, 0.5]
    cameras = ring_cameras()
    image = viz.render(grid, points, cameras=cameras, size=(200, 150))
    assert 0.02 < foreground(image).mean() < 0.8
    # points and camera lines keep their colour; only surfaces are shaded
    for color in (viz.POINT_COLOR, viz.FRUSTUM_COLOR):
        assert (np.abs(image.astype(int) - np.round(np.array(color) * 255)).max(axis=-1) <= 1).sum() > 20


def test_turntable_writes_numbered_frames(headless, tmp_path):
    a = trimesh.creation.box((1.0, 0.4, 0.4))
    b = trimesh.creation.box((0.3, 0.3, 0.8))
    b.apply_translation([0.4, 0.3, 0.4])
    paths = viz.snapshot(a, b, path=tmp_path / "spin" / "frame.png", size=(64, 48), turntable=3)
    assert [p.name for p in paths] == ["frame_000.png", "frame_001.png", "frame_002.png"]
    images = [read_png(p) for p in paths]
    assert all(im.shape == (48, 64, 3) and foreground(im).mean() > 0.03 for im in images)
    assert np.abs(images[0].astype(int) - images[1].astype(int)).max() > 50  # it turned


def test_failed_render_leaves_no_file(monkeypatch, tmp_path):
    (tmp_path / "keep.png").write_bytes(b"old")

    def broken(*args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(offscreen, "_render_frames", broken)
    with pytest.raises(RuntimeError, match="exploded"):
        viz.snapshot(sphere(), path=tmp_path / "keep.png")
    with pytest.raises(RuntimeError, match="exploded"):
        viz.snapshot(sphere(), path=tmp_path / "new" / "x.png", turntable=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]
    assert (tmp_path / "keep.png").read_bytes() == b"old"


def test_unavailable_renderer_is_a_runtime_error(monkeypatch):
    monkeypatch.setattr(offscreen, "_headless", None)
    monkeypatch.setattr(offscreen, "_PROBE", "import sys; sys.stderr.write('no Vulkan here'); sys.exit(3)")
    expected = r"cannot render here \(exit status 3: no Vulkan here\).*mesa-vulkan-drivers"
    with pytest.raises(RuntimeError, match=expected):
        viz.check_headless()
    with pytest.raises(RuntimeError, match="cannot render here"):  # cached: no second child process
        viz.render(sphere())


# ------------------------------------------------------------------------------------------ frustums
def test_camera_frustums_geometry():
    cams = ring_cameras(n=3)
    lines = viz.camera_frustums(cams, scale=0.5, color=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    pts, idx = np.asarray(lines.points), np.asarray(lines.lines)
    assert pts.shape == (15, 3) and idx.shape == (24, 2)
    np.testing.assert_allclose(pts[0::5], cams.center, atol=1e-12)
    for i in range(3):
        uv, depth, _ = project(pts[5 * i + 1:5 * i + 5], cams[i])
        np.testing.assert_allclose(uv[0], [[-0.5, -0.5], [63.5, -0.5], [63.5, 47.5], [-0.5, 47.5]], atol=1e-9)
        np.testing.assert_allclose(depth[0], 0.5, atol=1e-12)
        assert {tuple(sorted(e)) for e in idx[8 * i:8 * i + 8] - 5 * i} == \
            {(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4), (1, 4)}
    np.testing.assert_allclose(np.asarray(lines.colors)[8:16], np.tile([0, 1, 0], (8, 1)))
    # default scale: a fraction of the spacing between cameras
    spacing = np.linalg.norm(cams.center[0] - cams.center[1])
    depth = project(np.asarray(viz.camera_frustums(cams).points)[1:2], cams[0])[1][0, 0]
    assert 0.1 * spacing < depth < spacing


def test_camera_frustums_errors():
    cams = ring_cameras()
    with pytest.raises(ValueError, match="cameras must have width and height set"):
        viz.camera_frustums(Camera(cams.K, cams.R, cams.T))
    with pytest.raises(TypeError, match="cameras must be a geometry.Camera"):
        viz.camera_frustums(np.eye(4))
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        viz.camera_frustums(cams, scale=-1.0)
    with pytest.raises(ValueError, match="color must be RGB in"):
        viz.camera_frustums(cams, color=[255, 0, 0])


# ---------------------------------------------------------------------------------------- conversion
def test_items_convert_to_open3d(tmp_path):
    pts = np.random.default_rng(1).random((50, 3))
    cloud = viz.to_open3d_geometry(pts)
    assert isinstance(cloud, o3d.geometry.PointCloud) and len(cloud.points) == 50
    colors = np.tile(np.array([[255, 0, 0]], np.uint8), (50, 1))
    cloud = viz.to_open3d_geometry((pts, colors))
    np.testing.assert_allclose(np.asarray(cloud.colors), np.tile([1.0, 0, 0], (50, 1)))

    mesh = sphere()
    mesh.visual.vertex_colors = np.tile([0, 255, 0, 255], (len(mesh.vertices), 1))
    out = viz.to_open3d_geometry(mesh)
    assert isinstance(out, o3d.geometry.TriangleMesh) and len(out.triangles) == len(mesh.faces)
    np.testing.assert_allclose(np.asarray(out.vertex_colors)[0], [0, 1, 0])
    assert out.has_vertex_normals()

    # an Open3D voxel grid of two neighbours: 10 exposed faces, drawn as quads
    two = np.zeros((3, 3, 3), bool)
    two[1, 1, 1] = two[2, 1, 1] = True
    grid = VoxelGrid(two, lo=[0, 0, 0], voxel_size=0.5)
    cubes = viz.to_open3d_geometry(grid.to_open3d())
    assert len(cubes.triangles) == 20 and len(cubes.vertices) == 40
    np.testing.assert_allclose(np.asarray(cubes.vertices).min(0), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(np.asarray(cubes.vertices).max(0), [1.5, 1.0, 1.0])
    assert isinstance(viz.to_open3d_geometry(grid), o3d.geometry.TriangleMesh)  # via its mesh
    assert viz.to_open3d_geometry(VoxelGrid(np.zeros((2, 2, 2), bool), [0, 0, 0], 1.0)) is None

    # files by extension
    sphere().export(tmp_path / "mesh.ply")
    trimesh.PointCloud(pts).export(tmp_path / "cloud.ply")
    grid.save(tmp_path / "grid.npz")
    assert isinstance(viz.to_open3d_geometry(tmp_path / "mesh.ply"), o3d.geometry.TriangleMesh)
    assert isinstance(viz.to_open3d_geometry(str(tmp_path / "cloud.ply")), o3d.geometry.PointCloud)
    assert isinstance(viz.to_open3d_geometry(tmp_path / "grid.npz"), o3d.geometry.TriangleMesh)


def test_bad_inputs_raise(tmp_path):
    ball = sphere()
    with pytest.raises(TypeError, match=r"items\[1\] must be a mesh, point cloud.*got dict"):
        viz.snapshot(ball, {"a": 1}, path=tmp_path / "x.png")
    with pytest.raises(TypeError, match="pass cameras="):
        viz.render(ring_cameras())
    with pytest.raises(ValueError, match=r"items\[0\] must have shape \(N, 3\).*did you pass points.T"):
        viz.render(np.zeros((3, 100)))
    with pytest.raises(ValueError, match="colors must be floats in"):
        viz.render((np.zeros((4, 3)), np.full((4, 3), 2.0)))
    with pytest.raises(ValueError, match="path must end in .png"):
        viz.snapshot(ball, path=tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="turntable must be an integer"):
        viz.snapshot(ball, path=tmp_path / "x.png", turntable=-1)
    with pytest.raises(ValueError, match="size must be"):
        viz.snapshot(ball, path=tmp_path / "x.png", size=(0, 10))
    with pytest.raises(TypeError, match="view must be None, a geometry.Camera or a dict"):
        viz.snapshot(ball, path=tmp_path / "x.png", view="front")
    with pytest.raises(ValueError, match="view must be a dict with 'eye'"):
        viz.snapshot(ball, path=tmp_path / "x.png", view={"target": [0, 0, 0]})
    with pytest.raises(ValueError, match="view must be a single camera"):
        viz.snapshot(ball, path=tmp_path / "x.png", view=ring_cameras())
    with pytest.raises(ValueError, match="up must be a non-zero 3-vector"):
        viz.snapshot(ball, path=tmp_path / "x.png", up=(0, 0, 0))
    with pytest.raises(ValueError, match="must hold something to draw"):
        viz.snapshot(np.zeros((0, 3)), path=tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match=r"items\[0\] must name an existing file"):
        viz.snapshot(tmp_path / "missing.ply", path=tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"items\[0\] must be a file ending in"):
        viz.snapshot(tmp_path / "notes.txt", path=tmp_path / "x.png")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="whose parent is a file"):
        viz.snapshot(ball, path=tmp_path / "file" / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="display detection is for Linux")
def test_show_without_display_raises_and_points_to_snapshot(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match=r"no display is available.*snapshot"):
        viz.show(sphere())
    assert not viz.has_display()
    monkeypatch.setenv("DISPLAY", ":97")  # no X server listens there
    with pytest.raises(RuntimeError, match=r"no X server.*snapshot"):
        viz.show(sphere())
    assert not viz.has_display() and "no X server" in viz.display_problem()  # the one check the CLI uses too
