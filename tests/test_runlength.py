"""carve.runlength: the run-length rows that repair and meshing share, against dense references."""
import numpy as np
import pytest
from scipy import ndimage

import carve
import data
from carve.mesh import lattice_surface
from carve.runlength import occupancy_runs
from carve.surface import snap_to_hull
from carve.opening import opening_runs
from carve.topology import is_simple, repair, repair_runs

CROSS = ndimage.generate_binary_structure(3, 1)


def volumes():
    rng = np.random.default_rng(7)
    for shape in [(1, 1, 1), (1, 9, 3), (5, 4, 17), (13, 11, 9), (20, 20, 20)]:
        yield rng.random(shape) < 0.6
        yield ndimage.gaussian_filter(rng.random(shape), 1.0) > 0.5


@pytest.mark.parametrize("occ", list(volumes()), ids=lambda o: "x".join(map(str, o.shape)))
def test_round_trip_count_and_the_opening_by_the_cross_are_scipys(occ):
    runs = occupancy_runs(occ)
    assert np.array_equal(runs.to_occupancy(), occ) and runs.count() == occ.sum()
    eroded = ndimage.binary_erosion(occ, CROSS, border_value=0)
    assert np.array_equal(opening_runs(runs).to_occupancy(), ndimage.binary_dilation(eroded, CROSS))


@pytest.mark.parametrize("occ", list(volumes()), ids=lambda o: "x".join(map(str, o.shape)))
def test_repair_on_runs_keeps_the_opening_and_only_removed_voxels_change(occ):
    clean = repair_runs(occupancy_runs(occ)).to_occupancy()
    assert np.array_equal(clean, repair(occ))
    opened = ndimage.binary_opening(np.pad(occ, 2), CROSS)[2:-2, 2:-2, 2:-2]
    assert not (clean & ~occ).any() and not (opened & ~clean).any()


def dense_repair(occ):
    """The repair spelled out on a dense array, as the module notes describe it: the opening, the thin
    parts of 27 voxels or more put back whole, then each removed voxel that is simple, in index order,
    one whose neighbour went in tried again (last in, first out)."""
    from carve.topology import _OFFS

    opened = ndimage.binary_opening(np.pad(occ, 2), CROSS)[2:-2, 2:-2, 2:-2]
    band = occ & ~opened
    labels, count = ndimage.label(band, CROSS)
    touching = ndimage.binary_dilation(opened, CROSS)
    inside = opened.copy()
    for label in range(1, count + 1):
        part = labels == label
        if part.sum() >= 27 and not (part & touching).any():
            inside |= part
    queued = band & ~inside
    stack = [tuple(i) for i in np.argwhere(queued)][::-1]
    while stack:
        c = stack.pop()
        queued[c] = False
        if not is_simple(inside, c):
            continue
        inside[c] = True
        for offset in _OFFS:
            n = tuple(np.add(c, offset))
            if all(0 <= v < m for v, m in zip(n, occ.shape)) and band[n] and not inside[n] and not queued[n]:
                queued[n] = True
                stack.append(n)
    return inside


@pytest.mark.parametrize("occ", list(volumes()), ids=lambda o: "x".join(map(str, o.shape)))
def test_repair_on_runs_is_the_repair_spelled_out_on_a_dense_array(occ):
    assert np.array_equal(repair_runs(occupancy_runs(occ)).to_occupancy(), dense_repair(occ))


def test_the_snap_from_the_marching_axes_is_the_snap_from_the_occupancy():
    views = data.synthetic("torus", views=16, size=(96, 72))
    grid = carve.carve(views.silhouettes, views.cameras, resolution=32, bounds="auto")
    mesh, axis = lattice_surface(grid)
    a = snap_to_hull(mesh, grid, views.silhouettes, views.cameras, occupied_axis=axis)
    b = snap_to_hull(mesh, grid, views.silhouettes, views.cameras)
    assert np.array_equal(a.vertices, b.vertices) and len(a.vertices) > 100
    with pytest.raises(ValueError, match="occupied_axis"):
        snap_to_hull(mesh, grid, views.silhouettes, views.cameras, occupied_axis=axis[:-1])
