"""carve.metrics: mask scores (IoU, precision, recall) and the Eigen et al. depth errors."""
import numpy as np
import pytest

from carve.metrics import (DEPTH_METRICS, depth_metrics, depth_metrics_per_image, mask_iou, mask_iou_per_mask,
                           mask_precision_recall, mask_precision_recall_per_mask)


def test_mask_iou_and_precision_recall():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[:, :2] = True
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_precision_recall(a, b) == (pytest.approx(0.5), pytest.approx(0.5))
    assert mask_iou([a, a], [a, b]) == pytest.approx((1 + 1 / 3) / 2)
    assert mask_iou([a, a], [a, b], reduce="total") == pytest.approx((8 + 4) / (8 + 12))
    assert np.allclose(mask_iou_per_mask([a, a], [a, b]), [1, 1 / 3])
    empty = np.zeros((3, 3), bool)
    assert mask_iou(empty, empty) == 1.0 and mask_precision_recall(empty, a[:3, :3]) == (1.0, 0.0)
    p, r = mask_precision_recall_per_mask([a, a], [a, b])
    assert np.allclose(p, [1, 0.5]) and np.allclose(r, [1, 0.5])


def test_metrics_refuse_ambiguous_masks():
    a = np.zeros((4, 4), bool)
    with pytest.raises(TypeError, match=r"pred must be a boolean mask, got dtype uint8; convert with `mask > 0`"):
        mask_iou(a.astype(np.uint8) * 255, a)
    with pytest.raises(ValueError, match=r"same shape, got \(4, 4\) and \(4, 5\)"):
        mask_iou(a, np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="same number of masks, got 2 and 1"):
        mask_iou([a, a], [a])
    with pytest.raises(ValueError, match="reduce must be"):
        mask_iou([a], [a], reduce="median")
    with pytest.raises(ValueError, match=r"mask_iou_per_mask\(\) returns the per-mask values"):
        mask_iou([a], [a], reduce="none")


def test_depth_metrics_eigen_definitions():
    g = np.array([[1.0, 2.0], [4.0, 0.0]])  # 0 = no ground truth
    p = np.array([[1.1, 2.0], [2.5, 7.0]])
    m = depth_metrics(p, g)
    assert set(DEPTH_METRICS) <= set(m) and m["count"] == 1
    assert np.isclose(m["abs_rel"], (0.1 / 1 + 0 + 1.5 / 4) / 3)
    assert np.isclose(m["sq_rel"], (0.01 / 1 + 0 + 2.25 / 4) / 3)
    assert np.isclose(m["rmse"], np.sqrt((0.01 + 0 + 2.25) / 3))
    assert np.isclose(m["rmse_log"], np.sqrt((np.log(1.1) ** 2 + 0 + np.log(2.5 / 4) ** 2) / 3))
    assert np.isclose(m["delta1"], 2 / 3) and np.isclose(m["delta2"], 2 / 3) and np.isclose(m["delta3"], 1.0)


def test_depth_metrics_median_scaling_mask_and_batches():
    rng = np.random.default_rng(0)
    g = rng.uniform(1, 5, (3, 6, 7))
    m = depth_metrics(2 * g, g, median_scaling=True)
    assert m["abs_rel"] < 1e-12 and m["delta1"] == 1
    assert np.isclose(depth_metrics(2 * g, g)["abs_rel"], 1.0)
    mask = np.zeros_like(g, bool)
    mask[0] = True
    p = g.copy()
    p[1:] *= 3
    assert depth_metrics(p, g, mask)["abs_rel"] == 0 and depth_metrics(p, g, mask)["count"] == 1
    torch = pytest.importorskip("torch")
    per = depth_metrics_per_image(torch.from_numpy(p), torch.from_numpy(g))
    assert per["abs_rel"].shape == (3,) and np.isclose(per["abs_rel"][1], 2.0)


def test_depth_metrics_validation():
    g = np.ones((4, 4))
    with pytest.raises(ValueError, match="same shape"):
        depth_metrics(np.ones((4, 5)), g)
    with pytest.raises(TypeError, match="mask must be a boolean"):
        depth_metrics(g, g, np.ones((4, 4), np.uint8))
    with pytest.raises(TypeError, match="np.stack"):
        depth_metrics([g, g], g)
    assert np.isnan(depth_metrics(g, np.zeros((4, 4)))["abs_rel"])
