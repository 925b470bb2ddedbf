"""Visual hulls: carve a voxel grid from silhouettes (:func:`carve`) or depth maps (:func:`carve_depth`).

Convention:
    The rule of DESIGN.md, exactly. Voxel (i, j, k) of a grid with corner ``lo`` and voxel size ``s``
    has centre ``lo + (idx + 0.5) * s``. In each view the centre is projected with ``P = K [R|T]`` in
    float64; it is *outside* the view when its depth is ``<= 1e-9`` (at or behind the camera) or its
    pixel ``(floor(v + 0.5), floor(u + 0.5))`` is not in the image, and then the view's ``outside``
    policy decides ("carve": the view rejects it; "keep": the view ignores it). Otherwise a silhouette
    view rejects it when its pixel is background, a depth view when it lies in front of the observed
    depth. A voxel is kept iff at most ``tolerance`` views reject it.

Both methods ("dense": every centre in every view; "octree": coarse to fine, deciding blocks at once
from summed-area tables) and both backends ("numba" on the CPU, "torch" on any device) return the
same occupancy, voxel for voxel.
"""
from __future__ import annotations

import itertools
import math
import os
import warnings

import numpy as np

from geometry import Camera
from geometry.arrays import describe, is_tensor, shape_text

from carve.grid import VoxelGrid

__all__ = ["carve", "carve_depth", "border_views", "memory_estimate", "EmptyHullWarning"]

#: resolutions above this are refused outright (2**15 voxels a side is 35 TB of occupancy)
MAX_RESOLUTION = 1 << 15
#: cells along the longest side of the coarse passes of ``bounds="auto"``
AUTO_COARSE_RESOLUTION = 64
METHODS = ("octree", "dense")
BACKENDS = ("numba", "torch")
POLICIES = ("carve", "keep")
_OCTREE_LEAF = 4


class EmptyHullWarning(UserWarning):
    """Carving left no voxel: inconsistent silhouettes or cameras, or a box that misses the object."""


# ---------------------------------------------------------------------------------------- public
def carve(silhouettes, cameras, resolution=256, bounds="auto", method="octree", backend="numba", device=None,
          tolerance=0, outside="carve") -> VoxelGrid:
    """The visual hull of silhouettes seen by calibrated cameras, as a voxel grid.

    Args:
        silhouettes: (B, H, W) bool masks, True = object, as an array, a tensor or a list of (H, W)
            masks. uint8 masks holding only 0 and 255 (or 0 and 1) are converted explicitly (non-zero
            = object); any other dtype or value is an error (threshold such images yourself).
        cameras: a :class:`geometry.Camera` of B cameras; its width and height, when set, must be W, H.
        resolution: voxels along the longest side of the box (the voxels are cubes).
        bounds: ``(lo, hi)``, two 3-vectors with lo < hi, the box to carve in world units; or "auto":
            the box is found from the data. The region every view with outside="carve" sees (the
            intersection of the cones through the silhouettes' bounding rectangles, by linear
            programming) is carved coarsely with a test that is conservative for every point of a
            cell, the box is tightened around the cells that may hold the object (twice), a margin
            of one voxel is added, and the result is carved at full resolution; it cannot cut the
            object. The views must surround the object (otherwise a ValueError asks for bounds).
        method: "octree" (coarse to fine) or "dense"; identical results.
        backend: "numba" (CPU) or "torch"; identical results.
        device: torch device for backend="torch" (default: CUDA if available, else CPU); None or
            "cpu" for backend="numba".
        tolerance: keep voxels rejected by at most this many views (for imperfect silhouettes).
        outside: policy for centres outside a view (behind the camera or off the image): "carve",
            "keep", "auto" ("keep" for the views whose silhouette touches the image border, see
            :func:`border_views`, with a warning naming them, "carve" for the others), or a list of
            B "carve"/"keep", one per view.

    Returns:
        A :class:`carve.grid.VoxelGrid`; its occupancy is (nx, ny, nz) bool, indexed [x, y, z]. An
        empty hull is returned with an :class:`EmptyHullWarning`.

    Raises:
        TypeError, ValueError: a bad argument, named in the message. MemoryError: the grid would not
        fit in the available memory (the message gives the estimate); nothing is allocated then.

    Example:
        >>> import numpy as np
        >>> from geometry import Camera
        >>> cams = Camera.look_at([[0, -4, 0], [4, 0, 0], [0, 0, 4]], up=(0, 1, 1), fov=40, width=64, height=48)
        >>> yy, xx = np.mgrid[:48, :64]
        >>> disc = (xx - 31.5) ** 2 + (yy - 23.5) ** 2 < 12 ** 2
        >>> grid = carve(np.stack([disc] * 3), cams, resolution=32, bounds=([-1.5] * 3, [1.5] * 3))
        >>> grid.shape, grid.count() > 0
        ((32, 32, 32), True)
    """
    opts = _check_options(resolution, method, backend, device, tolerance)
    P, width, height = _camera_matrices(cameras)
    bool_input = str(getattr(silhouettes, "dtype", "")).endswith("bool")
    sil = _mask_stack(silhouettes, "silhouettes", len(P))
    H, W = _check_image_size(sil, "silhouettes", width, height)
    if opts["backend"] == "torch":
        from carve import carving_torch as kernels

        sil_dev = _to_torch(sil, opts["device"])
        tables, counts, values = kernels.Tables.from_silhouettes(sil_dev, check_values=not bool_input)
    else:
        from carve import carving_numba as kernels

        sil = np.ascontiguousarray(_to_numpy(sil))
        tables, counts, values = kernels.Tables.from_silhouettes(sil)
    _check_mask_values(counts, values, H * W)
    carve_out = _outside_policy(outside, len(P), lambda: border_views(sil))
    tol = _check_tolerance(tolerance, len(P))

    def cpu_tables():  # auto bounds always run on the Numba kernels, so both backends get one box
        if opts["backend"] == "numba":
            return tables
        from carve.carving_numba import Tables

        return Tables.from_silhouettes(np.ascontiguousarray(_to_numpy(sil)))[0]

    if isinstance(bounds, str) and bounds == "auto":
        cones = _silhouette_cones(sil)
        lo, hi = _auto_bounds(P, cpu_tables, cones, carve_out, tol, opts["resolution"])
    else:
        lo, hi = _check_bounds(bounds)
    return _carve_grid(P, lo, hi, opts, tables, carve_out, tol, n_views=len(P), image=(H, W), depth=False)


def carve_depth(depth_maps, cameras, resolution=256, bounds="auto", method="octree", backend="numba", device=None,
                tolerance=0, outside="carve", missing="carve", margin=0.0) -> VoxelGrid:
    """Free-space carving with depth maps: a voxel in front of the observed depth along its pixel is carved.

    Every voxel whose centre lies, in some view, in front of the surface that view observes at the
    centre's pixel (centre depth ``< depth - margin``) is free space and carved; what lies on or
    behind every observed surface stays. With silhouette-masked depth maps and ``missing="carve"``
    this is the visual hull refined by the depths.

    Args:
        depth_maps: (B, H, W) depth z in each camera's frame (world units), array, tensor or list of
            (H, W) maps; 0, negative, NaN or inf mean "no depth" at that pixel.
        cameras: a :class:`geometry.Camera` of B cameras of size W x H (when set).
        resolution, bounds, method, backend, device, tolerance, outside: as for :func:`carve`
            (``outside="auto"`` looks for pixels with depth on the image border).
        missing: what a pixel without depth says: "carve" (nothing there: background, the default) or
            "keep" (unknown: the view does not carve along it).
        margin: a centre is carved only when it is more than ``margin`` (world units, >= 0) in front
            of the observed depth, to forgive depth noise.

    Returns:
        A :class:`carve.grid.VoxelGrid` (an empty one with an :class:`EmptyHullWarning`).
    """
    opts = _check_options(resolution, method, backend, device, tolerance)
    P, width, height = _camera_matrices(cameras)
    depth = _depth_stack(depth_maps, len(P))
    H, W = _check_image_size(depth, "depth_maps", width, height)
    if missing not in POLICIES:
        raise ValueError(f"missing must be 'carve' or 'keep', got {missing!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.floating, np.integer)) \
            or not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0 (world units), got {margin!r}")
    valid = np.isfinite(depth) & (depth > 0)
    n_valid = valid.reshape(len(P), -1).sum(1)
    if missing == "carve" and np.any(n_valid == 0):
        bad = np.flatnonzero(n_valid == 0).tolist()
        raise ValueError(f"depth_maps {bad} hold no valid depth (all 0, negative or NaN); with missing='carve' "
                         "they would carve everything: drop those views or pass missing='keep'")
    E = np.where(valid, depth - float(margin), np.inf if missing == "carve" else -np.inf)
    carve_out = _outside_policy(outside, len(P), lambda: _border_of(valid))
    tol = _check_tolerance(tolerance, len(P))

    from carve.carving_numba import Tables, depth_pyramids

    pyramids = depth_pyramids(E)
    numba_tables = Tables(E=E, pyramids=pyramids)
    if opts["backend"] == "torch":
        from carve.carving_torch import Tables as TorchTables

        tables = TorchTables.from_depth(E, pyramids, opts["device"])
    else:
        tables = numba_tables
    if isinstance(bounds, str) and bounds == "auto":
        cones = _depth_cones(valid, E, missing)
        lo, hi = _auto_bounds(P, lambda: numba_tables, cones, carve_out, tol, opts["resolution"])
    else:
        lo, hi = _check_bounds(bounds)
    return _carve_grid(P, lo, hi, opts, tables, carve_out, tol, n_views=len(P), image=(H, W), depth=True)


def border_views(silhouettes) -> np.ndarray:
    """Which silhouettes touch the image border, i.e. in which views the object leaves the frame.

    Carving such a view with ``outside="carve"`` cuts the object where it leaves the frame; use
    ``outside="keep"`` for it (``carve(..., outside="auto")`` does this).

    Args:
        silhouettes: (B, H, W) bool (or 0/255 uint8) masks, array, tensor or list; or one (H, W) mask.

    Returns:
        (B,) bool numpy array, True where an object pixel lies in the first or last row or column.
    """
    single = getattr(silhouettes, "ndim", None) == 2
    masks = _mask_stack(silhouettes, "silhouettes", 1 if single else None)
    return _border_of(masks)


def memory_estimate(shape, n_views, image_size, method="octree", backend="numba", depth=False) -> int:
    """Bytes a carving call needs at its peak, beyond its inputs (an estimate, on the safe side).

    Args:
        shape: (nx, ny, nz) grid shape. n_views: B. image_size: (H, W).
        method, backend: as for :func:`carve`; depth: True for :func:`carve_depth`.
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


def _auto_bounds(P, tables, cones, carve_out, tol, resolution):
    """The box ``(lo, hi)`` of ``bounds="auto"``: one that holds every voxel the carving can keep, or (None, None).

    1. The region every constraining view sees: the bounding box of the intersection of the cones
       through the silhouettes' bounding rectangles (linear programs), over the views with
       outside="carve" (with tolerance k, the union of such boxes over subsets of views that every
       surviving point must lie in).
    2. That box is carved coarsely (:data:`AUTO_COARSE_RESOLUTION` cells a side) with a conservative
       per-cell test (a cell is dropped only if no point of it can survive), twice, each time
       tightening the box around the cells that may hold the object.
    3. A margin of one final voxel is added on every side.

    The tests are conservative for every point of a cell, so the box cannot cut the object at any
    resolution. P: (B, 3, 4); tables: a callable returning the Numba tables; cones: per view
    (cmin, cmax, rmin, rmax, wmin) bounds or None; carve_out: (B,) bool.

    Returns:
        lo, hi: (3,) float64.
    """
    lo, hi = _cone_box(P, cones, carve_out, tol)
    if lo is None:
        return None, None
    from carve import carving_numba as kernels

    numba_tables = tables()
    carve_np = np.ascontiguousarray(carve_out, dtype=np.bool_)
    for _ in range(2):
        size = float(np.max(hi - lo)) / AUTO_COARSE_RESOLUTION
        n = np.maximum(np.ceil((hi - lo) / size - 1e-9).astype(np.int64), 1)
        edges = [lo[a] + np.arange(n[a] + 1) * size for a in range(3)]
        bnd = kernels.error_bounds(P, lo, lo + n * size, size)
        cells = kernels.carve_cells(P, *edges, numba_tables, carve_np, tol, bnd)
        if not cells.any():
            return None, None
        idx = [np.flatnonzero(cells.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
        lo = np.array([edges[a][idx[a][0]] for a in range(3)])
        hi = np.array([edges[a][idx[a][-1] + 1] for a in range(3)])
    extent = float(np.max(hi - lo))
    pad = extent / (resolution - 2) if resolution > 2 else 0.0
    return lo - pad, hi + pad


# ---------------------------------------------------------------------------------- the carving
def _carve_grid(P, lo, hi, opts, tables, carve_out, tol, n_views, image, depth) -> VoxelGrid:
    """Build the grid over [lo, hi], check memory, run the backend, wrap the result."""
    resolution = opts["resolution"]
    if lo is None:  # the auto box found nothing: an empty hull
        warnings.warn("carving left no occupied voxel: no region is consistent with every view "
                      "(check the silhouettes, the cameras and the outside/tolerance settings)",
                      EmptyHullWarning, stacklevel=3)
        return VoxelGrid(np.zeros((1, 1, 1), bool), np.zeros(3), 1.0)
    extent = hi - lo
    size = float(np.max(extent)) / resolution
    shape = tuple(int(n) for n in np.maximum(np.ceil(extent / size - 1e-9), 1))
    _check_memory(shape, n_views, image, opts, depth)
    xs, ys, zs = (lo[a] + (np.arange(shape[a]) + 0.5) * size for a in range(3))
    from carve.carving_numba import error_bounds

    bnd = error_bounds(P, lo, lo + np.array(shape) * size, size)
    if opts["backend"] == "torch":
        import torch

        from carve import carving_torch as kernels

        dev = opts["device"]
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), device=dev)  # noqa: E731
        args = (t(P), t(xs), t(ys), t(zs), tables, t(carve_out))
        if opts["method"] == "dense":
            occ = kernels.carve_dense(*args, tol)
        else:
            occ = kernels.carve_octree(*args, tol, t(bnd), leaf=_OCTREE_LEAF)
        occ = occ.cpu().numpy()
    else:
        from carve import carving_numba as kernels

        args = (np.ascontiguousarray(P), xs, ys, zs, tables, np.ascontiguousarray(carve_out, dtype=np.bool_))
        if opts["method"] == "dense":
            occ = kernels.carve_dense(*args, tol)
        else:
            occ = kernels.carve_octree(*args, tol, bnd, leaf=_OCTREE_LEAF)
    grid = VoxelGrid(occ, lo, size)
    if not occ.any():
        warnings.warn("carving left no occupied voxel (the views disagree everywhere in the box; check the "
                      "silhouettes, the cameras, the bounds and the outside/tolerance settings)",
                      EmptyHullWarning, stacklevel=3)
    return grid


# ------------------------------------------------------------------------------------- checking
def _check_options(resolution, method, backend, device, tolerance):
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


def _check_tolerance(tolerance, n_views):
    if tolerance >= n_views:
        raise ValueError(f"tolerance must be smaller than the number of views ({n_views}), got {tolerance}; "
                         "with it every voxel would be kept")
    return int(tolerance)


def _camera_matrices(cameras):
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


def _mask_stack(masks, name, n_views):
    """(B, H, W) uint8 array or tensor from the accepted mask inputs; B is checked when n_views is given."""
    if isinstance(masks, (list, tuple)):
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

            masks = torch.stack(list(masks))
        else:
            masks = np.stack([_to_numpy(m) for m in masks])
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


def _check_mask_values(counts, values, n_pixels):
    """Named errors for uint8 masks with other values, empty masks and all-object masks."""
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


def _depth_stack(depth_maps, n_views):
    """(B, H, W) float64 numpy depth maps from the accepted inputs, with named errors."""
    if isinstance(depth_maps, (list, tuple)):
        if not depth_maps:
            raise ValueError("depth_maps must hold one map per view, got an empty list")
        arrays = [_to_numpy(d) for d in depth_maps]
        shapes = [a.shape for a in arrays]
        if any(len(s) != 2 for s in shapes) or len(set(shapes)) > 1:
            raise ValueError(f"depth_maps must be (H, W) maps of one size, got shapes "
                             f"{[shape_text(s) for s in shapes][:4]}")
        depth = np.stack(arrays)
    elif isinstance(depth_maps, np.ndarray) or is_tensor(depth_maps):
        depth = _to_numpy(depth_maps)
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


def _check_image_size(masks, name, width, height):
    H, W = int(masks.shape[1]), int(masks.shape[2])
    if width is not None and (H, W) != (height, width):
        hint = "; transposed images?" if (H, W) == (width, height) else ""
        raise ValueError(f"{name} must have shape (B, H, W) matching the cameras' ({height}, {width}), "
                         f"got {shape_text(masks.shape)}{hint}")
    return H, W


def _outside_policy(outside, n_views, detect):
    """(B,) bool, True where the view carves centres outside it."""
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


def _check_bounds(bounds):
    if isinstance(bounds, str):
        raise ValueError(f"bounds must be 'auto' or (lo, hi), got {bounds!r}")
    try:
        box = np.asarray([_to_numpy(b) for b in bounds] if isinstance(bounds, (list, tuple)) else _to_numpy(bounds),
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


def _check_memory(shape, n_views, image, opts, depth):
    need = memory_estimate(shape, n_views, image, opts["method"], opts["backend"], depth)
    have = _available_memory()
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


def _available_memory():
    """Bytes of memory available to a new allocation (MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# ---------------------------------------------------------------------------- conversions, cones
def _to_numpy(x):
    if is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _to_torch(x, device):
    import torch

    t = x if is_tensor(x) else torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device).contiguous()


def _border_of(masks):
    """(B,) bool: any non-zero value in the first or last row or column of (B, H, W) masks."""
    edges = [masks[:, 0, :], masks[:, -1, :], masks[:, :, 0], masks[:, :, -1]]
    if is_tensor(masks):
        return np.logical_or.reduce([(e != 0).any(1).cpu().numpy() for e in edges])
    return np.logical_or.reduce([(np.asarray(e) != 0).any(1) for e in edges])


def _silhouette_cones(sil):
    """Per view the bounding rectangle of the object pixels, (cmin, cmax, rmin, rmax, None)."""
    if is_tensor(sil):
        cols = (sil != 0).any(1).cpu().numpy()
        rows = (sil != 0).any(2).cpu().numpy()
    else:
        cols = sil.any(axis=1)
        rows = sil.any(axis=2)
    cones = []
    for c, r in zip(cols, rows):
        ci, ri = np.flatnonzero(c), np.flatnonzero(r)
        cones.append((ci[0], ci[-1], ri[0], ri[-1], None))
    return cones


def _depth_cones(valid, E, missing):
    """Per view: the rectangle of pixels that can keep a centre and the smallest depth a kept centre has."""
    cones = []
    H, W = valid.shape[1:]
    for v, e in zip(valid, E):
        if missing == "carve":
            ci, ri = np.flatnonzero(v.any(0)), np.flatnonzero(v.any(1))
            rect = (ci[0], ci[-1], ri[0], ri[-1])
        else:
            rect = (0, W - 1, 0, H - 1)
        low = float(np.min(e))
        cones.append(rect + ((low if np.isfinite(low) and low > 0 else None),))
    return cones


def _cone_constraints(P, cone):
    """Rows (g, g0) with g @ X + g0 >= 0 for every point the view can keep (the cone of its rectangle)."""
    cmin, cmax, rmin, rmax, wmin = cone
    slack = 1e-6
    p0, p1, p2 = P
    rows = [p2, p0 - (cmin - 0.5 - slack) * p2, (cmax + 0.5 + slack) * p2 - p0,
            p1 - (rmin - 0.5 - slack) * p2, (rmax + 0.5 + slack) * p2 - p1]
    if wmin is not None:
        rows.append(p2 - np.array([0, 0, 0, wmin * (1 - 1e-9)]))
    return np.array(rows)


def _lp_box(constraints):
    """Bounding box of {X : g @ X + g0 >= 0 for all rows}: (lo, hi), or 'empty', or 'unbounded'."""
    from scipy.optimize import linprog

    G = np.concatenate(constraints)
    G = G / np.linalg.norm(G[:, :3], axis=1, keepdims=True)
    A, b = -G[:, :3], G[:, 3]
    lo, hi = np.empty(3), np.empty(3)
    for axis in range(3):
        for sign, out in ((1.0, lo), (-1.0, hi)):
            c = np.zeros(3)
            c[axis] = sign
            res = linprog(c, A_ub=A, b_ub=b, bounds=[(None, None)] * 3, method="highs")
            if res.status == 2:
                return "empty"
            if res.status == 3 or not res.success:
                return "unbounded"
            out[axis] = res.x[axis]
    return lo, hi


def _cone_box(P, cones, carve_out, tol):
    """Bounding box of the points that at most ``tol`` of the constraining views can reject."""
    views = np.flatnonzero(carve_out)
    if len(views) - tol < 1:
        raise ValueError("bounds='auto' needs views with outside='carve' to find the object, got "
                         f"{len(views)} such views with tolerance={tol}; pass bounds=(lo, hi)")
    rows = {b: _cone_constraints(P[b], cones[b]) for b in views}
    if tol == 0:
        subsets = [tuple(views)]
    else:
        size = 3
        m = min(len(views), tol + size)
        if math.comb(m, m - tol) > 64:
            size, m = 2, min(len(views), tol + 2)
        chosen = _diverse_views(P, views, m)
        subsets = list(itertools.combinations(chosen, max(m - tol, 1)))
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for subset in subsets:
        box = _lp_box([rows[b] for b in subset])
        if isinstance(box, str) and box == "unbounded":
            raise ValueError("bounds='auto' found no finite region seen by every constraining view (the views do "
                             "not surround the object, or too few carve with the tolerance); pass bounds=(lo, hi)")
        if isinstance(box, str):
            continue  # this subset of cones has no common point
        lo, hi = np.minimum(lo, box[0]), np.maximum(hi, box[1])
    if not np.all(lo < hi):
        return None, None
    pad = 1e-6 * float(np.max(hi - lo))
    return lo - pad, hi + pad


def _diverse_views(P, views, m):
    """m of ``views`` with viewing directions spread out (greedy farthest point on the sphere)."""
    axes = P[views, 2, :3] / np.linalg.norm(P[views, 2, :3], axis=1, keepdims=True)
    chosen = [0]
    while len(chosen) < m:
        sim = np.max(axes @ axes[chosen].T, axis=1)
        sim[chosen] = np.inf
        chosen.append(int(np.argmin(sim)))
    return [views[c] for c in chosen]
