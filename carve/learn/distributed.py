"""One process or many under ``torchrun``: the process group, ranks, reductions and the DDP wrapper.

Under ``torchrun --nproc_per_node=N`` (the environment holds ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``), :func:`setup` joins the group: NCCL on GPUs (one per local rank), gloo on the CPU.
Outside it every helper here behaves as for one process of rank 0, so the same training code runs
both ways. A :class:`torch.utils.data.DistributedSampler` splits each global batch over the ranks
(:func:`loader`), BatchNorm statistics span them (:func:`wrap` uses
:class:`carve.learn.nets.GlobalBatchNorm2d`), and only rank 0 logs (:func:`log`).

Example:
    >>> rank(), world()
    (0, 1)
    >>> local_batch(16)
    16
"""
from __future__ import annotations

import os

import torch

__all__ = ["group", "rank", "world", "setup", "teardown", "all_sum", "log", "local_batch", "loader", "wrap"]


def group():
    """``torch.distributed`` when a process group is running, else None."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank() -> int:
    """This process's rank (0 without a process group)."""
    d = group()
    return d.get_rank() if d else 0


def world() -> int:
    """The number of processes (1 without a process group)."""
    d = group()
    return d.get_world_size() if d else 1


def setup() -> tuple[torch.device, bool]:
    """Join the process group torchrun describes in the environment.

    Returns:
        (device, started): the device this process trains on, and whether this call started the
        group (then :func:`teardown` ends it).
    """
    import torch.distributed as dist

    n = int(os.environ.get("WORLD_SIZE", "1"))
    if n > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            dist.init_process_group("nccl")
            return torch.device("cuda", local), True
        dist.init_process_group("gloo")
        return torch.device("cpu"), True
    if dist.is_available() and dist.is_initialized():
        nccl = dist.get_backend() == "nccl"
        return (torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")), False
    return torch.device("cuda" if torch.cuda.is_available() else "cpu"), False


def teardown(started: bool) -> None:
    """End the process group if :func:`setup` started it (after a barrier)."""
    if started:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all ranks, in place; returns it (unchanged for one process)."""
    d = group()
    if d:
        d.all_reduce(t)
    return t


def log(msg: str) -> None:
    """Print ``msg`` on rank 0 only."""
    if rank() == 0:
        print(msg, flush=True)


def local_batch(batch_size: int) -> int:
    """This rank's share of a global batch; raises ValueError unless the ranks split it evenly."""
    n = world()
    if batch_size % n:
        raise ValueError(f"batch_size must be divisible by the number of processes ({n}), got {batch_size}")
    return batch_size // n


def loader(dataset, batch: int, *, shuffle: bool, seed: int, drop_last: bool):
    """(DataLoader, DistributedSampler) of ``dataset`` for this rank, local batches of ``batch``."""
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = DistributedSampler(dataset, num_replicas=world(), rank=rank(), shuffle=shuffle, seed=seed,
                                 drop_last=drop_last)
    return DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=drop_last, num_workers=0), sampler


def wrap(model: torch.nn.Module, device: torch.device, find_unused: bool = False) -> torch.nn.Module:
    """``model`` in DistributedDataParallel with global BatchNorm for several processes, else itself."""
    if world() > 1:
        from torch.nn.parallel import DistributedDataParallel

        from carve.learn.nets import use_global_batchnorm

        use_global_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=find_unused)
    return model
