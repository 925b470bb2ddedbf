"""The ray-casting renderer agrees with the geometry core, and carving its silhouettes behaves."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

import data
from data import objects
from geometry import Camera, depth_to_points, pixel_index, project


def _scene_distance(mesh, points):
    import open3d as o3d

    s = o3d.t.geometry.RaycastingScene()
    s.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                    o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    return s, s.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()


@pytest.fixture(scope="module")
def mug_views():
    mesh = objects.mug(resolution=48)
    K = np.array([[95.0, 0, 41.3], [0, 97.0, 28.6], [0, 0, 1]])      # off-centre, non-square
    eyes = np.array([[3.0, 0.5, 1.0], [-1.0, 2.8, 1.8], [0.3, -2.9, -0.8]])
    cams = Camera.look_at(eyes, np.zeros(3), K=K, width=84, height=60)
    return mesh, cams, data.render(mesh, cams)


def test_hits_project_back_to_their_pixels(mug_views):
    mesh, cams, (images, depths, masks) = mug_views
    for b in range(len(cams)):
        pts = depth_to_points(depths[b], cams[b])
        rows, cols = np.nonzero(depths[b] > 0)
        uv, z, valid = project(pts, cams[b])
        r, c = pixel_index(uv[0])
        assert valid.all() and (r == rows).all() and (c == cols).all()
        assert np.abs(uv[0] - np.stack([cols, rows], axis=1)).max() < 1e-9
        assert np.allclose(z[0], depths[b][rows, cols], rtol=1e-6)        # depth is camera z
        _, dist = _scene_distance(mesh, pts)
        assert dist.max() < 1e-5                                           # and lies on the surface
        assert np.array_equal(masks[b], depths[b] > 0)


def test_box_silhouette_is_exact():
    """Pixel in the silhouette <=> the ray through its centre meets the box (slab test in float64)."""
    ext = np.array([1.2, 0.8, 0.6])
    box = objects.box(extents=ext)
    cams = data.hemisphere(5, radius=3.0, width=70, height=50, fov=45)
    _, depths, masks = data.render(box, cams)
    from geometry import pixel_rays

    o, d = pixel_rays(cams)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-ext / 2 - o) / d
        t2 = (ext / 2 - o) / d
    tnear = np.minimum(t1, t2).max(axis=-1)
    tfar = np.maximum(t1, t2).min(axis=-1)
    margin = tfar - tnear
    hit = (margin > 0) & (tfar > 0)
    clear = np.abs(margin) > 1e-4                      # rays that do not graze an edge
    assert np.array_equal(masks[clear], hit[clear])
    assert np.allclose(depths[hit & clear], tnear[hit & clear], rtol=1e-5)
    assert (depths[~masks] == 0).all()


def test_shading_background_and_options(mug_views):
    mesh, cams, (images, depths, masks) = mug_views
    assert images.shape == (3, 60, 84, 3) and images.dtype == np.uint8
    assert (images[~masks] == 0).all()                 # solid black background by default
    sphere = objects.sphere()
    cam = data.turntable(1, elevation=0, radius=3.0, width=64, height=64)
    lit, _, m = data.render(sphere, cam, light=(1, 0, 0), ambient=0.2, background_color=(0, 0, 255))
    img = lit[0].astype(float)
    front = img[32, 25:40].mean()                     # the camera sits on +x, facing the light
    lit_back, _, _ = data.render(sphere, cam, light=(-1, 0, 0), ambient=0.2)
    back = lit_back[0].astype(float)[32, 25:40].mean()
    assert front > 3 * back > 0                        # Lambertian: lit vs ambient only
    assert (lit[0][~m[0]] == [0, 0, 255]).all()
    noisy, _, _ = data.render(sphere, data.turntable(2, width=32, height=32), background="noise", seed=1)
    assert noisy[0].std() > 5 and not np.array_equal(noisy[0], noisy[1])
    photo = np.full((10, 20, 3), 77, np.uint8)
    given, _, gm = data.render(sphere, cam, background=photo)
    assert (given[0][~gm[0]] == 77).all()
    shadowed, _, _ = data.render([sphere, _ground()], data.turntable(1, elevation=40, width=48, height=48),
                                 light=(0, 0, 1), shadows=True)
    unshadowed, _, _ = data.render([sphere, _ground()], data.turntable(1, elevation=40, width=48, height=48),
                                   light=(0, 0, 1), shadows=False)
    assert shadowed.sum() < unshadowed.sum()


def _ground():
    g = trimesh.Trimesh([[-5, -5, -0.8], [5, -5, -0.8], [5, 5, -0.8], [-5, 5, -0.8]], [[0, 1, 2], [0, 2, 3]])
    g.metadata["silhouette"] = False
    return g


def test_ground_is_not_in_silhouettes():
    cams = data.turntable(2, elevation=30, width=40, height=40)
    _, depths, masks = data.render([objects.sphere(), _ground()], cams)
    _, _, sphere_masks = data.render(objects.sphere(), cams)
    assert np.array_equal(masks, sphere_masks)
    assert (depths > 0).mean() > sphere_masks.mean()   # the ground has depth but no silhouette


def test_render_views_multiview():
    mv = data.render_views(objects.torus(resolution=32), data.turntable(3, width=32, height=24))
    assert mv.format == "render" and len(mv) == 3 and mv.depths is not None
    assert np.all(mv.bounds[0][:2] < -0.85) and np.all(mv.bounds[1][:2] > 0.85) and mv.bounds[1][2] > 0.25


def test_render_errors():
    s = objects.sphere()
    with pytest.raises(ValueError, match="width and height"):
        data.render(s, Camera(np.eye(3), np.eye(3), [0, 0, 3]))
    with pytest.raises(TypeError, match="mesh_or_scene must be"):
        data.render("mesh.ply", data.turntable(1))
    with pytest.raises(ValueError, match="light must be"):
        data.render(s, data.turntable(1, width=8, height=8), light=(0, 0, 0))
    with pytest.raises(ValueError, match="background must be"):
        data.render(s, data.turntable(1, width=8, height=8), background="checker")


# ---------------------------------------------------------------------------------- carving
def _farthest_point_order(directions):
    order = [0]
    dist = np.linalg.norm(directions - directions[0], axis=1)
    while len(order) < len(directions):
        i = int(np.argmax(dist))
        order.append(i)
        dist = np.minimum(dist, np.linalg.norm(directions - directions[i], axis=1))
    return order


def test_hull_contains_object_and_improves_with_views():
    """36 rendered views of a torus; hulls from nested, evenly spread subsets of 4, 8, 16, 36 views.

    Every voxel whose centre lies deeper inside the torus than the largest pixel footprint is kept
    (the hull contains the object up to the pixel grid), and IoU with the true voxelisation rises.
    """
    carve = pytest.importorskip("carve")
    import open3d as o3d

    mesh = objects.torus(resolution=64)
    cams = data.hemisphere(36, radius=3.2, min_elevation=-30, max_elevation=75, fov=40, width=120, height=120)
    _, depths, sil = data.render(mesh, cams)
    lo, hi = mesh.bounds[0] - 0.05, mesh.bounds[1] + 0.05
    order = _farthest_point_order(cams.center / np.linalg.norm(cams.center, axis=1, keepdims=True))
    footprint = (3.2 + np.linalg.norm(hi - lo) / 2) / cams.K[:, 0, 0].min()   # world size of a pixel, far side
    table = {}
    truth = deep = None
    for k in (4, 8, 16, 36):
        idx = sorted(order[:k])
        grid = carve.carve(sil[idx], cams[idx], resolution=64, bounds=(lo, hi), method="dense")
        if truth is None:
            centres = grid.lo + (np.argwhere(np.ones(grid.shape, bool)) + 0.5) * grid.voxel_size
            scene, _ = _scene_distance(mesh, centres[:1])
            truth = objects.contains(mesh, centres).reshape(grid.shape)
            q = o3d.core.Tensor(centres.astype(np.float32))
            deep = (scene.compute_signed_distance(q).numpy() < -footprint).reshape(grid.shape)
        hull = grid.occupancy
        assert hull[deep].all(), f"{k} views carved {np.count_nonzero(deep & ~hull)} voxels deep inside"
        table[k] = np.count_nonzero(hull & truth) / np.count_nonzero(hull | truth)
    ious = [table[k] for k in (4, 8, 16, 36)]
    assert all(a < b for a, b in zip(ious, ious[1:])), table
    assert ious[0] < 0.9 and ious[-1] > 0.93, table


def test_absurd_requests_are_refused_before_allocating():
    """data.synthetic(views=10**7) once allocated 3.4 GB before failing: now it fails at once."""
    import tracemalloc

    data.synthetic("sphere", views=1, size=(8, 8))  # imports and the object's mesh, outside the measure
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=r"rendering 10000000 views of 320 x 240 px needs about .* GiB"):
            data.synthetic(views=10**7)
        with pytest.raises(MemoryError, match="render fewer or smaller views"):
            data.render(data.objects.sphere(), data.turntable(4, width=10**6, height=10**6))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MiB allocated before the refusal"


def test_several_lights_are_the_mean_of_each_alone():
    mesh = data.objects.textured(data.objects.sphere())
    cams = data.turntable(2, width=32, height=24)
    lights = [(1.0, 0.0, 0.5), (-0.5, 1.0, 0.2)]
    both, _, _ = data.render(mesh, cams, light=lights, ambient=0.2)
    alone = [data.render(mesh, cams, light=l, ambient=0.2)[0].astype(float) for l in lights]
    assert np.abs(both.astype(float) - (alone[0] + alone[1]) / 2).max() <= 1.0  # 8-bit rounding
    with pytest.raises(ValueError, match="light must be a non-zero"):
        data.render(mesh, cams, light=[(1, 0, 0), (0, 0, 0)])


def test_textured_objects_and_the_bowl():
    bowl = data.objects.bowl(resolution=48)
    assert bowl.is_watertight and 0.2 < bowl.volume < 0.5
    assert not data.objects.contains(bowl, np.array([[0.0, 0.0, 0.2]]))[0]   # inside the cup is empty
    cams = data.turntable(1, elevation=40, width=48, height=36)
    plain, _, mask = data.render(bowl, cams)
    painted, _, mask2 = data.render(data.objects.textured(bowl, kind="patches"), cams)
    assert (mask == mask2).all() and painted[mask].std() > plain[mask].std()
    with pytest.raises(ValueError, match="texture kind must be"):
        data.objects.textured(bowl, kind="plaid")
