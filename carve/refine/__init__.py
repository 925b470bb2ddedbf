"""Beyond the visual hull: carve what the silhouettes cannot see.

- :func:`space_carve` (:mod:`carve.refine.photo`, kernels in :mod:`carve.refine.photo_kernels`):
  photo-consistency carving from the visual hull (Kutulakos and Seitz), on the per-view item buffers
  of :mod:`carve.refine.visibility` (:func:`depth_maps`: a grid's depth seen by each camera).
- :func:`fuse_depth` (:mod:`carve.refine.fusion`, kernels in :mod:`carve.refine.fusion_kernels`):
  monocular depth aligned to the hull where the hull is tight, fused as a TSDF inside it, behind a
  gate that refuses depth no better than a constant.
"""
from carve.refine.visibility import ItemBuffers, depth_maps
from carve.refine.photo import HIGHLIGHT, MIN_VIEWS, NOISE_SIGMAS, PHOTO_THRESHOLD, QUORUM, image_noise, space_carve
from carve.refine.fusion import DepthGateWarning, FusionReport, fuse_depth

__all__ = ["space_carve", "fuse_depth", "FusionReport", "DepthGateWarning", "depth_maps", "ItemBuffers", "image_noise",
           "PHOTO_THRESHOLD", "NOISE_SIGMAS", "QUORUM", "MIN_VIEWS", "HIGHLIGHT"]
