"""Model cards: what a model file is, how it was trained and what it scores, in Markdown.

    python -m carve.learn.card carve/models/depth_default.pt [--evaluation eval.txt]

Example:
    >>> from carve.learn.checkpoints import MODELS_DIR
    >>> print(model_card(MODELS_DIR / "depth_default.pt").splitlines()[0])
    ## depth_default.pt: depth model
"""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["model_card", "main"]


def _lines(name: str, ck: dict, size_mb: float) -> list[str]:
    from carve.learn.scenes import SPLIT_SEEDS

    meta = ck["metadata"]
    cfg = meta.get("config", {})
    n_params = sum(v.numel() for k, v in ck["state_dict"].items() if not k.endswith("num_batches_tracked")
                   and "running" not in k)
    best = meta.get("metrics") or {}
    render = cfg.get("render_size") or cfg.get("size")
    crops = f" and seen as {cfg.get('size')}x{cfg.get('size')} crops" if render != cfg.get("size") else ""
    pretrained = (f", encoder pretrained by rotation prediction for {cfg.get('pretrain_epochs')} epochs"
                  if cfg.get("pretrain") else "")
    return [
        f"## {name}: {ck['task']} model",
        "",
        f"- Network: UNet widths {cfg.get('widths')}, CoordConv {cfg.get('coord_channels')}, "
        f"resolution channel {cfg.get('resolution_channel', False)}, "
        f"global context {cfg.get('global_context')} (thumbnail {cfg.get('context_size')} px); "
        f"{n_params:,} parameters, {size_mb:.2f} MB (float32).",
        f"- Data: procedural scenes of `data.scenes` rendered at {render}x{render}{crops}; "
        f"train scene seeds 0..{cfg.get('train', 0) - 1} ({cfg.get('label_fraction', 1.0):.0%} of their labels used), "
        f"validation seeds {SPLIT_SEEDS['val']}..{SPLIT_SEEDS['val'] + cfg.get('val', 0) - 1}; test seeds start at "
        f"{SPLIT_SEEDS['test']:,} and were never seen in training.",
        f"- Training: epoch {meta.get('epoch')} of {cfg.get('epochs')} (best validation), global batch "
        f"{cfg.get('batch_size')}, AdamW lr {cfg.get('lr')} (warm-up {cfg.get('warmup')}, cosine), weight decay "
        f"{cfg.get('weight_decay')}, batch rescaling in [{cfg.get('scale_min')}, 1], seed {cfg.get('seed')}"
        f"{pretrained}.",
        f"- Command: `{meta.get('command', '?')}` (torch {meta.get('torch', '?')}).",
        "- Validation at the saved epoch: " + ", ".join(f"{k[4:]} {v:.4g}" for k, v in best.items()
                                                         if k.startswith("val_")) + ".",
        f"- Wall time up to the saved epoch: {meta.get('render_seconds', 0):.0f} s rendering, "
        f"{meta.get('train_seconds', 0):.0f} s training (incl. pretraining and validation), on "
        f"{meta.get('device', '?')} with {meta.get('processes', 1)} process(es) x {meta.get('threads', '?')} thread(s).",
    ]


def model_card(path, evaluation: str | None = None) -> str:
    """A Markdown model card for a model file: what it is, how it was trained, what it scores.

    Args:
        path: a model file written by :func:`carve.learn.loop.fit` (``model.pt``), of any task.
        evaluation: optional text (e.g. the table printed by ``benchmarks/eval_depth.py``) to include.

    Returns:
        str (Markdown).

    Raises:
        CheckpointError: an unusable model file.
    """
    from carve.learn.checkpoints import load_checkpoint

    ck = load_checkpoint(path)
    lines = _lines(Path(path).name, ck, Path(path).stat().st_size / 2 ** 20)
    if evaluation:
        lines += ["", "```", evaluation.strip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """``python -m carve.learn.card MODEL [--evaluation FILE]``: print the model card."""
    p = argparse.ArgumentParser(prog="python -m carve.learn.card",
                                description="Print a Markdown model card for a model file.")
    p.add_argument("model", help="a model file (model.pt)")
    p.add_argument("--evaluation", default=None, help="a text file (e.g. eval_depth.py output) to include")
    a = p.parse_args(argv)
    print(model_card(a.model, Path(a.evaluation).read_text() if a.evaluation else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
