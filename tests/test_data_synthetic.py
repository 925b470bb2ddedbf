"""Procedural objects, camera rigs and learning scenes."""
from __future__ import annotations

import time

import numpy as np
import pytest

import data
from data import objects, scenes
from geometry import Camera, depth_to_points, pixel_rays, project

GENUS = {"sphere": 0, "box": 0, "torus": 1, "mug": 1, "bowl": 0, "table": 2, "pretzel": 2, "urchin": 0}


@pytest.mark.parametrize("name", objects.NAMES)
def test_objects_are_watertight_with_their_genus(name):
    kwargs = {} if name in ("sphere", "box") else {"resolution": 56 if name != "table" else 72}
    mesh = objects.get(name, **kwargs)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.body_count == 1
    assert mesh.volume > 0.05
    assert (2 - mesh.euler_number) // 2 == GENUS[name]
    assert np.all(mesh.bounds[0] >= -1.0) and np.all(mesh.bounds[1] <= 1.0)
    assert mesh.visual.kind in ("vertex", "face")
    assert mesh.metadata["name"] == name


def test_object_volumes_converge():
    """The torus volume is 2 pi^2 R r^2; the meshed one is close and closer at higher resolution."""
    exact = 2 * np.pi ** 2 * 0.6 * 0.25 ** 2
    coarse = abs(objects.torus(resolution=32).volume - exact) / exact
    fine = abs(objects.torus(resolution=96).volume - exact) / exact
    assert fine < 0.01 and fine < coarse


def test_objects_unknown_name():
    with pytest.raises(ValueError, match="name must be one of"):
        objects.get("teapot")


def test_turntable_geometry():
    cams = data.turntable(12, elevation=30, radius=4.0, target=(0.1, -0.2, 0.3), width=80, height=60, start=15)
    assert len(cams) == 12 and (cams.width, cams.height) == (80, 60)
    rel = cams.center - np.array([0.1, -0.2, 0.3])
    assert np.allclose(np.linalg.norm(rel, axis=1), 4.0)
    assert np.allclose(np.degrees(np.arcsin(rel[:, 2] / 4.0)), 30.0)
    assert np.allclose(np.degrees(np.arctan2(rel[0, 1], rel[0, 0])), 15.0)
    uv, _, valid = project(np.array([[0.1, -0.2, 0.3], [0.1, -0.2, 0.8]]), cams)
    assert valid.all()
    assert np.allclose(uv[:, 0], [79 / 2, 59 / 2])      # the target at the image centre
    assert (uv[:, 1, 1] < uv[:, 0, 1]).all()               # world up is up in the image


def test_hemisphere_spread():
    cams = data.hemisphere(40, radius=2.0, min_elevation=10, max_elevation=70)
    d = cams.center / 2.0
    el = np.degrees(np.arcsin(d[:, 2]))
    assert el.min() >= 10 and el.max() <= 70
    cos = d @ d.T - 2 * np.eye(40)
    nearest = np.degrees(np.arccos(np.clip(cos.max(axis=1), -1, 1)))
    assert nearest.min() > 8 and nearest.max() < 30          # evenly spread, no clumps or gaps
    with pytest.raises(ValueError, match="elevations"):
        data.hemisphere(4, max_elevation=90)
    with pytest.raises(ValueError, match="n must be a positive"):
        data.turntable(0)


def test_scene_is_deterministic_and_size_independent():
    a = scenes.sample(7, size=(64, 80))
    b = scenes.sample(7, size=(64, 80))
    assert all(np.array_equal(a[k], b[k]) for k in ("image", "depth", "mask"))
    big = scenes.sample(7, size=(128, 160))
    cam = big["camera"].resized(80, 64)
    assert np.allclose(cam.K, a["camera"].K) and np.allclose(cam.R, a["camera"].R) and np.allclose(cam.T, a["camera"].T)
    assert abs(a["mask"].mean() - big["mask"].mean()) < 0.02
    assert a["image"].shape == (64, 80, 3) and a["image"].dtype == np.uint8
    assert a["depth"].shape == (64, 80) and a["depth"].dtype == np.float32 and a["mask"].dtype == bool
    assert not np.array_equal(scenes.sample(8, size=(64, 80))["image"], a["image"])


def test_scene_depth_is_metric():
    s = scenes.sample(3, size=(96, 96))
    scene = scenes.generate(3)
    ground = (s["depth"] > 0) & ~s["mask"]
    pts = depth_to_points(np.where(ground, s["depth"], 0), s["camera"])
    assert len(pts) > 100 and np.abs(pts[:, 2]).max() < 1e-4          # ground pixels lie on z = 0
    objs = depth_to_points(np.where(s["mask"], s["depth"], 0), s["camera"])
    assert objs[:, 2].min() > -1e-4                                     # objects stand on the ground
    assert np.allclose(s["camera"].center[0], scene.eye)


def test_scene_sky_has_no_depth_and_the_floor_has():
    """A ray that points up (world z >= 0) from an eye above the floor never meets it: unless it
    hits an object, its pixel is sky and carries no depth. A ray that meets z = 0 inside the
    ground square (30 units a side from the origin) and misses the objects sees the floor, whose
    depth is the ray parameter. Seed 1 looks over the horizon."""
    s = scenes.sample(1, size=(96, 96))
    origins, directions = pixel_rays(s["camera"])
    o, d = origins[0], directions[0]
    sky = (d[..., 2] >= 0) & ~s["mask"]
    assert o[0, 0, 2] > 0 and sky.sum() > 100                           # the view shows sky
    assert (s["depth"][sky] == 0).all()
    t = np.where(d[..., 2] < 0, -o[..., 2] / np.minimum(d[..., 2], -1e-12), np.inf)
    hit = o + t[..., None] * d
    floor = ~sky & ~s["mask"] & (np.abs(hit[..., :2]).max(-1) < 29.9)
    assert floor.sum() > 1000
    assert np.allclose(s["depth"][floor], t[floor], rtol=1e-4)


def _floor_parity_accuracy(sample, square):
    """Share of ground pixels (inside cells, near the camera) whose colour tells their checker parity
    for cells of side ``square``: about 1 when the floor's squares have that size, about 0.5 if not."""
    ground = (sample["depth"] > 0) & ~sample["mask"]
    pts = depth_to_points(np.where(ground, sample["depth"], 0), sample["camera"])
    q = pts[:, :2] / square + 0.5  # cells are centred on the lattice
    parity = (np.floor(q).sum(1) % 2).astype(bool)
    inner = (np.abs(q - np.round(q)).min(1) > 0.15) & (np.linalg.norm(pts - sample["camera"].center[0], axis=1) < 6)
    rgb, p = sample["image"][ground].astype(float)[inner], parity[inner]
    m0, m1 = rgb[~p].mean(0), rgb[p].mean(0)
    return float(((np.linalg.norm(rgb - m1, axis=1) < np.linalg.norm(rgb - m0, axis=1)) == p).mean())


def test_scenes_carry_a_metric_cue():
    """One field of view for all, and floor squares of FLOOR_SQUARE units: depth is readable from a picture."""
    for seed in range(3):
        s = scenes.sample(seed, size=(96, 128))
        f = 64 / np.tan(np.radians(scenes.FOV) / 2)
        assert np.isclose(s["camera"].K[0, 0, 0], f) and np.isclose(s["camera"].K[0, 1, 1], f)
        assert _floor_parity_accuracy(s, scenes.FLOOR_SQUARE) > 0.9
        assert _floor_parity_accuracy(s, 0.8 * scenes.FLOOR_SQUARE) < 0.75  # the test can tell sizes apart


def test_scene_rate():
    scenes.sample(0)  # imports and first-call set-up
    t = time.perf_counter()
    n = 20
    masks = [scenes.sample(1000 + i)["mask"] for i in range(n)]
    rate = n / (time.perf_counter() - t)
    assert rate > 8, f"{rate:.1f} samples/s"
    assert sum(m.any() for m in masks) >= n - 2                         # objects are in view


def test_scene_errors():
    with pytest.raises(ValueError, match="size must be"):
        scenes.sample(0, size=128)
    with pytest.raises(ValueError, match="seed must be"):
        scenes.sample(-1)
    assert isinstance(scenes.camera(scenes.generate(0), (32, 48)), Camera)
