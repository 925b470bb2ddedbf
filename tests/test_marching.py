"""carve.marching.binary_surface against scikit-image's marching cubes, and the mesh it must be."""
import numpy as np
import pytest
from skimage import measure

from carve.marching import binary_surface

#: just above 1/2, so that skimage resolves a face's ambiguous diagonal as we do (occupied corners
#: apart): its vertices then sit this far from the edge midpoints, ours on them
LEVEL = 0.5 + 1e-3


def euler(verts: np.ndarray, faces: np.ndarray) -> int:
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return len(verts) - len(np.unique(edges, axis=0)) + len(faces)


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (verts[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def reference(occ: np.ndarray):
    """skimage on the occupancy padded by one empty voxel, back in the occupancy's index units."""
    verts, faces, _, _ = measure.marching_cubes(np.pad(occ, 1).astype(np.float32), LEVEL)
    return verts - 1.0, faces


def volumes(seed: int):
    """Random occupancies: speckle, blobs, and long z-runs broken by lone voxels at every offset
    from the 8-byte words the toggle scan skips, with z lengths that are no multiple of 8."""
    rng = np.random.default_rng(seed)
    for shape in [(6, 7, 9), (9, 5, 13), (5, 6, 37)]:
        yield rng.random(shape) < 0.5
        yield rng.random(shape) < 0.15
        runs = rng.random(shape) < 0.97
        runs[rng.random(shape) < 0.05] = False
        yield runs
        field = rng.random(tuple(s // 2 + 1 for s in shape))
        yield np.kron(field, np.ones((2, 2, 2)))[: shape[0], : shape[1], : shape[2]] > 0.55


CASES = [occ for seed in range(6) for occ in volumes(seed)]


@pytest.mark.parametrize("occ", CASES)
def test_the_vertices_and_the_euler_number_are_skimages_just_above_one_half(occ):
    verts, faces, _ = binary_surface(occ)
    ref_verts, ref_faces = reference(occ) if occ.any() else (np.zeros((0, 3)), np.zeros((0, 3), int))
    assert len(verts) == len(ref_verts)
    ours = np.unique(np.round(verts * 2).astype(int), axis=0)
    theirs = np.unique(np.round(ref_verts * 2).astype(int), axis=0)
    assert np.array_equal(ours, theirs)
    assert len(ours) == len(verts), "a lattice edge has two vertices"
    assert euler(verts, faces) == euler(ref_verts, ref_faces)


@pytest.mark.parametrize("occ", CASES)
def test_the_mesh_is_closed_2_manifold_and_wound_outward(occ):
    verts, faces, inner = binary_surface(occ)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed), "a directed edge twice: winding flips"
    reverse = {tuple(e) for e in directed[:, ::-1]}
    assert all(tuple(e) in reverse for e in directed), "an edge with one face: a hole"
    assert np.all(faces[:, 0] != faces[:, 1]) and np.all(faces[:, 1] != faces[:, 2])
    assert signed_volume(verts, faces) > 0
    # and face by face: each normal points away from the occupied ends of its corners' edges
    normals = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    inward = np.zeros_like(verts)
    inward[np.arange(len(verts)), np.abs(inner) - 1] = np.sign(inner)
    assert np.all(np.einsum("ij,ij->i", normals, inward[faces].sum(axis=1)) < 0)


@pytest.mark.parametrize("occ", CASES[:8])
def test_inner_points_half_a_voxel_to_the_occupied_end_of_each_cut_edge(occ):
    verts, _, inner = binary_surface(occ)
    axis = np.abs(inner) - 1
    step = np.zeros_like(verts)
    step[np.arange(len(verts)), axis] = 0.5 * np.sign(inner)
    inside = np.round(verts + step).astype(int)
    outside = np.round(verts - step).astype(int)
    assert occ[tuple(inside.T)].all()
    padded = np.pad(occ, 1)
    assert not padded[tuple((outside + 1).T)].any()



def test_no_case_has_more_triangles_than_cut_edges():
    """What the faces' room per cube row rests on (carve.marching.runs._cube_room): a row with room
    for fewer would write into the next one's."""
    from carve.marching.table import COUNTS, CUTS

    for case in range(256):
        z_cut = sum(((case >> i) & 1) != ((case >> (4 + i)) & 1) for i in range(4))  # corner i at z, z + 1
        assert COUNTS[case] <= z_cut + bin(int(CUTS[case])).count("1"), case


def test_each_cube_row_writes_within_its_room(monkeypatch):
    from carve.marching import runs as kernels
    from carve.runlength import occupancy_runs

    rng = np.random.default_rng(5)
    occ = rng.random((12, 11, 13)) < 0.5  # speckle: the most triangles per cut edge
    runs = occupancy_runs(occ)
    seen = {}

    def spy(NX, NY, *args):
        seen["room"], seen["written"] = args[-2], real(NX, NY, *args)
        return seen["written"]

    real = kernels._cube_fill
    monkeypatch.setattr(kernels, "_cube_fill", spy)
    kernels.binary_surface(runs)
    assert seen["written"].sum() > 1000
    assert (seen["written"] <= np.diff(seen["room"])).all()

def test_the_z_edges_are_the_row_toggles():
    occ = np.ones((1, 1, 70), bool)
    occ[0, 0, [0, 8, 15, 16, 17, 31, 40, 63, 69]] = False  # lone gaps on and off the word edges
    verts, faces, inner = binary_surface(occ)
    toggles = np.flatnonzero(np.diff(np.pad(occ[0, 0], 1).astype(np.int8)))
    assert np.array_equal(np.sort(verts[np.abs(inner) == 3, 2]), toggles - 0.5)


def test_layouts_that_are_not_plain_c_order_give_the_same_surface():
    occ = np.random.default_rng(3).random((9, 10, 21)) < 0.6
    plain = binary_surface(occ)
    transposed = np.ascontiguousarray(occ.transpose(2, 1, 0)).transpose(2, 1, 0)
    unaligned = np.concatenate([np.zeros((1, 10, 21), bool), occ])[1:]  # starts 210 bytes in
    for layout in (transposed, unaligned):
        for a, b in zip(plain, binary_surface(layout)):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("shape", [(4, 5, 6), (0, 3, 3), (1, 1, 1)])
def test_empty_occupancies_give_empty_arrays(shape):
    verts, faces, inner = binary_surface(np.zeros(shape, bool))
    assert verts.shape == (0, 3) and faces.shape == (0, 3) and inner.shape == (0,)


def test_a_full_block_is_a_closed_box_of_its_size():
    verts, faces, _ = binary_surface(np.ones((3, 4, 5), bool))
    assert euler(verts, faces) == 2
    assert verts.min(axis=0).tolist() == [-0.5, -0.5, -0.5] and verts.max(axis=0).tolist() == [2.5, 3.5, 4.5]


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 4)), np.zeros((4, 4), bool), np.zeros((2, 2, 2, 2), bool)])
def test_bad_input_is_named(bad):
    with pytest.raises(ValueError, match="occupancy must be an"):
        binary_surface(bad)
