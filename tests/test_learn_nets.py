"""The UNet, its CoordConv channels, the distributed BatchNorm, the losses and the depth metrics."""
import numpy as np
import pytest
import torch

from carve.learn.losses import depth_loss, gradient_matching_loss, mask_loss, silog_loss
from carve.learn.nets import GlobalBatchNorm2d, UNet, coordinate_channels, fold_batchnorm, use_global_batchnorm


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (64, 64), (45, 8)])
def test_unet_any_size(size):
    torch.manual_seed(0)
    net = UNet(3, 2, widths=(4, 8, 16)).eval()
    x = torch.rand(2, 3, *size)
    y = net(x)
    assert y.shape == (2, 2, *size)
    assert torch.isfinite(y).all()


def test_unet_crop_matches_padding_rule():
    """A size that is already a multiple gives the same values as running on the explicit padding."""
    torch.manual_seed(0)
    net = UNet(3, 1, widths=(4, 8), coord_channels=False).eval()
    x = torch.rand(1, 3, 15, 9)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1), mode="replicate")
    assert torch.allclose(net(x), net(padded)[..., :15, :9], atol=1e-6)


def test_unet_rejects_bad_input():
    net = UNet(3, 1, widths=(4, 8))
    with pytest.raises(ValueError, match=r"x must be a \(B, 3, H, W\)"):
        net(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="x must be"):
        net(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match="mask must be"):
        net(torch.rand(1, 3, 16, 16), torch.ones(1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="widths"):
        UNet(3, 1, widths=())
    with pytest.raises(ValueError, match="in_channels"):
        UNet(0, 1)


def test_unet_skip_connections_carry_detail():
    """A 1-level-deep UNet output depends on single input pixels (skips concatenate full resolution)."""
    torch.manual_seed(0)
    net = UNet(1, 1, widths=(4, 8, 16), coord_channels=False).eval()
    x = torch.zeros(1, 1, 32, 32)
    x2 = x.clone()
    x2[0, 0, 10, 10] = 1.0
    d = (net(x2) - net(x)).abs()[0, 0]
    assert d[10, 10] > 0 and d[0, 31] < d[10, 10]


def test_coordinate_channels():
    c = coordinate_channels(3, 5, 4, 8)
    assert c.shape == (2, 4, 8)
    assert torch.allclose(c[0, 0, :5], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert torch.allclose(c[1, :3, 0], torch.tensor([-1.0, 0.0, 1.0]))
    assert c[0, 0, 7] > 1 and c[1, 3, 0] > 1  # extrapolated over padding


def test_coord_channels_make_position_learnable():
    """With CoordConv a net can output its pixel position from a constant image; without, it cannot."""
    def fit(coord):
        torch.manual_seed(0)
        net = UNet(1, 1, widths=(8, 16), coord_channels=coord)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        # 64 px is wider than the receptive field, so zero padding cannot tell the middle pixels apart
        x = torch.full((2, 1, 64, 64), 0.5)
        target = torch.linspace(-1, 1, 64).expand(2, 1, 64, 64)
        for _ in range(40):
            loss = ((net(x) - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach())
    assert fit(True) < 0.5 * fit(False)


def test_padded_batch_with_mask_matches_single_images():
    """Images of different sizes padded into one batch give (nearly) their single-image outputs."""
    torch.manual_seed(0)
    net = UNet(3, 1, widths=(4, 8, 16), global_context=True).eval()
    a, b = torch.rand(1, 3, 20, 28), torch.rand(1, 3, 32, 32)
    canvas = torch.cat([torch.nn.functional.pad(a, (0, 4, 0, 12), mode="replicate"), b])
    mask = torch.zeros(2, 32, 32, dtype=torch.bool)
    mask[0, :20, :28] = True
    mask[1] = True
    out = net(canvas, mask)
    ya, yb = net(a), net(b)
    assert torch.allclose(out[1:], yb, atol=1e-5)
    # away from the far borders the receptive fields see the same replicated content
    assert torch.allclose(out[0, :, :12, :20], ya[0, :, :12, :20], atol=1e-4)
    # the global context follows the mask: without it, the padding would change the mean
    unmasked = net(canvas)[0, :, :12, :20]
    assert (unmasked - ya[0, :, :12, :20]).abs().max() > (out[0, :, :12, :20] - ya[0, :, :12, :20]).abs().max()


@pytest.mark.parametrize("context", [False, True])
def test_window_makes_a_crop_see_its_full_image(context):
    """A crop run with ``window`` gives the full image's output away from its borders, which the
    crop's own coordinates and thumbnail would not."""
    torch.manual_seed(0)
    net = UNet(3, 1, widths=(4, 8, 16), global_context=context, context_size=16).eval()
    full = torch.rand(2, 3, 64, 80)
    y = net(full)
    offsets = torch.tensor([[16, 8], [4, 40]])  # multiples of the pooling factor keep the grids aligned
    crops = torch.stack([full[i, :, t:t + 32, l:l + 32] for i, (t, l) in enumerate(offsets.tolist())])
    windowed, plain = net(crops, window=(full, offsets)), net(crops)
    m = 14  # beyond the receptive field's reach into the missing surroundings
    for i, (t, l) in enumerate(offsets.tolist()):
        ref = y[i, :, t + m:t + 32 - m, l + m:l + 32 - m]
        assert torch.allclose(windowed[i, :, m:-m, m:-m], ref, atol=1e-4)
        assert (plain[i, :, m:-m, m:-m] - ref).abs().max() > 1e-3
    assert torch.equal(coordinate_channels(64, 80, 32, 32, top=16, left=8), coordinate_channels(64, 80)[:, 16:48, 8:40])
    with pytest.raises(ValueError, match="window must be"):
        net(crops, window=(full, torch.tensor([[40, 0], [0, 0]])))  # the crop would leave the image
    with pytest.raises(ValueError, match="window must be"):
        net(crops, window=(full[:1], offsets))
    as_list = net(crops, window=(list(full), offsets))  # full images may come as a list (of any sizes)
    assert torch.allclose(as_list, windowed, atol=1e-6)
    with pytest.raises(ValueError, match="cannot be combined"):
        net(crops, torch.ones(2, 32, 32, dtype=torch.bool), window=(full, offsets))


def test_scale_and_crop_keeps_images_and_labels_aligned():
    from carve.learn.augment import generator, scale_and_crop, window_of
    from carve.learn.config import TrainConfig

    cfg = TrainConfig(size=32, render_size=64, widths=(4, 8), scale_min=0.5)
    img = torch.rand(3, 3, 64, 64)
    label = img[:, 0] * 10  # a label that is a function of the image, pixel by pixel
    sizes, mixed = set(), False
    for k in range(12):
        out = scale_and_crop({"image": img, "label": label, "id": torch.arange(3)}, cfg, generator(0, k))
        assert out["image"].shape[-2:] == (32, 32) and out["label"].shape == (3, 32, 32)
        assert torch.equal(out["id"], torch.arange(3))
        full, offsets = window_of(out)
        widths = [f.shape[-1] for f in full]
        sizes.update(widths)
        mixed |= len(set(widths)) > 1  # resolutions mix within a batch, so BatchNorm cannot remove them
        for i, (t, l) in enumerate(offsets.tolist()):
            assert 32 <= widths[i] <= 64 and widths[i] % 2 == 0
            assert torch.equal(out["image"][i], full[i][:, t:t + 32, l:l + 32])
            if widths[i] == 64:  # not resized: the label is exactly the cropped image's
                assert torch.equal(out["label"][i], out["image"][i, 0] * 10)
    assert len(sizes) > 3 and mixed
    small = scale_and_crop({"image": img[..., :32, :32]}, TrainConfig(size=32, widths=(4, 8)), generator(0, 0))
    assert window_of(small) is None and small["image"].shape[-1] == 32
    one = scale_and_crop({"image": img[..., :32, :32]}, TrainConfig(size=32, widths=(4, 8), scale_min=0.5),
                          generator(0, 1))
    assert window_of(one) is None and one["image"].shape[-1] < 32  # one factor for a batch that is not cropped


def test_resolution_channel_tells_the_network_the_pixel_scale():
    """Same picture content, different stated widths: only the resolution channel can tell them apart."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    for flag in (False, True):
        net = UNet(3, 1, widths=(4, 8), coord_channels=False, resolution_channel=flag).eval()
        small = net(x, window=([x[0]], torch.zeros(1, 2, dtype=torch.long)))
        big = net(x, window=([torch.nn.functional.pad(x[0], (0, 32, 0, 32))], torch.zeros(1, 2, dtype=torch.long)))
        # away from the crop's far borders, only the resolution channel (64 vs 32 wide) differs
        d = (small - big)[..., :16, :16].abs().max()
        assert (d > 1e-3) if flag else (d < 1e-6)
    assert UNet(3, 1, widths=(4,), resolution_channel=True).config()["resolution_channel"] is True


def test_global_batchnorm_is_batchnorm_without_process_group():
    torch.manual_seed(0)
    net = UNet(3, 1, widths=(4, 8))
    ref = UNet(3, 1, widths=(4, 8))
    ref.load_state_dict(net.state_dict())
    use_global_batchnorm(net)
    assert any(isinstance(m, GlobalBatchNorm2d) for m in net.modules())
    assert set(net.state_dict()) == set(ref.state_dict())
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(net(x), ref(x))


def test_fold_batchnorm_same_outputs():
    torch.manual_seed(0)
    net = UNet(3, 2, widths=(4, 8, 16), global_context=True, context_size=16)
    net.train()
    for _ in range(3):  # give BatchNorm non-trivial running statistics
        net(torch.rand(4, 3, 24, 24) * 3 + 1)
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # original untouched
    x = torch.rand(2, 3, 40, 24) * 3 + 1
    with torch.no_grad():
        assert torch.allclose(net(x), folded(x), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- losses


def test_silog_is_scale_invariant_with_lambda_one():
    torch.manual_seed(0)
    gt = torch.rand(2, 8, 8) + 0.5
    pred = gt * (1 + 0.1 * torch.randn(2, 8, 8))
    a = silog_loss(pred.log(), gt.log(), lam=1.0)
    b = silog_loss((pred * 3).log(), gt.log(), lam=1.0)
    assert torch.allclose(a, b, atol=1e-6)
    assert silog_loss(gt.log(), gt.log()) == 0
    # lam=0.5 keeps half of the scale error (Eigen et al.): d = log 3 everywhere -> (1 - 0.5) log(3)^2
    assert torch.allclose(silog_loss((gt * 3).log(), gt.log(), lam=0.5), torch.tensor(0.5 * np.log(3) ** 2, dtype=torch.float32), atol=1e-5)


def test_silog_ignores_invalid_pixels_and_is_per_image_mean():
    gt = torch.ones(2, 4, 4)
    pred = torch.ones(2, 4, 4)
    pred[0, 0, 0] = 100.0
    valid = torch.ones(2, 4, 4, dtype=torch.bool)
    valid[0, 0, 0] = False
    assert silog_loss(pred.log(), gt.log(), valid) == 0
    # per-image means averaged: an image with 1 valid pixel weighs as much as one with 16
    v2 = torch.zeros(2, 4, 4, dtype=torch.bool)
    v2[0, 1, 1] = True
    v2[1] = True
    p2 = torch.ones(2, 4, 4)
    p2[0, 1, 1] = np.e
    assert torch.allclose(silog_loss(p2.log(), gt.log(), v2, lam=0.0), torch.tensor(0.5))


def test_gradient_matching_ignores_scale_and_sees_edges():
    torch.manual_seed(0)
    gt = torch.rand(1, 16, 16) + 1
    assert gradient_matching_loss((gt * 5).log(), gt.log()) < 1e-6
    blurred = torch.nn.functional.avg_pool2d(gt[None], 3, 1, 1, count_include_pad=False)[0]
    assert gradient_matching_loss(blurred.log(), gt.log()) > 0.01
    loss, parts = depth_loss(blurred.log(), gt.log())
    assert set(parts) == {"silog", "grad"} and loss > 0


def test_losses_have_gradients_and_validate():
    x = torch.zeros(1, 8, 8, requires_grad=True)
    loss, _ = depth_loss(x, torch.ones(1, 8, 8))
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="same shape"):
        silog_loss(torch.zeros(1, 8, 8), torch.zeros(1, 8, 4))
    with pytest.raises(TypeError, match="valid must be a bool"):
        silog_loss(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), torch.ones(1, 8, 8))
    with pytest.raises(TypeError, match="torch tensor"):
        silog_loss(np.zeros((1, 8, 8)), torch.zeros(1, 8, 8))


def test_mask_loss():
    t = torch.zeros(2, 8, 8, dtype=torch.bool)
    t[:, 2:6, 2:6] = True
    good = torch.where(t, 10.0, -10.0)
    bad = -good
    lg, _ = mask_loss(good, t)
    lb, parts = mask_loss(bad, t)
    assert lg < 0.01 < lb and set(parts) == {"bce", "dice"}


# ---------------------------------------------------------------------------------------------- metrics

