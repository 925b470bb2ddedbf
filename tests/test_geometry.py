"""The camera-geometry core: conventions, round trips, decompositions, backends and bad input."""
import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from geometry import Camera, depth_to_points, opencv_to_opengl, opengl_to_opencv, pixel_index, project, unproject

W, H = 640, 480


def random_camera(rng, batch=1, size=True, skew=True):
    K = np.array([[rng.uniform(300, 900), rng.uniform(-2, 2) * skew, rng.uniform(280, 360)],
                  [0, rng.uniform(300, 900), rng.uniform(200, 280)], [0, 0, 1]])
    R = Rotation.random(batch, random_state=rng.integers(1 << 31)).as_matrix()
    T = rng.normal(size=(batch, 3)) + [0, 0, 6]
    return Camera(K, R, T, *((W, H) if size else (None, None)))


def points_in_front(rng, cam, n=200):
    """World points at depth 1..10 in front of every camera of ``cam`` (through its first camera)."""
    uv = rng.uniform([0, 0], [W - 1, H - 1], size=(n, 2))
    return unproject(uv, rng.uniform(1, 10, n), cam[0])[0]


# ----------------------------------------------------------------------------------------- conventions
def test_pixel_convention_top_left_centre_is_origin():
    cam = Camera(np.diag([100.0, 100.0, 1.0]), np.eye(3), [0, 0, 0], width=4, height=3)
    # a point on the optical axis lands on the principal point (0, 0): the centre of the top-left pixel
    uv, depth, valid = project(np.array([[0.0, 0.0, 1.0], [-0.0051, 0.0, 1.0], [0.0349, 0.0249, 1.0]]), cam)
    assert uv[0, 0].tolist() == [0.0, 0.0] and depth[0, 0] == 1.0
    assert valid[0].tolist() == [True, False, True]  # u = -0.51 is left of pixel 0's edge at -0.5
    rows, cols = pixel_index(uv[0])
    assert rows.tolist()[::2] == [0, 2] and cols.tolist()[::2] == [0, 3]
    assert pixel_index(np.array([[0.5, -0.5], [1.49, 2.5]]))[1].tolist() == [1, 1]


def test_opencv_axes_and_center():
    cam = Camera.look_at([0.0, -5.0, 0.0], [0.0, 0.0, 0.0], up=(0, 0, 1), fov=90, width=W, height=H)
    np.testing.assert_allclose(cam.center[0], [0, -5, 0], atol=1e-12)
    np.testing.assert_allclose(cam.R[0][2], [0, 1, 0], atol=1e-12)  # z forward, towards the target
    uv, depth, _ = project(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), cam)
    assert uv[0, 0, 1] < (H - 1) / 2  # world up is image up (smaller v): y points down
    assert uv[0, 1, 0] > (W - 1) / 2  # world +x is on the right for this camera
    np.testing.assert_allclose(depth[0], [5, 5])


def test_opengl_round_trip_flips_y_and_z():
    cam = random_camera(np.random.default_rng(1), batch=3)
    gl = cam.c2w("opengl")
    np.testing.assert_allclose(gl[:, :3, 1], -cam.c2w()[:, :3, 1])
    np.testing.assert_allclose(opengl_to_opencv(opencv_to_opengl(cam.c2w())), cam.c2w())
    back = Camera.from_c2w(gl, cam.K, W, H, convention="opengl")
    np.testing.assert_allclose(back.P, cam.P, atol=1e-9)


# ------------------------------------------------------------------------------------------ projection
def test_project_matches_opencv_to_1e6_px():
    rng = np.random.default_rng(0)
    for _ in range(5):
        cam = random_camera(rng, skew=False)  # cv2.projectPoints ignores K's skew term
        X = points_in_front(rng, cam, 500)
        rvec = cv2.Rodrigues(cam.R[0])[0]
        expected = cv2.projectPoints(X, rvec, cam.T[0], cam.K[0], None)[0][:, 0]
        uv, _, _ = project(X, cam)
        assert np.abs(uv[0] - expected).max() < 1e-6


def test_project_shapes_homogeneous_and_per_camera_points():
    rng = np.random.default_rng(2)
    cam = random_camera(rng, batch=3)
    X = points_in_front(rng, cam, 50)
    uv, depth, valid = project(X, cam)
    assert uv.shape == (3, 50, 2) and depth.shape == (3, 50) and valid.dtype == bool
    Xh = np.hstack([X, np.ones((50, 1))]) * rng.uniform(0.5, 2, (50, 1))
    uvh, depthh, _ = project(Xh, cam)
    np.testing.assert_allclose(uvh, uv, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(depthh, depth, rtol=1e-12)
    per_cam = np.stack([X, X + 1, X - 1])
    uvb, _, _ = project(per_cam, cam)
    np.testing.assert_allclose(uvb[1], project(X + 1, cam[1])[0][0])


def test_project_into_caller_buffers():
    rng = np.random.default_rng(13)
    cam = random_camera(rng, batch=2)
    X = points_in_front(rng, cam, 100).astype(np.float32)
    out = (np.empty((2, 100, 2), np.float32), np.empty((2, 100), np.float32), np.empty((2, 100), bool))
    result = project(X, cam, out=out)
    assert all(r is o for r, o in zip(result, out))
    np.testing.assert_array_equal(out[0], project(X, cam)[0])
    with pytest.raises(ValueError, match=r"out's depth must be a writable C-contiguous array of shape \(2, 100\) and dtype float32, got shape \(2, 100\) float64"):
        project(X, cam, out=(out[0], np.empty((2, 100)), out[2]))


def test_behind_camera_and_infinity_are_invalid_and_finite():
    cam = random_camera(np.random.default_rng(3))
    center = cam.center[0]
    X = np.array([center, center - 3 * cam.R[0][2], [np.nan, 0, 0]])  # at, behind, NaN
    Xh = np.array([[1.0, 2.0, 3.0, 0.0]])
    for pts in (X, Xh, torch.tensor(X), torch.tensor(Xh)):
        uv, depth, valid = project(pts, cam)
        uv = np.asarray(uv)
        assert not np.asarray(valid).any() and np.isfinite(uv).all()
    assert project(Xh, cam)[1][0, 0] == 0


def test_float32_stays_float32_and_matches_float64():
    rng = np.random.default_rng(4)
    cam = random_camera(rng)
    X = points_in_front(rng, cam, 1000)
    uv32, d32, _ = project(X.astype(np.float32), cam)
    uv64, _, _ = project(X.astype(np.float32).astype(np.float64), cam)
    assert uv32.dtype == np.float32 and d32.dtype == np.float32
    np.testing.assert_allclose(uv32, uv64, rtol=1e-5, atol=2e-3)  # float32 arithmetic: about 1e-6 relative


def test_torch_matches_numpy_and_keeps_dtype():
    rng = np.random.default_rng(5)
    cam = random_camera(rng, batch=2)
    X = points_in_front(rng, cam, 300)
    X[:5] = cam.center[0] - cam.R[0][2]  # a few behind the first camera
    uv, depth, valid = project(X, cam)
    for dtype, tol, depth_tol in ((torch.float64, 1e-9, 1e-12), (torch.float32, 2e-2, 1e-5)):
        uvt, deptht, validt = project(torch.tensor(X, dtype=dtype), cam)
        assert uvt.dtype == dtype and validt.dtype == torch.bool
        np.testing.assert_allclose(uvt.numpy(), uv, atol=tol)
        np.testing.assert_allclose(deptht.numpy(), depth, rtol=1e-6, atol=depth_tol)
        assert (validt.numpy() == valid).mean() > 0.99


def test_torch_is_differentiable_with_finite_gradients():
    rng = np.random.default_rng(6)
    cam = random_camera(rng)
    X = torch.tensor(points_in_front(rng, cam, 20), requires_grad=True)
    behind = torch.tensor(cam.center + 2 * cam.R[0][2] * -1, requires_grad=True)
    T = torch.tensor(cam.T, requires_grad=True)
    tcam = Camera(torch.tensor(cam.K), torch.tensor(cam.R), T, W, H)
    uv, depth, valid = project(torch.cat([X, behind]), tcam)
    (uv.sum() + depth.sum()).backward()
    assert torch.isfinite(X.grad).all() and torch.isfinite(T.grad).all() and T.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda p: project(p, tcam)[0], (X[:3].detach().clone().requires_grad_(),))


def test_camera_batches_index_and_convert():
    cam = random_camera(np.random.default_rng(7), batch=4)
    assert len(cam) == 4 and len(cam[1]) == 1 and len(cam[1:3]) == 2 and len(cam[[0, 3]]) == 2
    np.testing.assert_allclose(cam[-1].P[0], cam.P[3])
    both = Camera.concat([cam[:2], cam[2:]])
    np.testing.assert_allclose(both.P, cam.P)
    t = cam.to(dtype=torch.float64)
    assert t.is_torch and t.P.shape == (4, 3, 4)
    np.testing.assert_allclose(t.numpy().P, cam.P)
    np.testing.assert_allclose(Camera(cam.K[0], cam.R[0], cam.T[0].reshape(3, 1)).P[0], cam.P[0])  # OpenCV column
    with pytest.raises(IndexError):
        cam[4]


def test_resized_camera_matches_resized_pixels():
    cam = random_camera(np.random.default_rng(8))
    small = cam.resized(W // 2, H // 2)
    X = points_in_front(np.random.default_rng(9), cam, 10)
    uv, _, _ = project(X, cam)
    uv_small, _, _ = project(X, small)
    np.testing.assert_allclose(uv_small, (uv + 0.5) / 2 - 0.5, atol=1e-9)


def test_open3d_round_trip():
    cam = random_camera(np.random.default_rng(10), batch=2)
    back = Camera.from_open3d(cam.to_open3d())
    np.testing.assert_allclose(back.P, cam.P, atol=1e-9)
    assert (back.width, back.height) == (W, H)


def test_from_opencv_matches_rodrigues():
    cam = random_camera(np.random.default_rng(11), skew=False)
    rvec = cv2.Rodrigues(cam.R[0])[0]
    np.testing.assert_allclose(Camera.from_opencv(rvec, cam.T[0].reshape(3, 1), cam.K[0]).P, cam.P, atol=1e-9)


# ------------------------------------------------------------------------------------- property-based
finite = st.floats(-1e3, 1e3, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), depth=st.floats(0.01, 1e4), u=st.floats(-1e3, 2e3), v=st.floats(-1e3, 2e3))
def test_unproject_project_round_trip(seed, depth, u, v):
    cam = random_camera(np.random.default_rng(seed), size=False)
    X = unproject(np.array([[u, v]]), np.array([depth]), cam)
    uv, d, valid = project(X[0], cam)
    assert valid[0, 0]
    np.testing.assert_allclose(uv[0, 0], [u, v], rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(d[0, 0], depth, rtol=1e-9)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(-1e3, 1e3).filter(lambda s: abs(s) > 1e-3))
def test_projection_matrix_decomposition(seed, scale):
    cam = random_camera(np.random.default_rng(seed))
    back = Camera.from_projection(cam.P[0] * scale, W, H)
    assert np.linalg.det(back.R[0]) > 0.999 and back.K[0, 0, 0] > 0 and back.K[0, 1, 1] > 0
    np.testing.assert_allclose(back.K, cam.K, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(back.R, cam.R, atol=1e-9)
    np.testing.assert_allclose(back.T, cam.T, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projection_batch_gets_the_in_front_sign(seed):
    """Per view any sign and scale: the batch gets back the cameras that see the scene in front."""
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0, 2 * np.pi, 9)
    eyes = np.c_[4 * np.cos(angles), 4 * np.sin(angles), rng.uniform(0.5, 2, 9)]
    cams = Camera.look_at(eyes, rng.uniform(-0.2, 0.2, 3), fov=50, width=W, height=H)
    factors = rng.choice([-1.0, 1.0], 9) * rng.uniform(1e-3, 1e3, 9)
    back = Camera.from_projection(cams.P * factors[:, None, None], W, H)
    np.testing.assert_allclose(back.K, cams.K, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(back.R, cams.R, atol=1e-9)
    np.testing.assert_allclose(back.T, cams.T, atol=1e-8)
    mirrored = cams.P @ np.diag([1.0, 1.0, -1.0, 1.0])  # in front, but det(P[:, :3]) < 0: a left-handed world
    with pytest.raises(ValueError, match=r"frame is mirrored; load it with data.frames.orient_projections"):
        Camera.from_projection(mirrored * np.abs(factors)[:, None, None], W, H)
    flipped = Camera.from_projection(mirrored, W, H, orient=False)  # the old rule: det > 0, scene behind
    assert (project(np.zeros((1, 3)), flipped)[1] < 0).all()


def test_depth_to_points_round_trip_with_colors():
    rng = np.random.default_rng(12)
    cam = random_camera(rng, batch=2).resized(32, 24)
    depth = rng.uniform(1, 5, (2, 24, 32))
    depth[0, 0, :5] = 0
    depth[1, 3, 3] = np.nan
    image = rng.integers(0, 255, (2, 24, 32, 3), dtype=np.uint8)
    points, colors = depth_to_points(depth, cam, image)
    assert points.shape == (2 * 24 * 32 - 6, 3) and colors.dtype == np.uint8
    uv, d, valid = project(points[:32 * 24 - 5], cam[0])
    assert valid.all()
    rows, cols = pixel_index(uv[0])
    np.testing.assert_allclose(uv[0], np.stack([cols, rows], -1), atol=1e-8)  # exact pixel centres
    np.testing.assert_allclose(d[0], depth[0][rows, cols], rtol=1e-12)
    np.testing.assert_array_equal(colors[:10], image[0][rows[:10], cols[:10]])
    tp = depth_to_points(torch.tensor(depth), cam)
    np.testing.assert_allclose(tp.numpy(), points, atol=1e-9)


# ------------------------------------------------------------------------------------------- bad input
K0, R0, T0 = np.diag([500.0, 500.0, 1.0]), np.eye(3), np.zeros(3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(K=np.eye(4)), "K must have shape (3, 3) or (B, 3, 3), got (4, 4)"),
    (dict(R=np.vstack([np.eye(3)] * 2)), "R must have shape (3, 3) or (B, 3, 3), got (6, 3); 2 matrices concatenated?"),
    (dict(K=np.diag([500.0, 0.0, 1.0])), "positive focal lengths"),
    (dict(K=np.array([[500.0, 0, 1], [0, 500, 1], [1e-3, 0, 1]])), "upper triangular"),
    (dict(K=np.diag([np.nan, 500, 1])), "K must contain only finite numbers"),
    (dict(R=np.diag([1.0, 1.0, -1.0])), "det(R) = +1"),
    (dict(R=K0 @ np.eye(3)), "R must be a rotation matrix"),
    (dict(T=np.zeros(4)), "T must have 3 numbers per camera"),
    (dict(R=np.stack([np.eye(3)] * 3), T=np.zeros((3, 1))), "T of shape (3, 1) is ambiguous for 3 cameras"),
    (dict(R=np.stack([np.eye(3)] * 2), T=np.zeros((3, 3))), "same number of cameras"),
    (dict(width=640, height=None), "width and height must be given together"),
    (dict(width=-5, height=4), "width must be a positive integer"),
    (dict(K="abc"), "K must be an array of numbers"),
])
def test_camera_rejects_bad_input(kwargs, message):
    args = dict(K=K0, R=R0, T=T0)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError)) as err:
        Camera(**args)
    assert message in str(err.value)


def test_project_rejects_bad_points():
    cam = Camera(K0, R0, T0)
    with pytest.raises(ValueError, match=r"points must have shape \(N, 3\), \(N, 4\) or \(B, N, 3\), got shape \(3, 1000\) float64; did you pass X.T\?"):
        project(np.zeros((3, 1000)), cam)
    with pytest.raises(ValueError, match="batch size 1 or 1"):
        project(np.zeros((2, 5, 3)), cam)
    with pytest.raises(TypeError, match="camera must be a geometry.Camera"):
        project(np.zeros((5, 3)), np.eye(3))
    with pytest.raises(TypeError, match="points must be"):
        project(np.array([["a", "b", "c"]]), cam)
    with pytest.raises(ValueError, match="singular"):
        Camera.from_projection(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="up must not be parallel"):
        Camera.look_at([0, 0, 5.0], [0, 0, 0], up=(0, 0, 1), fov=60, width=10, height=10)
    with pytest.raises(ValueError, match="depth must be 480x640"):
        depth_to_points(np.ones((10, 10)), Camera(K0, R0, T0, 640, 480))
