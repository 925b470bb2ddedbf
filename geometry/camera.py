"""A batch of pinhole cameras in OpenCV conventions.

Convention:
    Camera axes are OpenCV's: x right, y down, z forward (into the scene). ``R``, ``T`` map world to
    camera, ``X_cam = R @ X_world + T``; the camera centre is ``C = -R.T @ T``. Pixel coordinates put
    the centre of the top-left pixel at (0, 0); u is the column, v the row. ``K``'s last row is
    ``[0, 0, 1]`` (a K with another scale is divided by ``K[2, 2]``), so the third homogeneous
    coordinate of ``K [R|T] X`` is the depth ``z`` of X in the camera frame.
"""
from __future__ import annotations

import math

import numpy as np

from geometry.arrays import check_finite, is_tensor, shape_text, to_numpy, to_tensor
from geometry.conventions import opencv_to_opengl, opengl_to_opencv

# Loose enough for rotations printed to a few digits in calibration files and float32 tensors;
# the mistakes it exists for (K @ R, a scaled or transposed-with-translation matrix) are off by O(1).
_ROTATION_TOL = 1e-3


def _batched_matrices(x, name: str, rows: int, cols: int):
    """(rows, cols) -> (1, rows, cols); (B, rows, cols) unchanged; anything else a named error."""
    shape = tuple(x.shape)
    if len(shape) == 2 and shape == (rows, cols):
        return x[None]
    if len(shape) == 3 and shape[1:] == (rows, cols):
        return x
    hint = ""
    if len(shape) == 2 and shape[1] == cols and shape[0] % rows == 0 and shape[0] > rows:
        hint = f"; {shape[0] // rows} matrices concatenated? use np.stack / torch.stack, not concatenate / cat"
    elif len(shape) == 2 and shape == (cols, rows):
        hint = "; did you pass the transpose?"
    raise ValueError(f"{name} must have shape ({rows}, {cols}) or (B, {rows}, {cols}), got {shape_text(shape)}{hint}")


def _batched_translation(T, batch: int):
    """T as (B, 3) from (3,), OpenCV's (3, 1) column (single camera), (B, 3) or (B, 3, 1)."""
    shape = tuple(T.shape)
    if shape == (3,):
        return T[None]
    if shape == (3, 1) and batch == 1:
        return T.reshape(1, 3)
    if len(shape) == 2 and shape[1] == 3:
        return T
    if len(shape) == 3 and shape[1:] == (3, 1):
        return T[..., 0]
    if shape == (3, 1):
        raise ValueError(f"T of shape (3, 1) is ambiguous for {batch} cameras: pass (B, 3) or (B, 3, 1) for a batch")
    raise ValueError(f"T must have 3 numbers per camera, shape (3,), (3, 1), (B, 3) or (B, 3, 1), got {shape_text(shape)}")


def _check_intrinsics(K):
    """Normalise K so K[2, 2] == 1 and check it is a valid upper-triangular intrinsic matrix."""
    Kn = to_numpy(K, "K")
    if np.any(np.abs(Kn[:, 2, 2]) < 1e-12):
        raise ValueError("K must have K[2, 2] != 0, got 0")
    Kn = Kn / Kn[:, 2:3, 2:3]
    if np.any(np.abs(Kn[:, 2, :2]) > 1e-9) or np.any(np.abs(Kn[:, 1, 0]) > 1e-9):
        raise ValueError(f"K must be upper triangular with last row [0, 0, 1], got rows 2-3 {Kn[0, 1:].tolist()}")
    if np.any(Kn[:, 0, 0] <= 0) or np.any(Kn[:, 1, 1] <= 0):
        bad = np.flatnonzero((Kn[:, 0, 0] <= 0) | (Kn[:, 1, 1] <= 0))[0]
        fx, fy = Kn[bad, 0, 0], Kn[bad, 1, 1]
        what = "singular" if fx * fy == 0 else "not in OpenCV's convention"
        raise ValueError(f"K must have positive focal lengths fx, fy, got fx={fx:g}, fy={fy:g} for camera {bad} ({what})")
    return K / K[:, 2:3, 2:3]


def _check_rotation(R):
    Rn = to_numpy(R, "R")
    err = np.abs(Rn @ np.swapaxes(Rn, 1, 2) - np.eye(3)).max(axis=(1, 2))
    if np.any(err > _ROTATION_TOL):
        bad = int(np.argmax(err))
        raise ValueError(f"R must be a rotation matrix (R @ R.T = I), got deviation {err[bad]:.3g} for camera {bad}; "
                         "did you pass K @ R, or a non-orthonormal matrix?")
    det = np.linalg.det(Rn)
    if np.any(det < 0):
        bad = int(np.argmin(det))
        raise ValueError(f"R must be a proper rotation with det(R) = +1, got det {det[bad]:.3g} for camera {bad} (a reflection)")


def _check_size(width, height):
    if (width is None) != (height is None):
        raise ValueError(f"width and height must be given together, got width={width!r}, height={height!r}")
    if width is None:
        return None, None
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer number of pixels, got {value!r}")
    return int(width), int(height)


def _stack(arrays, like):
    if is_tensor(like):
        import torch

        return torch.stack(arrays)
    return np.stack(arrays)


class Camera:
    """A batch of B pinhole cameras sharing one image size.

    Args:
        K: intrinsics, (B, 3, 3) or (3, 3); a single K is shared by all B cameras.
        R: world-to-camera rotations, (B, 3, 3) or (3, 3).
        T: world-to-camera translations, (B, 3), (3,), or OpenCV's (3, 1) column for one camera.
        width, height: image size in pixels, or None for a camera with no image bounds.

    numpy inputs are stored as float64; torch inputs keep their dtype and device (and autograd).

    Example:
        >>> import numpy as np
        >>> cam = Camera(np.diag([500.0, 500.0, 1.0]), np.eye(3), [0, 0, 5], width=640, height=480)
        >>> len(cam), cam.P.shape, cam.center.tolist()
        (1, (1, 3, 4), [[-0.0, -0.0, -5.0]])
    """

    def __init__(self, K, R, T, width=None, height=None):
        first_tensor = next((x for x in (K, R, T) if is_tensor(x)), None)
        if first_tensor is not None:
            like = first_tensor if first_tensor.is_floating_point() else first_tensor.double()
            K, R, T = (to_tensor(x, name, like) for x, name in ((K, "K"), (R, "R"), (T, "T")))
        else:
            K, R, T = to_numpy(K, "K"), to_numpy(R, "R"), to_numpy(T, "T")
        R = _batched_matrices(R, "R", 3, 3)
        K = _batched_matrices(K, "K", 3, 3)
        T = _batched_translation(T, R.shape[0])
        batch = R.shape[0]
        if K.shape[0] == 1 and batch > 1:
            K = K.expand(batch, 3, 3) if is_tensor(K) else np.broadcast_to(K, (batch, 3, 3))
        if K.shape[0] != batch or T.shape[0] != batch:
            raise ValueError(f"K, R and T must describe the same number of cameras, got K {K.shape[0]}, "
                             f"R {batch}, T {T.shape[0]}")
        for x, name in ((K, "K"), (R, "R"), (T, "T")):
            check_finite(x, name)
        self.K = _check_intrinsics(K)
        _check_rotation(R)
        self.R, self.T = R, T
        self.width, self.height = _check_size(width, height)

    # ----------------------------------------------------------------------------------------- basics
    @property
    def is_torch(self) -> bool:
        return is_tensor(self.R)

    @property
    def has_size(self) -> bool:
        return self.width is not None

    def __len__(self) -> int:
        return int(self.R.shape[0])

    def __getitem__(self, index) -> "Camera":
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"camera index {index} is out of range for {len(self)} cameras")
            index = slice(index, index + 1 if index != -1 else None)
        return self._replace(self.K[index], self.R[index], self.T[index])

    def _replace(self, K, R, T, width="same", height="same") -> "Camera":
        cam = object.__new__(Camera)
        cam.K, cam.R, cam.T = K, R, T
        cam.width = self.width if width == "same" else width
        cam.height = self.height if height == "same" else height
        return cam

    def __repr__(self) -> str:
        kind = f"torch {str(self.R.dtype).replace('torch.', '')} on {self.R.device}" if self.is_torch else "numpy"
        size = f"{self.width}x{self.height}" if self.has_size else "no size"
        return f"Camera(B={len(self)}, {size}, {kind})"

    # -------------------------------------------------------------------------------- derived values
    @property
    def P(self):
        """Projection matrices ``K [R|T]``, (B, 3, 4)."""
        if self.is_torch:
            import torch

            return self.K @ torch.cat([self.R, self.T[..., None]], dim=-1)
        return self.K @ np.concatenate([self.R, self.T[..., None]], axis=-1)

    @property
    def center(self):
        """Camera centres in world coordinates ``-R.T @ T``, (B, 3)."""
        return -(self.R.transpose(-1, -2) @ self.T[..., None])[..., 0] if self.is_torch else \
            -np.einsum("bji,bj->bi", self.R, self.T)

    def c2w(self, convention: str = "opencv"):
        """Camera-to-world poses, (B, 4, 4); ``convention="opengl"`` gives Blender/NeRF camera axes."""
        if self.is_torch:
            import torch

            pose = torch.zeros(len(self), 4, 4, dtype=self.R.dtype, device=self.R.device)
        else:
            pose = np.zeros((len(self), 4, 4))
        pose[:, :3, :3] = self.R.transpose(-1, -2) if self.is_torch else np.swapaxes(self.R, 1, 2)
        pose[:, :3, 3] = self.center
        pose[:, 3, 3] = 1
        return _convert_pose(pose, "opencv", convention)

    # ----------------------------------------------------------------------------------- conversions
    def numpy(self) -> "Camera":
        """The same cameras as float64 numpy arrays (detached from autograd)."""
        return self._replace(*(to_numpy(x, "camera") for x in (self.K, self.R, self.T)))

    def to(self, device=None, dtype=None) -> "Camera":
        """The same cameras as torch tensors on ``device`` with ``dtype`` (default: keep, or float32)."""
        import torch

        if not self.is_torch:
            dtype = dtype or torch.float32
            K, R, T = (torch.as_tensor(x, dtype=dtype, device=device) for x in (self.K, self.R, self.T))
        else:
            K, R, T = (x.to(device=device, dtype=dtype) for x in (self.K, self.R, self.T))
        return self._replace(K, R, T)

    def resized(self, width: int, height: int) -> "Camera":
        """The cameras of the same views imaged at ``width`` x ``height`` pixels.

        Pixel centres sit at integers, so the edge of the image stays fixed: ``u' = (u + 0.5) * s - 0.5``.
        """
        if not self.has_size:
            raise ValueError("resized needs a camera with width and height set, got a camera with no size")
        width, height = _check_size(width, height)
        sx, sy = width / self.width, height / self.height
        S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        if self.is_torch:
            import torch

            S = torch.as_tensor(S, dtype=self.K.dtype, device=self.K.device)
        return self._replace(S @ self.K, self.R, self.T, width, height)

    @staticmethod
    def concat(cameras) -> "Camera":
        """One batch from a sequence of Cameras of the same image size."""
        cameras = list(cameras)
        if not cameras or not all(isinstance(c, Camera) for c in cameras):
            raise TypeError("cameras must be a non-empty sequence of Camera objects")
        sizes = {(c.width, c.height) for c in cameras}
        if len(sizes) > 1:
            raise ValueError(f"cameras must share one image size to be concatenated, got sizes {sorted(sizes, key=str)}")
        if len({c.is_torch for c in cameras}) > 1:
            raise TypeError("cameras must all be numpy or all be torch to be concatenated; convert with .numpy() or .to()")
        first = cameras[0]
        if first.is_torch:
            import torch

            cat = torch.cat
        else:
            cat = np.concatenate
        return first._replace(*(cat([getattr(c, a) for c in cameras]) for a in ("K", "R", "T")))

    # ---------------------------------------------------------------------------------- constructors
    @classmethod
    def from_projection(cls, P, width=None, height=None, *, orient: bool = True) -> "Camera":
        """Cameras from 3x4 projection matrices by RQ decomposition, ``P ~ K [R|T]``.

        Args:
            P: (3, 4) or (B, 3, 4), any non-zero scale and sign; ``M = P[:, :3]`` must be invertible.
            width, height: the image size in pixels (it also helps find the scene, below).
            orient: choose each P's sign so that the scene lies in front of every camera
                (:func:`geometry.orientation.front_signs`: where the views look); False takes P's sign
                as given. One camera carries no evidence of where its scene is and keeps
                ``det(M) > 0``, as does ``orient=False`` for any batch.

        The result has positive focal lengths, det R = +1, and reproduces P up to a positive scale
        (up to scale for one camera).

        Raises:
            ValueError: for the in-front sign ``det(M) < 0``: the frame is mirrored and no rotation
                reproduces it; :func:`data.frames.orient_projections` reflects a world axis first.
        """
        was_tensor = is_tensor(P)
        Pn = _batched_matrices(to_numpy(P, "P"), "P", 3, 4)
        check_finite(Pn, "P")
        M = Pn[:, :, :3]
        det = np.linalg.det(M)
        scale = np.abs(M).max(axis=(1, 2)) ** 3
        if np.any(np.abs(det) <= 1e-12 * scale):
            raise ValueError("P must have an invertible left 3x3 block (a finite camera), got a singular one")
        if orient and len(Pn) > 1:
            from geometry.orientation import front_signs

            signs = front_signs(Pn, *_check_size(width, height))
            flipped = signs * det < 0
            if flipped.all():
                raise ValueError(f"P must describe a right-handed frame, but for the sign that puts the scene in "
                                 f"front det(P[:, :3]) < 0 in all {len(Pn)} views: the frame is mirrored; load it "
                                 f"with data.frames.orient_projections, which reflects a world axis "
                                 f"(P @ diag(1, 1, -1, 1)), or reflect an axis yourself")
            if flipped.any():
                odd = np.flatnonzero(flipped if flipped.sum() <= len(Pn) / 2 else ~flipped).tolist()
                raise ValueError(f"P must be one consistent calibration, but for the sign that puts the scene in "
                                 f"front det(P[:, :3]) has mixed signs: views {odd} are mirrored relative to "
                                 f"the other {len(Pn) - len(odd)}")
        else:
            signs = np.sign(det)  # no evidence of where the scene is: the sign with det(M) > 0
        Pn = Pn * signs[:, None, None]
        K, R = _rq(Pn[:, :, :3])
        T = np.linalg.solve(K, Pn[:, :, 3:])[..., 0]
        cam = cls(K / K[:, 2:3, 2:3], R, T, width, height)
        return cam.to(device=P.device, dtype=P.dtype if P.is_floating_point() else None) if was_tensor else cam

    @classmethod
    def look_at(cls, eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0), K=None, fov=None, width=None, height=None):
        """Cameras at ``eye`` looking at ``target``, with ``up`` pointing up in the image.

        Args:
            eye: (3,) or (B, 3) camera centres. target: (3,) or (B, 3). up: (3,) world up direction.
            K: intrinsics (3, 3) or (B, 3, 3); or ``fov``: horizontal field of view in degrees, which
                needs width and height and puts the principal point at the image centre.
        """
        eye = to_numpy(eye, "eye")
        target, up = to_numpy(target, "target"), to_numpy(up, "up")
        for name, x in (("eye", eye), ("target", target)):
            if x.shape[-1:] != (3,) or x.ndim > 2:
                raise ValueError(f"{name} must have shape (3,) or (B, 3), got {shape_text(x.shape)}")
        if up.shape != (3,):
            raise ValueError(f"up must have shape (3,), got {shape_text(up.shape)}")
        eye, target = np.broadcast_arrays(np.atleast_2d(eye), np.atleast_2d(target))
        forward = target - eye
        norm = np.linalg.norm(forward, axis=1, keepdims=True)
        if np.any(norm < 1e-12):
            raise ValueError("eye and target must differ, got the same point")
        forward = forward / norm
        right = np.cross(forward, up)
        rnorm = np.linalg.norm(right, axis=1, keepdims=True)
        if np.any(rnorm < 1e-9 * np.linalg.norm(up)):
            raise ValueError(f"up must not be parallel to the viewing direction, got up={up.tolist()}")
        right = right / rnorm
        down = np.cross(forward, right)
        R = np.stack([right, down, forward], axis=1)
        T = -np.einsum("bij,bj->bi", R, eye)
        if (K is None) == (fov is None):
            raise ValueError("look_at needs exactly one of K or fov, got " + ("both" if K is not None else "neither"))
        if fov is not None:
            K = intrinsics_from_fov(fov, width, height)
        return cls(K, R, T, width, height)

    @classmethod
    def from_c2w(cls, c2w, K, width=None, height=None, convention: str = "opencv") -> "Camera":
        """Cameras from camera-to-world poses (B, 4, 4) or (4, 4), or (…, 3, 4) without the last row.

        ``convention="opengl"``: the pose uses OpenGL/Blender camera axes (x right, y up, z backward),
        as NeRF's ``transforms.json`` does; it is converted to OpenCV's on the way in.
        """
        pose = to_numpy(c2w, "c2w")
        if pose.ndim == 2:
            pose = pose[None]
        if pose.ndim != 3 or pose.shape[1:] not in ((4, 4), (3, 4)):
            raise ValueError(f"c2w must have shape (4, 4), (3, 4), (B, 4, 4) or (B, 3, 4), got {shape_text(to_numpy(c2w, 'c2w').shape)}")
        check_finite(pose, "c2w")
        pose = _convert_pose(pose[:, :3, :4], convention, "opencv")
        R = np.swapaxes(pose[:, :3, :3], 1, 2)
        T = -np.einsum("bij,bj->bi", R, pose[:, :3, 3])
        return cls(K, R, T, width, height)

    @classmethod
    def from_opencv(cls, rvec, tvec, K, width=None, height=None) -> "Camera":
        """Cameras from OpenCV's Rodrigues vectors and translations (as from cv2.solvePnP / calibrateCamera).

        Args:
            rvec: (3,), (3, 1) or (B, 3). tvec: (3,), (3, 1) or (B, 3). K: (3, 3) or (B, 3, 3).
        """
        from scipy.spatial.transform import Rotation

        rvec = to_numpy(rvec, "rvec")
        if rvec.shape in ((3,), (3, 1), (1, 3)):
            rvec = rvec.reshape(1, 3)
        if rvec.ndim != 2 or rvec.shape[1] != 3:
            raise ValueError(f"rvec must have shape (3,), (3, 1) or (B, 3), got {shape_text(rvec.shape)}")
        check_finite(rvec, "rvec")
        return cls(K, Rotation.from_rotvec(rvec).as_matrix(), tvec, width, height)

    @classmethod
    def from_open3d(cls, params) -> "Camera":
        """Cameras from ``open3d.camera.PinholeCameraParameters`` (one, a list, or a trajectory)."""
        if hasattr(params, "parameters"):  # PinholeCameraTrajectory
            params = list(params.parameters)
        if not isinstance(params, (list, tuple)):
            params = [params]
        if not params or not all(hasattr(p, "intrinsic") and hasattr(p, "extrinsic") for p in params):
            raise TypeError("params must be open3d PinholeCameraParameters (or a list or trajectory of them)")
        sizes = {(p.intrinsic.width, p.intrinsic.height) for p in params}
        if len(sizes) > 1:
            raise ValueError(f"params must share one image size, got {sorted(sizes)}")
        width, height = sizes.pop()
        extrinsic = np.stack([np.asarray(p.extrinsic) for p in params])
        K = np.stack([np.asarray(p.intrinsic.intrinsic_matrix) for p in params])
        size = (width, height) if width > 0 and height > 0 else (None, None)
        return cls(K, extrinsic[:, :3, :3], extrinsic[:, :3, 3], *size)

    def to_open3d(self):
        """``open3d.camera.PinholeCameraParameters`` for one camera, a list of them for a batch.

        Open3D's pinhole model uses the same pixel and axis conventions, so no conversion is needed.
        """
        import open3d as o3d

        if not self.has_size:
            raise ValueError("to_open3d needs a camera with width and height set, got a camera with no size")
        cam = self.numpy()
        out = []
        for K, R, T in zip(cam.K, cam.R, cam.T):
            params = o3d.camera.PinholeCameraParameters()
            params.intrinsic = o3d.camera.PinholeCameraIntrinsic(self.width, self.height, K)
            extrinsic = np.eye(4)
            extrinsic[:3, :3], extrinsic[:3, 3] = R, T
            params.extrinsic = extrinsic
            out.append(params)
        return out[0] if len(out) == 1 else out


def intrinsics_from_fov(fov, width, height):
    """K (3, 3) for a horizontal field of view in degrees, square pixels, principal point at the centre."""
    width, height = _check_size(width, height)
    if width is None:
        raise ValueError("fov needs width and height to build K, got none")
    if not 0 < float(fov) < 180:
        raise ValueError(f"fov must be a horizontal field of view in degrees in (0, 180), got {fov!r}")
    f = 0.5 * width / math.tan(math.radians(float(fov)) / 2)
    # the image centre lies between pixels (w-1)/2 when the top-left pixel centre is (0, 0)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def _convert_pose(pose, source: str, target: str):
    for name, value in (("convention", source), ("convention", target)):
        if value not in ("opencv", "opengl"):
            raise ValueError(f"{name} must be 'opencv' or 'opengl', got {value!r}")
    if source == target:
        return pose
    return opengl_to_opencv(pose) if source == "opengl" else opencv_to_opengl(pose)


def _rq(M):
    """RQ decomposition of (B, 3, 3) matrices with det > 0: M = K R, K upper triangular with K[i, i] > 0."""
    flip = np.eye(3)[::-1]
    Q, U = np.linalg.qr(np.swapaxes(flip @ M, 1, 2))
    K = flip @ np.swapaxes(U, 1, 2) @ flip
    R = flip @ np.swapaxes(Q, 1, 2)
    signs = np.sign(np.diagonal(K, axis1=1, axis2=2))
    signs[signs == 0] = 1
    return K * signs[:, None, :], R * signs[:, :, None]
