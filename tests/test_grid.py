"""VoxelGrid: geometry of the lattice, files, marching cubes, vertex colours and Open3D."""
import numpy as np
import pytest

from geometry import Camera

from carve.grid import VoxelGrid


def box_grid():
    occ = np.zeros((10, 12, 14), bool)
    occ[2:7, 3:9, 4:12] = True  # 5 x 6 x 8 voxels
    return VoxelGrid(occ, lo=[-1.0, 2.0, 0.5], voxel_size=0.25)


def test_lattice_geometry():
    grid = box_grid()
    assert grid.shape == (10, 12, 14)
    assert grid.count() == 5 * 6 * 8
    np.testing.assert_allclose(grid.hi, [1.5, 5.0, 4.0])
    pts = grid.points()
    assert pts.shape == (240, 3)
    np.testing.assert_allclose(pts.min(0), [-1.0 + 2.5 * 0.25, 2.0 + 3.5 * 0.25, 0.5 + 4.5 * 0.25])
    np.testing.assert_allclose(pts.max(0), [-1.0 + 6.5 * 0.25, 2.0 + 8.5 * 0.25, 0.5 + 11.5 * 0.25])
    assert "occupied=240" in repr(grid)


@pytest.mark.parametrize("args,error,pattern", [
    ((np.zeros((4, 4), bool), [0, 0, 0], 1.0), ValueError, r"occupancy must have shape \(nx, ny, nz\)"),
    ((np.zeros((4, 4, 4)), [0, 0, 0], 1.0), TypeError, r"occupancy must be a bool array"),
    ((np.zeros((4, 4, 4), bool), [0, 0], 1.0), ValueError, r"lo must be 3 finite numbers"),
    ((np.zeros((4, 4, 4), bool), [0, np.nan, 0], 1.0), ValueError, r"lo must be 3 finite numbers"),
    ((np.zeros((4, 4, 4), bool), [0, 0, 0], 0.0), ValueError, r"voxel_size must be a finite number > 0"),
])
def test_construction_errors(args, error, pattern):
    with pytest.raises(error, match=pattern):
        VoxelGrid(*args)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    grid = VoxelGrid(rng.random((13, 7, 5)) < 0.4, lo=[0.1, -2.0, 3.0], voxel_size=0.3)
    path = grid.save(tmp_path / "hull")
    assert path.name == "hull.npz" and path.exists()
    loaded = VoxelGrid.load(path)
    np.testing.assert_array_equal(loaded.occupancy, grid.occupancy)
    np.testing.assert_array_equal(loaded.lo, grid.lo)
    assert loaded.voxel_size == grid.voxel_size and loaded.shape == grid.shape
    assert [p.name for p in tmp_path.iterdir()] == ["hull.npz"]  # no temporary left behind


def test_load_and_save_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="path must name an existing .npz file"):
        VoxelGrid.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="path must be a VoxelGrid .npz file"):
        VoxelGrid.load(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="path must be a VoxelGrid .npz file"):
        VoxelGrid.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="path must be in an existing directory"):
        box_grid().save(tmp_path / "nowhere" / "grid.npz")


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


def test_open3d_voxel_grid_has_the_same_voxels():
    grid = box_grid()
    vg = grid.to_open3d()
    idx = np.array([v.grid_index for v in vg.get_voxels()])
    assert len(idx) == grid.count()
    np.testing.assert_array_equal(np.sort(np.ravel_multi_index(idx.T, grid.shape)),
                                  np.flatnonzero(grid.occupancy))
    np.testing.assert_allclose(np.asarray(vg.origin), grid.lo)
    assert vg.voxel_size == pytest.approx(grid.voxel_size)
    surface = grid.to_open3d(surface_only=True, color=(1.0, 0.5, 0.0))
    assert len(surface.get_voxels()) == grid.count() - 3 * 4 * 6  # minus the interior
