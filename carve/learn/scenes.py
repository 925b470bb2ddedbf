"""Training data: splits of the procedural scenes of :mod:`data.scenes`, rendered into memory.

The three splits draw disjoint scene seeds (:data:`SPLIT_SEEDS`): train seeds are ``0 .. n-1``,
validation seeds start at 10,000,000 and test seeds at 20,000,000, whatever the run's own seed.
Under torch.distributed each rank renders every N-th scene and the parts are summed over ranks.
Renders may be cached on disk (npz), keyed by split, count, size and a hash of the source of the
scene generator and the renderer, so that a changed generator never reads stale scenes.

Example:
    >>> s = render_split("val", 2, 16, progress=False)
    >>> s.images.shape, s.depth.shape, s.mask.dtype, s.seeds.tolist()
    (torch.Size([2, 16, 16, 3]), torch.Size([2, 16, 16]), torch.bool, [10000000, 10000001])
"""
from __future__ import annotations

import hashlib
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from carve.learn import distributed
from data.files import atomic_path, new_folders
from data.progress import progress as progress_bar

__all__ = ["SPLIT_SEEDS", "RenderedScenes", "render_split", "cache_file"]

SPLIT_SEEDS = {"train": 0, "val": 10_000_000, "test": 20_000_000}


@dataclass
class RenderedScenes:
    """A split of procedural scenes held in memory.

    Attributes:
        images: (N, H, W, 3) uint8 RGB.  depth: (N, H, W) float32 metric depth (0 = none).
        mask: (N, H, W) bool object masks.  seeds: (N,) int64 scene seeds.
    """

    images: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    seeds: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, n: int) -> "RenderedScenes":
        """The first ``n`` scenes."""
        return self.slice(0, n)

    def slice(self, start: int, stop: int | None = None) -> "RenderedScenes":
        """Scenes ``start:stop`` (negative indices count from the end, as for lists)."""
        s = slice(start, stop)
        return RenderedScenes(self.images[s], self.depth[s], self.mask[s], self.seeds[s])


def cache_file(cache_dir, split: str, count: int, size: int) -> Path:
    """Cache path keyed by split, count, size and the source of the scene generator and renderer."""
    import data.renderer
    import data.scenes

    h = hashlib.sha1()
    for module in (data.scenes, data.renderer):
        h.update(Path(module.__file__).read_bytes())
    return Path(cache_dir) / f"scenes-{split}-{count}-{size}-{h.hexdigest()[:10]}.npz"


def render_split(split: str, count: int, size: int, *, progress: bool = True, cache_dir=None) -> RenderedScenes:
    """Render ``count`` scenes of a split (see :data:`SPLIT_SEEDS`) at ``size x size``.

    Args:
        split: "train", "val" or "test".
        count, size: number of scenes and their side in pixels.
        progress: log and show a bar (on rank 0, on a tty).
        cache_dir: save the renders there (npz) and read them back in later runs.

    Returns:
        :class:`RenderedScenes`.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {list(SPLIT_SEEDS)}, got {split!r}")
    if cache_dir is None:
        return _render(split, count, size, progress)
    f = cache_file(cache_dir, split, count, size)
    missing = distributed.all_sum(torch.tensor([0.0 if f.is_file() else 1.0]))  # one decision for all ranks
    if float(missing) == 0:
        cached = _read_cache(f, count, size)
        if cached is not None:
            return cached
    res = _render(split, count, size, progress)
    if distributed.rank() == 0:
        with new_folders(f.parent), atomic_path(f) as tmp:  # same suffix: np.savez adds none
            np.savez(tmp, images=res.images.numpy(), depth=res.depth.numpy(), mask=res.mask.numpy(),
                     seeds=res.seeds.numpy())
    return res


def _read_cache(f: Path, count: int, size: int) -> RenderedScenes | None:
    """The scenes cached in ``f``, or None (with a warning) when the file is damaged: a cache is only
    a shortcut, so the scenes are rendered again and the file rewritten."""
    try:
        with np.load(f, allow_pickle=False) as z:
            res = RenderedScenes(*(torch.from_numpy(z[k]) for k in ("images", "depth", "mask", "seeds")))
        if res.images.shape[0] != count or tuple(res.images.shape[1:3]) != (size, size):
            raise ValueError(f"holds {tuple(res.images.shape)} images")
        return res
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        distributed.log(f"warning: the scene cache {f} is damaged ({type(err).__name__}: {err}); rendering again")
        return None


def _render(split: str, count: int, size: int, progress: bool) -> RenderedScenes:
    from data import scenes

    rank, world = distributed.rank(), distributed.world()
    t0 = time.perf_counter()
    if progress:
        distributed.log(f"[data] rendering {count} {split} scenes at {size}x{size} over {world} process(es)")
    images = torch.zeros((count, size, size, 3), dtype=torch.uint8)
    depth = torch.zeros((count, size, size), dtype=torch.float32)
    mask = torch.zeros((count, size, size), dtype=torch.uint8)
    seeds = torch.arange(count, dtype=torch.int64) + SPLIT_SEEDS[split]
    mine = range(rank, count, world)
    for i in progress_bar(mine, desc=f"render {split}", enabled=None if progress and rank == 0 else False):
        s = scenes.sample(int(seeds[i]), size=(size, size))
        images[i] = torch.from_numpy(np.ascontiguousarray(s["image"]))
        d = np.asarray(s["depth"], dtype=np.float32)
        depth[i] = torch.from_numpy(np.where(np.isfinite(d) & (d > 0), d, 0).astype(np.float32))
        mask[i] = torch.from_numpy(np.asarray(s["mask"], dtype=np.uint8))
    if world > 1:  # every scene was rendered by one rank, zeros elsewhere: a sum gathers them
        for t in (images, depth, mask):
            for k in range(0, count, 256):  # in chunks, to bound the int32 copies of uint8 data
                part = t[k:k + 256]
                wide = part.to(torch.int32) if t.dtype == torch.uint8 else part.clone()
                distributed.all_sum(wide)
                part.copy_(wide.to(t.dtype))
    if progress:
        distributed.log(f"[data] {split}: {count} scenes in {time.perf_counter() - t0:.0f} s")
    return RenderedScenes(images, depth, mask.bool(), seeds)
