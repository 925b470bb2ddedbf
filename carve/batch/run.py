"""``reconstruct_many``: one Dask task per dataset, each the :func:`carve.pipeline.reconstruct` that
``carve reconstruct`` runs, with outputs written atomically per dataset, a manifest, resumable runs
and failures kept to their dataset.

Layout of ``out``: ``NAME/`` per dataset (``NAME.ply``, ``NAME.npz``, ``NAME.png``,
``NAME_views.json``), and ``manifest.jsonl`` (:mod:`carve.batch.manifest`).
"""
from __future__ import annotations

import functools
import inspect
import os
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from carve.batch.cluster import (open_client, require_distributed, slots_by_host, task_threads, worker_memory_limit,
                                 worker_name)
from carve.batch.inputs import expand_inputs, inputs_hash, output_names
from carve.batch.manifest import MANIFEST_NAME, Manifest
from carve.batch.report import BatchReport
from carve.pipeline.capture import reconstruct
from carve.pipeline.steps import first_line

__all__ = ["reconstruct_many", "run_task", "run_tasks", "OPTIONS"]

#: the options of :func:`carve.pipeline.reconstruct` a batch passes on, with their defaults (the hash
#: counts them all, so that spelling out a default changes nothing)
OPTIONS = {name: p.default for name, p in inspect.signature(reconstruct).parameters.items()
           if p.kind is p.KEYWORD_ONLY and name not in ("name", "mesh_path", "quiet", "memory_limit")}
#: left behind by a task whose worker died while it wrote; removed when the next run starts
PARTIAL, OLD = ".partial-", ".old-"


def error_line(err: BaseException) -> str:
    """One line for the manifest: the error's first line, or its type when it has no message."""
    return first_line(str(err)) or type(err).__name__


def replace_folder(tmp: Path, dest: Path) -> None:
    """Put the finished folder ``tmp`` at ``dest`` (renames: readers see the old outputs or the new, never
    a mix); an empty ``tmp`` removes ``dest``, so a folder always holds its dataset's last run."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}{OLD}{secrets.token_hex(4)}")
        os.rename(dest, old)
    if any(tmp.iterdir()):
        os.rename(tmp, dest)
    else:
        tmp.rmdir()
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def carving_thread() -> ThreadPoolExecutor:
    """The one thread of this process that carves and renders. Open3D's renderer (Filament) aborts the
    process when its engine is shut down from another thread than the one that started it, and a Dask
    worker may run successive tasks on different threads of its pool: every task runs here instead."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="carve-task")


def run_task(path: str, out: str, name: str, options: dict, digest: str, slots: dict) -> dict:
    """One dataset on a worker: Numba threads set to the cores the task owns, glibc's allocator as
    without Dask's malloc tunable (:func:`carve.viz.allocator.steady_mmap_threshold`), the memory check against
    the worker's limit, :func:`carve.pipeline.reconstruct` into a private folder, then that folder
    renamed into ``out/name``. Any error of the dataset is its record's ``error``, never raised.
    It runs on :func:`carving_thread`; the worker's thread waits for it.

    Returns:
        the manifest record (see :mod:`carve.batch.manifest`).
    """
    threads, limit, worker = task_threads(slots), worker_memory_limit(), worker_name()  # the worker's own thread
    return carving_thread().submit(carve_one, path, out, name, options, digest, threads, limit, worker).result()


def carve_one(path: str, out: str, name: str, options: dict, digest: str, threads: int, limit: int | None,
              worker: str) -> dict:
    """The body of :func:`run_task`, on the carving thread."""
    start = time.perf_counter()
    import cv2
    import numba

    from carve.viz.allocator import steady_mmap_threshold

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    cv2.setNumThreads(threads)
    steady_mmap_threshold()  # Dask's workers start with a malloc tunable that makes a task 23% slower
    out_dir = Path(out)
    tmp = out_dir / f".{name}{PARTIAL}{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    record = {"name": name, "dataset": path, "hash": digest, "worker": worker, "error": None,
              "voxels": None, "times_s": {}}
    try:
        done = reconstruct(path, tmp, name=name, quiet=True, memory_limit=limit, **options)
        record.update(status="done", voxels=done.voxels, times_s=done.record()["times_s"])
    except Exception as err:  # the dataset's failure, reported; the batch goes on
        record.update(status="failed", error=error_line(err))
    try:
        record["outputs"] = sorted(f"{name}/{p.name}" for p in tmp.iterdir())
        replace_folder(tmp, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record["seconds"] = round(time.perf_counter() - start, 4)
    return record


def check_options(options: dict) -> dict:
    """Every option of :data:`OPTIONS`, defaults filled in, JSON-able; TypeError for an unknown one."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"reconstruct_many got unknown options {', '.join(unknown)}; "
                        f"the options are {', '.join(OPTIONS)}")
    merged = {**OPTIONS, **options}
    if merged["bounds"] != "auto":
        lo, hi = merged["bounds"]
        merged["bounds"] = [[float(v) for v in lo], [float(v) for v in hi]]
    if merged["device"] is not None:
        merged["device"] = str(merged["device"])
    return merged


def is_current(record: dict | None, digest: str, out: Path, retry_failed: bool) -> bool:
    """Whether a manifest record stands for these inputs and options: done with its files there, or
    failed (a failure of the same inputs is the same failure) unless ``retry_failed``."""
    if record is None or record.get("hash") != digest:
        return False
    if record.get("status") == "failed":
        return not retry_failed
    return (record.get("status") == "done" and bool(record.get("outputs"))
            and all((out / p).is_file() for p in record["outputs"]))


def remove_leftovers(out: Path) -> None:
    """The private folders of tasks whose worker died while they wrote."""
    for p in out.glob(".*"):
        if p.is_dir() and (PARTIAL in p.name or OLD in p.name):
            shutil.rmtree(p, ignore_errors=True)


def run_tasks(client, todo: list, out: Path, options: dict, progress: bool | None):
    """Yield the record of each ``(path, name, hash)`` of ``todo`` as its task finishes, with a bar.

    No more tasks are out than the live workers have threads (asked again as each task ends, so workers
    that join are used and a lost one is not waited for; the slot a task frees is filled first, and the
    scheduler asked after, which cut a worker's wait between tasks from 18 to 7 ms under full load on
    2 cores): a task waits in this loop, not queued behind
    another on a worker. That matters because Dask counts a worker's death against every task it held
    and fails a task with ``KilledWorker`` once more than ``allowed-failures`` of its workers died; held
    one at a time, a death counts against the task that was running, bar the moment just after a loss,
    when the scheduler may put the lost worker's task beside another on a survivor.
    """
    import distributed

    from data.progress import progress as bar

    slots, pending, futures = slots_by_host(client), iter(todo), {}
    done = distributed.as_completed()
    known = 0  # the live workers' threads when last asked

    def threads(ask: bool = True) -> int:  # asked once per finished task: one scheduler call
        nonlocal known
        if ask:
            known = max(1, sum(client.nthreads().values()))
        return known

    def submit() -> bool:
        item = next(pending, None)
        if item is not None:
            path, name, digest = item
            future = client.submit(run_task, path, str(out), name, options, digest, slots, pure=False,
                                   key=f"carve-{name}-{secrets.token_hex(4)}")
            futures[future] = item
            done.add(future)
        return item is not None

    while len(futures) < threads() and submit():
        pass
    for future in bar(done, desc="carve batch", total=len(todo), enabled=progress, unit="dataset"):
        path, name, digest = futures.pop(future)
        try:
            record = future.result()
        except Exception as err:  # the task's worker died (twice: KilledWorker), or Dask failed it
            record = {"name": name, "dataset": path, "hash": digest, "status": "failed", "voxels": None,
                      "times_s": {}, "outputs": [], "worker": None, "error": f"{type(err).__name__}: {error_line(err)}"}
        future.release()
        # the freed slot first, the scheduler asked afterwards: a worker does not wait for that call
        while len(futures) < threads(ask=False) and submit():
            pass
        while len(futures) < threads() and submit():
            pass
        yield record


def reconstruct_many(paths, out, client=None, *, workers: int | None = None, scheduler: str | None = None,
                     resume: bool = True, retry_failed: bool = False, progress: bool | None = None,
                     **options) -> BatchReport:
    """Carve many datasets, one Dask task each; the library form of ``carve batch``.

    Args:
        paths: dataset folders (or files), list files, glob patterns (:func:`carve.batch.inputs.expand_inputs`).
        out: output folder: ``NAME/`` per dataset and ``manifest.jsonl``.
        client: a ``distributed.Client`` to run on; default: a new local cluster of ``workers``
            processes (one per core), or a client of the scheduler at ``scheduler`` (its workers must
            see ``paths`` and ``out`` at the same paths, a shared file system).
        resume: skip a dataset whose last record has the same hash of inputs and options and is
            "done" with its files there, or "failed"; False carves everything again.
        retry_failed: with ``resume``, run the failed datasets again (a worker lost to something else).
        progress: the bar (:func:`data.progress.progress`): None for its default rule.
        **options: those of :func:`carve.pipeline.reconstruct` (:data:`OPTIONS`): resolution, silhouettes, ...

    Returns:
        a :class:`BatchReport` (``.table()`` is the summary, ``.failed`` the failed records).

    Raises:
        ValueError, TypeError: bad inputs or options, before any task runs. ImportError: no ``distributed``.
    """
    options = check_options(options)
    out = Path(out)
    datasets = [p for p in expand_inputs(paths) if out.resolve() not in (p.resolve(), *p.resolve().parents)]
    if not datasets:
        raise ValueError(f"paths name no dataset outside the output folder {out}")
    names = output_names(datasets)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out / MANIFEST_NAME)
    manifest.compact()
    remove_leftovers(out)
    latest = manifest.latest()
    records: dict[str, dict] = {}
    todo = []
    for path, name in zip(datasets, names):
        digest = inputs_hash(path, options)
        if resume and is_current(latest.get(name), digest, out, retry_failed):
            records[name] = {**latest[name], "skipped": True}
        else:
            todo.append((str(path.resolve()), name, digest))  # the same on every worker of a shared file system
    if todo:
        require_distributed()
        with open_client(client, workers=workers, scheduler=scheduler) as live:
            for record in run_tasks(live, todo, out.resolve(), options, progress):
                manifest.append(record)
                records[record["name"]] = record
    return BatchReport([records[name] for name in names], time.perf_counter() - start, manifest.path)
