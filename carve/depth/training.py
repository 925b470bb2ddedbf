"""Training a depth model: :func:`train` from Python, and the command line
(``carve train-depth`` and ``python -m carve.depth``, both also under ``torchrun``).

The options are :func:`carve.learn.cli.add_arguments` ``(parser, "depth")``, which imports no torch,
so a parser can be built cheaply; :func:`run_train_depth` runs them.
"""
from __future__ import annotations

import argparse

from carve.depth.model import DEPTH
from carve.learn import cli
from carve.learn.config import TrainConfig
from carve.learn.loop import fit

__all__ = ["train", "add_train_depth_arguments", "run_train_depth", "main"]


def train(out="runs/depth", *, resume=None, progress: bool = True, **config) -> dict:
    """Train a depth model on procedural scenes (see :class:`carve.learn.config.TrainConfig`).

    Args:
        out: output directory (``model.pt``, ``last.pt``, ``best.pt``, ``history.json``, ``curves.png``).
        resume: a ``last.pt`` to continue from.
        **config: any :class:`TrainConfig` field (size, train, val, widths, epochs, batch_size, lr,
            pretrain, label_fraction, seed, ...).

    Returns:
        dict with ``model`` (trained :class:`DepthModel`), ``history`` and ``best`` (see
        :func:`carve.learn.loop.fit`).
    """
    return fit(TrainConfig(task=DEPTH.name, out=str(out), **config), DEPTH, resume=resume, progress=progress)


def add_train_depth_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``carve train-depth`` to an argparse (sub)parser
    (the same as ``carve.learn.cli.add_arguments(parser, "depth")``)."""
    return cli.add_arguments(parser, DEPTH.name)


def run_train_depth(args: argparse.Namespace) -> int:
    """Run ``carve train-depth`` from options parsed by :func:`add_train_depth_arguments`; returns 0."""
    return cli.run(args, DEPTH)


def main(argv=None) -> int:
    """``python -m carve.depth [options]``: train a depth model."""
    return cli.train_command(DEPTH, argv, prog="python -m carve.depth",
                             description="Train a monocular depth model on procedural scenes "
                                         "(also under torchrun --nproc_per_node=N).")
