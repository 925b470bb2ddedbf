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

import math
import warnings

import numpy as np

from geometry import Camera

from carve.grid import VoxelGrid
from carve.hull.bounds import auto_bounds, depth_cones, silhouette_cones
from carve.hull.checks import POLICIES, as_numpy, as_tensor, border_of, camera_matrices, check_bounds, \
    check_image_size, check_mask_values, check_memory, check_options, check_slack, check_tolerance, depth_stack, \
    mask_stack, mask_values, outside_policy
from carve.hull.rule import OCTREE_LEAF, depth_pyramids, dilate_masks, error_bounds

__all__ = ["carve", "carve_depth", "border_views", "EmptyHullWarning"]


class EmptyHullWarning(UserWarning):
    """Carving left no voxel: inconsistent silhouettes or cameras, or a box that misses the object."""


# ---------------------------------------------------------------------------------------- public
def carve(silhouettes, cameras: Camera, resolution: int = 256, bounds="auto", method: str = "octree",
          backend: str = "numba", device=None, tolerance: int = 0, outside="carve",
          slack: float = 0.0) -> VoxelGrid:
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
        slack: pixels (a number >= 0). A centre survives a view when its pixel lies within ``slack``
            px of the silhouette (Euclidean distance between pixel centres), i.e. each mask is dilated
            by ``slack`` first: a hull that stays conservative under calibration error of that size.
            0 (the default) is the exact rule. Centres off the image still follow ``outside``, and
            ``outside="auto"`` looks at the masks as given.

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
    opts = check_options(resolution, method, backend, device, tolerance)
    P, width, height = camera_matrices(cameras)
    bool_input = str(getattr(silhouettes, "dtype", "")).endswith("bool")
    slack = check_slack(slack)
    sil = mask_stack(silhouettes, "silhouettes", len(P))
    H, W = check_image_size(sil, "silhouettes", width, height)
    carve_out = outside_policy(outside, len(P), lambda: border_of(sil))
    if slack > 0:
        sil, bool_input = _dilated(sil, slack, opts), True
    tables, cpu_tables = _silhouette_tables(sil, opts, check_values=not bool_input)
    tol = check_tolerance(tolerance, len(P))
    if isinstance(bounds, str) and bounds == "auto":
        lo, hi = auto_bounds(P, cpu_tables, silhouette_cones(sil), carve_out, tol, opts["resolution"])
    else:
        lo, hi = check_bounds(bounds)
    return _carve_grid(P, lo, hi, opts, tables, carve_out, tol, image=(H, W), depth=False)


def carve_depth(depth_maps, cameras: Camera, resolution: int = 256, bounds="auto", method: str = "octree",
                backend: str = "numba", device=None, tolerance: int = 0, outside="carve", missing: str = "carve",
                margin: float = 0.0) -> VoxelGrid:
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

    Example:
        >>> import numpy as np
        >>> from geometry import Camera
        >>> K = np.array([[32.0, 0, 15.5], [0, 32.0, 15.5], [0, 0, 1]])
        >>> cam = Camera(K, np.eye(3), [0.0, 0.0, 4.0], width=32, height=32)  # looks along +z from z = -4
        >>> grid = carve_depth(np.full((1, 32, 32), 4.0), cam, 8, bounds=([-1] * 3, [1] * 3))
        >>> grid.count(), float(grid.points()[:, 2].min())  # what lies behind the plane z = 0 stays
        (256, 0.125)
    """
    opts = check_options(resolution, method, backend, device, tolerance)
    P, width, height = camera_matrices(cameras)
    depth = depth_stack(depth_maps, len(P))
    H, W = check_image_size(depth, "depth_maps", width, height)
    valid, E = _effective_depth(depth, missing, margin)
    carve_out = outside_policy(outside, len(P), lambda: border_of(valid))
    tol = check_tolerance(tolerance, len(P))
    pyramids = depth_pyramids(E)

    def cpu_tables():
        from carve.hull.numba_kernels import Tables

        return Tables(E=E, pyramids=pyramids)

    if opts["backend"] == "torch":
        from carve.hull.torch_kernels import Tables as TorchTables

        tables = TorchTables.from_depth(E, pyramids, opts["device"])
    else:
        tables = cpu_tables()
    if isinstance(bounds, str) and bounds == "auto":
        lo, hi = auto_bounds(P, cpu_tables, depth_cones(valid, E, missing), carve_out, tol, opts["resolution"])
    else:
        lo, hi = check_bounds(bounds)
    return _carve_grid(P, lo, hi, opts, tables, carve_out, tol, image=(H, W), depth=True)


def border_views(silhouettes) -> np.ndarray:
    """Which silhouettes touch the image border, i.e. in which views the object leaves the frame.

    Carving such a view with ``outside="carve"`` cuts the object where it leaves the frame; use
    ``outside="keep"`` for it (``carve(..., outside="auto")`` does this).

    Args:
        silhouettes: (B, H, W) bool (or 0/255 uint8) masks, array, tensor or list; or one (H, W) mask.

    Returns:
        (B,) bool numpy array, True where an object pixel lies in the first or last row or column.

    Example:
        >>> import numpy as np
        >>> masks = np.zeros((2, 6, 8), bool)
        >>> masks[0, 2:4, 2:5] = True  # inside the frame
        >>> masks[1, 2:4, 5:] = True  # leaves it on the right
        >>> border_views(masks).tolist()
        [False, True]
    """
    single = getattr(silhouettes, "ndim", None) == 2
    masks = mask_stack(silhouettes, "silhouettes", 1 if single else None)
    return border_of(masks)


def outside_per_view(silhouettes) -> list[str]:
    """``outside=`` for :func:`carve`, one policy per view: "keep" where the silhouette touches the image
    border (:func:`border_views`), "carve" elsewhere; what ``outside="auto"`` does, without its warning.

    Example:
        >>> import numpy as np
        >>> masks = np.zeros((2, 6, 8), bool); masks[0, 2:4, 2:5] = True; masks[1, 2:4, 5:] = True
        >>> outside_per_view(masks)
        ['carve', 'keep']
    """
    return ["keep" if leaves else "carve" for leaves in border_views(silhouettes)]


# ------------------------------------------------------------------------------------- the tables
def _silhouette_tables(sil, opts, check_values):
    """The backend's tables of (B, H, W) uint8 masks, with their values checked, and a callable that
    gives the Numba tables (auto bounds always run on the Numba kernels, so both backends get one box).

    On a CPU the summed-area tables come from the Numba kernel for both backends (one pass, about
    50x faster than ``torch.cumsum`` there); on CUDA from ``torch.cumsum`` on the device.
    """
    from carve.hull.numba_kernels import Tables as NumbaTables

    device = opts["device"]
    numba_tables = None
    if opts["backend"] == "numba" or device.type == "cpu":
        sil_np = np.ascontiguousarray(as_numpy(sil))
        numba_tables, counts, values = NumbaTables.from_silhouettes(sil_np)
    if opts["backend"] == "numba":
        tables = numba_tables
    else:
        from carve.hull.torch_kernels import Tables as TorchTables

        sil_dev = as_tensor(sil, device)
        if numba_tables is not None:
            tables = TorchTables.from_sat(sil_dev, numba_tables.sat)
        else:
            tables, counts, values = TorchTables.from_silhouettes(sil_dev, check_values=check_values)
    check_mask_values(counts, values, int(sil.shape[1]) * int(sil.shape[2]))

    def cpu_tables():
        if numba_tables is not None:
            return numba_tables
        return NumbaTables.from_silhouettes(np.ascontiguousarray(as_numpy(sil)))[0]

    return tables, cpu_tables


def _dilated(sil, slack, opts):
    """(B, H, W) masks dilated by ``slack`` px (:func:`carve.hull.rule.dilate_masks`), values checked
    first; a tensor comes back as a tensor on the carving device."""
    masks = np.ascontiguousarray(as_numpy(sil))
    check_mask_values(*mask_values(masks), masks.shape[1] * masks.shape[2])
    grown = dilate_masks(masks, slack).view(np.uint8)
    return as_tensor(grown, opts["device"]) if opts["backend"] == "torch" else grown


def _effective_depth(depth, missing, margin):
    """(valid, E), both (B, H, W): pixels with a depth, and the depth below which a centre is rejected.

    E is ``depth - margin`` where valid, +inf (missing="carve") or -inf (missing="keep") elsewhere.
    """
    if missing not in POLICIES:
        raise ValueError(f"missing must be 'carve' or 'keep', got {missing!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.floating, np.integer)) \
            or not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0 (world units), got {margin!r}")
    valid = np.isfinite(depth) & (depth > 0)
    n_valid = valid.reshape(len(depth), -1).sum(1)
    if missing == "carve" and np.any(n_valid == 0):
        bad = np.flatnonzero(n_valid == 0).tolist()
        raise ValueError(f"depth_maps {bad} hold no valid depth (all 0, negative or NaN); with missing='carve' "
                         "they would carve everything: drop those views or pass missing='keep'")
    return valid, np.where(valid, depth - float(margin), np.inf if missing == "carve" else -np.inf)


# ---------------------------------------------------------------------------------- the carving
def _carve_grid(P, lo, hi, opts, tables, carve_out, tol, image, depth) -> VoxelGrid:
    """Build the grid over [lo, hi], check memory, run the backend, wrap the result (warn if empty)."""
    if lo is None:  # the auto box found nothing: an empty hull
        warnings.warn("carving left no occupied voxel: no region is consistent with every view "
                      "(check the silhouettes, the cameras and the outside/tolerance settings)",
                      EmptyHullWarning, stacklevel=3)
        return VoxelGrid(np.zeros((1, 1, 1), bool), np.zeros(3), 1.0)
    extent = hi - lo
    size = float(np.max(extent)) / opts["resolution"]
    shape = tuple(int(n) for n in np.maximum(np.ceil(extent / size - 1e-9), 1))
    check_memory(shape, len(P), image, opts, depth)
    xs, ys, zs = (lo[a] + (np.arange(shape[a]) + 0.5) * size for a in range(3))
    bnd = error_bounds(P, lo, lo + np.array(shape) * size, size)
    grid = VoxelGrid(_run_kernels(P, (xs, ys, zs), bnd, tables, carve_out, tol, opts), lo, size)
    if not grid.count():
        warnings.warn("carving left no occupied voxel (the views disagree everywhere in the box; check the "
                      "silhouettes, the cameras, the bounds and the outside/tolerance settings)",
                      EmptyHullWarning, stacklevel=3)
    return grid


def _run_kernels(P, centres, bnd, tables, carve_out, tol, opts):
    """The occupancy from the chosen backend and method: (nx, ny, nz) bool numpy, or its run-length
    rows (:class:`carve.runlength.Runs`) from the Numba octree.

    P: (B, 3, 4) float64; centres: the (nx,), (ny,), (nz,) centre coordinates; bnd: (B, 3)
    :func:`carve.hull.rule.error_bounds` of the grid's box; carve_out: (B,) bool.
    """
    if opts["backend"] == "torch":
        import torch

        from carve.hull.torch_kernels import carve_dense, carve_octree

        def put(a):
            return torch.as_tensor(np.ascontiguousarray(a), device=opts["device"])

        args = (put(P), *(put(c) for c in centres), tables, put(carve_out))
        if opts["method"] == "dense":
            return carve_dense(*args, tol).cpu().numpy()
        return carve_octree(*args, tol, put(bnd), leaf=OCTREE_LEAF).cpu().numpy()
    from carve.hull.numba_kernels import carve_dense, carve_octree

    args = (np.ascontiguousarray(P), *centres, tables, np.ascontiguousarray(carve_out, dtype=np.bool_))
    if opts["method"] == "dense":
        return carve_dense(*args, tol)
    return carve_octree(*args, tol, bnd, leaf=OCTREE_LEAF)
