"""carve.mesh through VoxelGrid.to_mesh: marching cubes closed, outward and in world units; vertex
colours from the views that see each vertex."""
import numpy as np
import pytest

from geometry import Camera

from carve.grid import VoxelGrid
from carve.mesh import vertex_colors, voxel_surface
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
