"""The one image validator (data.images.rgb_images) and the one progress rule (data.progress)."""
import numpy as np
import pytest

from data.images import rgb_images
from data.progress import show_progress


def test_rgb_images_accepts_every_documented_layout():
    u8 = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    floats = u8.astype(np.float32) / 255
    rgba = np.dstack([u8, np.full((4, 6), 255, np.uint8)])
    out = rgb_images([u8, floats, rgba, u8[..., 0]])
    assert all(o.shape == (4, 6, 3) and o.dtype == np.uint8 for o in out)
    assert np.array_equal(out[1], u8) and np.array_equal(out[2], u8)
    assert np.array_equal(rgb_images(np.stack([u8, u8]))[1], u8)
    back = rgb_images([u8], dtype=np.float32)[0]
    assert back.dtype == np.float32 and np.allclose(back, floats)


def test_rgb_images_takes_torch_images_channels_first():
    torch = pytest.importorskip("torch")
    t = torch.rand(2, 3, 5, 7)
    [a, b] = rgb_images(t, dtype=np.float32)
    assert a.shape == (5, 7, 3) and np.allclose(b, t[1].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match=r"images\[0\] must be a \(3, H, W\) tensor"):
        rgb_images([torch.rand(5, 7, 3)])


@pytest.mark.parametrize("bad, error, message", [
    (np.zeros((4, 6, 3), np.uint8), ValueError, r"a single image\? wrap it in a list"),
    ([], ValueError, "at least one image"),
    ("image.png", TypeError, "got str"),
    ([np.zeros((4, 6, 3), bool)], TypeError, r"images\[0\] must be uint8 .* got dtype bool"),
    ([np.zeros((4, 6), np.int32)], TypeError, "got dtype int32"),
    ([np.full((4, 6, 3), 2.0)], ValueError, r"floats in \[0, 1\], got the range 2..2"),
    ([np.full((4, 6, 3), np.nan)], ValueError, "finite"),
    ([np.zeros((4, 6, 2), np.uint8)], ValueError, r"must have shape \(H, W, 3\)"),
    ([np.zeros((0, 6, 3), np.uint8)], ValueError, "at least one pixel"),
])
def test_rgb_images_names_what_is_wrong(bad, error, message):
    with pytest.raises(error, match=message):
        rgb_images(bad)


def test_progress_rule(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert show_progress(True, 1) and not show_progress(False, 100)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert show_progress(None, 5) and not show_progress(None, 4)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not show_progress(True, 100)
