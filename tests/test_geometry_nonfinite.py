"""Non-finite values in projection and unprojection (issue 16): whatever the floats (NaN, inf, huge,
subnormal), every output is finite and ``valid`` is honest, on numpy (the Numba kernel) and torch,
in float32 and float64 alike.

"Honest" is checked against a reference in extended precision (np.longdouble, whose range keeps
1e300 * 900 finite) with a bound on the rounding error of the working dtype: ``valid`` True means a
finite point in front of the camera whose uv is the exact projection within that bound; points
that are clearly behind, clearly off the image, or not finite are never valid; points that are
clearly in front, inside and far from overflow always are. Cases within rounding of a boundary, or
near the dtype's overflow, may go either way and only get the first two checks.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from geometry import Camera, depth_to_points, project, unproject
from geometry.projection import DEFAULT_EPS

W, H = 64, 48
LD = np.longdouble
# values that broke the policy or sit at its edges: NaN, inf, float32/float64 overflow, subnormals
SPECIAL = [np.nan, np.inf, -np.inf, 1e37, -1e37, 3e38, 1e300, -1e300, 1.7e308, 5e-324, -1e-310, 1e-45, 0.0, -0.0]
DTYPES = [np.float32, np.float64]
TORCH = {np.float32: torch.float32, np.float64: torch.float64}

typical = st.floats(-3, 3)  # in front of and inside the cameras below often enough
anything = st.floats(allow_nan=True, allow_infinity=True)
coordinate = st.one_of(typical, typical, st.floats(-30, 30), st.sampled_from(SPECIAL), anything)
weight = st.one_of(st.just(1.0), st.floats(0.1, 3), st.floats(-3, -0.1), st.sampled_from(SPECIAL), anything)


def random_camera(seed, batch, sized, scale):
    """Cameras about 6 units from the origin, looking at it; T times ``scale`` (far cameras overflow)."""
    rng = np.random.default_rng(seed)
    K = np.array([[rng.uniform(40, 90), rng.uniform(-2, 2), rng.uniform(28, 36)],
                  [0, rng.uniform(40, 90), rng.uniform(20, 28)], [0, 0, 1]])
    R = Rotation.random(batch, random_state=int(rng.integers(1 << 31))).as_matrix()
    T = (rng.normal(size=(batch, 3)) * 0.3 + [0, 0, 6]) * scale
    return Camera(K, R, T, *((W, H) if sized else (None, None)))


cameras = st.builds(random_camera, seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 2), sized=st.booleans(),
                    scale=st.sampled_from([1.0, 1.0, 1.0, 1e-3, 1e30, 1e150]))


def _points(rows, homogeneous, dtype):
    with np.errstate(over="ignore"):  # float32: 1e300 becomes inf, which is one more input to test
        pts = np.array(rows, dtype=np.float64).astype(dtype)
    return pts if homogeneous else np.ascontiguousarray(pts[:, :3])


def expected_projection(points, cam, dtype):
    """The extended-precision reference (uv, depth, their error bounds) and decision masks, (B, N)."""
    udt, big = LD(np.finfo(dtype).eps), LD(np.finfo(dtype).max) / 16  # /16: headroom for the sums
    X = points.astype(LD)
    fin = np.isfinite(points).all(-1)[None]
    if X.shape[1] == 3:
        X = np.concatenate([X, np.ones((len(X), 1), LD)], 1)
    P = cam.P.astype(LD)
    with np.errstate(all="ignore"):
        h = np.einsum("brj,nj->bnr", P, X)
        mag = np.einsum("brj,nj->bnr", np.abs(P), np.abs(X))  # bounds each row's rounding error
        e = 8 * udt * mag
        w = X[None, :, 3]
        depth = np.where(w == 0, 0, h[..., 2] / w)
        err_d = 2 * e[..., 2] / np.abs(w) + 4 * udt * np.abs(depth)
        uv = h[..., :2] / h[..., 2:]
        err_uv = 2 * (e[..., :2] + np.abs(uv) * e[..., 2:]) / np.abs(h[..., 2:]) + 4 * udt * np.abs(uv) + 1e-30
        well = np.abs(h[..., 2]) > 2 * e[..., 2]
        safe = (fin & (np.abs(P) < big).all((1, 2))[:, None] & (mag < big).all(-1) & (np.abs(uv) < big).all(-1)
                & (np.abs(depth) < big) & well)
        front = depth > DEFAULT_EPS + 2 * err_d
        behind = ~fin | (w == 0) | (depth < DEFAULT_EPS - 2 * err_d)
        if cam.has_size:
            lo, hi = uv - err_uv, uv + err_uv
            limit = np.array([cam.width - 0.5, cam.height - 0.5], LD)
            inside = ((lo >= -0.5) & (hi < limit)).all(-1)
            outside = ((hi < -0.5) | (lo >= limit)).any(-1)
        else:
            inside, outside = np.ones_like(front), np.zeros_like(front)
    return SimpleNamespace(uv=uv, depth=depth, err_uv=err_uv, err_d=err_d, fin=fin, well=well, safe=safe,
                           front=front, behind=behind, sure_valid=safe & front & inside,
                           sure_invalid=behind | (safe & front & outside))


def check_projection(points, cam, dtype, uv, depth, valid):
    uv, depth, valid = (np.asarray(a) for a in (uv, depth, valid))
    assert uv.dtype == dtype and depth.dtype == dtype and valid.dtype == bool
    assert np.isfinite(uv).all() and np.isfinite(depth).all()
    ref = expected_projection(points, cam, dtype)
    assert valid[ref.sure_valid].all(), "a finite point in front and inside is not valid"
    assert not valid[ref.sure_invalid].any(), "a point behind, off the image or not finite is valid"
    # valid is honest: finite input, in front within rounding, uv the exact projection within rounding
    assert (ref.fin | ~valid).all()
    assert (ref.depth[valid] > DEFAULT_EPS - 2 * ref.err_d[valid]).all()
    close = (np.abs(uv.astype(LD) - ref.uv) <= ref.err_uv).all(-1)
    assert close[valid & ref.well].all(), "a valid uv is not the projection"
    # points off the image keep their uv; those behind or not finite get 0 (and depth 0 if not finite)
    assert close[ref.safe & ref.front].all()
    assert (uv[ref.behind] == 0).all()
    not_finite = ~np.broadcast_to(ref.fin, valid.shape)
    assert (depth[not_finite] == 0).all()
    assert (np.abs(depth.astype(LD) - ref.depth) <= ref.err_d)[ref.safe].all()
    return valid


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(coordinate, coordinate, coordinate, weight), min_size=1, max_size=12),
       homogeneous=st.booleans(), cam=cameras)
def test_project_outputs_are_finite_and_valid_is_honest(rows, homogeneous, cam):
    for dtype in DTYPES:
        points = _points(rows, homogeneous, dtype)
        valid_np = check_projection(points, cam, dtype, *project(points, cam))
        out = (np.empty((len(cam), len(points), 2), dtype), np.empty((len(cam), len(points)), dtype),
               np.empty((len(cam), len(points)), bool))
        project(points, cam, out=out)
        for a, b in zip(out, project(points, cam)):  # the caller's buffers get the same
            np.testing.assert_array_equal(a, b)
        result = project(torch.from_numpy(points).to(TORCH[dtype]), cam)
        assert result[0].dtype == TORCH[dtype]
        valid_t = check_projection(points, cam, dtype, *(r.numpy() for r in result))
        # numpy and torch agree wherever rounding cannot tip the decision (checked above per backend);
        # where it can, both must still be honest, and they differ in a few ulp only
        both = valid_np & valid_t
        np.testing.assert_allclose(result[0].numpy()[both], project(points, cam)[0][both],
                                   rtol=64 * np.finfo(dtype).eps, atol=1e-3 if dtype == np.float32 else 1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_issue_cases_are_invalid_with_finite_uv(dtype):
    cam = random_camera(0, 1, True, 1.0)
    big = 1e37 if dtype == np.float32 else 1e300
    points = np.array([[np.inf, 0, 0], [0, -np.inf, 0], [big, big, big], [-big, 0, big], [np.nan, 0, 0],
                       [0.1, 0.1, 0.1]], dtype)
    for result in (project(points, cam), project(torch.from_numpy(points), cam)):
        uv, depth, valid = (np.asarray(r) for r in result)
        assert np.isfinite(uv).all() and np.isfinite(depth).all()
        assert valid[0].tolist() == [False] * 5 + [True]
        assert (uv[0, :5] == 0).all()


def test_torch_gradients_of_the_finite_points_stay_finite():
    cam = random_camera(1, 1, True, 1.0)
    X = torch.tensor([[0.1, 0.2, 0.3], [1e300, 1e300, 0.0], [np.inf, 0, 0]], dtype=torch.float64, requires_grad=True)
    uv, depth, valid = project(X, cam)
    (uv.sum() + depth.sum()).backward()
    assert valid.tolist() == [[True, False, False]] and torch.isfinite(X.grad[0]).all()


# -------------------------------------------------------------------------------------------- unproject
def expected_unprojection(uv, depth, cam, dtype):
    """Reference points (B, N, 3), their error bound (B, N), and (fin, safe) masks (B, N)."""
    udt, big = LD(np.finfo(dtype).eps), LD(np.finfo(dtype).max) / 16
    u, v, d = uv[:, 0].astype(LD), uv[:, 1].astype(LD), depth.astype(LD)
    K, R, T = (a.astype(LD) for a in (cam.K, cam.R, cam.T))
    fx, s, cx, fy, cy = (K[:, None, i, j] for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2)))
    fin = (np.isfinite(uv).all(-1) & np.isfinite(depth))[None]
    with np.errstate(all="ignore"):
        y = (v - cy) / fy
        x = (u - cx - s * y) / fx
        ray_mag = (np.abs(u) + np.abs(cx) + np.abs(s) * (np.abs(v) + np.abs(cy)) / fy) / fx \
            + (np.abs(v) + np.abs(cy)) / fy + 1
        x_cam = np.stack([x * d, y * d, np.broadcast_to(d, x.shape)], -1)
        X = np.einsum("bni,bij->bnj", x_cam - T[:, None, :], R)
        mag = np.abs(d) * ray_mag + np.abs(T).sum(-1)[:, None]
        err = 64 * udt * mag + 1e-300
        safe = fin & (mag < big) & (np.abs(X) < big).all(-1)
    return X, err, fin, safe


def check_unprojection(uv, depth, cam, dtype, points, valid):
    points, valid = np.asarray(points), np.asarray(valid)
    assert np.isfinite(points).all() and valid.dtype == bool and valid.shape == points.shape[:2]
    X, err, fin, safe = expected_unprojection(uv, depth, cam, dtype)
    with np.errstate(invalid="ignore"):
        in_front = np.broadcast_to(depth > DEFAULT_EPS, valid.shape)
        inside = np.ones_like(in_front)
        if cam.has_size:
            inside = np.broadcast_to(((uv >= -0.5) & (uv < [cam.width - 0.5, cam.height - 0.5])).all(-1), valid.shape)
    not_finite = ~np.broadcast_to(fin, valid.shape)
    assert not valid[not_finite].any() and (points[not_finite] == 0).all()
    assert (valid == (in_front & inside))[safe].all()  # exact: the rule reads the inputs
    assert (valid <= (in_front & inside)).all()
    close = (np.abs(points.astype(LD) - X) <= err[..., None]).all(-1)
    assert close[safe | valid].all(), "an unprojected point is not the exact lift"


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(st.one_of(st.floats(-10, 80), st.sampled_from(SPECIAL), anything),
                               st.one_of(st.floats(-10, 60), st.sampled_from(SPECIAL), anything),
                               st.one_of(st.floats(-5, 20), st.sampled_from(SPECIAL), anything)),
                     min_size=1, max_size=12), cam=cameras)
def test_unproject_outputs_are_finite_and_valid_is_honest(rows, cam):
    for dtype in DTYPES:
        with np.errstate(over="ignore"):
            data = np.array(rows, dtype=np.float64).astype(dtype)
        uv, depth = np.ascontiguousarray(data[:, :2]), np.ascontiguousarray(data[:, 2])
        points, valid = unproject(uv, depth, cam, return_valid=True)
        check_unprojection(uv, depth, cam, np.float64, points, valid)  # numpy computes in float64
        np.testing.assert_array_equal(unproject(uv, depth, cam), points)  # the points-only form, unchanged
        tp, tv = unproject(torch.from_numpy(uv), torch.from_numpy(depth), cam, return_valid=True)
        assert tp.dtype == TORCH[dtype] and tv.dtype == torch.bool
        check_unprojection(uv, depth, cam, dtype, tp, tv)
        if dtype == np.float64:  # the same arithmetic: the same decisions
            np.testing.assert_array_equal(tv.numpy(), valid)


def test_unproject_with_nan_or_inf_gives_zero_invalid_points():
    cam = random_camera(2, 1, True, 1.0)
    uv = np.array([[10.0, 10.0], [np.nan, 10.0], [10.0, np.inf], [10.0, 10.0], [10.0, 10.0]])
    depth = np.array([2.0, 2.0, 2.0, np.nan, -np.inf])
    for args in ((uv, depth), (torch.tensor(uv), torch.tensor(depth))):
        points, valid = unproject(*args, cam, return_valid=True)
        assert np.asarray(valid).tolist() == [[True, False, False, False, False]]
        assert np.isfinite(np.asarray(points)).all() and (np.asarray(points)[0, 1:] == 0).all()


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.floats(0.5, 10), st.sampled_from(SPECIAL), anything), min_size=12, max_size=12),
       seed=st.integers(0, 2**31 - 1))
def test_depth_to_points_returns_only_finite_points(values, seed):
    cam = random_camera(seed, 1, True, 1.0).resized(4, 3)
    depth = np.array(values).reshape(1, 3, 4)
    for maps in (depth, torch.tensor(depth)):
        points = np.asarray(depth_to_points(maps, cam))
        assert np.isfinite(points).all()
        with np.errstate(invalid="ignore"):
            has_depth = np.isfinite(depth) & (depth > 0)
            ordinary = has_depth & (depth < 1e300)  # far from overflow: always kept
        assert ordinary.sum() <= len(points) <= has_depth.sum()


def test_depth_to_points_leaves_out_overflowing_points():
    cam = random_camera(3, 1, True, 1.0).resized(4, 3)
    depth = np.full((1, 3, 4), 2.0)
    depth[0, 0] = np.finfo(np.float64).max  # a finite depth whose point overflows
    for maps in (depth, torch.tensor(depth)):
        points = np.asarray(depth_to_points(maps, cam))
        assert np.isfinite(points).all() and 8 <= len(points) < 12
