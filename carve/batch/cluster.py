"""The Dask side of a batch: a client (a local cluster of processes by default, or a scheduler's
address), and what a task learns from the worker it runs on (its cores, its memory limit).

Dask's ``distributed`` is an optional extra (``pip install carve3d[cluster]``): it is imported when a
batch starts, never by ``import carve``.
"""
from __future__ import annotations

import contextlib

from geometry.parallel import own_cores

__all__ = ["ALLOWED_FAILURES", "require_distributed", "open_client", "thread_environment", "slots_by_host",
           "own_cores", "task_threads", "worker_memory_limit", "worker_name"]

#: a task that was running on a worker when it died is run again this many times; a task whose
#: worker dies once more (it killed it twice) is failed with Dask's ``KilledWorker``, not retried forever
ALLOWED_FAILURES = 1

INSTALL = "carve batch needs Dask's distributed scheduler: pip install 'carve3d[cluster]' (or 'dask[distributed]')"


def require_distributed():
    """The ``distributed`` module; ImportError naming the extra to install when it is missing."""
    try:
        import distributed
    except ImportError:
        raise ImportError(INSTALL) from None
    return distributed


@contextlib.contextmanager
def open_client(client=None, *, workers: int | None = None, scheduler: str | None = None):
    """Yield a ``distributed.Client``: ``client`` itself, one connected to ``scheduler``, or one of a new
    local cluster of ``workers`` processes (default: one per core), one thread each. A client made here
    is closed, and its cluster shut down, on the way out.

    The local scheduler runs in this process with ``distributed.scheduler.allowed-failures`` set to
    :data:`ALLOWED_FAILURES`; a scheduler started elsewhere keeps its own setting (start it with
    ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1`` for the same rule).
    """
    if client is not None:
        if workers is not None or scheduler is not None:
            raise ValueError("pass client, or workers / scheduler to make one, not both")
        yield client
        return
    if workers is not None and scheduler is not None:
        raise ValueError(f"pass workers (a local cluster) or scheduler (an existing one), not both; got "
                         f"workers={workers} and scheduler={scheduler!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a number of processes >= 1, got {workers!r}")
    distributed = require_distributed()
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        if scheduler is not None:
            with distributed.Client(scheduler, timeout="30s") as made:
                yield made
            return
        n = workers or own_cores()
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                      env=thread_environment(max(1, own_cores() // n))) as cluster, \
                distributed.Client(cluster) as made:
            yield made


def thread_environment(threads: int) -> dict[str, str]:
    """The environment of a local worker process that owns ``threads`` cores: the thread pools of the
    libraries a carve uses (BLAS and OpenMP, which Dask sets to 1, and Mesa's software Vulkan driver
    that renders the snapshot) sized to them, so that workers do not oversubscribe the machine.

    Example:
        >>> thread_environment(2)["LP_NUM_THREADS"]
        '2'
    """
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                            "LP_NUM_THREADS")}


def slots_by_host(client) -> dict[str, int]:
    """host -> the Dask threads (task slots) of all the workers on it, from the scheduler."""
    slots: dict[str, int] = {}
    for info in client.scheduler_info(n_workers=-1)["workers"].values():
        slots[info["host"]] = slots.get(info["host"], 0) + int(info.get("nthreads", 1))
    return slots


def task_threads(slots: dict[str, int]) -> int:
    """Numba threads for a task on this worker: the cores of this process shared by the task slots of its
    host (a worker that joined after ``slots`` was taken counts its own slots alone)."""
    worker = current_worker()
    own = int(getattr(worker, "nthreads", 1) or 1) if worker is not None else 1
    host = getattr(worker, "ip", None) if worker is not None else None
    return max(1, own_cores() // max(1, slots.get(host, own)))


def current_worker():
    """The Dask worker running this task, or None outside one."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def worker_memory_limit() -> int | None:
    """Bytes this worker may use (``--memory-limit`` of the worker), or None: no worker, or no limit."""
    worker = current_worker()
    manager = getattr(worker, "memory_manager", None)
    limit = getattr(manager, "memory_limit", None)
    return int(limit) if limit else None


def worker_name() -> str:
    """The address of the worker running this task, or "local"."""
    worker = current_worker()
    return str(getattr(worker, "address", "local")) if worker is not None else "local"
