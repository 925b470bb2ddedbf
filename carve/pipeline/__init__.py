"""One capture, start to finish, as a library call: what ``carve reconstruct`` and each task of
``carve batch`` run.

- :mod:`~carve.pipeline.capture`: :func:`reconstruct` (load, silhouettes, hull, mesh, write) and
  its :class:`Reconstruction` record.
- :mod:`~carve.pipeline.steps`: the steps after loading (masks, the robust hull, its checks, the
  per-view report).
- :mod:`~carve.pipeline.outputs`: timed stages and the result files, written atomically.

Importing it costs nothing (the standard library only); each step imports what it needs.
"""
from carve.pipeline.capture import OptionError, Reconstruction, check_fits, reconstruct
from carve.pipeline.steps import HullFailure

__all__ = ["reconstruct", "Reconstruction", "OptionError", "HullFailure", "check_fits"]
