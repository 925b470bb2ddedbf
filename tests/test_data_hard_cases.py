"""The rendered hard cases: ground truth of the object alone, and each case hard in its own way.

Also the renderer's specular highlights, which the cases use: off by default (bit-identical
images), and where they are on they only ever brighten pixels the light reaches.
"""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

import data
from data import objects
from data.hard_cases import EXPOSURE, HARD_CASES, expose, hard_case, hard_case_scene

VIEWS, SIZE = 6, (96, 72)  # small: the whole file runs in seconds


@pytest.fixture(scope="module")
def cases():
    return {name: hard_case(name, views=VIEWS, size=SIZE, progress=False) for name in HARD_CASES}


def _touches_border(masks):
    """(B,) whether each (B, H, W) mask has a pixel in the first or last row or column."""
    m = np.asarray(masks)
    return m[:, [0, -1], :].any(axis=(1, 2)) | m[:, :, [0, -1]].any(axis=(1, 2))


def _support(mv):
    """(B, H, W) pixels whose ray hits the support first (drawn, with depth, not in the silhouette)."""
    return (np.stack(mv.depths) > 0) & ~np.stack(mv.silhouettes)


def test_every_case_renders(cases):
    assert data.hard_cases.HARD_CASES == HARD_CASES == ("dark", "floor", "cloth", "turntable")
    for name, mv in cases.items():
        assert isinstance(mv, data.MultiView) and mv.format == "render" and len(mv) == VIEWS, name
        assert (mv.width, mv.height) == SIZE and mv.images[0].dtype == np.uint8
        assert mv.names == [f"{i:04d}" for i in range(VIEWS)]
        sil = np.stack(mv.silhouettes)
        assert sil.any(axis=(1, 2)).all() and not sil.all(axis=(1, 2)).any(), name
        obj = hard_case_scene(name, views=VIEWS, size=SIZE).object
        assert (mv.bounds[0] < obj.bounds[0]).all() and (mv.bounds[1] > obj.bounds[1]).all(), name


def test_ground_truth_is_the_object_alone(cases):
    """GT = data.render's silhouettes of the object by itself; the support's pixels are never in it."""
    for name, mv in cases.items():
        scene = hard_case_scene(name, views=VIEWS, size=SIZE)
        alone = data.render(scene.object, scene.cameras, progress=False).silhouettes
        assert np.array_equal(np.stack(mv.silhouettes), alone), name
        if scene.supports:
            support = _support(mv)
            assert support.mean() > 0.1, name                      # the support is drawn, and large
            only = data.render(scene.supports, scene.cameras, progress=False).depths > 0
            assert not (only & ~alone & ~support).any(), name      # where the support shows, it is not object
            assert all(m.metadata["silhouette"] is False for m in scene.supports)


def test_floor_and_cloth_reach_the_borders_the_disc_does_not(cases):
    for name in ("floor", "cloth"):
        assert _touches_border(_support(cases[name])).all(), name
    depths = np.stack(cases["floor"].depths)
    assert (depths[:, [0, -1], :] > 0).all() and (depths[:, :, [0, -1]] > 0).all()   # floor fills the frame
    assert not _touches_border(_support(cases["turntable"])).any()


def test_turntable_object_leaves_the_frame_in_some_views(cases):
    assert not _touches_border(cases["dark"].silhouettes).any()
    out = _touches_border(cases["turntable"].silhouettes)
    assert 1 <= out.sum() < VIEWS
    out24 = _touches_border(data.render(*_object_and_cameras("turntable", 24), progress=False).silhouettes)
    assert 3 <= out24.sum() <= 5                                    # about one in six, at full size too


def _object_and_cameras(name, views):
    scene = hard_case_scene(name, views=views, size=(160, 120))
    return scene.object, scene.cameras


def test_dark_side_is_dark_grey_not_black(cases):
    mv = cases["dark"]
    ims, sil = np.stack(mv.images).astype(float).mean(axis=3), np.stack(mv.silhouettes)
    assert np.median(ims[~sil]) < 10                                # a black backdrop
    obj = ims[sil]
    assert 15 <= np.percentile(obj, 1) <= 40 and (obj < 45).mean() > 0.05   # the far side: dark grey


def test_cloth_exposure_differs_between_views(cases):
    scene = hard_case_scene("cloth", views=VIEWS, size=SIZE)
    assert np.isclose(scene.gains.min(), EXPOSURE[0]) and np.isclose(scene.gains.max(), EXPOSURE[1])
    mv = cases["cloth"]
    support = _support(mv)
    level = np.array([im[s].mean() for im, s in zip(mv.images, support)])   # the same cloth, seen brighter or darker
    assert level.max() > 1.5 * level.min()
    assert np.corrcoef(level, scene.gains)[0, 1] > 0.8
    for name in ("dark", "floor", "turntable"):
        assert (hard_case_scene(name, views=VIEWS, size=SIZE).gains == 1).all()


def test_seed_decides_the_capture():
    a = hard_case("floor", views=2, size=(48, 36), progress=False)
    b = hard_case("floor", views=2, size=(48, 36), progress=False)
    c = hard_case("floor", views=2, size=(48, 36), seed=1, progress=False)
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images))
    assert not np.array_equal(a.images[0], c.images[0])


def test_expose():
    im = np.full((2, 3, 4, 3), 100, np.uint8)
    assert np.array_equal(expose(im, [1.0, 1.0], noise=0), im)
    out = expose(im, [0.5, 3.0], noise=0)
    assert (out[0] == 50).all() and (out[1] == 255).all()           # clipped, not wrapped
    noisy = expose(im, [1.0, 1.0], noise=2.0, seed=3).astype(float)
    assert 0.5 < noisy.std() < 4 and abs(noisy.mean() - 100) < 1


def test_hard_case_errors():
    with pytest.raises(ValueError, match="name must be one of"):
        hard_case("shiny")
    for views in (1, 2.5, "6", True):
        with pytest.raises(ValueError, match="views must be"):
            hard_case("dark", views=views)
    for size in ((96,), (0, 72), (96.0, 72), "96x72", (96, True)):
        with pytest.raises(ValueError, match="size must be"):
            hard_case_scene("dark", size=size)
    with pytest.raises(ValueError, match="seed must be"):
        hard_case("dark", seed=-1)
    with pytest.raises(ValueError, match="gains must be"):
        expose(np.zeros((2, 4, 4, 3), np.uint8), [1.0])
    with pytest.raises(ValueError, match="images must be"):
        expose(np.zeros((4, 4, 3), np.uint8), [1.0])


def test_lazy_registration():
    assert "hard_cases" in dir(data)
    assert data.hard_cases.hard_case is hard_case


# ------------------------------------------------------------------------------------- specular


def _ground(z=-0.8):
    g = trimesh.Trimesh([[-5, -5, z], [5, -5, z], [5, 5, z], [-5, 5, z]], [[0, 1, 2], [0, 2, 3]])
    g.metadata["silhouette"] = False
    return g


@pytest.fixture(scope="module")
def glossy_scene():
    return [objects.sphere(), _ground()], data.turntable(3, elevation=35, radius=3.2, width=64, height=48)


def test_specular_off_is_bit_identical(glossy_scene):
    meshes, cams = glossy_scene
    for kw in (dict(), dict(light="camera"), dict(shadows=True, ambient=0.1), dict(background="noise", seed=2)):
        plain = data.render(meshes, cams, **kw)
        off = data.render(meshes, cams, specular=0.0, shininess=3.0, **kw)
        assert all(np.array_equal(a, b) for a, b in zip(plain, off)), kw
    matte = [m.copy() for m in meshes]
    for m in matte:
        m.metadata["specular"] = 0.0
    assert np.array_equal(data.render(matte, cams, specular=0.8).images, data.render(meshes, cams).images)


def test_specular_brightens_only_lit_pixels(glossy_scene):
    meshes, cams = glossy_scene
    for light in ((0.3, -0.2, 1.0), "camera"):
        # with no ambient light a pixel the light does not reach (facing away, or in shadow) is black
        base = data.render(meshes, cams, light=light, ambient=0.0, shadows=True).images.astype(int)
        glossy = data.render(meshes, cams, light=light, ambient=0.0, shadows=True, specular=0.6).images.astype(int)
        assert (glossy >= base).all(), light
        assert (glossy[base.max(axis=3) == 0] == 0).all(), light    # unlit stays unlit
        gain = (glossy - base).max(axis=3)
        assert gain.max() > 100, light                              # a real highlight...
        assert (gain > 20).mean() < 0.2, light                      # ...on a small part of the image
    sharp = data.render(meshes, cams, ambient=0.0, specular=0.6, shininess=200.0).images.astype(int)
    broad = data.render(meshes, cams, ambient=0.0, specular=0.6, shininess=10.0).images.astype(int)
    assert (sharp <= broad).all() and (sharp < broad).any()         # larger exponent: smaller highlight


def test_specular_per_mesh_override(glossy_scene):
    meshes, cams = glossy_scene
    ground = meshes[1].copy()
    ground.metadata["specular"] = 0.0
    base, _, masks = data.render(meshes, cams, ambient=0.2)
    glossy = data.render([meshes[0], ground], cams, ambient=0.2, specular=0.7).images
    assert np.array_equal(glossy[~masks], base[~masks])             # the matte floor is unchanged
    assert (glossy[masks].astype(int) > base[masks]).any()          # the sphere shines


def test_specular_errors():
    s, cam = objects.sphere(), data.turntable(1, width=8, height=8)
    for bad in (-0.1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="specular must be"):
            data.render(s, cam, specular=bad)
    for bad in (0.0, -3.0, float("inf"), None):
        with pytest.raises(ValueError, match="shininess must be"):
            data.render(s, cam, specular=0.5, shininess=bad)
    m = s.copy()
    m.metadata["specular"] = 2.0
    with pytest.raises(ValueError, match=r"metadata\['specular'\] must be"):
        data.render(m, cam)
