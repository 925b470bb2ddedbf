"""carve.mesh through VoxelGrid.to_mesh: marching cubes closed, outward and in world units; vertex
colours from the views that see each vertex."""
import numpy as np
import pytest

from geometry import Camera

from carve.grid import VoxelGrid
from carve.mesh import lattice_surface, vertex_colors, voxel_surface
from test_grid import box_grid  # the one 5 x 6 x 8 box the grid tests use


def test_mesh_is_closed_outward_and_in_world_units():
    grid = box_grid()
    mesh = grid.to_mesh()
    assert mesh.is_watertight
    assert mesh.volume > 0  # faces wound counter-clockwise from outside
    # the level-0.5 surface of the voxel-centre lattice: half a voxel inside the outer voxel faces,
    # corners cut, so the volume lies between the centres' box and the voxels' box
    s = 0.25
    assert (4 * 5 * 7) * s ** 3 < mesh.volume < (5 * 6 * 8) * s ** 3
    pts = grid.points()
    np.testing.assert_allclose(mesh.bounds[0], pts.min(0) - 0.5 * s)
    np.testing.assert_allclose(mesh.bounds[1], pts.max(0) + 0.5 * s)
    smooth = grid.to_mesh(smooth=1.0)
    assert smooth.is_watertight and smooth.volume > 0


def test_mesh_of_an_object_touching_the_box_is_closed():
    occ = np.ones((4, 4, 4), bool)
    mesh = VoxelGrid(occ, [0, 0, 0], 1.0).to_mesh()
    assert mesh.is_watertight
    np.testing.assert_allclose(mesh.bounds, [[0, 0, 0], [4, 4, 4]])


def test_empty_grid_gives_an_empty_mesh():
    mesh = VoxelGrid(np.zeros((3, 3, 3), bool), [0, 0, 0], 1.0).to_mesh()
    assert len(mesh.vertices) == 0


def test_vertex_colours_come_from_the_views_that_see_them():
    occ = np.zeros((12, 12, 12), bool)
    occ[3:9, 3:9, 3:9] = True
    grid = VoxelGrid(occ, [-1.5, -1.5, -1.5], 0.25)  # a cube of side 1.5 centred at the origin
    cams = Camera.look_at([[6.0, 0.0, 0.0], [-6.0, 0.0, 0.0]], [0.0, 0.0, 0.0], up=(0, 0, 1), fov=40,
                          width=64, height=48)
    images = np.zeros((2, 48, 64, 3), np.uint8)
    images[0, ..., 0] = 255  # the +x camera sees red
    images[1, ..., 2] = 255  # the -x camera sees blue
    mesh = grid.to_mesh(images=images, cameras=cams, progress=False)
    colors = np.asarray(mesh.visual.vertex_colors)
    v = np.asarray(mesh.vertices)
    plus, minus = v[:, 0] > 0.7, v[:, 0] < -0.7
    side = np.abs(v[:, 0]) < 0.3
    assert np.all(colors[plus, :3] == [255, 0, 0])
    assert np.all(colors[minus, :3] == [0, 0, 255])
    top = side & (v[:, 2] > 0.7)  # seen by neither camera head-on: faces up, grey
    assert np.all(colors[top, :3] == [128, 128, 128])
    # float images in [0, 1] work the same
    mesh_f = grid.to_mesh(images=images / 255.0, cameras=cams, progress=False)
    np.testing.assert_array_equal(np.asarray(mesh_f.visual.vertex_colors), colors)


def test_occluded_vertices_take_no_colour_from_the_occluded_view():
    occ = np.zeros((16, 8, 8), bool)
    occ[2:6, 2:6, 2:6] = True  # two cubes on the x axis
    occ[10:14, 2:6, 2:6] = True
    grid = VoxelGrid(occ, [-2.0, -1.0, -1.0], 0.25)
    cam = Camera.look_at([8.0, 0.0, 0.0], [0.0, 0.0, 0.0], up=(0, 0, 1), fov=30, width=64, height=64)
    image = np.full((1, 64, 64, 3), 200, np.uint8)
    colors = np.asarray(grid.to_mesh(images=image, cameras=cam, progress=False).visual.vertex_colors)
    v = np.asarray(grid.to_mesh().vertices)
    near_face = v[:, 0] > 1.3  # the +x face of the near cube: seen
    hidden_face = (v[:, 0] > -0.6) & (v[:, 0] < -0.4)  # the +x face of the far cube: hidden behind the near one
    assert np.all(colors[near_face, :3] == 200)
    assert np.all(colors[hidden_face, :3] == 128)


def test_colouring_errors():
    grid = box_grid()
    cams = Camera.look_at([[6.0, 0.0, 0.0]], [0.0, 0.0, 0.0], up=(0, 0, 1), fov=40, width=64, height=48)
    with pytest.raises(ValueError, match="images and cameras must be given together"):
        grid.to_mesh(images=np.zeros((1, 48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"images must hold one image per camera \(1\)"):
        grid.to_mesh(images=np.zeros((2, 48, 64, 3), np.uint8), cameras=cams)
    with pytest.raises(ValueError, match=r"images must be 48 x 64"):
        grid.to_mesh(images=np.zeros((1, 64, 48, 3), np.uint8), cameras=cams)
    with pytest.raises(ValueError, match=r"smooth must be a number >= 0"):
        grid.to_mesh(smooth=-1)


def test_to_mesh_is_voxel_surface_and_vertex_colors():
    grid = box_grid()
    cams = Camera.look_at([[6.0, 1.0, 3.0], [-6.0, 4.0, 2.0]], [0.25, 3.5, 2.25], up=(0, 0, 1), fov=40,
                          width=64, height=48)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    mesh = grid.to_mesh(images=images, cameras=cams, smooth=0.5, progress=False)
    surface = voxel_surface(grid, smooth=0.5)
    np.testing.assert_array_equal(mesh.vertices, surface.vertices)
    np.testing.assert_array_equal(mesh.faces, surface.faces)
    colors = vertex_colors(surface, images, cams, grid.voxel_size, progress=False)
    np.testing.assert_array_equal(np.asarray(mesh.visual.vertex_colors), colors)
    assert colors.shape == (len(surface.vertices), 4) and colors.dtype == np.uint8
    assert (colors[:, :3] != 128).any(axis=1).mean() > 0.3  # the views see a good part of the box
    # a list of images, or RGBA, gives the same colours
    np.testing.assert_array_equal(vertex_colors(surface, list(images), cams, grid.voxel_size, progress=False), colors)
    rgba = np.concatenate([images, np.full((2, 48, 64, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(vertex_colors(surface, rgba, cams, grid.voxel_size, progress=False), colors)


def test_colouring_an_empty_grid_gives_an_empty_mesh():
    cams = Camera.look_at([[6.0, 0.0, 0.0]], [0.0, 0.0, 0.0], up=(0, 0, 1), fov=40, width=64, height=48)
    grid = VoxelGrid(np.zeros((3, 3, 3), bool), [0, 0, 0], 1.0)
    assert len(grid.to_mesh(images=np.zeros((1, 48, 64, 3), np.uint8), cameras=cams).vertices) == 0


def test_vertex_colors_errors():
    surface = voxel_surface(box_grid())
    cams = Camera.look_at([[6.0, 0.0, 0.0]], [0.0, 0.0, 0.0], up=(0, 0, 1), fov=40, width=64, height=48)
    with pytest.raises(TypeError, match=r"cameras must be a geometry.Camera"):
        vertex_colors(surface, np.zeros((1, 48, 64, 3), np.uint8), cams.P, 0.25)
    with pytest.raises(ValueError, match=r"images\[0\] must hold floats in \[0, 1\]"):
        vertex_colors(surface, np.full((1, 48, 64, 3), 2.0), cams, 0.25)
    with pytest.raises(ValueError, match=r"images must be 48 x 64 .* for images\[1\]"):
        vertex_colors(surface, [np.zeros((48, 64, 3), np.uint8), np.zeros((48, 60, 3), np.uint8)],
                      Camera.concat([cams, cams]), 0.25)


# ---------------------------------------------------------------------------- sub-voxel surfaces
@pytest.fixture(scope="module")
def sphere_views():
    import data

    return data.synthetic("sphere", views=32, size=(320, 240))


def _distance_to(mesh_true, points):
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh_true.vertices.astype(np.float32)),
                        o3d.core.Tensor(mesh_true.faces.astype(np.uint32)))
    return scene.compute_distance(o3d.core.Tensor(np.asarray(points, np.float32))).numpy()


@pytest.mark.parametrize("resolution", [24, 48])
def test_snapped_vertices_lie_on_the_object_not_on_the_lattice(sphere_views, resolution):
    """Binary marching cubes sits 0.17 voxel (mean) off the sphere at every resolution; snapped onto the
    hull's surface, the vertices err by a few hundredths of a voxel where the views pin the hull down."""
    import carve
    import data

    views = sphere_views
    grid = carve.carve(views.silhouettes, views.cameras, resolution=resolution, bounds="auto")
    binary = grid.to_mesh()
    snapped = grid.to_mesh(masks=views.silhouettes, cameras=views.cameras)
    assert np.array_equal(snapped.faces, binary.faces) and snapped.is_watertight
    assert snapped.euler_number == binary.euler_number == 2 and snapped.volume > 0
    sphere = data.objects.get("sphere")
    errors = {}
    for name, mesh in (("binary", binary), ("snapped", snapped)):
        upper = mesh.vertices[:, 2] > 0  # the views look down on the sphere: its upper half is pinned
        errors[name] = _distance_to(sphere, mesh.vertices[upper]) / grid.voxel_size
    assert errors["binary"].mean() > 0.15  # the lattice's error, as measured on main
    assert errors["snapped"].mean() < 0.05 and np.percentile(errors["snapped"], 90) < 0.1, errors["snapped"].mean()
    # colours still come from the views, on the moved vertices
    coloured = grid.to_mesh(images=views.images, cameras=views.cameras, masks=views.silhouettes, progress=False)
    assert np.allclose(coloured.vertices, snapped.vertices) and len(coloured.visual.vertex_colors) == len(snapped.vertices)


def test_snapping_keeps_what_views_that_leave_the_frame_do_not_see():
    """A view whose mask touches its border keeps what lies outside its image (outside="auto"), as
    carving does: the vertices there stay on the other views' hull, not pulled onto the image edge."""
    import carve
    import data
    from carve.surface import snap_to_hull

    views = data.synthetic("box", views=12, size=(160, 120))
    crop = views.silhouettes[0].copy()
    crop[:, :40] = True  # view 0 now says the object runs off its left edge
    masks = [crop] + list(views.silhouettes[1:])
    grid = carve.carve(masks, views.cameras, resolution=24, bounds="auto", outside="auto")
    auto = snap_to_hull(grid.to_mesh(), grid, masks, views.cameras, outside="auto")
    assert auto.is_watertight and np.isfinite(auto.vertices).all()
    with pytest.raises(ValueError, match="outside must be 'carve', 'keep', 'auto'"):
        snap_to_hull(grid.to_mesh(), grid, masks, views.cameras, outside="sideways")
    with pytest.raises(ValueError, match="masks must be 12 .H, W. bool masks"):
        snap_to_hull(grid.to_mesh(), grid, masks[:3], views.cameras)
    with pytest.raises(ValueError, match=r"steps must be an integer in \[0, 52\]"):
        snap_to_hull(grid.to_mesh(), grid, masks, views.cameras, steps=100)
    with pytest.raises(ValueError, match="masks need their cameras and smooth=0"):
        grid.to_mesh(masks=masks)
    with pytest.raises(ValueError, match="masks need their cameras and smooth=0"):
        grid.to_mesh(masks=masks, cameras=views.cameras, smooth=1.0)
    assert np.allclose(snap_to_hull(grid.to_mesh(), grid, masks, views.cameras, steps=0).vertices,
                       grid.to_mesh().vertices, atol=1e-6 * grid.voxel_size)  # no step: the lattice midpoints


def test_decimation_to_a_count_or_within_an_error(sphere_views):
    import carve
    from carve.mesh import decimate, surface_distance

    views = sphere_views
    grid = carve.carve(views.silhouettes, views.cameras, resolution=48, bounds="auto")
    mesh = grid.to_mesh(images=views.images, cameras=views.cameras, masks=views.silhouettes, progress=False)
    small, error = decimate(mesh, len(mesh.faces) // 10)
    assert len(small.faces) <= len(mesh.faces) // 10 and small.is_watertight
    assert error == pytest.approx(surface_distance(mesh, small)) and error < 0.5 * grid.voxel_size
    assert np.asarray(small.visual.vertex_colors).shape == (len(small.vertices), 4)  # the colours come along
    bound = 0.1 * grid.voxel_size
    within, error = decimate(mesh, max_error=bound)
    assert error <= bound and len(within.faces) < 0.5 * len(mesh.faces)  # a tenth of a voxel halves it at least
    tighter, _ = decimate(mesh, max_error=bound / 4)
    assert len(tighter.faces) > len(within.faces)
    for kwargs, message in (({}, "exactly one of faces or max_error"), ({"faces": 2}, "faces must be an integer >= 4"),
                            ({"max_error": -1.0}, "max_error must be a distance > 0")):
        with pytest.raises(ValueError, match=message):
            decimate(mesh, **kwargs)


def test_snapped_vertex_is_the_edge_s_first_exit_where_a_view_is_left_and_entered_again():
    """View A misses one column (a slit finer than a voxel) and holds everything else; view B holds
    the columns left of 37. An x-edge from before the slit to beyond column 37 leaves A at the slit
    (u = 33.5), enters it again (34.5) and leaves B at 36.5: its vertex is the first exit, on the
    slit's near side, though only B rejects the edge's outer end."""
    from carve.surface import snap_to_hull

    f, cx, cy, depth = 100.0, 31.5, 23.5, 5.0
    camera = Camera(np.stack([np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])] * 2), np.stack([np.eye(3)] * 2),
                    np.array([[0, 0, depth]] * 2), width=64, height=48)
    masks = np.ones((2, 48, 64), bool)
    masks[0, :, 34] = False
    masks[1, :, 37:] = False
    lo, size = np.full(3, -1.6), 0.2  # a voxel spans 3-6 pixels

    def u_of(x, z):
        return f * x / (z + depth) + cx

    centres = lo + (np.indices((16, 16, 16)).transpose(1, 2, 3, 0) + 0.5) * size
    grid = VoxelGrid(u_of(centres[..., 0], centres[..., 2]) < 36.5, lo, size)
    lattice = grid.to_mesh()
    snapped = snap_to_hull(lattice, grid, masks, camera, outside="keep")
    mid = lattice.vertices
    on_x_edge = np.abs((mid[:, 0] - lo[0]) / size - np.round((mid[:, 0] - lo[0]) / size)) < 1e-9
    u_in, u_out = u_of(mid[:, 0] - size / 2, mid[:, 2]), u_of(mid[:, 0] + size / 2, mid[:, 2])
    v = f * mid[:, 1] / (mid[:, 2] + depth) + cy
    across = on_x_edge & (u_in < 33.5) & (u_out > 36.5) & (v > 1) & (v < 46)  # (beyond the image both keep)
    assert across.sum() >= 8
    u = u_of(snapped.vertices[across, 0], snapped.vertices[across, 2])
    np.testing.assert_allclose(u, 33.5, atol=1e-6)


def test_snapped_vertices_sit_exactly_where_the_edge_leaves_the_silhouette():
    """One view whose mask is a half-plane of columns: its bilinear contour is the column midway
    between the last object pixel's centre and the first background one's, so the hull is the
    half-space behind a known plane. The snap solves each edge's exit in the image, so vertices the
    snap moves sit on that plane to rounding, far below bisection's 2**-13 voxel."""
    from carve.surface import snap_to_hull

    f, cx, cy, depth, edge = 100.0, 31.5, 23.5, 5.0, 37  # columns < 37 are the object's
    camera = Camera(np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]]), np.eye(3), np.array([0, 0, depth]),
                    width=64, height=48)
    mask = np.zeros((48, 64), bool)
    mask[:, :edge] = True

    def plane_x(z):  # u = f x / (z + depth) + cx reaches edge - 1/2 there
        return (edge - 0.5 - cx) * (z + depth) / f

    lo, size = np.array([-0.5, -0.5, -0.5]), 1.0 / 16
    centres = lo + (np.indices((16, 16, 16)).transpose(1, 2, 3, 0) + 0.5) * size
    grid = VoxelGrid(centres[..., 0] < plane_x(centres[..., 2]), lo, size)
    lattice = grid.to_mesh()
    snapped = snap_to_hull(lattice, grid, mask[None], camera, outside="keep")
    moved = np.linalg.norm(snapped.vertices - lattice.vertices, axis=1) > 1e-9
    assert moved.sum() >= 16 * 16  # every x-edge row of the plane's crossing at least
    off = np.abs(snapped.vertices[moved, 0] - plane_x(snapped.vertices[moved, 2])) / size
    assert off.max() < 1e-9


@pytest.mark.parametrize("resolution", [12, 32, 64])
def test_deep_interior_test_changes_no_snapped_vertex(monkeypatch, resolution):
    """The cheap test that skips a view whose eroded mask holds the whole edge is exact: the snap with
    it puts every vertex where the snap without it (every view of the block solved) does, on masks
    with holes and ragged outlines, at resolutions whose edges span from many pixels to under one."""
    import carve
    import carve.surface as surface
    import data

    views = data.synthetic("pretzel", views=8, size=(160, 120))
    rng = np.random.default_rng(resolution)
    masks = np.asarray(views.silhouettes)
    masks = masks & (rng.random(masks.shape) > 0.02)  # pinholes: exits inside the outline
    grid = carve.carve(masks, views.cameras, resolution=resolution, bounds="auto")
    lattice, axis = lattice_surface(grid)
    with_test = surface.snap_to_hull(lattice, grid, masks, views.cameras, occupied_axis=axis)
    monkeypatch.setattr(surface, "deep_interior", lambda padded, radius: np.zeros_like(padded))
    without = surface.snap_to_hull(lattice, grid, masks, views.cameras, occupied_axis=axis)
    assert len(lattice.vertices) > 100
    assert np.array_equal(with_test.vertices, without.vertices)


def test_an_edge_held_by_the_deep_interior_reads_object_pixels_only():
    """Whenever holds_edge says a view holds a segment, the bilinear mask is 1 all along its image."""
    from carve.nearby_views import deep_interior, holds_edge
    from carve.surface import _sample

    rng = np.random.default_rng(3)
    mask = np.ones((1, 40, 50), np.uint8)
    mask[0, rng.integers(0, 40, 30), rng.integers(0, 50, 30)] = 0
    P = np.array([[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]]])  # (x, y) is the padded pixel less 1
    for radius in (1, 2, 3):
        deep = deep_interior(mask, radius)
        held = 0
        for _ in range(2000):
            a = rng.uniform([-1, -1, 0], [49, 39, 0])
            b = a + rng.uniform(-radius, radius, 3)
            if holds_edge(a, b, P, deep, radius, 0):
                held += 1
                for s in np.linspace(0, 1, 17):
                    x, y, _ = a + s * (b - a)
                    assert _sample(mask, 0, x + 1.0, y + 1.0) == 1.0
        assert held > 100
