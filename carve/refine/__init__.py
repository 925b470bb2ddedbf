"""Beyond the visual hull: carve what the silhouettes cannot see.

- :func:`space_carve` (:mod:`carve.refine.photo`, kernels in :mod:`carve.refine.photo_kernels`):
  photo-consistency carving from the visual hull (Kutulakos and Seitz), on the per-view item buffers
  of :mod:`carve.refine.visibility` (:func:`depth_maps`: a grid's depth seen by each camera).
"""
from carve.refine.visibility import ItemBuffers, depth_maps
from carve.refine.photo import MIN_VIEWS, NOISE_SIGMAS, PHOTO_THRESHOLD, QUORUM, image_noise, space_carve

__all__ = ["space_carve", "depth_maps", "ItemBuffers", "image_noise", "PHOTO_THRESHOLD", "NOISE_SIGMAS", "QUORUM", "MIN_VIEWS"]
