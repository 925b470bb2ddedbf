"""Space carving (Kutulakos and Seitz 2000): colour as evidence for the concavities no silhouette sees.

Start from a volume that holds the object (the visual hull); repeatedly remove the surface voxels
that the views seeing them disagree about, updating what each view sees; stop when nothing is
removed. What remains is a subset of the start, and on surfaces that give no evidence (untextured,
or seen by too few views) it is the start.

Visibility: one item buffer per view (the first occupied voxel along every pixel's ray, see
:mod:`carve.refine.photo_kernels`), kept up to date as voxels go, so a voxel is tested only in the
views that see it in the current volume. Carving removes occluders only, so the views that see a
voxel of the true surface in the current volume see it in the true scene too: the test never uses
a view that is in fact blocked.

The photo-consistency test, and the reason for each constant:

- Each view's colour of a voxel is the mean of a 3 x 3 bilinear window as wide as the voxel's
  footprint; its spread (standard deviation) says how much colour changes under the footprint.
- The reference is the per-channel median of the views' colours. Lambertian shading under a fixed,
  unknown light is the same in every view, so nothing needs normalising; and a median cannot be
  moved by a minority of views (a highlight, a frame at another exposure, a reflection).
- A view agrees when its colour lies within ``threshold + 0.5 * spread`` of the reference.
  ``threshold="auto"`` is 2 grey levels (8-bit rounding of two images and their bilinear
  resampling) plus 3 standard deviations of the images' own noise (:func:`image_noise`). Measured
  on rendered textured objects, the views of a voxel on the true surface differ by 0.5 levels at
  the median and 1.2 at the 90th percentile, the views of a voxel in free space by 8 and 17. The spread term (half of it, the adaptive threshold of Slabaugh et al. 2001)
  absorbs the parallax of a centre up to half a voxel off the surface on a texture edge, where one
  footprint mixes two colours.
- The views are compared face by face. Each view goes with the voxel's exposed face (one with no
  occupied neighbour) that faces it most, and reads the colour at that face's centre: on a voxel of
  the surface, the surface is there, half a voxel in front of the centre, whose projection moves
  across the texture from view to view. A Lambertian face has one colour in every view that sees
  it, but the two faces of an edge are lit differently, and pooled they split the views in two
  groups of two colours: the rim of a table top went that way, layer after layer.
- A face disagrees when fewer than three quarters of its views agree. One view in four may then be
  an outlier (a highlight, a frame at another exposure) without carving a true surface; a voxel in
  free space, whose views see different surface points through it, rarely finds three quarters in
  agreement. Measured on the textured mug and bowl: a half quorum keeps a fat band of free space
  (bowl IoU 0.50), nine tenths starts eating the object (precision 0.90).
- A highlight adds the light's own colour (white, after white balance) to the surface's. A view
  brighter than the face's median by at least ``HIGHLIGHT`` = 3 thresholds in every channel, three
  times what noise and resampling may do, is compared after taking that common offset away: it
  agrees when the rest is within the threshold. A brighter part of a coloured texture or of the
  shading scales the channels, not shifts them alike, and still disagrees. Measured on the glossy
  mug: the object voxels carved by mistake fall from 11,573 to 2,989 (precision 0.932 to 0.980).
  Its cost is that a texture that varies towards white reads as highlights too: the bowl's IoU falls
  0.711 to 0.651 (the mug's 0.495 to 0.484). At 4 thresholds the glossy mug keeps 0.974 and the
  bowl 0.680; at 6, 0.960 and 0.701.
- The voxel is inconsistent when every face that at least ``min_views`` = 4 views see disagrees
  (four: the smallest number in which three quarters can outvote one bad view); one face the views
  agree on is a surface they see. Where no face has four views, the views are pooled, as for a
  single face. Measured against pooling every voxel's views at its centre
  (``eval_space_carving.py``): the object voxels carved by mistake fall on every object (bowl 7,108
  to 73, mug from above 8,593 to 129, table 986 to 415), for under 0.01 of IoU.
- A voxel is never carved when its loss would leave a ray that met the start with nothing to meet
  (:meth:`carve.refine.visibility.ItemBuffers.carve`): the result keeps the start's silhouettes. On
  the thin edges of a part, where the views see two faces lit differently and disagree, this is
  what stops a carve from eating the part from its edge inwards.
- Visibility: a view sees a voxel when its pixel's ray enters it (within a voxel of its centre's
  depth), or, when something is in front along the pixel's ray, when the ray to the centre itself
  is free (a walk through the grid): a rough carved surface would otherwise hide most of itself.

Limits, measured (``benchmarks/eval_space_carving.py``): the result is the photo hull, which is
fatter than the object where the views that see a voxel see nearly the same surface point through
it (a voxel a few voxels in front of a wall, seen only across the cavity's opening); that fat band
then hides the bottom of a deep cavity from the oblique views.
"""
from __future__ import annotations

import itertools

import numpy as np

from carve.grid import VoxelGrid, surface_voxels
from carve.refine.visibility import ItemBuffers
from geometry import Camera

__all__ = ["space_carve", "image_noise", "PHOTO_THRESHOLD", "NOISE_SIGMAS", "QUORUM", "MIN_VIEWS", "HIGHLIGHT"]

#: grey levels (of 255) a view may differ from the median colour beyond its noise (module docstring)
PHOTO_THRESHOLD = 2.0
#: the noise's share of the threshold: this many standard deviations of the images' own noise
NOISE_SIGMAS = 3.0
#: weight of a footprint's own colour spread in the threshold (module docstring)
SPREAD_WEIGHT = 0.5
#: share of the views that must agree with the median for a voxel to stay (module docstring)
QUORUM = 0.75
#: views that must see a voxel before it may be carved (module docstring)
MIN_VIEWS = 4
#: thresholds by which a view must be brighter in every channel to be read as a highlight (module docstring)
HIGHLIGHT = 3.0


def _check_images(images, cameras: Camera) -> np.ndarray:
    """(B, H, W, 3) float32 0..255 of ``images``, which must match the B cameras and their size."""
    from carve.segmentation.inputs import as_images

    items = as_images(images, "images")
    if len(items) != len(cameras):
        raise ValueError(f"images must hold one image per camera ({len(cameras)}), got {len(items)}")
    shapes = {im.shape[:2] for im in items}
    if shapes != {(cameras.height, cameras.width)}:
        raise ValueError(f"images must all be {cameras.width}x{cameras.height} (the cameras' size), got sizes "
                         f"{sorted(f'{w}x{h}' for h, w in shapes)}")
    return np.stack(items).astype(np.float32)


def _start_grid(start, masks, images, cameras, resolution, bounds, outside) -> VoxelGrid:
    """The volume to carve from: ``start``, else the visual hull of ``masks`` (estimated when None)."""
    if start is not None:
        if not isinstance(start, VoxelGrid):
            raise TypeError(f"start must be a carve.VoxelGrid (or None for the visual hull), got {type(start).__name__}")
        return start
    from carve.hull import carve

    if masks is None:
        from carve.segmentation import silhouettes

        masks = list(silhouettes(images, cameras=cameras))
    return carve(masks, cameras, resolution=resolution, bounds=bounds, outside=outside)


def _neighbours(flat: np.ndarray, shape: tuple) -> np.ndarray:
    """Flat indices of the 6-neighbours inside the grid of the voxels ``flat``."""
    idx = np.stack(np.unravel_index(flat, shape), axis=1)
    out = []
    for axis in range(3):
        for step in (-1, 1):
            n = idx.copy()
            n[:, axis] += step
            keep = (n[:, axis] >= 0) & (n[:, axis] < shape[axis])
            out.append(np.ravel_multi_index(tuple(n[keep].T), shape))
    return np.concatenate(out) if out else flat[:0]


def space_carve(images, cameras: Camera, start: VoxelGrid | None = None, *, masks=None, resolution: int = 128,
                bounds="auto", outside="carve", threshold="auto", min_views: int = MIN_VIEWS,
                max_sweeps: int = 10000, progress: bool | None = None) -> VoxelGrid:
    """The photo hull: carve from ``start`` the surface voxels whose views disagree in colour.

    Args:
        images: B RGB images (a (B, H, W, 3) uint8 array, floats in [0, 1], or a list), one per camera,
            all of the cameras' size.
        cameras: :class:`geometry.Camera` of the B views.
        start: the volume to carve from (it must hold the object); None: the visual hull of
            ``masks`` at ``resolution`` (``bounds``, ``outside`` as in :func:`carve.carve`).
        masks: the silhouettes for that hull; None: estimated jointly with
            :func:`carve.silhouettes` ``(images, cameras=cameras)``.
        threshold: grey levels (of 255) beyond a footprint's own spread within which a view agrees
            with the median colour, > 0; "auto": 2 plus 3 standard deviations of the images' noise.
        min_views: views that must see a voxel before it may be carved, >= 2.
        max_sweeps: stop after this many sweeps even if voxels are still being carved.
        progress: a progress bar over the sweeps, with the voxels carved (default: as
            :func:`data.progress.progress` decides).

    Returns:
        A :class:`carve.VoxelGrid`, a subset of ``start``, with ``colors`` (M, 3) uint8: the median
        colour of the views that see each occupied voxel (grey where none does), and ``sweeps``, the
        voxels carved in each sweep.

    Raises:
        TypeError, ValueError: a bad argument, named. MemoryError: the item buffers (17 bytes per
        pixel of every view) would not fit.

    Example:
        >>> import data
        >>> from data import objects
        >>> mv = data.synthetic(objects.textured(objects.bowl()), views=12, size=(96, 72), seed=1)
        >>> hull = carve.carve(mv.silhouettes, mv.cameras, resolution=32)  # doctest: +SKIP
        >>> photo = space_carve(mv.images, mv.cameras, hull)                # doctest: +SKIP
        >>> photo.count() < hull.count()                                    # doctest: +SKIP
        True
    """
    from data.memory import require_memory
    from data.progress import progress as progress_bar

    if not isinstance(cameras, Camera):
        raise TypeError(f"cameras must be a geometry.Camera, got {type(cameras).__name__}")
    if not cameras.has_size:
        raise ValueError("cameras must have width and height set, got a camera with no size")
    number = lambda v: not isinstance(v, bool) and isinstance(v, (int, float, np.number))  # noqa: E731
    if not (threshold == "auto" if isinstance(threshold, str) else number(threshold) and 0 < threshold < np.inf):
        raise ValueError(f"threshold must be 'auto' or a positive number of grey levels, got {threshold!r}")
    if not (isinstance(min_views, (int, np.integer)) and not isinstance(min_views, bool) and min_views >= 2):
        raise ValueError(f"min_views must be an int >= 2 (with one view nothing can disagree), got {min_views!r}")
    if not (isinstance(max_sweeps, (int, np.integer)) and not isinstance(max_sweeps, bool) and max_sweeps >= 0):
        raise ValueError(f"max_sweeps must be an int >= 0, got {max_sweeps!r}")
    rgb = _check_images(images, cameras)
    B, H, W = rgb.shape[:3]
    require_memory(17.0 * B * H * W, f"item buffers for {B} views of {W} x {H}", "use fewer or smaller views")
    if isinstance(threshold, str):
        threshold = PHOTO_THRESHOLD + NOISE_SIGMAS * image_noise(rgb)
    grid = _start_grid(start, masks, images, cameras, resolution, bounds, outside)
    occupancy = np.ascontiguousarray(grid.occupancy).copy()
    occ = occupancy.reshape(-1).view(np.uint8)
    work = VoxelGrid(occupancy, grid.lo, grid.voxel_size)
    buffers = ItemBuffers(occ, work, cameras, rgb)
    buffers.update()
    cand = np.flatnonzero(surface_voxels(occupancy))
    needed = np.zeros(occ.shape, bool)  # voxels the start's silhouettes need (see carve.refine.visibility.ItemBuffers.carve)
    sweeps = []
    bar = progress_bar(itertools.count(), desc="space carving", total=None, enabled=progress, unit="sweep")
    for _ in bar:
        if not len(cand) or len(sweeps) >= max_sweeps:
            break
        bad, _, _ = buffers.test(cand, threshold, SPREAD_WEIGHT, QUORUM, min_views, HIGHLIGHT)
        gone = cand[bad & ~needed[cand]]
        if not len(gone):
            sweeps.append(0)
            break
        kept, visible = buffers.carve(gone)
        needed[kept] = True  # carving only removes occluders: a voxel a silhouette needs stays needed
        sweeps.append(int(len(gone) - len(kept)))
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(carved=sweeps[-1], tested=len(cand), refresh=False)
        gone = np.setdiff1d(gone, kept, assume_unique=True)
        exposed = _neighbours(gone, work.shape)
        cand = np.union1d(visible, exposed[occ[exposed] != 0])
    if hasattr(bar, "close"):
        bar.close()
    result = VoxelGrid(occupancy, grid.lo, grid.voxel_size, colors=_colors(buffers, occupancy))
    result.sweeps = sweeps
    return result


def image_noise(images: np.ndarray) -> float:
    """The images' noise, grey levels: Immerkaer's (1996) estimate, the median over the views.

    The mask ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]]`` cancels smooth image structure and keeps
    noise; ``sigma = sqrt(pi / 2) / 6 * mean(|mask * image|)``. Texture and edges add a little, so it
    errs high (a safer threshold); the median keeps a few busy views from moving it.

    images: (B, H, W, 3) float32 in 0..255.
    """
    import cv2

    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    sigmas = [np.abs(cv2.filter2D(im.mean(axis=2), -1, mask)[1:-1, 1:-1]).mean() for im in images]
    return float(np.sqrt(np.pi / 2) / 6 * np.median(sigmas))


def _colors(buffers: ItemBuffers, occupancy: np.ndarray) -> np.ndarray:
    """(M, 3) uint8 colours of the occupied voxels (in ``points()`` order): grey where no view sees one."""
    flat = np.flatnonzero(occupancy)
    colors = np.full((len(flat), 3), 128, np.uint8)
    surface = np.flatnonzero(surface_voxels(occupancy))
    _, seen, color = buffers.test(surface, PHOTO_THRESHOLD, SPREAD_WEIGHT, QUORUM, MIN_VIEWS, HIGHLIGHT)  # the colours alone
    where = np.searchsorted(flat, surface)
    colors[where[seen > 0]] = np.clip(color[seen > 0] + 0.5, 0, 255).astype(np.uint8)
    return colors
