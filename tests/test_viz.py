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
from carve.viz import framing, offscreen
from carve.viz.scene import build_scene, flagged_from_report, image_plane
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
    far = dict(eye=[9.0, -9.0, 7.0], target=[0, 0, 0])  # the first view frames the object, not the cameras
    image = viz.render(grid, points, cameras=cameras, size=(200, 150), view=far)
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


# ------------------------------------------------------------------------------ the scene description
def stripes(height=48, width=64):
    """A photograph: red top half, blue bottom half, a green band on the left."""
    photo = np.zeros((height, width, 3), np.uint8)
    photo[: height // 2] = [255, 0, 0]
    photo[height // 2:] = [0, 0, 255]
    photo[:, : width // 4] = [0, 255, 0]
    return photo


def test_scene_names_geometries_by_group(tmp_path):
    occ = np.zeros((6, 6, 6), bool)
    occ[1:5, 1:5, 1:5] = True
    grid = VoxelGrid(occ, lo=[-0.3, -0.3, -0.3], voxel_size=0.1)
    grid.save(tmp_path / "g.npz")
    cams = ring_cameras(n=3)
    scene = build_scene([sphere(), sphere(0.1), tmp_path / "g.npz", np.zeros((5, 3))], cams,
                        names=["a", "b", "c"], photos=[stripes()] * 3, hide=["images"])
    assert [(e.name, e.group) for e in scene.entries] == [
        ("mesh 1", "mesh"), ("mesh 2", "mesh"), ("grid", "grid"), ("points", "points"),
        ("camera a", "cameras"), ("camera b", "cameras"), ("camera c", "cameras"),
        ("photo a", "images"), ("photo b", "images"), ("photo c", "images")]
    assert scene.groups() == ["mesh", "grid", "points", "cameras", "images"]
    assert [e.group for e in scene.visible()].count("images") == 0
    assert max(e.texture.shape[:2] for e in scene.entries if e.texture is not None) <= (48, 64)
    # framed on the object: the box is the sphere's and the grid's, not the cameras'
    np.testing.assert_allclose(scene.lo, [-0.3, -0.3, -0.3], atol=0.02)
    assert scene.label(1) == "b" and not scene.flagged


def test_flagged_views_colour_their_frustums(tmp_path):
    cams = ring_cameras(n=3)
    scene = build_scene([sphere()], cams, flagged=[2])
    colors = [np.asarray(e.geometry.colors)[0] for e in scene.entries if e.group == "cameras"]
    np.testing.assert_allclose(colors, [viz.GOOD_COLOR, viz.GOOD_COLOR, viz.FLAGGED_COLOR])
    assert scene.label(2) == "0002 (flagged)" and scene.label(0) == "0000"
    plain = build_scene([sphere()], cams)  # no agreement known: the usual colour
    np.testing.assert_allclose(np.asarray(plain.entries[1].geometry.colors)[0], viz.FRUSTUM_COLOR)
    mask = build_scene([sphere()], cams, flagged=np.array([True, False, False]))
    assert mask.flagged == {0}


def test_flagged_from_a_reconstruct_report(tmp_path):
    from carve.pipeline.steps import views_record, write_views
    from types import SimpleNamespace

    class Report:
        def to_dict(self):
            return {"views": [{"name": n, "iou": 0.9} for n in ("0000", "0001", "0002")], "excluded": [1]}

    views = SimpleNamespace(path="data", names=["0000", "0001", "0002"])
    path = write_views(views_record(Report(), views=views, name="x", resolution=32, masks="given", times={}),
                       tmp_path / "x_views.json")
    assert flagged_from_report(path, views.names) == [1]
    with pytest.raises(ValueError, match=r"must be about the views drawn \(2 views"):
        flagged_from_report(path, ["0000", "0001"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="must be a readable JSON file"):
        flagged_from_report(tmp_path / "bad.json", views.names)
    with pytest.raises(ValueError, match="per-view report"):
        flagged_from_report({"rows": []}, views.names)
    with pytest.raises(ValueError, match=r"excluded views as indices in \[0, 1\)"):
        flagged_from_report({"views": [{"name": "a"}], "excluded": [3]}, ["a"])


def test_scene_errors_name_the_argument():
    cams = ring_cameras(n=3)
    with pytest.raises(ValueError, match=r"names must hold one view name per camera \(3\), got 2 names"):
        build_scene([sphere()], cams, names=["a", "b"])
    with pytest.raises(ValueError, match=r"photos\[1\] must have shape \(48, 64, 3\).*got \(48, 63, 3\)"):
        build_scene([sphere()], cams, photos=[stripes(), stripes(48, 63), stripes()])
    with pytest.raises(TypeError, match=r"photos\[0\] must be a uint8 RGB image"):
        build_scene([sphere()], cams, photos=[stripes().astype(float)] * 3)
    with pytest.raises(ValueError, match=r"flagged must be view indices in \[0, 3\), got \[3\]"):
        build_scene([sphere()], cams, flagged=[3])
    with pytest.raises(ValueError, match="hide must name groups from mesh"):
        build_scene([sphere()], hide=["meshes"])
    with pytest.raises(ValueError, match="names describes cameras, so it needs cameras="):
        build_scene([sphere()], names=["a"])
    with pytest.raises(ValueError, match="hide must leave something to draw"):
        viz.render(sphere(), hide=["mesh"])


def test_fit_camera_and_image_plane():
    cam = Camera.look_at([[3.0, 0.5, 1.0]], fov=50, width=64, height=48)
    fit = framing.fit_camera(cam, (200, 200))  # scale 200 / 64, centred vertically
    X = np.random.default_rng(0).normal(size=(20, 3)) * 0.3
    uv, _, _ = project(X, cam)
    uv_fit, _, _ = project(X, fit)
    s = 200 / 64
    np.testing.assert_allclose(uv_fit[0], (uv[0] + 0.5) * s + [0.0, (200 - 48 * s) / 2] - 0.5, atol=1e-9)
    np.testing.assert_allclose(fit.center, cam.center, atol=1e-12)
    quad = image_plane(cam, 0.7)
    corners, depth, _ = project(np.asarray(quad.vertices), cam)
    np.testing.assert_allclose(corners[0], [[-0.5, -0.5], [63.5, -0.5], [63.5, 47.5], [-0.5, 47.5]], atol=1e-9)
    np.testing.assert_allclose(depth[0], 0.7, atol=1e-12)
    assert len(quad.triangles) == 4 and len(quad.triangle_uvs) == 12


def test_snapshot_is_the_window_first_view(headless):
    cams = ring_cameras(n=3)
    ball = sphere()
    alone = viz.render(ball, size=(160, 120))
    with_cameras = viz.render(ball, cameras=cams, size=(160, 120))
    scene = build_scene([ball], cams)
    # the framing ignores the cameras, and render() is the scene's first view
    np.testing.assert_array_equal(foreground(alone), foreground(with_cameras))
    np.testing.assert_array_equal(with_cameras, offscreen.render_scene(scene, size=(160, 120)))
    rows, cols = np.nonzero(foreground(alone))
    span = max((rows.max() - rows.min() + 1) / 120, (cols.max() - cols.min() + 1) / 160)
    assert abs(span - framing.WINDOW_FILL) < 0.05, span


def test_hidden_groups_are_not_drawn(headless):
    cams = ring_cameras(n=3)
    far = dict(eye=[9.0, -9.0, 7.0], target=[0, 0, 0])
    frustum = np.round(np.array(viz.FRUSTUM_COLOR) * 255)
    shown = viz.render(sphere(), cameras=cams, view=far, size=(200, 150))
    hidden = viz.render(sphere(), cameras=cams, view=far, size=(200, 150), hide=["cameras"])
    count = [(np.abs(im.astype(int) - frustum).max(axis=-1) <= 1).sum() for im in (shown, hidden)]
    assert count[0] > 20 and count[1] == 0, count


def test_looking_through_a_camera_shows_its_photograph(headless):
    cams = ring_cameras(n=3)
    photo = stripes()
    scene = build_scene([sphere()], cams, photos=[photo] * 3)
    image = offscreen.render_scene(scene, view=cams[1])
    assert image.shape == photo.shape
    assert np.abs(image.astype(int) - photo).mean() < 12  # the quad fills the view (edges filtered)
    without = offscreen.render_scene(build_scene([sphere()], cams, photos=[photo] * 3, hide=["images"]),
                                     view=cams[1])
    assert foreground(without).mean() < 0.5  # the object, behind the photograph
