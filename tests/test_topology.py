"""carve.topology.repair and the mesh's topology: the genus of the object, 2-manifold, watertight."""
import warnings

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import euler_number

import carve
import data
from carve.grid import VoxelGrid
from carve.mesh import voxel_surface
from carve.topology import ISLAND_VOXELS, is_simple, repair


def box(shape=(20, 20, 20), lo=4, hi=16):
    occ = np.zeros(shape, bool)
    occ[lo:hi, lo:hi, lo:hi] = True
    return occ


def non_manifold_edges(mesh) -> int:
    _, count = np.unique(mesh.edges_sorted, axis=0, return_counts=True)
    return int((count != 2).sum())


def test_a_one_voxel_bridge_that_closes_a_handle_is_cut_and_nothing_else():
    occ = box()
    occ[10, 10, 16:19] = True  # a stalk up from the top ...
    occ[10, 11:16, 18] = True  # ... over ...
    occ[10, 15, 16:18] = True  # ... and back down: a handle one voxel thick
    assert euler_number(occ, connectivity=1) == 0  # genus 1
    clean = repair(occ)
    assert euler_number(clean, connectivity=1) == 1 and not (clean & ~occ).any()
    assert (occ & ~clean).sum() == 1  # one voxel of the loop goes; the rest stays as a spike
    mesh = VoxelGrid(occ, [0, 0, 0], 1.0).to_mesh()
    assert mesh.euler_number == 2 and mesh.is_watertight
    assert VoxelGrid(occ, [0, 0, 0], 1.0).to_mesh(repair=False).euler_number == 0  # the binary surface stays


def test_solid_shapes_bumps_edges_and_thin_parts_come_back_whole():
    occ = box()
    occ[10, 10, 16:19] = True  # a thin spike
    occ[4:16, 4:16, 3] = True  # a layer one voxel thick under the box
    ball = np.linalg.norm(np.indices((20, 20, 20)) - 9.5, axis=0) < 7.3
    sheet = np.zeros((20, 20, 20), bool)
    sheet[2:18, 2:18, 5:7] = True  # a sheet two voxels thick, a component of its own
    wire = np.zeros((30, 5, 5), bool)
    wire[1:29, 2, 2] = True
    for shape in (occ, ball, sheet, wire):
        assert np.array_equal(repair(shape), shape)


def test_islands_go_unless_they_are_large_or_all_there_is():
    occ = box()
    occ[1, 1, 1] = True
    occ[18, 18, 17:19] = True
    clean = repair(occ)
    assert np.array_equal(clean, box())
    alone = np.zeros((6, 6, 6), bool)
    alone[2:4, 2, 2] = True
    assert not repair(alone).any()  # repair itself drops it ...
    mesh = VoxelGrid(alone, [0, 0, 0], 1.0).to_mesh()
    assert mesh.is_watertight and mesh.euler_number == 2  # ... but the mesh of a hull that is all islands keeps it
    for length in (ISLAND_VOXELS - 1, ISLAND_VOXELS):  # a wire on its own: an island below ISLAND_VOXELS
        wire = np.zeros((ISLAND_VOXELS + 2, 3, 3), bool)
        wire[1:1 + length, 1, 1] = True
        assert repair(wire).sum() == (0 if length < ISLAND_VOXELS else length)


def test_simple_points():
    ring = np.zeros((5, 5, 5), bool)
    ring[1:4, 1:4, 2] = True
    ring[2, 2, 2] = False
    assert not is_simple(ring, (2, 2, 2))  # closes the hole
    assert is_simple(ring, (1, 1, 3))  # a bump on the ring
    assert not is_simple(ring, (0, 4, 0))  # a new component
    assert not is_simple(ring, (2, 2, 3))  # touches the ring only along edges: a new 6-component
    with pytest.raises(ValueError, match="index must name an empty voxel"):
        is_simple(ring, (1, 1, 2))
    with pytest.raises(ValueError, match="occupancy must be an"):
        repair(np.zeros((3, 3), bool))
    with pytest.raises(TypeError, match="repair must be True or False"):
        voxel_surface(VoxelGrid(box(), [0, 0, 0], 1.0), repair="yes")


def test_voxels_touching_along_an_edge_are_meshed_apart_manifold():
    occ = np.zeros((6, 6, 6), bool)
    occ[2, 2, 2:4] = True
    occ[3, 3, 2:4] = True  # two columns sharing only an edge
    occ[1, 1, 1] = occ[2, 2, 1] = True  # and a corner contact below
    mesh = VoxelGrid(occ, [0, 0, 0], 1.0).to_mesh(repair=False)
    assert mesh.is_watertight and non_manifold_edges(mesh) == 0 and mesh.is_winding_consistent
    assert mesh.euler_number == 2 * ndimage.label(occ)[1]  # one sphere per 6-component
    q = np.asarray(mesh.vertices) - 0.5
    assert np.all(np.isclose(np.abs(q - np.round(q)), 0.5).sum(1) == 1)  # on the lattice edges' midpoints


@pytest.fixture(scope="module", params=["torus", "pretzel"])
def few_views(request):
    # few, small views: carving at 128 and 256 grows islands and one-voxel handles (Euler numbers
    # 66 and -10 for the torus without the repair)
    return request.param, data.synthetic(request.param, views=24, size=(320, 240))


@pytest.mark.parametrize("resolution", [64, 128, 256])
def test_the_mesh_has_the_objects_genus(few_views, resolution):
    name, views = few_views
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid = carve.carve(views.silhouettes, views.cameras, resolution=resolution, bounds="auto")
    want = {"torus": 0, "pretzel": -2}[name]
    for mesh in (grid.to_mesh(), grid.to_mesh(masks=views.silhouettes, cameras=views.cameras)):
        assert mesh.euler_number == want and mesh.is_watertight and mesh.is_winding_consistent
        assert non_manifold_edges(mesh) == 0 and mesh.volume > 0
    if resolution == 256:
        assert grid.to_mesh(repair=False).euler_number != want  # the case is hard: the repair is what fixes it


def graph_simple(occupied):
    """The simple-point test by graph search (the definition): occupied (26,) bool in _OFFS order."""
    from carve.topology import _OFFS

    def components(member, adjacent, seeds):
        left, count = {n for n in range(26) if member[n]}, 0
        while left & seeds:
            stack = [min(left & seeds)]
            left -= set(stack)
            while stack:
                a = stack.pop()
                near = {b for b in left if adjacent(_OFFS[a], _OFFS[b])}
                left -= near
                stack += near
            count += 1
        return count

    def six(p, q):
        return np.abs(p - q).sum() == 1

    def any26(p, q):
        return np.abs(p - q).max() == 1

    faces = {n for n in range(26) if np.abs(_OFFS[n]).sum() == 1}
    fg = [occupied[n] and np.abs(_OFFS[n]).sum() <= 2 for n in range(26)]
    bg = [not occupied[n] for n in range(26)]
    return components(fg, six, faces) == 1 and components(bg, any26, set(range(26))) == 1


def test_the_bitwise_simple_point_test_is_the_graph_search():
    from carve.topology import _OFFS, _simple_bits

    rng = np.random.default_rng(11)
    patterns = [rng.random(26) < p for p in np.linspace(0.05, 0.95, 19) for _ in range(150)]
    patterns += [np.array([n == m for n in range(26)]) for m in range(26)]  # one neighbour
    patterns += [np.array([n != m for n in range(26)]) for m in range(26)]  # all but one
    simple = 0
    for occupied in patterns:
        bits = sum(1 << ((a + 1) * 9 + (b + 1) * 3 + c + 1) for (a, b, c), o in zip(_OFFS, occupied) if o)
        expected = graph_simple(occupied)
        assert _simple_bits(bits) == expected, occupied.astype(int).tolist()
        simple += expected
    assert 200 < simple < len(patterns) - 200  # both answers are exercised
