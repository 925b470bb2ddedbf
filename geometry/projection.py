"""Projection, unprojection and depth maps for a batch of cameras: ``U = K [R|T] X``.

numpy in -> numpy out (a fused Numba kernel); torch in -> torch out, same device and dtype, and
differentiable. Convention: see :mod:`geometry.camera` and :mod:`geometry.conventions`.
"""
from __future__ import annotations

import numpy as np

from geometry.arrays import describe, float_dtype_of, is_tensor, to_numpy, to_tensor
from geometry.camera import Camera

#: depths at or below this are "at or behind the camera": never divided through, never valid
DEFAULT_EPS = 1e-9


def _check_camera(camera):
    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a geometry.Camera, got {type(camera).__name__}")


def _points_3d(points, batch: int):
    """points as (Bp, N, C), Bp in {1, batch}, C in {3, 4}, with a named error for anything else."""
    shape = tuple(points.shape)
    if len(shape) == 2 and shape[1] in (3, 4):
        return points[None]
    if len(shape) == 3 and shape[2] in (3, 4) and shape[0] in (1, batch):
        return points
    if len(shape) == 3 and shape[2] in (3, 4):
        raise ValueError(f"points must have batch size 1 or {batch} (one per camera), got {describe(points)}")
    hint = "; did you pass X.T?" if len(shape) == 2 and shape[0] in (3, 4) else ""
    raise ValueError(f"points must have shape (N, 3), (N, 4) or (B, N, 3), got {describe(points)}{hint}")


def project(points, camera: Camera, eps: float = DEFAULT_EPS, out=None):
    """Project world points into every camera of the batch.

    Args:
        points: (N, 3) world points, (N, 4) homogeneous ones, or (B, N, 3) one set per camera.
        camera: a :class:`Camera` batch of B cameras.
        eps: depths ``<= eps`` count as at or behind the camera.
        out: optional ``(uv, depth, valid)`` numpy arrays of the result's shapes and dtypes to write
            into, for loops that project batch after batch (fresh outputs cost page faults).

    Returns:
        uv: (B, N, 2) pixel coordinates (u column, v row; top-left pixel centre at (0, 0)), in the
            points' floating dtype; arithmetic is in that precision too (float64 for exact results).
        depth: (B, N) depth z in each camera frame (0 for homogeneous points with w = 0, and where
            it is not finite).
        valid: (B, N) bool, in front of the camera (``depth > eps``), finite and, when the camera has
            a size, inside the image (``-0.5 <= u < W - 0.5`` and ``-0.5 <= v < H - 0.5``). Points
            at or behind the camera and non-finite ones (NaN or inf coordinates, or finite ones whose
            arithmetic overflows, such as 1e37 in float32) get uv = 0, so every output is finite;
            points off the image keep their (finite) uv.

    Example:
        >>> import numpy as np
        >>> cam = Camera(np.diag([100.0, 100.0, 1.0]), np.eye(3), [0, 0, 2], width=64, height=48)
        >>> uv, depth, valid = project(np.array([[0.1, -0.2, 0.0], [0.0, 0.0, -3.0]]), cam)
        >>> uv[0].tolist(), depth[0].tolist(), valid[0].tolist()
        ([[5.0, -10.0], [0.0, 0.0]], [2.0, -1.0], [False, False])
    """
    _check_camera(camera)
    if is_tensor(points):
        if out is not None:
            raise TypeError("out is for numpy points; torch points always get new tensors")
        return _project_torch(points, camera, eps)
    if not isinstance(points, np.ndarray):
        points = to_numpy(points, "points", dtype=None)
    if not (np.issubdtype(points.dtype, np.number) or points.dtype == bool):
        raise TypeError(f"points must be a numeric array, got dtype {points.dtype}")
    pts = _points_3d(points, len(camera))
    dtype = float_dtype_of(pts)
    if pts.dtype != dtype or not pts.flags.c_contiguous:
        pts = np.ascontiguousarray(pts, dtype=dtype)
    from geometry.projection_numba import constants, project_kernel

    batch, n_points = len(camera), pts.shape[1]
    uv, depth, valid = _outputs(out, (batch, n_points), dtype)
    with np.errstate(over="ignore"):  # a P past float32's range becomes inf: its points come back invalid
        P = np.ascontiguousarray(camera.numpy().P, dtype=dtype)
    project_kernel(pts, P, constants(dtype, camera.width, camera.height, eps), uv, depth, valid)
    return uv, depth, valid


def _outputs(out, shape, dtype):
    """Fresh (uv, depth, valid) arrays, or the caller's ``out`` after checking shapes and dtypes."""
    expected = ((shape + (2,), dtype), (shape, dtype), (shape, np.dtype(bool)))
    if out is None:
        return tuple(np.empty(s, d) for s, d in expected)
    if not (isinstance(out, (tuple, list)) and len(out) == 3):
        raise TypeError(f"out must be a tuple (uv, depth, valid) of numpy arrays, got {type(out).__name__}")
    for name, array, (s, d) in zip(("uv", "depth", "valid"), out, expected):
        if not (isinstance(array, np.ndarray) and array.shape == s and array.dtype == d
                and array.flags.c_contiguous and array.flags.writeable):
            raise ValueError(f"out's {name} must be a writable C-contiguous array of shape {s} and dtype "
                             f"{np.dtype(d).name}, got {describe(array)}")
    return tuple(out)


def _project_torch(points, camera: Camera, eps: float):
    import torch

    if not points.is_floating_point():
        points = points.to(torch.get_default_dtype())
    batch = len(camera)
    pts = _points_3d(points, batch).expand(batch, -1, -1)
    P = to_tensor(camera.P, "camera", like=pts)  # (B, 3, 4)
    if pts.shape[-1] == 3:  # h = X @ M.T + t in one fused batched matmul
        h = torch.baddbmm(P[:, None, :, 3], pts, P[:, :, :3].transpose(1, 2))
        depth = h[..., 2]
    else:
        h = torch.bmm(pts, P.transpose(1, 2))
        w = pts[..., 3]
        at_infinity = w == 0
        depth = torch.where(at_infinity, 0.0, h[..., 2] / torch.where(at_infinity, 1.0, w))
    front = depth > eps
    inv = torch.where(front, h[..., 2], 1.0).reciprocal()  # never divide by a depth <= eps
    uv = h[..., :2] * inv[..., None]
    if pts.shape[-1] == 3 and _cannot_overflow(pts, P, eps):
        valid = front  # every output is finite: the test below (a third of the time on a CPU) is not needed
        uv = uv.masked_fill(~valid[..., None], 0.0)
    else:
        # as the Numba kernel: a non-finite input always reaches uv or depth (inf * 0, inf - inf are
        # NaN). Written for speed on a CPU, where x - x beats isfinite: it is 0 only for finite x
        # (NaN otherwise, and NaN == NaN is False); front excludes -inf; one where() zeroes the rest
        u, v = uv[..., 0], uv[..., 1]
        valid = front & (depth < float("inf")) & ((u - u) == (v - v))
        uv = torch.where(valid[..., None], uv, 0.0)
        depth = depth.nan_to_num(0.0, 0.0, 0.0)
    if camera.has_size:
        u, v = uv[..., 0], uv[..., 1]
        valid = valid & (u >= -0.5) & (u < camera.width - 0.5) & (v >= -0.5) & (v < camera.height - 0.5)
    return uv, depth, valid


def _cannot_overflow(pts, P, eps: float) -> bool:
    """True when the points (B, N, 3) are finite and small enough that no ``P X`` nor ``uv = h / z``
    (z > eps) can overflow: one reduction over the points, which a NaN or inf makes False (on CUDA
    the answer costs one device sync, far less than the passes it saves on large batches)."""
    import torch

    if not pts.numel():
        return True
    low, high = torch.aminmax(pts.detach())  # NaN in, NaN out (so False below); faster than abs().amax()
    largest = torch.maximum(-low, high)
    h_bound = (largest * P.detach().abs().sum(-1).amax()).item()  # |P X| <= |X|_max * max row sum of |P|
    return h_bound < torch.finfo(pts.dtype).max * min(eps, 1.0) / 4  # |uv| = |h| / z < |h| / eps


def _inverse_intrinsics(K):
    """Closed-form inverse of upper-triangular K with K[2, 2] = 1, (B, 3, 3); keeps autograd."""
    fx, s, cx = K[:, 0, 0], K[:, 0, 1], K[:, 0, 2]
    fy, cy = K[:, 1, 1], K[:, 1, 2]
    if is_tensor(K):
        import torch

        zero, one = torch.zeros_like(fx), torch.ones_like(fx)
        stack = torch.stack
    else:
        zero, one = np.zeros_like(fx), np.ones_like(fx)
        stack = np.stack
    rows = [stack([1 / fx, -s / (fx * fy), (s * cy - cx * fy) / (fx * fy)], -1),
            stack([zero, 1 / fy, -cy / fy], -1),
            stack([zero, zero, one], -1)]
    return stack(rows, -2)


def unproject(uv, depth, camera: Camera, eps: float = DEFAULT_EPS, *, return_valid: bool = False):
    """Lift pixels with known depth back to world points: the exact inverse of :func:`project`.

    Args:
        uv: (N, 2) or (B, N, 2) pixel coordinates. depth: (N,) or (B, N) depth z in the camera frame.
        camera: a :class:`Camera` batch of B cameras (a single set of pixels is used for every camera).
        eps: depths ``<= eps`` count as at or behind the camera (for ``valid``, as in :func:`project`).
        return_valid: also return the validity mask.

    Returns:
        points: (B, N, 3) world points, ``R.T @ (depth * K^-1 [u, v, 1] - T)``. A pixel whose uv or
            depth is NaN or inf, or whose point overflows, gets the point (0, 0, 0), so every output
            is finite (pixels at or behind the camera still get their exact point).
        valid: (B, N) bool, only with ``return_valid=True``: :func:`project`'s rule for the returned
            points, from the inputs: finite, ``depth > eps`` and, when the camera has a size, uv
            inside the image.

    Example:
        >>> import numpy as np
        >>> cam = Camera(np.diag([100.0, 100.0, 1.0]), np.eye(3), [0, 0, 2], width=64, height=48)
        >>> X, valid = unproject(np.array([[5.0, 10.0], [1.0, np.nan]]), np.array([2.0, 2.0]), cam,
        ...                      return_valid=True)
        >>> X[0].tolist(), valid[0].tolist()
        ([[0.1, 0.2, 0.0], [0.0, 0.0, 0.0]], [True, False])
    """
    _check_camera(camera)
    torch_in = is_tensor(uv) or is_tensor(depth)
    if torch_in:
        like = uv if is_tensor(uv) and uv.is_floating_point() else depth
        uv, depth = to_tensor(uv, "uv", like), to_tensor(depth, "depth", like)
        cam = camera.to(device=like.device, dtype=like.dtype)
    else:
        uv, depth, cam = to_numpy(uv, "uv"), to_numpy(depth, "depth"), camera.numpy()
    if uv.ndim not in (2, 3) or uv.shape[-1] != 2:
        hint = "; did you pass uv.T?" if uv.ndim == 2 and uv.shape[0] == 2 else ""
        raise ValueError(f"uv must have shape (N, 2) or (B, N, 2), got {describe(uv)}{hint}")
    if tuple(depth.shape) != tuple(uv.shape[:-1]):
        raise ValueError(f"depth must have shape {tuple(uv.shape[:-1])} to match uv, got {describe(depth)}")
    if uv.ndim == 3 and uv.shape[0] not in (1, len(cam)):
        raise ValueError(f"uv must have batch size 1 or {len(cam)} (one per camera), got {describe(uv)}")
    with np.errstate(all="ignore"):  # NaN / inf input is documented input: no RuntimeWarning
        x_cam = _rays(uv, cam.K) * depth[..., None]  # (B, N, 3)
        points = (x_cam - cam.T[:, None, :]) @ cam.R  # row-vector form of R.T @ (x - T)
    # inputs checked as well as the result: a BLAS may skip zero factors, so inf * 0 need not show
    finite = _all_finite(uv) & _isfinite(depth) & _all_finite(points)
    points = _select(finite[..., None], points, 0.0)
    if not return_valid:
        return points
    u, v = uv[..., 0], uv[..., 1]
    valid = finite & (depth > eps)
    if cam.has_size:
        valid = valid & (u >= -0.5) & (u < cam.width - 0.5) & (v >= -0.5) & (v < cam.height - 0.5)
    return points, valid


def _isfinite(x):
    return x.isfinite() if is_tensor(x) else np.isfinite(x)


def _all_finite(x):
    """(..., C) -> (...): every entry of the last axis finite."""
    return _isfinite(x).all(-1)


def _select(mask, x, fill: float):
    """``x`` where ``mask``, else ``fill`` (broadcasting); differentiable for tensors."""
    if is_tensor(x):
        return x.masked_fill(~mask, fill)
    return np.where(mask, x, fill)


def _rays(uv, K):
    """Camera-frame rays ``K^-1 [u, v, 1]`` with unit depth: uv (..., N, 2), K (B, 3, 3) -> (B, N, 3)."""
    Kinv = _inverse_intrinsics(K)
    if is_tensor(uv):
        Kinv = Kinv.transpose(-1, -2)
    else:
        Kinv = np.swapaxes(Kinv, -1, -2)
    return uv @ Kinv[..., :2, :] + Kinv[..., None, 2, :]


def depth_to_points(depth, camera: Camera, image=None):
    """World points (and colours) of every pixel with a depth, over one or several depth maps.

    Args:
        depth: (H, W) or (B, H, W) depth z per pixel; 0, negative, NaN or inf mean "no depth".
        camera: a :class:`Camera` of B cameras (1 for a single map); its size must be W x H if set.
        image: optional (H, W, C) or (B, H, W, C) colours (any dtype), sampled at the same pixels.

    Returns:
        points: (M, 3) world points of all pixels with a depth, view after view, row-major. A pixel
            whose point overflows (a depth near the float limit) is left out like one without depth,
            so every point is finite.
        colors: (M, C) when ``image`` is given, of the image's dtype.
    """
    _check_camera(camera)
    torch_in = is_tensor(depth)
    if not torch_in:
        depth = to_numpy(depth, "depth", dtype=None)
        depth = depth.astype(float_dtype_of(depth), copy=False)
    maps = depth[None] if depth.ndim == 2 else depth
    if maps.ndim != 3:
        raise ValueError(f"depth must have shape (H, W) or (B, H, W), got {describe(depth)}")
    batch, height, width = maps.shape
    if batch != len(camera):
        raise ValueError(f"depth must hold one map per camera ({len(camera)}), got {batch}")
    if camera.has_size and (width, height) != (camera.width, camera.height):
        raise ValueError(f"depth must be {camera.height}x{camera.width} (H x W) like the camera's image, "
                         f"got {height}x{width}")
    if torch_in:
        import torch

        has_depth = torch.isfinite(maps) & (maps > 0)
        b, rows, cols = torch.nonzero(has_depth, as_tuple=True)
        uv = torch.stack([cols, rows], -1).to(maps.dtype)
    else:
        has_depth = np.isfinite(maps) & (maps > 0)
        b, rows, cols = np.nonzero(has_depth)
        uv = np.stack([cols, rows], -1).astype(maps.dtype)
    z = maps[b, rows, cols]
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing point is left out below
        points = _unproject_per_point(uv, z, b, camera)
    finite = _all_finite(points)
    if not bool(finite.all()):  # rare (overflow): only then pay for the selection
        points, b, rows, cols = points[finite], b[finite], rows[finite], cols[finite]
    if image is None:
        return points
    colors = image[None] if image.ndim == 3 else image
    if tuple(colors.shape[:3]) != (batch, height, width):
        raise ValueError(f"image must have shape {(height, width)} + (C,) per depth map, got {describe(image)}")
    return points, colors[b, rows, cols]


def _unproject_per_point(uv, z, view, camera: Camera):
    """Unproject (M, 2) pixels with depths (M,), each through camera ``view[m]``, -> (M, 3)."""
    cam = camera.to(device=uv.device, dtype=uv.dtype) if is_tensor(uv) else camera.numpy()
    x_cam = _rays(uv[:, None, :], cam.K[view])[:, 0, :] * z[:, None]  # one "batch" per pixel
    return ((x_cam - cam.T[view])[:, None, :] @ cam.R[view])[:, 0, :]


def pixel_rays(camera: Camera):
    """World rays through every pixel centre of every camera.

    Args:
        camera: a :class:`Camera` of B cameras with ``width`` and ``height`` set.

    Returns:
        origins: (B, H, W, 3) float64, the camera centres (a broadcast view, not a copy).
        directions: (B, H, W, 3) float64, ``R^T K^-1 [u, v, 1]`` with u the column and v the row
        index: not unit length, but of camera-frame depth 1, so a point at ray parameter t lies at
        depth t.

    Example:
        >>> import numpy as np
        >>> from geometry import Camera
        >>> cam = Camera.look_at([0.0, -3.0, 0.0], [0.0, 0.0, 0.0], up=(0, 0, 1), fov=60, width=4, height=3)
        >>> origins, directions = pixel_rays(cam)
        >>> directions.shape, bool(np.allclose(origins[0, 0, 0], [0, -3, 0]))
        ((1, 3, 4, 3), True)
    """
    _check_camera(camera)
    cam = camera.numpy()
    if not cam.has_size:
        raise ValueError("camera must have width and height set to build pixel rays, got a camera without a size")
    h, w = cam.height, cam.width
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1)                      # (H, W, 3)
    to_world = np.swapaxes(cam.R, 1, 2) @ np.linalg.inv(cam.K)                # R^T K^-1, (B, 3, 3)
    d_world = pixels @ np.swapaxes(to_world, 1, 2)[:, None]                   # one matmul: einsum is 5x slower
    origins = np.broadcast_to(cam.center[:, None, None, :], d_world.shape)
    return origins, d_world
