"""Numba threading set-up shared by every parallel kernel of the project (import it before compiling).

Open3D bundles a TBB older than Numba accepts; once Open3D is loaded, Numba would find that TBB first
and warn on every launch. Preferring OpenMP (then Numba's own work queue) avoids it.
"""
import numba

numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
