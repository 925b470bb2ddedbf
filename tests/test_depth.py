"""Monocular depth: predict's input forms, point clouds, checkpoints, the training loop, the shipped model."""
import argparse

import numpy as np
import pytest
import torch

from carve import depth
from carve.depth import DepthModel, predict, to_points
from carve.depth import DEPTH
from carve.learn.checkpoints import CheckpointError, load_checkpoint, save_model
from carve.learn.config import TrainConfig
from carve.learn.loop import fit
from carve.learn.scenes import render_split

TINY = dict(size=32, train=16, val=4, widths=(4, 8, 16), batch_size=8, lr=5e-3, threads=1, seed=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return DepthModel(widths=(4, 8, 16)).eval()


@pytest.fixture(scope="module")
def scenes32():
    return {"train": render_split("train", 16, 32, progress=False), "val": render_split("val", 4, 32, progress=False)}


# ---------------------------------------------------------------------------------------------- predict


def test_predict_forms(net):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (30, 41, 3), dtype=np.uint8)
    d = predict(img, net)
    assert isinstance(d, np.ndarray) and d.shape == (30, 41) and d.dtype == np.float32 and (d > 0).all()
    batch = rng.integers(0, 255, (3, 24, 24, 3), dtype=np.uint8)
    db = predict(batch, net)
    assert db.shape == (3, 24, 24)
    assert np.allclose(db[1], predict(batch[1], net), rtol=1e-4, atol=1e-5)
    # float [0, 1] and uint8 agree; torch CHW in -> torch out
    assert np.allclose(predict(img.astype(np.float32) / 255, net), d, rtol=1e-5)
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    dt = predict(t, net)
    assert isinstance(dt, torch.Tensor) and dt.shape == (30, 41)
    assert np.allclose(dt.numpy(), d, rtol=1e-5)
    assert predict(t[None].expand(2, -1, -1, -1), net).shape == (2, 30, 41)


@pytest.mark.parametrize("model", ["tiny", "shipped"])
def test_predict_list_of_sizes_pads_not_resizes(net, model):
    """Each map of a list of sizes equals its own single-image prediction up to float noise (once it
    differed by up to 1.2% near the right and bottom edges): the padding changes nothing."""
    model = net if model == "tiny" else None
    rng = np.random.default_rng(1)
    # (18, 27) shares (20, 28)'s canvas, so a batch of two sizes with a mask runs as well
    sizes = [(20, 28), (33, 17), (16, 16), (18, 27), (40, 52)]
    imgs = [rng.integers(0, 255, s + (3,), dtype=np.uint8) for s in sizes]
    out = predict(imgs, model, batch_size=3)
    assert [o.shape for o in out] == sizes
    for im, o in zip(imgs, out):
        alone = predict(im, model)
        assert np.allclose(o, alone, rtol=1e-4, atol=1e-6), np.abs(o / alone - 1).max()


def test_predict_rejects_bad_images(net):
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        predict(np.zeros((16, 16)), net)
    with pytest.raises(ValueError, match=r"floats in \[0, 1\]"):
        predict(np.full((16, 16, 3), 200.0), net)
    with pytest.raises(TypeError, match="uint8"):
        predict(np.zeros((16, 16, 3), np.int64), net)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        predict(torch.zeros(16, 16, 3), net)
    with pytest.raises(ValueError, match="at least one image"):
        predict([], net)
    with pytest.raises(ValueError, match="finite"):
        predict(np.full((8, 8, 3), np.nan, np.float32), net)
    with pytest.raises(TypeError, match="model must be"):
        predict(np.zeros((8, 8, 3), np.uint8), model=42)


# ---------------------------------------------------------------------------------------------- points


def test_to_points_reprojects_to_its_pixels():
    from data import scenes
    from geometry import pixel_index, project

    s = scenes.sample(20_000_000, size=(24, 32))
    pts, cols = to_points(s["image"], s["depth"], s["camera"])
    has = s["depth"] > 0
    assert pts.shape == (int(has.sum()), 3) and cols.shape == (int(has.sum()), 3) and cols.dtype == np.uint8
    uv, z, valid = project(pts, s["camera"])
    rows, cc = pixel_index(uv[0])
    assert valid.all()
    assert np.array_equal(rows, np.nonzero(has)[0]) and np.array_equal(cc, np.nonzero(has)[1])
    assert np.allclose(z[0], s["depth"][has], rtol=1e-4)
    assert np.array_equal(cols, s["image"][has])
    m = s["mask"]
    pm, _ = to_points(s["image"], s["depth"], s["camera"], mask=m)
    assert len(pm) == int((has & m).sum())
    with pytest.raises(ValueError, match="depth must have the image's shape"):
        to_points(s["image"], s["depth"][:10], s["camera"])
    with pytest.raises(TypeError, match="camera must be"):
        to_points(s["image"], s["depth"], np.eye(3))
    with pytest.raises(TypeError, match="mask must be a boolean"):
        to_points(s["image"], s["depth"], s["camera"], mask=m.astype(np.uint8))


# ---------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_roundtrip_and_bad_files(tmp_path, net):
    p = tmp_path / "m.pt"
    save_model(net, p, metadata={"note": "test"}, extra_tensors={"mean_depth": torch.ones(4, 4)})
    m = depth.load(p)
    x = np.random.default_rng(0).integers(0, 255, (16, 20, 3), dtype=np.uint8)
    assert np.allclose(predict(x, m), predict(x, net), rtol=1e-5)
    assert m.metadata["note"] == "test" and m.mean_depth.shape == (4, 4)

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="corrupt.pt.*not a readable"):
        depth.load(corrupt)
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(p.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable"):
        depth.load(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a carve3d model file"):
        depth.load(foreign)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "carve3d-unet", "obj": argparse.Namespace(a=1)}, unsafe)  # needs arbitrary unpickling
    with pytest.raises(CheckpointError, match="not a readable"):
        depth.load(unsafe)
    other_task = tmp_path / "sil.pt"
    from carve.segmentation.network import SilhouetteModel
    save_model(SilhouetteModel(widths=(4, 8)), other_task)
    with pytest.raises(CheckpointError, match="'silhouette' model, expected a 'depth'"):
        depth.load(other_task)
    mismatched = tmp_path / "mismatch.pt"
    ck = load_checkpoint(p)
    ck["model_config"]["widths"] = [4, 8, 32]
    torch.save(ck, mismatched)
    with pytest.raises(CheckpointError, match="does not match"):
        depth.load(mismatched)
    with pytest.raises(CheckpointError, match="does not exist"):
        depth.load(tmp_path / "nope.pt")
    assert issubclass(CheckpointError, ValueError)


# ---------------------------------------------------------------------------------------------- training


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_learns_writes_and_is_deterministic(tmp_path, scenes32):
    cfg = TrainConfig(task="depth", out=str(tmp_path / "a"), epochs=4, **TINY)
    res = fit(cfg, DEPTH, progress=False, scenes=scenes32)
    h = res["history"]
    assert len(h) == 4 and h[-1]["train_loss"] < 0.8 * h[0]["train_loss"]
    assert {"val_abs_rel", "val_delta1", "val_rmse", "train_silog", "train_grad", "lr"} <= set(h[-1])
    out = tmp_path / "a"
    for f in ("last.pt", "best.pt", "model.pt", "history.json", "curves.png"):
        assert (out / f).is_file(), f
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    shipped = load_checkpoint(out / "model.pt", "depth")
    assert "train_state" not in shipped and shipped["metadata"]["config"]["widths"] == [4, 8, 16]
    assert shipped["tensors"]["mean_depth"].shape == (32, 32)
    # same seed, same weights
    again = fit(TrainConfig(task="depth", out=str(tmp_path / "b"), epochs=4, **TINY), DEPTH, progress=False, scenes=scenes32)
    for k, v in res["model"].state_dict().items():
        assert torch.equal(v, again["model"].state_dict()[k]), k


def test_resume_continues_exactly(tmp_path, scenes32):
    straight = fit(TrainConfig(task="depth", out=str(tmp_path / "s"), epochs=2, scale_min=0.5, **TINY), DEPTH,
                   progress=False, scenes=scenes32)
    fit(TrainConfig(task="depth", out=str(tmp_path / "r"), epochs=2, scale_min=0.5, **TINY), DEPTH, progress=False,
        scenes=scenes32, stop_after=1)  # as if interrupted after epoch 1
    # the stored config wins; only out and epochs are taken from the call
    resumed = fit(TrainConfig(task="depth", out=str(tmp_path / "r"), epochs=2, **dict(TINY, lr=1.0)), DEPTH,
                  resume=tmp_path / "r" / "last.pt", progress=False, scenes=scenes32)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    for k, v in straight["model"].state_dict().items():
        assert torch.equal(v, resumed["model"].state_dict()[k]), k
    with pytest.raises(CheckpointError, match="no training state"):
        fit(TrainConfig(task="depth", out=str(tmp_path / "x"), epochs=2, **TINY), DEPTH,
            resume=tmp_path / "r" / "model.pt", progress=False, scenes=scenes32)


def test_training_on_crops_of_larger_renders(tmp_path, scenes32):
    """render_size > size: batches are rescaled and cut into size x size crops with their window."""
    cfg = TrainConfig(task="depth", out=str(tmp_path / "c"), epochs=2, scale_min=0.5, **dict(TINY, size=16, render_size=32))
    res = fit(cfg, DEPTH, progress=False, scenes=scenes32)
    assert np.isfinite(res["history"][-1]["train_loss"]) and res["history"][-1]["train_loss"] < res["history"][0]["train_loss"]
    stored = load_checkpoint(tmp_path / "c" / "model.pt", "depth")["metadata"]["config"]
    assert stored["size"] == 16 and stored["render_size"] == 32
    from carve.learn.card import model_card
    assert "rendered at 32x32 and seen as 16x16 crops" in model_card(tmp_path / "c" / "model.pt")


def test_rotation_pretraining_runs_and_feeds_finetuning(tmp_path, scenes32):
    cfg = TrainConfig(task="depth", out=str(tmp_path / "p"), epochs=1, pretrain="rotation", pretrain_epochs=2,
                      label_fraction=0.5, **TINY)
    res = fit(cfg, DEPTH, progress=False, scenes=scenes32)
    assert len(res["pretrain_history"]) == 2 and "val_rot_acc" in res["pretrain_history"][0]
    assert res["history"][0]["epoch"] == 1
    with pytest.raises(ValueError, match="pretrain must be"):
        TrainConfig(pretrain="jigsaw")


def test_config_and_cli_arguments():
    import argparse

    p = argparse.ArgumentParser()
    depth.add_train_depth_arguments(p)
    args = p.parse_args(["--size", "64", "--widths", "4,8", "--epochs", "2", "--pretrain", "rotation",
                         "--label-fraction", "0.1", "--out", "x", "--render-size", "128"])
    from carve.learn.cli import config_from_args
    cfg = config_from_args(args)
    assert cfg.size == 64 and cfg.widths == (4, 8) and cfg.pretrain == "rotation" and cfg.label_fraction == 0.1
    assert cfg.render_size == 128 and cfg.train_render_size == 128 and TrainConfig(size=64).train_render_size == 64
    with pytest.raises(ValueError, match="render_size must be"):
        TrainConfig(render_size=-1)
    # the resolution channel follows the batches that mix resolutions, and cannot be forced without them
    assert TrainConfig(size=64, render_size=128, scale_min=0.5).resolution_channel is True
    assert TrainConfig(size=64, render_size=128).resolution_channel is False
    assert TrainConfig(size=64, render_size=128, scale_min=0.5, resolution_channel=False).resolution_channel is False
    with pytest.raises(ValueError, match="resolution_channel needs"):
        TrainConfig(size=64, scale_min=0.5, resolution_channel=True)
    with pytest.raises(ValueError, match="size must be a multiple"):
        TrainConfig(size=30, widths=(4, 8, 16))
    with pytest.raises(ValueError, match="label_fraction"):
        TrainConfig(label_fraction=0)
    with pytest.raises(ValueError, match="task must be"):
        TrainConfig(task="normals")


# ---------------------------------------------------------------------------------------------- shipped model


@pytest.mark.skipif(not depth.default_model_path().is_file(), reason="the shipped depth model has not been trained yet")
def test_shipped_model_predicts_held_out_scenes():
    """The issue's goals on 6 held-out scenes: AbsRel <= 0.08, delta1 >= 0.93, and at 2x the resolution
    delta1 drops by at most 0.03 (benchmarks/eval_depth.py measures them on 200)."""
    from carve.metrics import depth_metrics
    from data import scenes

    ck = load_checkpoint(depth.default_model_path(), "depth")
    size = ck["metadata"]["config"]["size"]
    m = {}
    for k in (1, 2):
        test = [scenes.sample(20_000_000 + i, size=(k * size, k * size)) for i in range(6)]
        pred = predict(np.stack([s["image"] for s in test]))  # model=None: the shipped default
        m[k] = depth_metrics(pred, np.stack([s["depth"] for s in test]))
    assert m[1]["abs_rel"] < 0.08 and m[1]["delta1"] > 0.93, m[1]
    assert m[2]["delta1"] > m[1]["delta1"] - 0.03, m
    assert depth.default_model_path().stat().st_size < 10 * 2 ** 20


def test_predicted_depths_feed_carve_depth(net):
    """Plumbing: predict's (B, H, W) output of several calibrated views goes straight into carve_depth."""
    import carve
    from data import objects, rigs
    from data.renderer import render_views

    cams = rigs.turntable(4, width=40, height=32)
    views = render_views(objects.get("sphere", resolution=24), cams)
    d = predict(np.asarray(views.images), net)
    assert d.shape == (4, 32, 40)
    d = np.where(np.asarray(views.silhouettes), d, 0)  # depth on the object only
    grid = carve.carve_depth(d, views.cameras, resolution=16, bounds=views.bounds)
    # the grid spans the bounds at the asked resolution, and the depths keep part of it
    assert grid.occupancy.shape == (16, 16, 16) and 0 < grid.count() < 16 ** 3
