"""Datasets: loaders for standard multi-view formats, the synthetic renderer and sample scenes.

    >>> import data
    >>> mv = data.load("path/to/dataset")                        # doctest: +SKIP
    >>> cams = data.turntable(36, elevation=25, radius=3.5)
    >>> images, depths, masks = data.render(data.objects.mug(), cams)   # doctest: +SKIP
    >>> sample = data.scenes.sample(seed=0, size=(128, 128))     # doctest: +SKIP
    >>> views = data.synthetic("torus", views=24, size=(320, 240))  # doctest: +SKIP

Everything returned is in the project's conventions (OpenCV camera axes, world-to-camera R and T,
pixel centres at integers); loaders convert foreign ones on the way in.
"""
from data import objects, scenes
from data.errors import FormatError
from data.formats import FORMATS, detect, load, save
from data.multiview import MultiView
from data.render import Rendering, render, render_views, synthetic
from data.rigs import hemisphere, turntable

__all__ = ["load", "save", "detect", "FORMATS", "FormatError", "MultiView", "render", "render_views",
           "synthetic", "Rendering", "objects", "scenes", "turntable", "hemisphere"]
