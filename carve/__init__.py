"""Reconstruction: voxel visual hulls, silhouettes, depth, meshing, the viewer and the command line.

The tree is the architecture; imports point down it (``cli`` -> everything; ``viz``, ``segmentation``,
``depth`` -> ``learn``, ``hull``, ``grid``; ``hull`` -> ``grid`` alone):

- :mod:`carve.hull`: the carving engine (entry points, input checks, automatic bounds, the
  backend-neutral rule, one kernel module per backend).
- :mod:`carve.grid` and :mod:`carve.mesh`: the voxel grid, and its surfaces and colours.
- :mod:`carve.segmentation`: silhouettes from photographs (classical methods and a learned model).
- :mod:`carve.depth`: monocular depth. :mod:`carve.learn`: networks, losses and the training loop.
- :mod:`carve.refine`: beyond the hull: space carving by colour, depth fusion.
- :mod:`carve.metrics`: mask and depth scores. :mod:`carve.viz`: the Open3D viewer.
- :mod:`carve.cli`: the ``carve`` command line and the demo.

Public names are imported lazily (PEP 562) so that ``import carve`` and ``carve --help`` stay fast:
Numba, torch and Open3D load only when the code that needs them runs.
"""
import sys
from pathlib import Path


def _check_siblings() -> None:
    """Refuse, in one line, a ``data`` or ``geometry`` that is not this distribution's own.

    Our top-level names are generic: a ``data.py`` or ``data/`` folder in the working directory (first
    on ``sys.path`` for ``python -m`` and scripts) would otherwise be imported in their place and fail
    later with a confusing traceback.
    """
    from importlib.util import find_spec

    home = Path(__file__).resolve().parent.parent
    for name in ("geometry", "data"):
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) if module is not None else None
        if module is None:
            spec = find_spec(name)
            origin = spec.origin if spec is not None else None
        if origin is None or Path(origin).resolve() != home / name / "__init__.py":
            where = origin or next(iter(getattr(module or find_spec(name), "submodule_search_locations", None)
                                        or [None]), None) or "somewhere on sys.path"
            message = (f"carve needs its own '{name}' package ({home / name}), but '{name}' resolves to {where}: "
                       "rename that file or folder, or run from another directory")
            if sys.argv and (sys.argv[0] == "-m" or Path(sys.argv[0]).name == "carve"):  # the command line
                print(f"carve: error: {message}", file=sys.stderr)
                raise SystemExit(2)
            raise ImportError(message)


_check_siblings()

from data.lazy import lazy_attributes  # noqa: E402 (after the check above)

# public name -> module that defines it
_EXPORTS = {
    "carve": "carve.hull",
    "carve_depth": "carve.hull",
    "VoxelGrid": "carve.grid",
    "silhouettes": "carve.segmentation",
}
# sub-packages and modules reachable as attributes (carve.metrics.mask_iou, carve.viz.show, ...)
_SUBMODULES = {"hull", "grid", "mesh", "surface", "metrics", "segmentation", "depth", "learn", "refine", "viz", "pipeline",
               "batch", "cli"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, _SUBMODULES)
