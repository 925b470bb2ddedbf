"""Silhouettes of the real bunny photographs: the learned model beside the classical methods.

    python benchmarks/eval_silhouettes.py [--data ../shared/datasets/bunny] [--model PATH]
                                          [--methods learned,otsu,color,auto] [--max-side 256]

The learned model never saw these photographs (nor any photograph): it was trained on procedural
renders composited over synthetic backgrounds. Ground truth: ``silhouettes/NNNN.png``, where 0 (black)
is the object. Prints mean IoU, pooled IoU, precision, recall and seconds per image per method.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from timing import print_table

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bunny"


def load_bunny(root):
    import cv2

    root = Path(root)
    names = sorted(p.name for p in (root / "images").iterdir() if p.suffix.lower() in (".png", ".jpg", ".ppm"))
    images, truth = [], []
    for n in names:
        im = cv2.imread(str(root / "images" / n), cv2.IMREAD_COLOR)
        images.append(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))
        sil = next((root / "silhouettes").glob(Path(n).stem + ".*"))
        truth.append(cv2.imread(str(sil), cv2.IMREAD_GRAYSCALE) == 0)  # 0 is the object
    return names, images, truth


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="bunny dataset folder")
    p.add_argument("--model", default=None, help="learned silhouette model (default: the shipped one)")
    p.add_argument("--methods", default="learned,otsu,color,auto", help="comma-separated methods")
    p.add_argument("--max-side", type=int, default=256, help="working size of the learned model")
    p.add_argument("--save", default=None, help="write a contact sheet PNG of the learned masks here")
    args = p.parse_args(argv)
    if not Path(args.data, "images").is_dir():
        print(f"no bunny dataset at {args.data}; pass --data", file=sys.stderr)
        return 2

    from carve.metrics import mask_iou, mask_iou_per_mask, mask_precision_recall
    from carve.segmentation import silhouettes

    names, images, truth = load_bunny(args.data)
    rows, learned = [], None
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        params = {"model": args.model, "max_side": args.max_side} if method == "learned" else {}
        t = time.perf_counter()
        masks = silhouettes(images, method, **params)
        dt = (time.perf_counter() - t) / len(images)
        if method == "learned":
            learned = masks
        iou = mask_iou(masks, truth)
        pooled = mask_iou(masks, truth, reduce="total")
        prec, rec = mask_precision_recall(masks, truth)
        per = mask_iou_per_mask(masks, truth)
        rows.append([method, f"{iou:.4f}", f"{pooled:.4f}", f"{prec:.4f}", f"{rec:.4f}", f"{per.min():.3f}",
                     f"{dt:.3f}"])
    print(f"\nSilhouettes of {len(images)} bunny photographs ({images[0].shape[1]}x{images[0].shape[0]}), "
          f"no training on them\n")
    print_table(["method", "mean IoU", "pooled IoU", "precision", "recall", "worst IoU", "s/image"], rows)
    if args.save and learned is not None:
        import cv2
        tiles = []
        for im, m, t in zip(images, learned, truth):
            vis = im.copy()
            vis[m & ~t] = (255, 0, 0)      # false positive: red
            vis[~m & t] = (0, 0, 255)      # missed: blue
            tiles.append(cv2.resize(vis, (256, 192), interpolation=cv2.INTER_AREA))
        while len(tiles) % 6:
            tiles.append(np.zeros_like(tiles[0]))
        sheet = np.vstack([np.hstack(tiles[i:i + 6]) for i in range(0, len(tiles), 6)])
        cv2.imwrite(args.save, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
