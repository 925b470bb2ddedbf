"""Input checks of the carving entry points: options, cameras, masks, depth maps, bounds, memory.

Each check returns the value in the form the kernels take, or raises a ``TypeError`` / ``ValueError``
(``MemoryError`` for the memory check) with one sentence that names the argument, what was expected
and what came.
"""
from __future__ import annotations

import warnings

import numpy as np

from data.memory import available_memory
from geometry import Camera
from geometry.arrays import describe, is_tensor, shape_text

__all__ = ["MAX_RESOLUTION", "METHODS", "BACKENDS", "POLICIES", "check_options", "check_tolerance", "check_slack",
           "camera_matrices", "mask_stack", "check_mask_values", "mask_values", "depth_stack", "check_image_size",
           "outside_policy", "check_bounds", "memory_estimate", "check_memory", "as_numpy", "as_tensor",
           "border_of"]

#: resolutions above this are refused outright (2**15 voxels a side is 35 TB of occupancy)
MAX_RESOLUTION = 1 << 15
METHODS = ("octree", "dense")
BACKENDS = ("numba", "torch")
POLICIES = ("carve", "keep")


def check_options(resolution, method, backend, device, tolerance) -> dict:
    """The options common to every carving call, checked: {"resolution", "method", "backend", "device"}.

    ``device`` comes back as a ``torch.device`` for backend="torch" (default: CUDA if available).

    Example:
        >>> check_options(64, "octree", "numba", None, 0)
        {'resolution': 64, 'method': 'octree', 'backend': 'numba', 'device': None}
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
        raise TypeError(f"resolution must be a positive integer (voxels along the longest side), got {resolution!r}")
    if resolution <= 0:
        raise ValueError(f"resolution must be a positive integer (voxels along the longest side), got {resolution}")
    if resolution > MAX_RESOLUTION:
        raise ValueError(f"resolution must be at most {MAX_RESOLUTION} voxels a side, got {resolution} "
                         f"({resolution ** 3 / 1e12:.3g} TB of occupancy)")
    if method not in METHODS:
        raise ValueError(f"method must be 'octree' or 'dense', got {method!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'numba' or 'torch', got {backend!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance must be an integer >= 0 (views allowed to reject a kept voxel), got {tolerance!r}")
    if backend == "numba":
        if device is not None and str(device) != "cpu":
            raise ValueError(f"device must be None or 'cpu' for backend='numba', got {device!r}; "
                             "use backend='torch' for other devices")
    else:
        import torch

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r} ({err})") \
                from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device must be available, got {str(device)!r} but torch sees no CUDA device")
    return {"resolution": int(resolution), "method": method, "backend": backend, "device": device}


def check_tolerance(tolerance: int, n_views: int) -> int:
    """``tolerance`` as an int, refused when it would keep every voxel (``>= n_views``)."""
    if tolerance >= n_views:
        raise ValueError(f"tolerance must be smaller than the number of views ({n_views}), got {tolerance}; "
                         "with it every voxel would be kept")
    return int(tolerance)


def check_slack(slack) -> float:
    """``slack`` (pixels) as a float, refused unless it is a finite number >= 0.

    Example:
        >>> check_slack(2)
        2.0
    """
    if isinstance(slack, bool) or not isinstance(slack, (int, float, np.integer, np.floating)) \
            or not np.isfinite(slack) or slack < 0:
        raise ValueError(f"slack must be a finite number of pixels >= 0, got {slack!r}")
    return float(slack)


def camera_matrices(cameras) -> tuple:
    """(B, 3, 4) float64 projection matrices, width, height of a Camera, with a named error otherwise."""
    if not isinstance(cameras, Camera):
        hint = ""
        if hasattr(cameras, "shape") and tuple(cameras.shape)[-2:] == (3, 4):
            hint = "; wrap projection matrices with geometry.Camera.from_projection(P, width, height)"
        got = describe(cameras) if hasattr(cameras, "shape") else type(cameras).__name__
        raise TypeError(f"cameras must be a geometry.Camera, got {got}{hint}")
    cam = cameras.numpy()
    P = np.ascontiguousarray(cam.P, dtype=np.float64)
    finite = np.isfinite(P).all(axis=(1, 2))
    if not finite.all():
        bad = np.flatnonzero(~finite).tolist()
        raise ValueError(f"cameras must hold finite numbers, got NaN or inf in cameras {bad}")
    return P, cameras.width, cameras.height


def mask_stack(masks, name: str, n_views: int | None):
    """(B, H, W) uint8 array or tensor from the accepted mask inputs; B is checked when n_views is given.

    Accepted: a (B, H, W) bool or uint8 array or tensor, a list of (H, W) masks, or (with
    ``n_views=1``) one (H, W) mask. bool masks are viewed as uint8 (no copy); the uint8 values are
    checked later (:func:`check_mask_values`), from the tables the kernels build in the same pass.

    Example:
        >>> mask_stack([np.eye(3, dtype=bool)] * 2, "silhouettes", 2).shape
        (2, 3, 3)
    """
    if isinstance(masks, (list, tuple)):
        masks = _stack_masks(masks, name)
    elif not (isinstance(masks, np.ndarray) or is_tensor(masks)):
        raise TypeError(f"{name} must be a (B, H, W) array, tensor or list of (H, W) masks, "
                        f"got {type(masks).__name__}")
    if masks.ndim == 2 and n_views == 1:
        masks = masks[None]
    if masks.ndim != 3:
        hint = "; RGB images? pass masks" if masks.ndim == 4 else ""
        raise ValueError(f"{name} must have shape (B, H, W), got {describe(masks)}{hint}")
    if n_views is not None and masks.shape[0] != n_views:
        hint = "; colour images (H, W, 3)? pass masks" if masks.shape[-1] in (3, 4) else ""
        raise ValueError(f"{name} must hold one mask per camera ({n_views}), got {masks.shape[0]} "
                         f"(shape {shape_text(masks.shape)}){hint}")
    if any(int(d) == 0 for d in masks.shape):
        raise ValueError(f"{name} must have a non-empty shape, got {shape_text(masks.shape)}")
    dtype = str(masks.dtype).replace("torch.", "")
    if dtype == "bool":
        if isinstance(masks, np.ndarray):
            masks = masks.view(np.uint8)
        else:
            import torch

            masks = masks.view(torch.uint8)
    elif dtype != "uint8":
        raise TypeError(f"{name} must be bool masks (or uint8 holding only 0/255 or 0/1), got dtype {dtype}; "
                        "threshold them explicitly, e.g. mask > 0.5 or gray == 0")
    return masks


def _stack_masks(masks: list, name: str):
    """One (B, H, W) tensor (all tensors) or numpy array from a list of B (H, W) masks of one size."""
    if not masks:
        raise ValueError(f"{name} must hold one mask per view, got an empty list")
    shapes = [tuple(getattr(m, "shape", np.shape(m))) for m in masks]
    if any(len(s) != 2 for s in shapes):
        bad = next(i for i, s in enumerate(shapes) if len(s) != 2)
        raise ValueError(f"{name}[{bad}] must be a 2-D (H, W) mask, got shape {shape_text(shapes[bad])}")
    if len(set(shapes)) > 1:
        bad = next(i for i, s in enumerate(shapes) if s != shapes[0])
        raise ValueError(f"{name} must all have one size, got {name}[0] {shape_text(shapes[0])} and "
                         f"{name}[{bad}] {shape_text(shapes[bad])}")
    if all(is_tensor(m) for m in masks):
        import torch

        return torch.stack(list(masks))
    return np.stack([as_numpy(m) for m in masks])


def check_mask_values(counts: np.ndarray, values: np.ndarray, n_pixels: int) -> None:
    """Named errors for uint8 masks with other values, empty masks and all-object masks.

    counts: (B,) object pixels per view; values: (B, 3) bool, the view holds a 1, a 255, another
    non-zero value; n_pixels: H * W.
    """
    if values[:, 2].any():
        bad = np.flatnonzero(values[:, 2]).tolist()
        raise ValueError(f"silhouettes of dtype uint8 must hold only 0 and 255 (or 0 and 1), got other values in "
                         f"views {bad}; threshold them explicitly (e.g. gray == 0 where 0 marks the object)")
    if values[:, 0].any() and values[:, 1].any():
        raise ValueError("silhouettes of dtype uint8 must be all 0/255 or all 0/1 masks, got both 1 and 255")
    if np.any(counts == 0):
        bad = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"silhouettes {bad} hold no object pixel, which would carve everything; check the mask "
                         "polarity or threshold, or drop those views")
    if np.any(counts == n_pixels):
        bad = np.flatnonzero(counts == n_pixels).tolist()
        raise ValueError(f"silhouettes {bad} are object everywhere ({n_pixels} pixels), so they carve nothing; "
                         "an inverted mask? the object must be True (non-zero)")


def mask_values(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(counts, values) of (B, H, W) uint8 numpy masks, as :func:`check_mask_values` takes them.

    Example:
        >>> counts, values = mask_values(np.array([[[0, 255]], [[1, 0]]], np.uint8))
        >>> counts.tolist(), values.tolist()
        ([1, 1], [[False, True, False], [True, False, False]])
    """
    flat = masks.reshape(len(masks), -1)
    counts = np.count_nonzero(flat, axis=1)
    values = np.stack([(flat == 1).any(1), (flat == 255).any(1), ((flat > 1) & (flat < 255)).any(1)], axis=1)
    return counts, values


def depth_stack(depth_maps, n_views: int) -> np.ndarray:
    """(B, H, W) float64 numpy depth maps from the accepted inputs, with named errors.

    Accepted: a (B, H, W) real array or tensor, a list of (H, W) maps, or (with ``n_views=1``) one
    (H, W) map.
    """
    if isinstance(depth_maps, (list, tuple)):
        if not depth_maps:
            raise ValueError("depth_maps must hold one map per view, got an empty list")
        arrays = [as_numpy(d) for d in depth_maps]
        shapes = [a.shape for a in arrays]
        if any(len(s) != 2 for s in shapes) or len(set(shapes)) > 1:
            raise ValueError(f"depth_maps must be (H, W) maps of one size, got shapes "
                             f"{[shape_text(s) for s in shapes][:4]}")
        depth = np.stack(arrays)
    elif isinstance(depth_maps, np.ndarray) or is_tensor(depth_maps):
        depth = as_numpy(depth_maps)
    else:
        raise TypeError(f"depth_maps must be a (B, H, W) array, tensor or list of (H, W) maps, got "
                        f"{type(depth_maps).__name__}")
    if depth.ndim == 2 and n_views == 1:
        depth = depth[None]
    if depth.ndim != 3:
        raise ValueError(f"depth_maps must have shape (B, H, W), got {describe(depth)}")
    if depth.shape[0] != n_views:
        raise ValueError(f"depth_maps must hold one map per camera ({n_views}), got {depth.shape[0]}")
    if depth.dtype == bool or not (np.issubdtype(depth.dtype, np.floating) or np.issubdtype(depth.dtype, np.integer)):
        raise TypeError(f"depth_maps must hold real depths (float or integer), got dtype {depth.dtype}")
    return depth.astype(np.float64)


def check_image_size(masks, name: str, width: int | None, height: int | None) -> tuple[int, int]:
    """(H, W) of (B, H, W) ``masks``, refused when the cameras have another size (``width=None``: any)."""
    H, W = int(masks.shape[1]), int(masks.shape[2])
    if width is not None and (H, W) != (height, width):
        hint = "; transposed images?" if (H, W) == (width, height) else ""
        raise ValueError(f"{name} must have shape (B, H, W) matching the cameras' ({height}, {width}), "
                         f"got {shape_text(masks.shape)}{hint}")
    return H, W


def outside_policy(outside, n_views: int, detect) -> np.ndarray:
    """(B,) bool, True where the view carves centres outside it.

    outside: "carve", "keep", "auto" or a list of B "carve"/"keep"; detect: a callable returning the
    (B,) bool views whose masks touch the image border, called for "auto" only (which warns).

    Example:
        >>> outside_policy(["carve", "keep"], 2, None).tolist()
        [True, False]
    """
    if isinstance(outside, str):
        if outside == "auto":
            border = np.asarray(detect(), dtype=bool)
            if border.any():
                warnings.warn(f"outside='auto': the masks of views {np.flatnonzero(border).tolist()} touch the image "
                              "border (the object leaves the frame), so those views use outside='keep'",
                              UserWarning, stacklevel=3)
            return ~border
        if outside not in POLICIES:
            raise ValueError(f"outside must be 'carve', 'keep', 'auto' or a list of 'carve'/'keep' per view, "
                             f"got {outside!r}")
        return np.full(n_views, outside == "carve")
    try:
        values = list(outside)
    except TypeError:
        raise ValueError(f"outside must be 'carve', 'keep', 'auto' or a list of 'carve'/'keep' per view, "
                         f"got {type(outside).__name__}") from None
    if len(values) != n_views or any(v not in POLICIES for v in values):
        raise ValueError(f"outside must list 'carve' or 'keep' for each of the {n_views} views, got "
                         f"{len(values)} entries {values[:4]}{'...' if len(values) > 4 else ''}")
    return np.array([v == "carve" for v in values])


def check_bounds(bounds) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``, two (3,) float64 corners with lo < hi, from the ``bounds`` argument.

    Example:
        >>> lo, hi = check_bounds(([0, 0, 0], [1, 2, 3]))
        >>> hi.tolist()
        [1.0, 2.0, 3.0]
    """
    if isinstance(bounds, str):
        raise ValueError(f"bounds must be 'auto' or (lo, hi), got {bounds!r}")
    try:
        box = np.asarray([as_numpy(b) for b in bounds] if isinstance(bounds, (list, tuple)) else as_numpy(bounds),
                         dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be 'auto' or (lo, hi) with two 3-vectors, got {bounds!r}") from None
    if box.shape != (2, 3):
        raise ValueError(f"bounds must be 'auto' or (lo, hi) with two 3-vectors, got shape {shape_text(box.shape)}")
    if not np.isfinite(box).all():
        raise ValueError("bounds must hold finite numbers, got NaN or inf")
    lo, hi = box
    if np.any(lo >= hi):
        axis = "xyz"[int(np.flatnonzero(lo >= hi)[0])]
        raise ValueError(f"bounds must have lo < hi on every axis, got lo={lo.tolist()}, hi={hi.tolist()} "
                         f"(axis {axis})")
    return lo, hi


def memory_estimate(shape: tuple[int, int, int], n_views: int, image_size: tuple[int, int], method: str = "octree",
                    backend: str = "numba", depth: bool = False) -> int:
    """Bytes a carving call needs at its peak, beyond its inputs (an estimate, on the safe side).

    Args:
        shape: (nx, ny, nz) grid shape. n_views: B. image_size: (H, W).
        method, backend: as for :func:`carve.hull.carve`; depth: True for :func:`carve.hull.carve_depth`.

    Example:
        >>> round(memory_estimate((1024, 1024, 1024), 36, (768, 1024)) / 2**30, 2)
        1.48
    """
    nx, ny, nz = (int(n) for n in shape)
    H, W = image_size
    occupancy = nx * ny * nz  # bool
    tables = n_views * (H * W * 8 * (1 + 2 * 4 / 3) if depth else (H + 1) * (W + 1) * 4)
    surface = 2 * (nx * ny + ny * nz + nz * nx)  # voxels on the faces of the box, a surface-size scale
    work = 0
    if method == "octree":
        work = 64 * surface  # blocks near the surface, a few dozen bytes each, at every level
    if backend == "torch":
        # the per-level block grid and the upsampling copies (about 2x the occupancy at the last
        # level), pair lists of the octree and bounded chunks of temporaries
        work = 2 * occupancy + 16 * work + (1 << 28)
    return int(occupancy + tables + work)


def check_memory(shape: tuple[int, int, int], n_views: int, image: tuple[int, int], opts: dict,
                 depth: bool) -> None:
    """A MemoryError, before anything is allocated, when :func:`memory_estimate` exceeds what is available.

    opts: :func:`check_options`; on CUDA the device's free memory counts too.
    """
    need = memory_estimate(shape, n_views, image, opts["method"], opts["backend"], depth)
    have = available_memory()
    where = "memory"
    if opts["backend"] == "torch" and opts["device"].type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(opts["device"])
        if need > free:
            have, where = free, f"memory on {opts['device']}"
    if have is not None and need > have:
        raise MemoryError(f"resolution={opts['resolution']} gives a {shape[0]} x {shape[1]} x {shape[2]} grid that "
                          f"needs about {need / 2**30:.2f} GiB, but only {have / 2**30:.2f} GiB of {where} is available; "
                          "lower the resolution or tighten the bounds")


# ------------------------------------------------------------------------------------ conversions
def as_numpy(x) -> np.ndarray:
    """``x`` as a numpy array (a tensor is detached and copied to the CPU)."""
    if is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def as_tensor(x, device):
    """``x`` (array or tensor) as a contiguous tensor on ``device``."""
    import torch

    t = x if is_tensor(x) else torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device).contiguous()


def border_of(masks) -> np.ndarray:
    """(B,) bool: any non-zero value in the first or last row or column of (B, H, W) masks.

    Example:
        >>> masks = np.zeros((2, 4, 4), np.uint8); masks[1, 0, 2] = 1
        >>> border_of(masks).tolist()
        [False, True]
    """
    edges = [masks[:, 0, :], masks[:, -1, :], masks[:, :, 0], masks[:, :, -1]]
    if is_tensor(masks):
        return np.logical_or.reduce([(e != 0).any(1).cpu().numpy() for e in edges])
    return np.logical_or.reduce([(np.asarray(e) != 0).any(1) for e in edges])
