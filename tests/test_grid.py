"""VoxelGrid: geometry of the lattice, files and Open3D (its surfaces: test_mesh.py)."""
import numpy as np
import pytest

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


def test_a_carved_grid_holds_run_length_rows_and_meshes_without_a_dense_array():
    """The octree returns the occupancy's run-length rows: counting, meshing and snapping read them,
    and the dense array is made only when asked for (then it is the grid's occupancy, writable)."""
    import carve
    import data
    from carve.runlength import occupancy_runs

    views = data.synthetic("torus", views=12, size=(96, 72))
    grid = carve.carve(views.silhouettes, views.cameras, resolution=40, bounds="auto")
    assert not grid.holds_dense and grid.count() > 1000
    mesh = grid.to_mesh(masks=views.silhouettes, cameras=views.cameras)
    assert not grid.holds_dense and mesh.is_watertight and "occupied=" in repr(grid)
    dense = carve.carve(views.silhouettes, views.cameras, resolution=40, bounds=(grid.lo, grid.hi), method="dense")
    assert dense.holds_dense and np.array_equal(grid.occupancy, dense.occupancy) and grid.holds_dense
    runs = occupancy_runs(dense.occupancy)
    assert np.array_equal(grid.runs.toggles, runs.toggles) and np.array_equal(grid.runs.start, runs.start)
    grid.occupancy[0, 0, 0] = True  # written to: the grid is its dense array from now on
    assert grid.count() == dense.count() + 1
    with pytest.raises(ValueError, match="occupancy runs must hold"):
        VoxelGrid(runs._replace(start=runs.start[:-1]), grid.lo, grid.voxel_size)
