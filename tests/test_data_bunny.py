"""The real TUM/Bonn bunny (../shared/datasets/bunny): loader, calibration and silhouettes agree."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import data
from geometry import pixel_index, project

BUNNY = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bunny"
BOX = np.array([[-7.5, -10.0, -7.5], [7.5, 10.0, 15.0]])  # from the dataset's README


@pytest.fixture(scope="module")
def bunny():
    if not BUNNY.is_dir():
        pytest.skip(f"bunny dataset not found at {BUNNY} (it lives beside the repository, not in it)")
    return data.load(BUNNY, verbose=False)


def test_bunny_layout(bunny):
    assert bunny.format == "tum"
    assert len(bunny) == 36 and (bunny.width, bunny.height) == (1024, 768)
    assert bunny.names[0] == "0000" and bunny.names[-1] == "0035"
    assert all(im.shape == (768, 1024, 3) and im.dtype == np.uint8 for im in bunny.images)
    assert all(m.dtype == bool and 0.02 < m.mean() < 0.2 for m in bunny.silhouettes)
    # P = K [R|T] reproduces the file's matrices up to scale
    P_file = np.loadtxt(BUNNY / "calib" / "0007.txt", skiprows=1)
    P = bunny.cameras.P[7]
    assert np.allclose(P / P[2, 3], P_file / P_file[2, 3], rtol=1e-9, atol=1e-12)


def test_bunny_silhouettes_agree_with_calibration(bunny):
    centre = BOX.mean(axis=0)
    uv, depth, valid = project(centre[None], bunny.cameras)
    rows, cols = pixel_index(uv)
    assert valid.all() and (depth > 0).all()
    inside = [bunny.silhouettes[b][rows[b, 0], cols[b, 0]] for b in range(36)]
    assert all(inside)
    # and every corner of the box, well off the object, falls outside the silhouette of some view
    corners = np.array([[x, y, z] for x in BOX[:, 0] for y in BOX[:, 1] for z in BOX[:, 2]])
    uv, _, valid = project(corners, bunny.cameras)
    rows, cols = pixel_index(uv)
    for k in range(8):
        seen = [bunny.silhouettes[b][rows[b, k], cols[b, k]] for b in range(36) if valid[b, k]]
        assert not all(seen), corners[k]


def test_bunny_hull_matches_readme(bunny):
    """The centre-point hull at N = 128 has exactly the voxel count the dataset README measured."""
    carve = pytest.importorskip("carve")
    grid = carve.carve(bunny.silhouettes, bunny.cameras, resolution=128, bounds=(BOX[0], BOX[1]), method="octree")
    assert grid.shape == (86, 114, 128)
    assert grid.count() == 151_456
