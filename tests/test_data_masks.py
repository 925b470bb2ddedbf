"""Masks where users keep them (data.masks): mask folders beside images or calibration, matched by
stem; nerfstudio mask_path and RGBA alpha; datasets of masks alone; polarity from the layout's
convention or the border rule. Each layout is written here in tmp_path from a small render."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import data
from data import FormatError
from data.images import write_image
from data.masks import match_masks, polarity, threshold_masks
from test_data_formats import assert_same_cameras, write_colmap_text, write_middlebury, write_oxford

W, H = 64, 48  # the size write_colmap_text writes into cameras.txt


@pytest.fixture(scope="module")
def source():
    """Five rendered views of a torus that sits well inside every image (its masks never touch the border)."""
    mv = data.synthetic("torus", views=5, size=(W, H), seed=1)
    assert all(not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any()) for m in mv.silhouettes)
    return mv


def same_masks(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and (x == y).all() for x, y in zip(a, b))


def bright(m):
    """A bool mask as 8-bit, 255 on the object."""
    return np.where(m, 255, 0).astype(np.uint8)


def write_tum(mv, root, *, images=True, masks="masks", ext=".png", image_ext=".jpg", encode=bright):
    (root / "calib").mkdir(parents=True)
    for i, P in enumerate(mv.cameras.P):
        (root / "calib" / f"{i:04d}.txt").write_text("CONTOUR\n" + "\n".join(" ".join(f"{v:.17g}" for v in r)
                                                                        for r in P) + "\n")
        if images:
            (root / "images").mkdir(exist_ok=True)
            write_image(root / "images" / f"{i:04d}{image_ext}", mv.images[i])
        if masks:
            (root / masks).mkdir(exist_ok=True)
            write_image(root / masks / f"{i:04d}{ext}", encode(mv.silhouettes[i]))
    return root


# ------------------------------------------------------------------------------- folders x formats


def test_tum_masks_folder_across_extensions(source, tmp_path):
    """masks/0003.png pairs with images/0003.jpg; 255 is the object here (border rule)."""
    mv = data.load(write_tum(source, tmp_path / "ds"), verbose=False)
    assert mv.format == "tum" and len(mv.images) == 5
    assert same_masks(mv.silhouettes, source.silhouettes)


def test_tum_silhouettes_keep_the_layout_convention(source, tmp_path):
    """silhouettes/ in TUM: exactly 0 is the object; a grey edge pixel (1..254) is background."""
    def tum_style(m):
        out = np.where(m, 0, 255).astype(np.uint8)
        out[np.roll(m, 1, axis=1) & ~m] = 60  # an anti-aliased ring just outside the object, dark-ish
        return out

    mv = data.load(write_tum(source, tmp_path / "ds", masks="silhouettes", encode=tum_style), verbose=False)
    assert same_masks(mv.silhouettes, source.silhouettes)


def test_tum_silhouettes_inverted_follow_the_border_and_warn(source, tmp_path):
    root = write_tum(source, tmp_path / "ds", masks="silhouettes", encode=bright)
    with pytest.warns(UserWarning, match="against the layout's convention"):
        mv = data.load(root, verbose=False)
    assert same_masks(mv.silhouettes, source.silhouettes)


@pytest.mark.parametrize("folder", ["silhouettes", "masks", "mask", "sil"])
def test_colmap_masks_alone(source, tmp_path, folder):
    """A COLMAP model whose project holds only sil/view_00.png ... (images.txt names view_00.png)."""
    write_colmap_text(source, tmp_path / "proj")
    for f in (tmp_path / "proj" / "images").iterdir():
        f.unlink()
    (tmp_path / "proj" / "images").rmdir()
    (tmp_path / "proj" / folder).mkdir()
    for i, m in enumerate(source.silhouettes):
        write_image(tmp_path / "proj" / folder / f"view_{i:02d}.bmp", np.where(m, 0, 255).astype(np.uint8))
    assert data.detect(tmp_path / "proj")[0] == "colmap"
    mv = data.load(tmp_path / "proj", verbose=False)
    assert mv.images is None and "no images" in repr(mv)
    assert mv.names == [f"view_{i:02d}" for i in range(5)]
    assert_same_cameras(mv.cameras, source.cameras)
    assert same_masks(mv.silhouettes, source.silhouettes)      # 0 = object here: the border said so
    sub = mv[[0, 2]]
    assert sub.images is None and same_masks(sub.silhouettes, [source.silhouettes[0], source.silhouettes[2]])


def test_colmap_masks_beside_images_in_colmaps_own_naming(source, tmp_path):
    """COLMAP's mask convention: the mask of view_03.png is masks/view_03.png.png."""
    write_colmap_text(source, tmp_path / "proj")
    (tmp_path / "proj" / "masks").mkdir()
    for i, m in enumerate(source.silhouettes):
        write_image(tmp_path / "proj" / "masks" / f"view_{i:02d}.png.png", bright(m))
    mv = data.load(tmp_path / "proj" / "sparse" / "0", verbose=False)
    assert mv.images is not None and same_masks(mv.silhouettes, source.silhouettes)
    assert data.load(tmp_path / "proj", silhouettes=False, verbose=False).silhouettes is None


def nerf(mv, root, *, mask_path=True, alpha=None, mask_values=(0, 1)):
    """A nerfstudio-style transforms.json: RGB images (alpha only when given) and per-frame mask_path."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    K, c2w = mv.cameras.K, mv.cameras.c2w("opengl")
    frames = []
    for i, im in enumerate(mv.images):
        write_image(root / "images" / f"frame_{i:05d}.jpg" if alpha is None else root / "images" / f"frame_{i:05d}.png",
                    im, alpha=None if alpha is None else alpha(mv.silhouettes[i]))
        fr = {"file_path": f"images/frame_{i:05d}.{'jpg' if alpha is None else 'png'}",
              "transform_matrix": c2w[i].tolist()}
        if mask_path:
            lo, hi = mask_values
            write_image(root / "masks" / f"frame_{i:05d}.png", np.where(mv.silhouettes[i], hi, lo).astype(np.uint8))
            fr["mask_path"] = f"masks/frame_{i:05d}.png"
        frames.append(fr)
    meta = {"fl_x": K[0, 0, 0], "fl_y": K[0, 1, 1], "cx": K[0, 0, 2] + 0.5, "cy": K[0, 1, 2] + 0.5, "w": W, "h": H,
            "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def test_blender_mask_path(source, tmp_path):
    """nerfstudio masks are 0/1 (the midpoint of the dataset's range, 0.5, splits them)."""
    mv = data.load(nerf(source, tmp_path / "ns"), verbose=False)
    assert mv.format == "blender" and len(mv.images) == 5
    assert same_masks(mv.silhouettes, source.silhouettes)
    assert_same_cameras(mv.cameras, source.cameras)


def test_blender_mask_path_missing_for_one_frame(source, tmp_path):
    root = nerf(source, tmp_path / "ns")
    meta = json.loads((root / "transforms.json").read_text())
    del meta["frames"][3]["mask_path"]
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    with pytest.raises(FormatError, match="frame 3 has no mask_path"):
        data.load(root, verbose=False)


def test_blender_rgba_alpha(source, tmp_path):
    mv = data.load(nerf(source, tmp_path / "ns", mask_path=False, alpha=bright), verbose=False)
    assert same_masks(mv.silhouettes, source.silhouettes)
    # a fully opaque alpha says nothing about the object: no silhouettes
    opaque = nerf(source, tmp_path / "op", mask_path=False, alpha=lambda m: np.full(m.shape, 255, np.uint8))
    assert data.load(opaque, verbose=False).silhouettes is None


def test_middlebury_and_oxford_masks(source, tmp_path):
    write_middlebury(source, tmp_path / "mb")
    (tmp_path / "mb" / "sil").mkdir()
    for i, m in enumerate(source.silhouettes):
        write_image(tmp_path / "mb" / "sil" / f"toy{i:04d}.png", bright(m))
    assert same_masks(data.load(tmp_path / "mb", verbose=False).silhouettes, source.silhouettes)
    for f in (tmp_path / "mb").glob("toy*.png"):
        f.unlink()                                                       # masks alone
    mv = data.load(tmp_path / "mb", verbose=False)
    assert mv.images is None and same_masks(mv.silhouettes, source.silhouettes)

    write_oxford(source, tmp_path / "ox", extra_images=0)
    for f in (tmp_path / "ox").glob("viff.*.ppm"):
        f.unlink()
    (tmp_path / "ox" / "masks").mkdir()
    for i, m in enumerate(source.silhouettes):
        write_image(tmp_path / "ox" / "masks" / f"viff.{i:03d}.png", bright(m))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the frame check may warn about the toy P; not this test's concern
        mv = data.load(tmp_path / "ox", verbose=False)
    assert mv.format == "oxford" and mv.images is None and same_masks(mv.silhouettes, source.silhouettes)


def test_masks_alone_save_round_trip_and_carve(source, tmp_path):
    alone = source.replace(images=None, depths=None)
    assert repr(alone).startswith("MultiView(5 views, 64x48, no images, silhouettes")
    for fmt in ("tum", "blender"):
        mv = data.load(data.save(alone, tmp_path / fmt, format=fmt), verbose=False)
        assert mv.format == fmt
        assert mv.images is None and same_masks(mv.silhouettes, source.silhouettes)
        assert_same_cameras(mv.cameras, source.cameras, tol=1e-9)
    assert not (tmp_path / "tum" / "images").exists()
    assert data.detect(tmp_path / "tum") == ("tum", "calib/*.txt and silhouettes/, no images")
    carve = pytest.importorskip("carve")
    grid = carve.carve(mv.silhouettes, mv.cameras, resolution=24, bounds=tuple(source.bounds))
    mesh = grid.to_mesh()                      # uncoloured: nothing to colour it with
    assert grid.count() > 0 and len(mesh.faces) > 0
    with pytest.raises(ValueError, match="needs images or silhouettes"):
        data.MultiView(None, source.cameras)


# ------------------------------------------------------------------------------------- polarity


def test_polarity_inverted_detected(source, tmp_path):
    """The same masks written with 0 on the object in masks/ load the same (border rule)."""
    root = write_tum(source, tmp_path / "ds", encode=lambda m: np.where(m, 0, 255).astype(np.uint8))
    assert same_masks(data.load(root, verbose=False).silhouettes, source.silhouettes)


def test_polarity_ambiguous_is_an_error(source, tmp_path):
    """Object over the left half of every image: both classes own half the border."""
    def half(m):
        out = np.zeros(m.shape, np.uint8)
        out[:, : m.shape[1] // 2] = 255
        return out

    root = write_tum(source, tmp_path / "ds", encode=half)
    with pytest.raises(FormatError, match="cannot tell which value marks the object") as info:
        data.load(root, verbose=False)
    assert info.value.path.name == "masks"
    mv = data.load(root, mask_object="bright", verbose=False)
    assert all(m[:, : W // 2].all() and not m[:, W // 2:].any() for m in mv.silhouettes)


def test_polarity_masks_that_disagree(source, tmp_path):
    def encode(m, k=iter(range(5))):
        return np.where(m, 0, 255).astype(np.uint8) if next(k) == 2 else bright(m)

    root = write_tum(source, tmp_path / "ds", encode=encode)
    with pytest.raises(FormatError, match=r"masks disagree.*the border of 0002 is mostly bright"):
        data.load(root, verbose=False)


def test_midpoint_threshold_and_one_value():
    m = np.full((8, 8), 10, np.uint8)
    m[2:6, 2:6] = 240
    m[2, 2], m[5, 5] = 130, 120            # anti-aliased: 130 is nearer 240, 120 nearer 10 (midpoint 125)
    [s] = threshold_masks([m], "masks")
    assert s.sum() == 15 and s[2, 2] and not s[5, 5]
    assert polarity([255 - m], "masks") == "dark"
    with pytest.raises(FormatError, match="single value 7"):
        threshold_masks([np.full((4, 4), 7, np.uint8)] * 2, "masks")
    # a mask with one class only carries no vote; the other decides
    assert polarity([np.zeros((8, 8), np.uint8), m], "masks") == "bright"


# ------------------------------------------------------------------------------------- matching


def test_missing_mask_names_the_view(source, tmp_path):
    root = write_tum(source, tmp_path / "ds")
    (root / "masks" / "0003.png").unlink()
    with pytest.raises(FormatError, match="has no mask for view '0003'") as info:
        data.load(root, verbose=False)
    assert info.value.path == root / "masks"


def test_two_masks_for_one_view_and_wrong_size(source, tmp_path):
    root = write_tum(source, tmp_path / "ds")
    write_image(root / "masks" / "0001.bmp", bright(source.silhouettes[1]))
    with pytest.raises(FormatError, match=r"2 masks for view '0001' \(0001.bmp, 0001.png\)"):
        data.load(root, verbose=False)
    (root / "masks" / "0001.bmp").unlink()
    write_image(root / "masks" / "0004.png", bright(source.silhouettes[4])[:-2])
    with pytest.raises(FormatError, match="mask is 64x46, its image is 64x48") as info:
        data.load(root, verbose=False)
    assert info.value.path.name == "0004.png"


def test_match_masks_variants_and_subfolders(tmp_path):
    m = np.zeros((4, 4), np.uint8)
    for rel in ("a_mask.png", "cam1/b.tif", "flat.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        write_image(tmp_path / rel, m)
    found = match_masks(tmp_path, ["a", "cam1/b", "train/flat"])
    assert [f.relative_to(tmp_path).as_posix() for f in found] == ["a_mask.png", "cam1/b.tif", "flat.png"]
    # a flat mask cannot stand for two views in different subfolders with one base name
    with pytest.raises(FormatError, match="no mask for view 'train/flat'"):
        match_masks(tmp_path, ["train/flat", "test/flat"])
