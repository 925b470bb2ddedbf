"""Camera-geometry core: batched pinhole cameras, projection and unprojection on numpy and torch.

Pure math: no file I/O, and nothing else of this project is imported. Conventions (OpenCV camera
axes, pixel centres at integers) live in :mod:`geometry.conventions`.
"""
from geometry.camera import Camera, intrinsics_from_fov
from geometry.conventions import COLMAP_PIXEL_OFFSET, opencv_to_opengl, opengl_to_opencv, pixel_index
from geometry.projection import depth_to_points, pixel_rays, project, unproject

__all__ = ["Camera", "project", "unproject", "depth_to_points", "pixel_rays", "pixel_index", "intrinsics_from_fov",
           "opencv_to_opengl", "opengl_to_opencv", "COLMAP_PIXEL_OFFSET"]
