"""Monocular depth on held-out procedural scenes: the shipped model against a mean-depth baseline.

    python benchmarks/eval_depth.py [--model PATH | --model NAME=PATH ...] [--n 200] [--scales 1,2] [--speed]

Test scenes are the ``test`` split of :mod:`carve.learn.scenes` (scene seeds from 20,000,000; training
used seeds from 0 and validation from 10,000,000), rendered at the model's training input size and
at multiples of it (``--scales``; the same scenes, same field of view, k^2 the pixels). The baseline
predicts, for every image, the training set's mean depth map (stored with the model; resized). One
table holds Eigen et al.'s measures for every model and the baseline at every resolution, raw and
with per-image median scaling; then the goals of the issue are checked, and with ``--speed`` the inference rate at
256x256 is measured (``--threads`` torch threads, BatchNorm folded, batches of 8).

Several ``--model NAME=PATH`` entries share the table (e.g. rotation pretraining against training
from scratch on the same 10% of labels).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from timing import print_table, write_json

COLUMNS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")


def _models(specs):
    from carve import depth

    out = []
    for spec in specs or [None]:
        if spec is None:
            out.append(("shipped", depth.default_model_path()))
        elif "=" in spec:
            name, path = spec.split("=", 1)
            out.append((name, Path(path)))
        else:
            out.append((Path(spec).parent.name or Path(spec).stem, Path(spec)))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", help="model file, or NAME=PATH (repeatable; default: shipped)")
    p.add_argument("--n", type=int, default=200, help="number of held-out test scenes (default 200)")
    p.add_argument("--size", type=int, default=None, help="evaluation size (default: the model's training size)")
    p.add_argument("--scales", default="1,2", help="resolutions to test, as multiples of the training size "
                   "(default 1,2; the goals need 1 and 2)")
    p.add_argument("--speed", action="store_true", help="also time inference at 256x256")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the timing (default 2)")
    p.add_argument("--cache-dir", default=None, help="keep the rendered test scenes here")
    p.add_argument("--json", default=None, help="write all numbers to this JSON file")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("--n must be positive")
    try:
        scales = [int(k) for k in args.scales.split(",")]
    except ValueError:
        scales = []
    if not scales or scales[0] != 1 or any(k < 1 for k in scales):
        p.error(f"--scales must be positive integers starting with 1, e.g. 1,2,3; got {args.scales!r}")

    import cv2
    import torch

    from carve import depth
    from carve.learn.checkpoints import load_checkpoint
    from carve.learn.scenes import render_split
    from carve.metrics import depth_metrics

    models = _models(args.model)
    first = load_checkpoint(models[0][1], depth.DEPTH)
    size = args.size or int(first["metadata"]["config"]["size"])
    mean_depth = first["tensors"].get("mean_depth")
    sizes = [k * size for k in scales]

    results, rows = {}, []
    for s in sizes:
        t0 = time.perf_counter()
        test = render_split("test", args.n, s, cache_dir=args.cache_dir, progress=False)
        gt = test.depth.numpy()
        print(f"rendered {args.n} test scenes at {s}x{s} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        preds = {}
        for name, path in models:
            preds[name] = depth.predict(test.images.numpy(), path, batch_size=8)
        if mean_depth is not None:
            md = mean_depth.numpy()
            if md.shape != (s, s):
                md = cv2.resize(md, (s, s), interpolation=cv2.INTER_LINEAR)
            preds["baseline: train mean depth"] = np.broadcast_to(md, gt.shape)
        for name, pred in preds.items():
            for ms in (False, True):
                m = depth_metrics(pred, gt, median_scaling=ms)
                key = f"{name} @ {s}px" + (" (median-scaled)" if ms else "")
                results[key] = m
                rows.append((ms, [key] + [f"{m[c]:.4f}" for c in COLUMNS]))
    print(f"\nMonocular depth on {args.n} held-out scenes (test split), Eigen et al. measures\n")
    print_table(["model @ resolution"] + list(COLUMNS), [r for ms, r in rows if not ms] + [r for ms, r in rows if ms])

    name0 = models[0][0]
    base = "baseline: train mean depth"
    print("\nGoals (issue 5), first model:")
    goals = []
    for suffix, label in (("", ""), (" (median-scaled)", "(median-scaled) ")):
        r1 = results[f"{name0} @ {size}px{suffix}"]
        goals.append((f"{label}AbsRel <= 0.08 at training resolution", r1["abs_rel"], r1["abs_rel"] <= 0.08))
        goals.append((f"{label}delta1 >= 0.93 at training resolution", r1["delta1"], r1["delta1"] >= 0.93))
        if 2 in scales:
            drop = r1["delta1"] - results[f"{name0} @ {2 * size}px{suffix}"]["delta1"]
            goals.append((f"{label}delta1 drop at 2x <= 0.03", drop, drop <= 0.03))
        if f"{base} @ {size}px{suffix}" in results:
            ratio = results[f"{base} @ {size}px{suffix}"]["abs_rel"] / r1["abs_rel"]
            goals.append((f"{label}AbsRel >= 3x lower than the baseline", ratio, ratio >= 3))

    if args.speed:
        torch.set_num_threads(args.threads)
        x = np.random.default_rng(0).integers(0, 255, (64, 256, 256, 3), dtype=np.uint8)
        depth.predict(x[:8], models[0][1], batch_size=8)  # warm-up
        times = []
        for _ in range(3):
            t = time.perf_counter()
            depth.predict(x, models[0][1], batch_size=8)
            times.append(time.perf_counter() - t)
        rate = len(x) / float(np.median(times))
        results["speed_images_per_s_256"] = rate
        goals.append((f"inference >= 20 images/s at 256x256 on {args.threads} threads", rate, rate >= 20))
    print_table(["goal", "value", "met"], [(g, f"{v:.4g}", "yes" if ok else "NO") for g, v, ok in goals])
    meta = first["metadata"]
    if "config" in meta:
        cfg = meta["config"]
        render = cfg.get("render_size") or cfg["size"]
        print(f"\nfirst model: {models[0][1]} (trained {meta.get('epoch')} epochs on {cfg['train']} scenes rendered "
              f"at {render}px, inputs of {cfg['size']}px, widths {cfg['widths']}, seed {cfg['seed']})")
    if args.json:
        write_json({"results": results, "goals": [(g, v, bool(ok)) for g, v, ok in goals]}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
