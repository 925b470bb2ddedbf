"""Datasets: loaders for standard multi-view formats, the synthetic renderer and sample scenes.

    >>> import data
    >>> mv = data.load("path/to/dataset")                        # doctest: +SKIP
    >>> cams = data.turntable(4, elevation=25, radius=3.5, width=32, height=24)
    >>> images, depths, masks = data.render(data.objects.mug(), cams)
    >>> images.shape, bool(masks.any())
    ((4, 24, 32, 3), True)
    >>> sample = data.scenes.sample(seed=0, size=(32, 32))
    >>> sorted(sample)[:3]
    ['camera', 'depth', 'image']
    >>> views = data.synthetic("torus", views=4, size=(32, 24))
    >>> len(views.images), views.silhouettes[0].shape
    (4, (24, 32))

Everything returned is in the project's conventions (OpenCV camera axes, world-to-camera R and T,
pixel centres at integers); loaders convert foreign ones on the way in.

Public names are imported lazily (PEP 562): ``import data.files`` (what the command line needs to
check a file name) loads neither numpy nor OpenCV.
"""
from data.lazy import lazy_attributes

# public name -> the module that defines it
_EXPORTS = {
    "load": "data.formats", "save": "data.formats", "detect": "data.formats", "FORMATS": "data.formats",
    "FormatError": "data.errors", "MultiView": "data.multiview",
    "render": "data.renderer", "render_views": "data.renderer", "synthetic": "data.renderer", "Rendering": "data.renderer",
    "turntable": "data.rigs", "hemisphere": "data.rigs",
}
_SUBMODULES = ("hard_cases", "objects", "scenes")

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, _SUBMODULES)
