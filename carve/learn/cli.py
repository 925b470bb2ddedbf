"""Command-line options of a training run, shared by ``carve train-depth``, ``python -m carve.depth``
and ``python -m carve.segmentation.network`` (each also under ``torchrun --nproc_per_node=N``).

This module imports neither torch nor numpy at module level: the ``carve`` parser is built from
:func:`add_arguments`, and ``carve --help`` must stay fast. :func:`run` imports the training loop.

Example:
    >>> import argparse
    >>> p = add_arguments(argparse.ArgumentParser(), "silhouette")
    >>> cfg = config_from_args(p.parse_args(["--size", "64", "--widths", "4,8"]), "silhouette")
    >>> cfg.task, cfg.size, cfg.widths, cfg.out
    ('silhouette', 64, (4, 8), 'runs/silhouette')
"""
from __future__ import annotations

import argparse

from carve.learn.config import TrainConfig

__all__ = ["add_arguments", "config_from_args", "run", "train_command"]


def _widths(text: str) -> tuple:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints such as 8,16,32, got {text!r}") from None


def _network_arguments(parser, d: TrainConfig) -> None:
    parser.add_argument("--size", type=int, default=d.size, help="training input size in pixels (square)")
    parser.add_argument("--render-size", type=int, default=d.render_size,
                        help="render training scenes at this size and train on --size crops (0 = --size)")
    parser.add_argument("--widths", type=_widths, default=d.widths, help="UNet widths per level, e.g. 8,16,32,64,128")
    parser.add_argument("--no-coord-channels", action="store_true", help="drop the CoordConv channels")
    parser.add_argument("--no-global-context", action="store_true", help="drop the global-context branch")
    parser.add_argument("--no-resolution-channel", action="store_true",
                        help="drop the resolution channel (by default on when --render-size exceeds --size)")
    parser.add_argument("--context-size", type=int, default=d.context_size,
                        help="thumbnail size seen by the global-context branch (power of two)")


def _optimiser_arguments(parser, d: TrainConfig, task_name: str) -> None:
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch over all processes")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup", type=float, default=d.warmup, help="share of steps with linear warm-up")
    parser.add_argument("--scale-min", type=float, default=d.scale_min,
                        help="resize each batch by a random factor in [scale-min, 1] (1 = off)")
    if task_name == "depth":
        parser.add_argument("--silog-lambda", type=float, default=d.silog_lambda)
        parser.add_argument("--grad-weight", type=float, default=d.grad_weight)
    parser.add_argument("--pretrain", choices=["rotation"], default=None,
                        help="pretrain the encoder on unlabeled renders (rotation prediction)")
    parser.add_argument("--pretrain-epochs", type=int, default=d.pretrain_epochs)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = default)")


def add_arguments(parser: argparse.ArgumentParser, task_name: str = "depth") -> argparse.ArgumentParser:
    """Add the training options of :class:`TrainConfig` for task ``task_name`` to an argparse parser.

    Args:
        parser: a parser or sub-parser.
        task_name: "depth" or "silhouette" (:data:`carve.learn.config.TASK_NAMES`); depth adds its
            loss options.

    Returns:
        ``parser``.
    """
    d = TrainConfig(task=task_name)
    parser.add_argument("--out", default=f"runs/{task_name}", help="output directory (default: %(default)s)")
    parser.add_argument("--train", type=int, default=d.train, help="number of training scenes")
    parser.add_argument("--val", type=int, default=d.val, help="number of validation scenes")
    parser.add_argument("--label-fraction", type=float, default=d.label_fraction,
                        help="share of training scenes whose labels are used")
    _network_arguments(parser, d)
    _optimiser_arguments(parser, d, task_name)
    parser.add_argument("--resume", default=None, help="continue from this last.pt")
    parser.add_argument("--cache-dir", default=None, help="keep rendered training scenes here for later runs")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many epochs (resume later with --resume OUT/last.pt)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def config_from_args(args: argparse.Namespace, task_name: str = "depth") -> TrainConfig:
    """The :class:`TrainConfig` of options parsed by :func:`add_arguments` (ValueError if invalid)."""
    kw = dict(task=task_name, out=args.out, size=args.size, render_size=args.render_size, train=args.train,
              val=args.val, label_fraction=args.label_fraction, widths=args.widths,
              coord_channels=not args.no_coord_channels, global_context=not args.no_global_context,
              resolution_channel=False if args.no_resolution_channel else None, context_size=args.context_size,
              epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
              warmup=args.warmup, scale_min=args.scale_min, pretrain=args.pretrain,
              pretrain_epochs=args.pretrain_epochs, seed=args.seed, threads=args.threads)
    if task_name == "depth":
        kw.update(silog_lambda=args.silog_lambda, grad_weight=args.grad_weight)
    return TrainConfig(**kw)


def run(args: argparse.Namespace, task) -> int:
    """Train ``task`` (a :class:`carve.learn.task.Task`) from parsed options; returns 0.

    Prints the best validation record and where the outputs are (rank 0).
    """
    from carve.learn import distributed
    from carve.learn.loop import fit

    cfg = config_from_args(args, task.name)
    res = fit(cfg, task, resume=args.resume, progress=not args.no_progress, cache_dir=args.cache_dir,
              stop_after=args.stop_after)
    if res["best"]:
        distributed.log(f"best epoch {res['best']['epoch']}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in res["best"].items() if k.startswith("val_")))
    distributed.log(f"outputs in {cfg.out}: model.pt (best weights), last.pt (resumable), history.json, curves.png")
    return 0


def train_command(task, argv=None, *, prog: str, description: str | None = None) -> int:
    """A whole training command for ``task``: parse :func:`add_arguments`' options from ``argv``, run."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(p, task.name)
    return run(p.parse_args(argv), task)
