"""Learned silhouettes: backgrounds, composites, inference API, checkpoints, a training step."""
import numpy as np
import pytest
import torch

from carve.learn.augment import generator
from carve.learn.checkpoints import CheckpointError, save_model
from carve.learn.config import TrainConfig
from carve.learn.loop import fit
from carve.learn.scenes import render_split
from carve.segmentation.backgrounds import synthetic_background
from carve.segmentation.network import SILHOUETTE, SilhouetteModel, default_model_path, learned, learned_probabilities


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scenes():
    return {"train": render_split("train", 16, 32, progress=False), "val": render_split("val", 4, 32, progress=False)}


def test_backgrounds_vary_and_repeat():
    a = synthetic_background(40, 50, seed=3)
    assert a.shape == (40, 50, 3) and a.dtype == np.uint8
    assert np.array_equal(a, synthetic_background(40, 50, seed=3))
    many = np.stack([synthetic_background(32, 32, seed=s) for s in range(24)])
    assert len({m.tobytes() for m in many}) == 24
    assert many.reshape(24, -1).std(axis=1).max() > 20  # some are busy, not all flat
    with pytest.raises(ValueError, match="height and width"):
        synthetic_background(0, 10)


def test_composite_keeps_object_pixels_and_mask(scenes):
    sc = scenes["train"]
    i = int(np.argmax(sc.mask.flatten(1).sum(1)))
    for k in range(6):
        s = SILHOUETTE.train_sample(sc, i, generator(0, 1, k, i))
        x, m = s["image"], s["mask"]
        assert x.shape == (3, 32, 32) and m.shape == (32, 32) and m.dtype == torch.bool
        assert 0 <= float(x.min()) and float(x.max()) <= 1
        assert m.any()
    # same generator state, same sample (augmentation is reproducible)
    a = SILHOUETTE.train_sample(sc, i, generator(0, 1, 0, i))
    b = SILHOUETTE.train_sample(sc, i, generator(0, 1, 0, i))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_learned_api(tmp_path):
    torch.manual_seed(0)
    net = SilhouetteModel(widths=(4, 8, 16), context_size=16).eval()
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (40, 60, 3), dtype=np.uint8), rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)]
    masks = learned(imgs, net, max_side=64)
    probs = learned_probabilities(imgs, net, max_side=64)
    assert all(p.dtype == np.float32 for p in probs)
    assert [m.shape for m in masks] == [(40, 60), (300, 200)] and all(m.dtype == np.bool_ for m in masks)
    assert all(((p >= 0) & (p <= 1)).all() for p in probs)
    assert all(np.array_equal(m, p > 0.5) for m, p in zip(masks, probs))
    assert len(learned(np.stack([imgs[0]] * 2), net)) == 2
    with pytest.raises(ValueError, match="wrap it in a list"):
        learned(imgs[0], net)
    # floats in [0, 1] are images too (one validator for every method: data.images.rgb_images)
    assert np.array_equal(learned([imgs[0].astype(np.float32) / 255], net, max_side=64)[0], masks[0])
    with pytest.raises(ValueError, match=r"floats in \[0, 1\]"):
        learned([imgs[0].astype(np.float32)], net)
    with pytest.raises(TypeError, match="uint8"):
        learned([imgs[0].astype(np.int32)], net)
    with pytest.raises(ValueError, match="threshold"):
        learned(imgs, net, threshold=1.5)
    p = tmp_path / "sil.pt"
    save_model(net, p)
    assert np.array_equal(learned(imgs, p, max_side=64)[0], masks[0])
    from carve.depth import DepthModel
    save_model(DepthModel(widths=(4, 8)), tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match="'depth' model, expected a 'silhouette'"):
        learned(imgs, tmp_path / "d.pt")


def test_training_reduces_loss(tmp_path, scenes):
    cfg = TrainConfig(task="silhouette", out=str(tmp_path), size=32, train=16, val=4, widths=(4, 8, 16),
                      context_size=16, epochs=4, batch_size=8, lr=5e-3, threads=1)
    res = fit(cfg, SILHOUETTE, progress=False, scenes=scenes)
    h = res["history"]
    assert h[-1]["train_loss"] < h[0]["train_loss"] and "val_iou" in h[-1]
    assert (tmp_path / "model.pt").is_file()


@pytest.mark.skipif(not default_model_path().is_file(), reason="the shipped silhouette model has not been trained yet")
def test_shipped_model_finds_objects_in_held_out_renders():
    from data import scenes as sc

    tests = [sc.sample(20_000_000 + i, size=(128, 128)) for i in range(8)]
    masks = learned([t["image"] for t in tests])
    from carve.metrics import mask_iou
    assert mask_iou(masks, [t["mask"] for t in tests], reduce="total") > 0.6
    assert default_model_path().stat().st_size < 10 * 2 ** 20
