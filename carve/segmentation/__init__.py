"""Silhouettes from plain photographs: the masks that visual-hull carving needs.

Each method is a function of its own, with its parameters in its signature; :func:`silhouettes`
dispatches to them by name (``method=``), as the command line does:

- :func:`threshold`: the Middlebury recipe for objects on a dark background (grey level, dilate,
  erode).
- :func:`otsu`: Otsu's threshold on the grey level; the border decides which class is background.
- :func:`color`: CIELAB distance from a background colour model of the image border
  (``lightness_weight=0`` compares chromaticity only, ignoring shading and shadows).
- :func:`grabcut`: OpenCV's GrabCut in a band around another method's masks (or masks given).
- :func:`learned`: the UNet of :mod:`carve.segmentation.network`, trained on procedural scenes only
  (needs torch).
- :func:`auto` (the default): picks chromaticity or full CIELAB distance over the whole image set
  (:func:`auto_choice` says which and why), learns the objects' colours over all views, then refines
  with GrabCut. On the TUM bunny: mean IoU 0.974 against its ground truth.

With cameras (``silhouettes(images, cameras=cams)``), the masks are estimated jointly:
:func:`co_segment` (:mod:`carve.segmentation.multiview`) starts from the named method's masks and
alternates a voting hull, per-view trimaps and graph cuts until the masks agree, and returns them
with a per-view ``confidence``.

Every method but ``threshold`` and ``learned`` cleans its masks (``clean=True``; see
:mod:`carve.segmentation.clean`). Images are (H, W, 3) uint8 or float in [0, 1] (numpy; torch
tensors channels-first), at least 8x8 pixels, sizes free to differ.

Convention: a silhouette is an (H, W) bool array, True on the object, for the image of the same
index. Example:

    >>> import numpy as np
    >>> img = np.zeros((64, 64, 3), np.uint8); img[20:40, 24:44] = (200, 90, 40)
    >>> [m] = silhouettes([img], method="otsu")
    >>> int(m.sum())
    400
    >>> bool((otsu([img])[0] == m).all())
    True
"""
from __future__ import annotations

import inspect

import numpy as np

from carve.segmentation.auto import auto, auto_choice, grabcut
from carve.segmentation.classical import color, otsu, threshold
from carve.segmentation.inputs import Images
from carve.segmentation.multiview import CoSegmentation, co_segment

__all__ = ["silhouettes", "METHODS", "auto", "auto_choice", "threshold", "otsu", "color", "grabcut",
           "learned", "co_segment", "CoSegmentation"]


def learned(images: Images, model=None, *, max_side: int | None = 256, threshold: float = 0.5,
            batch_size: int = 8, progress: bool | None = None) -> list[np.ndarray]:
    """Masks from the learned silhouette model (needs torch): see :mod:`carve.segmentation.network`.

    Args:
        images: B images, (H, W, 3) uint8 or float in [0, 1].
        model: None (the shipped model), a path to a model file, or a ``SilhouetteModel``.
        max_side: the network's working size (longer side, px); None for full resolution.
        threshold: probability above which a pixel is object, in (0, 1).
        batch_size: images per forward pass.
        progress: a tqdm bar (default: more than 4 batches on a terminal).

    Returns:
        list of B (H, W) bool masks, True on the object.
    """
    from carve.segmentation.network import learned as run  # torch loads here, not with the package

    return run(images, model, max_side=max_side, threshold=threshold, batch_size=batch_size,
               progress=progress)


#: method name -> the function that computes it; ``silhouettes(images, name, **params)`` calls it
METHODS = {"auto": auto, "threshold": threshold, "otsu": otsu, "color": color, "grabcut": grabcut,
           "learned": learned}


def silhouettes(images: Images, method: str = "auto", *, cameras=None, progress: bool | None = None,
                **params) -> list[np.ndarray]:
    """Object masks from photographs, by the method named ``method``; jointly over the views with ``cameras``.

    Args:
        images: B images: a list of (H, W, 3) uint8 or float in [0, 1] arrays (sizes may differ),
            a (B, H, W, 3) array, or torch images (3, H, W) / (B, 3, H, W).
        method: a key of :data:`METHODS`: "auto", "threshold", "otsu", "color", "grabcut",
            "learned".
        cameras: None (each view alone), or a :class:`geometry.Camera` of the B views: then the
            method's masks start :func:`co_segment`, which refines them jointly (the images must
            then all have the cameras' size).
        progress: show a tqdm bar (default: when there are more than 4 images and stderr is a tty).
        **params: the method's keyword parameters, as its function takes them (for example
            ``silhouettes(images, "threshold", level=0.2)`` is ``threshold(images, level=0.2)``);
            with ``cameras``, :func:`co_segment`'s own too (``resolution=``, ``support=``...).

    Returns:
        list of B (H, W) bool masks, True on the object; with ``cameras`` a
        :class:`CoSegmentation` (a list with ``confidence`` per view).

    Raises:
        ValueError / TypeError: a malformed image list, an unknown method or parameter.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((64, 64, 3), np.uint8); img[20:40, 24:44] = 220
        >>> [m] = silhouettes([img], "threshold", dilate=0, erode=0)
        >>> int(m.sum())
        400
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    run = METHODS[method]
    accepted = _parameters(run)
    joint = [n for n in _parameters(co_segment) if n not in ("cameras", "init", "init_params")] \
        if cameras is not None else []
    unknown = sorted(set(params) - set(accepted) - set(joint))
    if unknown:
        raise TypeError(f"silhouettes(method={method!r}) got unexpected parameter(s) {unknown}; "
                        f"it accepts {sorted(accepted + joint)}")
    if cameras is None:
        return run(images, progress=progress, **params)
    # a name both take (edge_threshold) is co_segment's: its graph cuts are the masks' last step
    mine = {k: v for k, v in params.items() if k in joint}
    return co_segment(images, cameras, init=method, progress=progress, **mine,
                      init_params={k: v for k, v in params.items() if k not in mine})


def _parameters(function) -> list[str]:
    """The keyword parameters of a method's function, but its images and progress."""
    return [name for name, p in inspect.signature(function).parameters.items()
            if name not in ("images", "progress")
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
