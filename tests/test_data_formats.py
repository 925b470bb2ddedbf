"""Dataset loaders: every format read from fixtures written here by hand (in the format's own
conventions, independently of our loaders), cameras checked by projecting random points, and
malformed input checked to fail naming the file and line."""
from __future__ import annotations

import json
import shutil
import struct
import warnings

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import data
from data import FormatError
from data.frames import NonMetricWarning
from data.images import write_image
from geometry import Camera, project


# ------------------------------------------------------------------------------------- fixtures
W, H = 64, 48
# the source's fy/fx (up to 21% off, so that fx and fy cannot be swapped unseen) is far from square pixels
pytestmark = pytest.mark.filterwarnings("ignore::data.frames.NonMetricWarning")


@pytest.fixture(scope="module")
def source():
    """A rendered MultiView whose cameras have off-centre principal points and fx != fy."""
    eyes = np.array([[3.0, 0.4, 1.2], [-0.6, 3.1, 0.9], [-2.8, -1.0, 1.6], [0.8, -2.9, 0.5], [1.5, 1.5, 2.4]])
    K = np.array([[[70.0 + 3 * i, 0, 30.3 + i], [0, 72.5 - 2 * i, 21.7 - 0.5 * i], [0, 0, 1]] for i in range(5)])
    cams = Camera.look_at(eyes, np.zeros(3), K=K, width=W, height=H)
    return data.render_views(data.objects.torus(resolution=48), cams, background="noise", seed=3)


def assert_same_cameras(a: Camera, b: Camera, tol=1e-6):
    assert len(a) == len(b)
    assert (a.width, a.height) == (b.width, b.height)
    X = np.random.default_rng(0).uniform(-1.5, 1.5, (500, 3))
    ua, da, va = project(X, a)
    ub, db, vb = project(X, b)
    assert (va == vb).all()
    assert np.abs(ua - ub).max() < tol, np.abs(ua - ub).max()
    assert np.abs(da - db).max() < 1e-6 * np.abs(da).max()


def write_tum(mv, root, rows=None):
    (root / "calib").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "silhouettes").mkdir()
    for i, (P, im, m) in enumerate(zip(mv.cameras.P, mv.images, mv.silhouettes)):
        text = "CONTOUR\n" + "\n".join(" ".join(f"{v:.12g}" for v in r) for r in P) + "\n"
        (root / "calib" / f"{i:04d}.txt").write_text(text if rows is None or i != rows[0] else rows[1])
        write_image(root / "images" / f"{i:04d}.ppm", im)          # any extension OpenCV reads
        write_image(root / "silhouettes" / f"{i:04d}.pgm", np.where(m, 0, 255).astype(np.uint8))


def write_middlebury(mv, root, name="toy", good=(0, 2)):
    root.mkdir(parents=True, exist_ok=True)
    lines = [str(len(mv))]
    for i, (K, R, T, im) in enumerate(zip(mv.cameras.K, mv.cameras.R, mv.cameras.T, mv.images)):
        write_image(root / f"{name}{i:04d}.png", im)
        nums = " ".join(f"{v:.12g}" for v in np.concatenate([K.ravel(), R.ravel(), T]))
        lines.append(f"{name}{i:04d}.png {nums}")
    (root / f"{name}_par.txt").write_text("\n".join(lines) + "\n")
    (root / f"{name}_ang.txt").write_text("ignored\n")
    (root / f"{name}_good_silhouette_images.txt").write_text("\n".join(f"{name}{i:04d}.png" for i in good) + "\n")


def write_oxford(mv, root, extra_images=1):
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    cells = np.empty((1, len(mv)), dtype=object)
    for i, P in enumerate(mv.cameras.P):
        cells[0, i] = P * (2.0 + i)  # any scale: P is homogeneous
    savemat(root / "toy_Ps.mat", {"P": cells})
    for i in range(len(mv) + extra_images):
        write_image(root / f"viff.{i:03d}.ppm", mv.images[i % len(mv)])


def colmap_pose(R, T):
    q = Rotation.from_matrix(R).as_quat()  # x, y, z, w
    return np.array([q[3], q[0], q[1], q[2]]), T


def write_colmap_text(mv, root, model="PINHOLE", params=None):
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (root / "images").mkdir()
    cams = ["# Camera list", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    imgs = ["# Image list", "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
            "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
    for i, (K, R, T, im) in enumerate(zip(mv.cameras.K, mv.cameras.R, mv.cameras.T, mv.images)):
        p = params[i] if params is not None else [K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5]
        cams.append(f"{i + 1} {model} {W} {H} " + " ".join(f"{v:.17g}" for v in p))
        q, t = colmap_pose(R, T)
        # ids deliberately out of name order: the loader orders views by name
        imgs.append(f"{10 - i} " + " ".join(f"{v:.17g}" for v in [*q, *t]) + f" {i + 1} view_{i:02d}.png")
        imgs.append("" if i % 2 else "12.5 7.25 -1 30.0 20.0 4")
        write_image(root / "images" / f"view_{i:02d}.png", im)
    (sparse / "cameras.txt").write_text("\n".join(cams) + "\n")
    (sparse / "images.txt").write_text("\n".join(imgs) + "\n")
    return sparse


def write_colmap_binary(mv, root):
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (root / "images").mkdir()
    cb = struct.pack("<Q", len(mv))
    ib = struct.pack("<Q", len(mv))
    for i, (K, R, T, im) in enumerate(zip(mv.cameras.K, mv.cameras.R, mv.cameras.T, mv.images)):
        cb += struct.pack("<iiQQ", i + 1, 1, W, H) + struct.pack("<4d", K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5)
        q, t = colmap_pose(R, T)
        pts = [(1.5, 2.5, 7), (3.0, 4.0, -1)][: i % 3]
        ib += struct.pack("<i7di", i + 1, *q, *t, i + 1) + f"view_{i:02d}.png".encode() + b"\0"
        ib += struct.pack("<Q", len(pts)) + b"".join(struct.pack("<ddq", *p) for p in pts)
        write_image(root / "images" / f"view_{i:02d}.png", im)
    (sparse / "cameras.bin").write_bytes(cb)
    (sparse / "images.bin").write_bytes(ib)
    return sparse


def write_blender(mv, root, angle_only=False, ext=True):
    root.mkdir(parents=True, exist_ok=True)
    (root / "train").mkdir()
    K = mv.cameras.K
    frames = []
    flip = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV camera axes -> OpenGL (y up, z back)
    for i, (im, m) in enumerate(zip(mv.images, mv.silhouettes)):
        c2w_cv = np.eye(4)
        c2w_cv[:3, :3] = mv.cameras.R[i].T
        c2w_cv[:3, 3] = -mv.cameras.R[i].T @ mv.cameras.T[i]
        write_image(root / "train" / f"r_{i}.png", im, alpha=np.where(m, 255, 0).astype(np.uint8))
        fr = {"file_path": f"./train/r_{i}" + (".png" if ext else ""), "rotation": 0.1,
              "transform_matrix": (c2w_cv @ flip).tolist()}
        if not angle_only:
            fr.update(fl_x=K[i, 0, 0], fl_y=K[i, 1, 1], cx=K[i, 0, 2] + 0.5, cy=K[i, 1, 2] + 0.5, w=W, h=H)
        frames.append(fr)
    meta = {"camera_angle_x": 2 * np.arctan(0.5 * W / K[0, 0, 0]), "frames": frames}
    (root / "transforms_train.json").write_text(json.dumps(meta, indent=2))


def centred(mv):
    """The same views with one shared K, principal point at the image centre, square pixels."""
    f = mv.cameras.K[0, 0, 0]
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]])
    return mv.replace(cameras=Camera(K, mv.cameras.R, mv.cameras.T, W, H))


# --------------------------------------------------------------------------------------- round trips


def test_tum(source, tmp_path):
    write_tum(source, tmp_path / "ds")
    mv = data.load(tmp_path / "ds", verbose=False)
    assert mv.format == "tum" and mv.names == [f"{i:04d}" for i in range(5)]
    assert_same_cameras(mv.cameras, source.cameras)
    assert all((a == b).all() for a, b in zip(mv.images, source.images))
    assert all((a == b).all() for a, b in zip(mv.silhouettes, source.silhouettes))


def test_middlebury(source, tmp_path):
    write_middlebury(source, tmp_path / "mb")
    mv = data.load(tmp_path / "mb", verbose=False)
    assert mv.format == "middlebury" and mv.silhouettes is None
    assert_same_cameras(mv.cameras, source.cameras)
    assert mv.flags["good_silhouette"].tolist() == [True, False, True, False, False]
    assert mv.names[0] == "toy0000"
    # the _par.txt file itself is accepted too
    assert len(data.load(tmp_path / "mb" / "toy_par.txt", verbose=False)) == 5


def test_oxford_pairs_first_n_and_warns(source, tmp_path):
    write_oxford(source, tmp_path / "ox", extra_images=1)
    with pytest.warns(UserWarning, match="viff.005.ppm"):
        mv = data.load(tmp_path / "ox", verbose=False)
    assert mv.format == "oxford" and mv.names == [f"viff.{i:03d}" for i in range(5)]
    assert_same_cameras(mv.cameras, source.cameras)


def test_oxford_pixel_origin(source, tmp_path):
    write_oxford(source, tmp_path / "ox", extra_images=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", NonMetricWarning)  # the fixture's fy/fx (up to 21% off) warns, rightly
        mv = data.load(tmp_path / "ox", format="oxford", pixel_origin=1)
    X = np.random.default_rng(1).uniform(-1, 1, (50, 3))
    assert np.allclose(project(X, mv.cameras)[0], project(X, source.cameras)[0] - 1, atol=1e-6)


def test_colmap_text(source, tmp_path):
    write_colmap_text(source, tmp_path / "proj")
    for path in (tmp_path / "proj", tmp_path / "proj" / "sparse" / "0"):
        mv = data.load(path, verbose=False)
        assert mv.format == "colmap" and mv.names == [f"view_{i:02d}" for i in range(5)]
        assert_same_cameras(mv.cameras, source.cameras)   # includes the half-pixel shift
        assert all((a == b).all() for a, b in zip(mv.images, source.images))


def test_colmap_text_without_points_lines_keeps_every_view(source, tmp_path):
    """Some writers leave out the POINTS2D lines: every line is then an image, none may be skipped."""
    sparse = write_colmap_text(source, tmp_path / "proj")
    lines = (sparse / "images.txt").read_text().splitlines()
    kept = [line for line in lines if line.startswith("#") or "view_" in line]
    (sparse / "images.txt").write_text("\n".join(kept) + "\n")
    mv = data.load(tmp_path / "proj", verbose=False)
    assert mv.names == [f"view_{i:02d}" for i in range(5)]
    assert_same_cameras(mv.cameras, source.cameras)


def test_colmap_simple_pinhole(source, tmp_path):
    src = centred(source)
    K = src.cameras.K[0]
    write_colmap_text(src, tmp_path / "proj", model="SIMPLE_PINHOLE",
                      params=[[K[0, 0], K[0, 2] + 0.5, K[1, 2] + 0.5]] * len(src))
    assert_same_cameras(data.load(tmp_path / "proj", verbose=False).cameras, src.cameras)


def test_colmap_binary(source, tmp_path):
    write_colmap_binary(source, tmp_path / "proj")
    mv = data.load(tmp_path / "proj", verbose=False)
    assert mv.format == "colmap"
    assert_same_cameras(mv.cameras, source.cameras)


def _distort(image, K, dist):
    """The image a camera with lens distortion ``dist`` would have taken (for undistortion tests)."""
    h, w = image.shape[:2]
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pts = np.stack([u.ravel(), v.ravel()], axis=1)[:, None, :]
    und = cv2.undistortPoints(pts, K, dist, P=K).reshape(h, w, 2).astype(np.float32)
    return cv2.remap(image, und[..., 0], und[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("model", ["SIMPLE_RADIAL", "RADIAL", "OPENCV"])
def test_colmap_undistorts(source, tmp_path, model):
    yy, xx = np.mgrid[0:H, 0:W]
    smooth = (127 + 100 * np.sin(2 * np.pi * xx / 14) * np.cos(2 * np.pi * yy / 11)).astype(np.uint8)
    pinhole = np.repeat(smooth[..., None], 3, axis=2)
    f, cx, cy = 60.0, 31.7, 23.2
    K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])
    coeffs = {"SIMPLE_RADIAL": [-0.25], "RADIAL": [-0.2, 0.05], "OPENCV": [-0.2, 0.05, 0.003, -0.002]}[model]
    dist = np.zeros(4)
    dist[: len(coeffs)] = coeffs
    distorted = _distort(pinhole, K, dist)
    mv1 = source[:1].replace(images=[distorted])
    params = {"SIMPLE_RADIAL": [f, cx + 0.5, cy + 0.5, *coeffs], "RADIAL": [f, cx + 0.5, cy + 0.5, *coeffs],
              "OPENCV": [f, f, cx + 0.5, cy + 0.5, *coeffs]}[model]
    write_colmap_text(mv1, tmp_path / "proj", model=model, params=[params])
    mv = data.load(tmp_path / "proj", verbose=False)
    assert np.allclose(mv.cameras.K[0], K)                   # the pinhole camera, in our convention
    inner = (slice(8, H - 8), slice(8, W - 8))
    err_before = np.abs(distorted[inner].astype(int) - pinhole[inner]).mean()
    err_after = np.abs(mv.images[0][inner].astype(int) - pinhole[inner]).mean()
    assert err_after < 0.5 * err_before, (err_before, err_after)


def test_blender_with_intrinsics(source, tmp_path):
    write_blender(source, tmp_path / "nerf", ext=False)     # extension-less file_path
    mv = data.load(tmp_path / "nerf", verbose=False)
    assert mv.format == "blender" and mv.names == [f"train/r_{i}" for i in range(5)]
    assert_same_cameras(mv.cameras, source.cameras)          # OpenGL flip and half pixel undone
    assert all((a == b).all() for a, b in zip(mv.silhouettes, source.silhouettes))  # from alpha
    assert all((a == b).all() for a, b in zip(mv.images, source.images))
    assert data.load(tmp_path / "nerf", silhouettes=False, verbose=False).silhouettes is None  # none: alpha neither


def test_blender_camera_angle_only(source, tmp_path):
    src = centred(source)
    write_blender(src, tmp_path / "nerf", angle_only=True)
    mv = data.load(tmp_path / "nerf" / "transforms_train.json", verbose=False)
    assert_same_cameras(mv.cameras, src.cameras)
    assert len(data.load(tmp_path / "nerf", split="train", verbose=False)) == 5
    with pytest.raises(FormatError, match="transforms_val.json"):
        data.load(tmp_path / "nerf", split="val", verbose=False)


@pytest.mark.parametrize("fmt", ["tum", "blender"])
def test_save_round_trip(source, tmp_path, fmt):
    path = data.save(source, tmp_path / fmt, format=fmt)
    mv = data.load(path, verbose=False)
    assert mv.format == fmt
    assert_same_cameras(mv.cameras, source.cameras, tol=1e-9)
    assert np.allclose(mv.bounds, source.bounds)
    assert all((a == b).all() for a, b in zip(mv.images, source.images))
    assert all((a == b).all() for a, b in zip(mv.silhouettes, source.silhouettes))
    with pytest.raises(FileExistsError):
        data.save(source, path, format=fmt)
    data.save(source[:2], path, format=fmt, overwrite=True)
    assert len(data.load(path, verbose=False)) == 2
    assert [p.name for p in tmp_path.iterdir()] == [fmt]     # no temporary folder left behind


def test_detect_says_which(source, tmp_path, capsys):
    write_middlebury(source, tmp_path / "mb")
    mv = data.load(tmp_path / "mb")
    assert "middlebury" in capsys.readouterr().err and mv.format == "middlebury"
    assert data.detect(tmp_path / "mb")[0] == "middlebury"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="matches no known dataset layout"):
        data.load(tmp_path / "empty")
    with pytest.raises(ValueError, match="format must be one of"):
        data.load(tmp_path / "mb", format="ply")


# ------------------------------------------------------------------------------------ malformed input


def _expect(path, line, match, fn):
    with pytest.raises(FormatError, match=match) as info:
        fn()
    err = info.value
    assert err.path.name == path and err.line == line, (str(err), err.path, err.line)
    assert str(err).startswith(f"{err.path}, line {line}:" if line else f"{err.path}:")
    return err


def test_tum_short_row(source, tmp_path):
    bad = "CONTOUR\n1 0 0 0\n0 1 0\n0 0 1 5\n"
    write_tum(source, tmp_path / "ds", rows=(2, bad))
    _expect("0002.txt", 3, "expected 4 numbers in row 2 of P, got 3", lambda: data.load(tmp_path / "ds", verbose=False))


def test_tum_nan_and_missing_image(source, tmp_path):
    write_tum(source, tmp_path / "ds", rows=(1, "CONTOUR\n1 0 0 0\n0 1 nan 0\n0 0 1 5\n"))
    _expect("0001.txt", 3, "finite", lambda: data.load(tmp_path / "ds", verbose=False))
    write_tum(source, tmp_path / "ds2")
    (tmp_path / "ds2" / "images" / "0003.ppm").unlink()
    _expect("0003.txt", None, "image '0003' is missing", lambda: data.load(tmp_path / "ds2", verbose=False))


def test_middlebury_count_and_row(source, tmp_path):
    write_middlebury(source, tmp_path / "mb")
    par = tmp_path / "mb" / "toy_par.txt"
    lines = par.read_text().splitlines()
    par.write_text("\n".join(["7"] + lines[1:]) + "\n")
    _expect("toy_par.txt", 1, "says 7 images, the file lists 5", lambda: data.load(tmp_path / "mb", verbose=False))
    lines[3] = " ".join(lines[3].split()[:-1])
    par.write_text("\n".join(lines) + "\n")
    _expect("toy_par.txt", 4, "21 numbers", lambda: data.load(tmp_path / "mb", verbose=False))
    write_middlebury(source, tmp_path / "mb2")
    par = tmp_path / "mb2" / "toy_par.txt"
    par.write_text(par.read_text().replace("toy0002.png", "nothere.png"))
    _expect("toy_par.txt", 4, "image 'nothere.png' is missing", lambda: data.load(tmp_path / "mb2", verbose=False))


def test_middlebury_bad_good_list(source, tmp_path):
    write_middlebury(source, tmp_path / "mb")
    (tmp_path / "mb" / "toy_good_silhouette_images.txt").write_text("toy0001.png\nghost.png\n")
    _expect("toy_good_silhouette_images.txt", 2, "ghost.png", lambda: data.load(tmp_path / "mb", verbose=False))


def test_oxford_too_few_images(source, tmp_path):
    write_oxford(source, tmp_path / "ox", extra_images=0)
    (tmp_path / "ox" / "viff.004.ppm").unlink()
    _expect("ox", None, "4 images for the 5 matrices", lambda: data.load(tmp_path / "ox", verbose=False))


def test_oxford_bad_cell(source, tmp_path):
    from scipy.io import savemat

    write_oxford(source, tmp_path / "ox", extra_images=0)
    cells = np.empty((1, 5), dtype=object)
    for i in range(5):
        cells[0, i] = source.cameras.P[i]
    cells[0, 3] = np.ones((3, 3))
    savemat(tmp_path / "ox" / "toy_Ps.mat", {"P": cells})
    _expect("toy_Ps.mat", None, r"P\{4\} must be a 3x4", lambda: data.load(tmp_path / "ox", verbose=False))


def test_colmap_errors(source, tmp_path):
    sparse = write_colmap_text(source, tmp_path / "p1")
    cams = (sparse / "cameras.txt").read_text().splitlines()
    cams[3] = cams[3].replace("PINHOLE", "PINHOLE_SPHERICAL")
    (sparse / "cameras.txt").write_text("\n".join(cams) + "\n")
    _expect("cameras.txt", 4, "unknown camera model 'PINHOLE_SPHERICAL'",
            lambda: data.load(tmp_path / "p1", verbose=False))
    cams[3] = cams[3].replace("PINHOLE_SPHERICAL", "OPENCV_FISHEYE")
    (sparse / "cameras.txt").write_text("\n".join(cams) + "\n")
    _expect("cameras.txt", 4, "OPENCV_FISHEYE is not supported", lambda: data.load(tmp_path / "p1", verbose=False))
    cams[3] = cams[3].replace("OPENCV_FISHEYE", "PINHOLE").rsplit(" ", 1)[0]
    (sparse / "cameras.txt").write_text("\n".join(cams) + "\n")
    _expect("cameras.txt", 4, "takes 4 parameters, got 3", lambda: data.load(tmp_path / "p1", verbose=False))

    sparse = write_colmap_text(source, tmp_path / "p2")
    imgs = (sparse / "images.txt").read_text().splitlines()
    imgs[5] = imgs[5].replace(" 2 view_01.png", " 9 view_01.png")
    (sparse / "images.txt").write_text("\n".join(imgs) + "\n")
    _expect("images.txt", 6, "refers to camera 9", lambda: data.load(tmp_path / "p2", verbose=False))
    (tmp_path / "p2" / "images" / "view_00.png").unlink()
    imgs[5] = imgs[5].replace(" 9 view_01.png", " 2 view_01.png")
    (sparse / "images.txt").write_text("\n".join(imgs) + "\n")
    _expect("images.txt", 4, "image 'view_00.png' is missing", lambda: data.load(tmp_path / "p2", verbose=False))


def test_colmap_binary_truncated(source, tmp_path):
    sparse = write_colmap_binary(source, tmp_path / "p")
    blob = (sparse / "images.bin").read_bytes()
    (sparse / "images.bin").write_bytes(blob[:-30])
    _expect("images.bin", None, "file ends inside image record 5 of 5",
            lambda: data.load(tmp_path / "p", verbose=False))
    (sparse / "images.bin").write_bytes(struct.pack("<Q", 4) + blob[8:])
    _expect("images.bin", None, "bytes left after 4 image records", lambda: data.load(tmp_path / "p", verbose=False))


def test_blender_errors(source, tmp_path):
    write_blender(source, tmp_path / "nerf")
    f = tmp_path / "nerf" / "transforms_train.json"
    text = f.read_text()
    f.write_text(text.replace("r_3.png", "r_9.png"))
    line = text[: text.index("r_3.png")].count("\n") + 1
    _expect("transforms_train.json", line, "image 'train/r_9.png' is missing",
            lambda: data.load(tmp_path / "nerf", verbose=False))
    meta = json.loads(text)
    meta["frames"][1]["transform_matrix"][0][1] = float("nan")
    f.write_text(json.dumps(meta, indent=2))
    _expect("transforms_train.json", f.read_text()[: f.read_text().index("r_1")].count("\n") + 1,
            "frame 1: transform_matrix contains NaN", lambda: data.load(tmp_path / "nerf", verbose=False))
    f.write_text(text[:-20])
    with pytest.raises(FormatError, match="not valid JSON") as info:
        data.load(tmp_path / "nerf", verbose=False)
    assert info.value.line is not None


# ------------------------------------------------------------------------------------ MultiView


def test_multiview_validates_and_subsets(source):
    sub = source[[0, 3]]
    assert len(sub) == 2 and sub.names == ["0000", "0003"] and len(sub.silhouettes) == 2
    assert np.allclose(sub.cameras.K, source.cameras.K[[0, 3]])
    assert len(source[np.array([True, False, True, False, True])]) == 3
    with pytest.raises(ValueError, match=r"images\[1\] must have shape \(48, 64, 3\)"):
        source.replace(images=[source.images[0], source.images[1][:-1]] + source.images[2:])
    with pytest.raises(TypeError, match=r"silhouettes\[0\] must be bool"):
        source.replace(silhouettes=[m.astype(np.uint8) * 255 for m in source.silhouettes])
    with pytest.raises(ValueError, match="one image per camera"):
        source.replace(images=source.images[:3])
    with pytest.raises(ValueError, match="bounds must be finite with lo < hi"):
        source.replace(bounds=[[0, 0, 0], [1, -1, 1]])
    with pytest.raises(IndexError):
        source[7]
    assert "5 views, 64x48" in repr(source)


# ------------------------------------------------------------------ names that leave the dataset


def _outside_image(source, tmp_path):
    """An image beside the dataset folders (``tmp_path/outside.png``): there, but not theirs to read."""
    write_image(tmp_path / "outside.png", source.images[0], alpha=np.where(source.silhouettes[0], 255, 0))
    return tmp_path / "outside.png"


@pytest.mark.parametrize("name", ["../outside.png", "train/../../outside.png", "ABSOLUTE"])
def test_blender_refuses_file_paths_outside_its_folder(source, tmp_path, name):
    outside = _outside_image(source, tmp_path)
    write_blender(source, tmp_path / "nerf")
    f = tmp_path / "nerf" / "transforms_train.json"
    meta = json.loads(f.read_text())
    meta["frames"][2]["file_path"] = str(outside) if name == "ABSOLUTE" else name
    f.write_text(json.dumps(meta, indent=2))
    line = f.read_text()[: f.read_text().index("outside.png")].count("\n") + 1
    err = _expect("transforms_train.json", line, "outside the dataset folder",
                  lambda: data.load(tmp_path / "nerf", verbose=False))
    assert "outside.png" in str(err) and "allow_outside=True" in str(err) and "--allow-outside-paths" in str(err)
    mv = data.load(tmp_path / "nerf", verbose=False, allow_outside=True)
    assert (mv.images[2] == source.images[0]).all()


def test_blender_refuses_mask_paths_outside_its_folder(source, tmp_path):
    data.save(source.replace(images=None), tmp_path / "ns", format="blender")  # masks alone, by mask_path
    f = tmp_path / "ns" / "transforms.json"
    meta = json.loads(f.read_text())
    shutil.copy(tmp_path / "ns" / "masks" / "0001.png", tmp_path / "m.png")
    meta["frames"][1]["mask_path"] = "../m.png"
    f.write_text(json.dumps(meta, indent=2))
    with pytest.raises(FormatError, match="names '../m.png', which is outside") as info:
        data.load(tmp_path / "ns", verbose=False)
    assert info.value.path == f and info.value.line is not None
    assert len(data.load(tmp_path / "ns", verbose=False, allow_outside=True)) == 5


@pytest.mark.parametrize("binary", [False, True])
def test_colmap_refuses_image_names_outside_its_folder(source, tmp_path, binary):
    root = tmp_path / "proj"
    sparse = (write_colmap_binary if binary else write_colmap_text)(source, root)
    _outside_image(source, root)  # proj/outside.png: beside images/, not in it
    f = sparse / ("images.bin" if binary else "images.txt")
    f.write_bytes(f.read_bytes().replace(b"view_03.png", b"../outside.png"))
    err = _expect(f.name, None if binary else 10, "names '../outside.png', which is outside the dataset folder",
                  lambda: data.load(root, verbose=False))
    assert str(root / "images") in str(err)
    mv = data.load(root, verbose=False, allow_outside=True)
    assert "../outside" in mv.names and (mv.images[0] == source.images[0]).all()  # sorted first


def test_middlebury_refuses_image_names_outside_its_folder(source, tmp_path):
    _outside_image(source, tmp_path)
    write_middlebury(source, tmp_path / "mb")
    par = tmp_path / "mb" / "toy_par.txt"
    par.write_text(par.read_text().replace("toy0001.png", "../outside.png"))
    _expect("toy_par.txt", 3, "names '../outside.png', which is outside the dataset folder",
            lambda: data.load(tmp_path / "mb", verbose=False))
    assert len(data.load(tmp_path / "mb", verbose=False, allow_outside=True)) == 5


def test_every_loader_takes_allow_outside(source, tmp_path):
    write_tum(source, tmp_path / "tum")
    write_oxford(source, tmp_path / "ox", extra_images=0)
    for root in (tmp_path / "tum", tmp_path / "ox"):  # layouts that name no files: the option is accepted
        assert len(data.load(root, verbose=False, allow_outside=True)) == 5
    with pytest.raises(TypeError, match="allow_outside must be True or False"):
        data.load(tmp_path / "tum", verbose=False, allow_outside="yes")


def test_inside_refuses_what_no_file_system_holds(tmp_path):
    from data.paths import inside

    for name, match in [("", "names the folder itself"), ("a/..", "names the folder itself"),
                        ("a\0b", "NUL"), ("x" * 300, "part of 300 bytes"), ("a/" * 2100 + "b", "path of"),
                        ("\ud800.png", "lone surrogate"), (7, "expected a file name")]:
        with pytest.raises(FormatError, match=match):
            inside(tmp_path, name, allow_outside=True, where=tmp_path / "list.txt", line=3)
    assert inside(tmp_path, "a/./b/../c.png") == tmp_path / "a" / "c.png"


# ------------------------------------------------------------ malformed numbers and types, by name


def _blender_json(source, tmp_path):
    write_blender(source, tmp_path / "nerf")
    f = tmp_path / "nerf" / "transforms_train.json"
    return f, json.loads(f.read_text())


BAD_BLENDER = {
    "w as text": (lambda m: m["frames"][0].update(w="32px"), "w must be a positive whole number"),
    "w as a list": (lambda m: m["frames"][0].update(w=[64]), "w must be a positive whole number"),
    "w as a bool": (lambda m: m["frames"][0].update(w=True), "w must be a positive whole number"),
    "h of 400 digits": (lambda m: m["frames"][0].update(h=10**400), "h must be a positive whole number"),
    "fl_x infinite": (lambda m: m["frames"][0].update(fl_x=float("inf")), "fl_x must be a finite number"),
    "fl_x a list": (lambda m: m["frames"][0].update(fl_x=[70.0]), "fl_x must be a finite number"),
    "angle a bool": (lambda m: m.update(camera_angle_x=True), "camera_angle_x must be a finite number"),
    "frames not a list": (lambda m: m.update(frames={"0": m["frames"][0]}), "a 'frames' list"),
    "a frame not a dict": (lambda m: m["frames"].__setitem__(1, [1, 2]), "frame 1 needs 'file_path'"),
    "3x3 matrix": (lambda m: m["frames"][0].update(transform_matrix=np.eye(3).tolist()), "must be a 4x4 or 3x4"),
    "ragged matrix": (lambda m: m["frames"][0]["transform_matrix"][1].pop(), "must be a 4x4 or 3x4"),
    "text in a matrix": (lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(0, "1"), "list of lists of num"),
    "bool in a matrix": (lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(0, True), "list of lists of num"),
    "huge int in a matrix": (lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(3, 10**400), "NaN or inf"),
    "file_path a number": (lambda m: m["frames"][0].update(file_path=5), "expected a file name"),
    "bounds as text": (lambda m: m.update(bounds="[[0,0,0],[1,1,1]]"), "bounds"),
}


@pytest.mark.parametrize("case", sorted(BAD_BLENDER))
def test_blender_wrong_types_are_format_errors(source, tmp_path, case):
    f, meta = _blender_json(source, tmp_path)
    change, match = BAD_BLENDER[case]
    change(meta)
    f.write_text(json.dumps(meta, indent=2))
    with pytest.raises(FormatError, match=match) as info:
        data.load(tmp_path / "nerf", verbose=False)
    assert info.value.path == f


def test_blender_text_that_json_cannot_take(source, tmp_path):
    f, meta = _blender_json(source, tmp_path)
    text = json.dumps(meta, indent=2)
    f.write_text(text.replace('"rotation": 0.1', '"rotation": 1e999'))  # inf: only where a number is used
    assert len(data.load(tmp_path / "nerf", verbose=False)) == 5
    f.write_text(text.replace(f'"fl_x": {meta["frames"][0]["fl_x"]}', '"fl_x": 1e999', 1))
    _expect(f.name, text[: text.index('"file_path"')].count("\n") + 1, "fl_x must be a finite number",
            lambda: data.load(tmp_path / "nerf", verbose=False))  # the line of its frame
    f.write_bytes(text.encode()[:100] + b"\xff\xfe" + text.encode()[100:])
    _expect(f.name, text[:100].count("\n") + 1, "not UTF-8", lambda: data.load(tmp_path / "nerf", verbose=False))
    f.write_text("[" * 100_000 + "]" * 100_000)
    _expect(f.name, None, "nests lists or objects too deeply", lambda: data.load(tmp_path / "nerf", verbose=False))
    f.write_text('{"w": ' + "9" * 5000 + ', "frames": []}')
    _expect(f.name, None, "not valid JSON", lambda: data.load(tmp_path / "nerf", verbose=False))


def test_colmap_sizes_and_focal_lengths_must_be_positive(source, tmp_path):
    sparse = write_colmap_binary(source, tmp_path / "p")
    blob = (sparse / "cameras.bin").read_bytes()
    record = 8 + struct.calcsize("<iiQQ4d")  # the count, then camera 1; camera 2's height is at + 16
    (sparse / "cameras.bin").write_bytes(blob[:record + 16] + struct.pack("<Q", 0) + blob[record + 24:])
    _expect("cameras.bin", None, "camera record 2 of 5: image size must be positive, got 64x0",
            lambda: data.load(tmp_path / "p", verbose=False))
    (sparse / "cameras.bin").write_bytes(blob[:record + 24] + struct.pack("<d", 0.0) + blob[record + 32:])
    _expect("cameras.bin", None, "focal length must be positive", lambda: data.load(tmp_path / "p", verbose=False))
    (sparse / "cameras.bin").write_bytes(blob[:record] + blob[8:8 + record - 8] + blob[2 * record - 8:])
    _expect("cameras.bin", None, "camera id 1 is defined twice", lambda: data.load(tmp_path / "p", verbose=False))
    sparse = write_colmap_text(source, tmp_path / "t")
    cams = (sparse / "cameras.txt").read_text().splitlines()
    cams[2] = " ".join(cams[2].split()[:4] + ["-70"] + cams[2].split()[5:])
    (sparse / "cameras.txt").write_text("\n".join(cams) + "\n")
    _expect("cameras.txt", 3, "focal length must be positive, got -70",
            lambda: data.load(tmp_path / "t", verbose=False))


def test_colmap_quaternions_of_any_scale(source, tmp_path):
    """A quaternion is normalised without overflow (1e200 squared is inf); zero is refused, also in binary."""
    sparse = write_colmap_text(source, tmp_path / "t")
    lines = (sparse / "images.txt").read_text().splitlines()
    tok = lines[5].split()
    lines[5] = " ".join([tok[0], *(f"{float(v) * 1e200:.17g}" for v in tok[1:5]), *tok[5:]])
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    assert_same_cameras(data.load(tmp_path / "t", verbose=False).cameras, source.cameras)
    sparse = write_colmap_binary(source, tmp_path / "b")
    blob = (sparse / "images.bin").read_bytes()
    (sparse / "images.bin").write_bytes(blob[:12] + struct.pack("<4d", 0, 0, 0, 0) + blob[44:])
    _expect("images.bin", None, r"image record 1 of 5 \(view_00.png\): the quaternion is zero",
            lambda: data.load(tmp_path / "b", verbose=False))


def test_overflowing_cameras_are_refused_by_file(source, tmp_path):
    """Finite numbers whose K [R|T] overflows: the loader names the file, not a later inf."""
    sparse = write_colmap_text(source, tmp_path / "t")
    cams = (sparse / "cameras.txt").read_text().splitlines()
    cams[3] = " ".join(cams[3].split()[:6] + ["-1e308"] + cams[3].split()[7:])
    (sparse / "cameras.txt").write_text("\n".join(cams) + "\n")
    _expect("images.txt", 6, "the camera of view 2 overflows", lambda: data.load(tmp_path / "t", verbose=False))


def test_middlebury_count_must_be_ascii_digits(source, tmp_path):
    write_middlebury(source, tmp_path / "mb")
    par = tmp_path / "mb" / "toy_par.txt"
    lines = par.read_text().splitlines()
    for count in ("\u00b3", "\u0665", "5" * 5000, "-5", "5.0"):  # ³ and ٥ pass str.isdigit, int() fails on ³
        par.write_text("\n".join([count] + lines[1:]) + "\n", encoding="utf-8")
        _expect("toy_par.txt", 1, "first line must be the number of images",
                lambda: data.load(tmp_path / "mb", verbose=False))


# ------------------------------------------------------------------------------ MAT-files, our reader


def _mat_v5(path, P, order):
    """A MAT-file v5 holding one double array P as MATLAB writes it, in the byte order ``order``."""
    def element(kind, payload):
        return struct.pack(order + "II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)
    body = (element(6, struct.pack(order + "II", 6, 0)) + element(5, np.array(P.shape, order + "i4").tobytes())
            + element(1, b"P") + element(9, P.ravel(order="F").astype(order + "f8").tobytes()))
    # 116 bytes of text, 8 of subsystem offset, the version 0x0100 and "MI" as 16-bit numbers in that order
    head = b"MATLAB 5.0 MAT-file, written by a test".ljust(116) + bytes(8) + struct.pack(order + "HH", 0x0100, 0x4D49)
    path.write_bytes(head + element(14, body))


@pytest.mark.parametrize("variant", ["cells", "compressed", "big-endian", "version 4"])
def test_oxford_reads_mat_files_as_scipy_does(source, tmp_path, variant):
    from scipy.io import loadmat, savemat

    from data.oxford import read_projections

    write_oxford(source, tmp_path / "ox", extra_images=0)  # cells, P{i} scaled by 2 + i
    f = tmp_path / "ox" / "toy_Ps.mat"
    P = source.cameras.P
    want = P * (2.0 + np.arange(5))[:, None, None]
    if variant == "big-endian":
        _mat_v5(f, np.moveaxis(P, 0, 2), ">")
        assert np.array_equal(np.moveaxis(loadmat(f)["P"], 2, 0), P)  # scipy reads the test's file so
        want = P
    elif variant == "compressed":
        savemat(f, {"note": "text", "P": P.astype(np.float32)}, do_compression=True)
        want = P.astype(np.float32)
    elif variant == "version 4":
        savemat(f, {"P": P[0]}, format="4")
        want = P[:1]
    assert np.array_equal(read_projections(f), want)
    if len(want) == 5:
        assert_same_cameras(data.load(tmp_path / "ox", format="oxford", verbose=False).cameras, source.cameras,
                            tol=1e-4 if variant == "compressed" else 1e-6)


def test_oxford_mat_files_that_crash_scipy_are_format_errors(source, tmp_path):
    """An unknown data type in a numeric array made scipy.io.loadmat crash the interpreter."""
    from scipy.io import savemat

    write_oxford(source, tmp_path / "ox", extra_images=0)
    f = tmp_path / "ox" / "toy_Ps.mat"
    blob = f.read_bytes()
    last = blob.rindex(struct.pack("<II", 9, 96))  # the data element of the last cell: miDOUBLE, 12 numbers
    f.write_bytes(blob[:last] + struct.pack("<I", 0xAF09) + blob[last + 4:])
    _expect("toy_Ps.mat", None, "cell 5 of P has data of unknown type 44809",
            lambda: data.load(tmp_path / "ox", verbose=False, format="oxford"))
    savemat(f, {"P": source.cameras.P[0] * (1 + 1j)})
    _expect("toy_Ps.mat", None, "complex", lambda: data.load(tmp_path / "ox", verbose=False, format="oxford"))
    f.write_bytes(b"MATLAB 5.0 MAT-file" + b" " * 200)
    _expect("toy_Ps.mat", None, "is not a MAT-file", lambda: data.load(tmp_path / "ox", verbose=False, format="oxford"))


def test_oxford_compressed_bomb_stops_at_the_limit(source, tmp_path):
    """A compressed variable of under 1 MB that inflates to 80 MB is refused once past the 64 MiB limit."""
    import zlib

    write_oxford(source, tmp_path / "ox", extra_images=0)
    f = tmp_path / "ox" / "toy_Ps.mat"
    head = f.read_bytes()[:128]
    size = 80 << 20
    flags = struct.pack("<IIII", 6, 8, 6, 0)
    dims = struct.pack("<II", 5, 8) + struct.pack("<ii", size // 8, 1)
    body = flags + dims + struct.pack("<HHB3x", 1, 1, ord("P")) + struct.pack("<II", 9, size)
    inflater = zlib.compressobj(1)
    blob = inflater.compress(struct.pack("<II", 14, len(body) + size) + body)
    blob += b"".join(inflater.compress(bytes(1 << 20)) for _ in range(size >> 20)) + inflater.flush()
    assert len(blob) < (1 << 20)
    f.write_bytes(head + struct.pack("<II", 15, len(blob)) + blob)
    assert data.detect(tmp_path / "ox") == ("oxford", "toy_Ps.mat with P")  # the name is read from a prefix
    _expect("toy_Ps.mat", None, "larger than the 64 MiB", lambda: data.load(tmp_path / "ox", verbose=False))
