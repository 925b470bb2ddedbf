"""Numba threading set-up shared by every parallel kernel of the project (import it before compiling),
and the number of cores this process may use (:func:`own_cores`).

Open3D bundles a TBB older than Numba accepts; once Open3D is loaded, Numba would find that TBB first
and warn on every launch. Preferring OpenMP (then Numba's own work queue) avoids it.
"""
import os

import numba

numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]


def own_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
