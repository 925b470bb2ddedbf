"""Many captures at once: ``carve batch`` on Dask's distributed scheduler.

:func:`reconstruct_many` runs one task per dataset, each the :func:`carve.pipeline.reconstruct` that
``carve reconstruct`` runs, on a local cluster of processes by default or on any Dask cluster (a
scheduler address: dask-jobqueue, dask-kubernetes, ``dask scheduler`` by hand). Results are written
atomically per dataset, a manifest records each one as it finishes, a rerun skips what is up to date,
and a dataset that fails (or kills its worker twice) is reported without stopping the others.

- :mod:`~carve.batch.run`: :func:`reconstruct_many`, the task, the summary.
- :mod:`~carve.batch.inputs`: folders, list files and globs; output names; the hash of inputs + options.
- :mod:`~carve.batch.manifest`: the JSON-lines manifest.
- :mod:`~carve.batch.cluster`: the Dask client, and the worker's cores and memory limit.

Dask is the optional extra ``carve3d[cluster]``; importing this package does not import it.
"""
from carve.batch.inputs import expand_inputs, inputs_hash
from carve.batch.manifest import Manifest
from carve.batch.report import BatchReport
from carve.batch.run import OPTIONS, reconstruct_many

__all__ = ["reconstruct_many", "BatchReport", "Manifest", "expand_inputs", "inputs_hash", "OPTIONS"]
