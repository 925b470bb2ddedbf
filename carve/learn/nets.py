"""Fully convolutional networks for the learned modules (monocular depth, learned silhouettes).

:class:`ImageModel` (a UNet on standardised RGB images; each task subclasses it with its head) and
:class:`UNet` is an encoder/decoder with concatenation skips, BatchNorm and ReLU. It takes images of
any size: the input is padded (edge-replicated) to a multiple of ``2 ** (len(widths) - 1)`` and the
output cropped back. Optional CoordConv channels hold each pixel's normalised position, so that the
network can learn position-dependent priors (the floor is at the bottom of the picture) that carry
over to another resolution. An optional global-context branch looks at the whole image through a
fixed-size thumbnail (``context_size`` pixels square, whatever the input size) and adds a coarse 4x4
layout plus a global vector to the bottleneck, sampled at each cell's normalised position: what it
contributes (the scene's overall layout and scale) does not change with the input resolution,
whereas the pixel size of every texture and edge that the convolutions see does.

An optional resolution channel holds ``log2(W / 128)`` for an image W pixels wide, the same at every
pixel. Convolutions measure in pixels, so the same scene at twice the resolution shows every texture
twice as large; this channel tells them which pixel scale they are looking at (with a fixed field of
view, W is the focal length in pixels up to a constant). Trained on batches that mix resolutions, it
keeps metric depth from drifting with the resolution. (In a batch of one resolution, BatchNorm would
subtract it away with the batch mean.)

Convention: coordinate channels are ``x = 2 u / (W - 1) - 1`` and ``y = 2 v / (H - 1) - 1`` with
(u, v) the OpenCV pixel centre (column, row) of the *unpadded* image: -1 at the centre of the first
pixel, +1 at the centre of the last, extrapolated linearly over padding.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["UNet", "ImageModel", "IMAGE_MEAN", "IMAGE_STD", "coordinate_channels", "GlobalBatchNorm2d", "use_global_batchnorm", "fold_batchnorm"]


def coordinate_channels(height, width, padded_height=None, padded_width=None, *, top=0, left=0, device=None,
                        dtype=torch.float32):
    """Normalised pixel coordinates of an ``height x width`` image laid over a padded canvas.

    Args:
        height, width: size of the image the coordinates are normalised to.
        padded_height, padded_width: size of the canvas (default: the image's own); pixels beyond the
            image get linearly extrapolated coordinates (> 1).
        top, left: the canvas starts at this pixel of the image (a crop's offset; default 0).

    Returns:
        (2, padded_height, padded_width) tensor: channel 0 is x (columns), channel 1 is y (rows).
    """
    ph = height if padded_height is None else padded_height
    pw = width if padded_width is None else padded_width
    sx = 2.0 / max(width - 1, 1)
    sy = 2.0 / max(height - 1, 1)
    xs = (torch.arange(pw, device=device, dtype=dtype) + left) * sx - 1.0
    ys = (torch.arange(ph, device=device, dtype=dtype) + top) * sy - 1.0
    return torch.stack([xs[None, :].expand(ph, pw), ys[:, None].expand(ph, pw)])


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span every process of a ``torch.distributed`` group.

    Outside distributed training (or with one process, or in eval mode) it *is* ``nn.BatchNorm2d``.
    Under DistributedDataParallel it reduces per-channel sums over all ranks with a differentiable
    all-reduce, so N processes with local batches of b give exactly the statistics, outputs, running
    averages and gradients of one process with a batch of N b. Unlike ``nn.SyncBatchNorm`` it works
    with the gloo backend on the CPU as well as NCCL on GPUs. Its ``state_dict`` is BatchNorm2d's.
    """

    def forward(self, x):
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        count = torch.full((1,), float(x.numel() // c), device=x.device, dtype=x.dtype)
        stats = torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), count])
        stats = all_reduce(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (n / (n - 1).clamp_min(1.0))
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * unbiased.detach())
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def use_global_batchnorm(module: nn.Module) -> nn.Module:
    """Turn every ``nn.BatchNorm2d`` of ``module`` into a :class:`GlobalBatchNorm2d`, in place.

    Parameters and buffers are kept (the class of each layer changes), so state dicts are unchanged.
    Call it before wrapping the model in DistributedDataParallel.
    """
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = GlobalBatchNorm2d
    return module


class ContextBranch(nn.Module):
    """Whole-image context from a fixed-size thumbnail: (B, C, 4, 4) layout + global vector.

    The image (and its two coordinate channels) is resized to ``size x size`` (area-like, antialiased),
    then strided 3x3 convolutions bring it down to 4x4; a global average of that map is broadcast and
    mixed back in with a 1x1 convolution.
    """

    def __init__(self, in_channels, out_channels, size=64):
        super().__init__()
        if not isinstance(size, int) or size < 8 or size & (size - 1):
            raise ValueError(f"context_size must be a power of two >= 8, got {size!r}")
        self.size = size
        layers, c, n = [], in_channels, size
        widths = [16, 32, 64]
        k = 0
        while n > 4:
            w = widths[k] if k < len(widths) and n > 8 else out_channels
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c, n, k = w, n // 2, k + 1
        layers += [nn.Conv2d(c, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
                   nn.ReLU(inplace=True)]
        self.encode = nn.Sequential(*layers)
        self.mix = nn.Sequential(nn.Conv2d(2 * out_channels, out_channels, 1), nn.ReLU(inplace=True))

    def forward(self, thumbs):
        f = self.encode(thumbs)
        g = f.mean(dim=(2, 3), keepdim=True).expand_as(f)
        return self.mix(torch.cat([f, g], 1))


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An inference copy of ``module`` with every Conv2d -> BatchNorm2d pair folded into one Conv2d.

    Same outputs in eval mode (to float rounding), one memory pass less per layer. The copy is in eval
    mode and must not be trained (its BatchNorm layers are gone); ``module`` itself is not touched.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(module).eval()
    for seq in folded.modules():
        if isinstance(seq, nn.Sequential):
            for i in range(len(seq) - 1):
                if isinstance(seq[i], nn.Conv2d) and type(seq[i + 1]) in (nn.BatchNorm2d, GlobalBatchNorm2d):
                    seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                    seq[i + 1] = nn.Identity()
    return folded


def _block(c_in, c_out):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net: conv blocks, 2x max-pool down, bilinear 2x up, concatenation skips, 1x1 output conv.

    Args:
        in_channels: channels of the input image (3 for RGB).
        out_channels: channels of the raw output (no activation; heads add their own).
        widths: feature channels per level, finest first; ``len(widths) - 1`` downsamplings, so input
            sizes are padded to a multiple of ``2 ** (len(widths) - 1)``.
        coord_channels: append the two normalised coordinate channels to the input (CoordConv).
        global_context: add the :class:`ContextBranch` (whole image seen at ``context_size`` pixels)
            to the bottleneck features.
        context_size: thumbnail size of the context branch (a power of two).
        resolution_channel: append the constant channel ``log2(W / 128)`` (see the module notes).

    Shapes:
        x: (B, in_channels, H, W) float, any H, W >= 1.
        mask: optional (B, H, W) bool, the valid (unpadded) part of each image in a padded batch; the
            coordinate channels and global context then follow each image's own extent. Images must
            sit in the top-left corner of the canvas.
        window: optional ``(full, offsets)`` for training on crops: ``x`` was cut from ``full``
            (B, in_channels, Hf, Wf), or a list of B (in_channels, Hf_i, Wf_i), at ``offsets`` (B, 2)
            int (top row, left column). Coordinates, resolution and global context then describe the
            full images, exactly as if each were the input, so crops of large renders teach the
            network large pixel scales at the cost of small inputs.
        output: (B, out_channels, H, W).

    Example:
        >>> net = UNet(3, 1, widths=(8, 16)).eval()
        >>> net(torch.rand(2, 3, 37, 50)).shape
        torch.Size([2, 1, 37, 50])
    """

    def __init__(self, in_channels, out_channels, widths=(32, 64, 128, 256), coord_channels=True,
                 global_context=False, context_size=64, resolution_channel=False):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        widths = tuple(widths)
        if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.widths = widths
        self.coord_channels = bool(coord_channels)
        self.global_context = bool(global_context)
        self.context_size = int(context_size)
        self.resolution_channel = bool(resolution_channel)
        c = in_channels + (2 if self.coord_channels else 0) + (1 if self.resolution_channel else 0)
        self.down = nn.ModuleList()
        for w in widths:
            self.down.append(_block(c, w))
            c = w
        self.context = (ContextBranch(in_channels + 2, c, self.context_size) if self.global_context else None)
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(_block(c + w, w))
            c = w
        self.head = nn.Conv2d(c, out_channels, 1)

    @property
    def multiple(self):
        """Input sizes are padded to a multiple of this."""
        return 2 ** (len(self.widths) - 1)

    def config(self):
        """Constructor arguments, as plain Python values (stored in checkpoints)."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "widths": list(self.widths), "coord_channels": self.coord_channels,
                "global_context": self.global_context, "context_size": self.context_size,
                "resolution_channel": self.resolution_channel}

    def _thumbnails(self, x, extents):
        """(B, C+2, S, S): each image's valid region (and its coordinates) resized to the context size.

        ``x``: (B, C, H, W) tensor or list of (C, H_i, W_i) tensors."""
        s = self.context_size
        out = []
        for i, (eh, ew) in enumerate(extents):
            im = x[i][None, :, :eh, :ew]
            if (eh, ew) != (s, s):
                im = F.interpolate(im, size=(s, s), mode="bilinear", align_corners=False,
                                   antialias=eh > s or ew > s)
            out.append(im)
        t = torch.cat(out)
        coords = coordinate_channels(s, s, device=t.device, dtype=t.dtype).expand(len(t), -1, -1, -1)
        return torch.cat([t, coords], 1)

    def _sample_context(self, ctx, extents, grid, offsets):
        """Sample the (B, C, 4, 4) context at the normalised centres of the (gh, gw) bottleneck cells."""
        m = self.multiple
        gh, gw = grid
        grids = []
        for (eh, ew), (top, left) in zip(extents, offsets):
            # cell j covers pixels [j m, (j + 1) m) of the input, left + j m ... of the full image; its
            # centre, normalised over the image extent with align_corners=False: (p + 0.5) / size * 2 - 1
            gx = ((torch.arange(gw, device=ctx.device, dtype=ctx.dtype) * m + left + (m - 1) / 2 + 0.5) / ew) * 2 - 1
            gy = ((torch.arange(gh, device=ctx.device, dtype=ctx.dtype) * m + top + (m - 1) / 2 + 0.5) / eh) * 2 - 1
            grids.append(torch.stack([gx[None, :].expand(gh, gw), gy[:, None].expand(gh, gw)], -1))
        return F.grid_sample(ctx, torch.stack(grids), mode="bilinear", padding_mode="border", align_corners=False)

    def _check(self, x, mask, window=None):
        """-> (extents, offsets): each image's (height, width) and its input's (top, left) in it."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a (B, {self.in_channels}, H, W) tensor, got {got}")
        b, _, h, w = x.shape
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape != (b, h, w)):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a (B, H, W) = {(b, h, w)} bool tensor, got {got}")
        if window is not None:
            full, offsets = window
            if mask is not None:
                raise ValueError("mask and window cannot be combined (a padded batch of crops)")
            ok = (isinstance(full, (torch.Tensor, list, tuple)) and len(full) == b
                  and all(isinstance(f, torch.Tensor) and f.ndim == 3 and f.shape[0] == self.in_channels for f in full)
                  and isinstance(offsets, torch.Tensor) and offsets.shape == (b, 2))
            if ok:
                offs = [(int(t), int(l)) for t, l in offsets.tolist()]
                extents = [tuple(f.shape[1:]) for f in full]
                ok = all(0 <= t <= eh - h and 0 <= l <= ew - w for (t, l), (eh, ew) in zip(offs, extents))
            if not ok:
                got = [type(t).__name__ if not isinstance(t, torch.Tensor) else tuple(t.shape) for t in window]
                raise ValueError(f"window must be (full images: a (B, {self.in_channels}, Hf, Wf) tensor or a list of "
                                 f"B ({self.in_channels}, Hf, Wf) tensors, offsets: a (B, 2) tensor) with each "
                                 f"{h}x{w} crop inside its full image, got {got}")
            return extents, offs
        if mask is None:
            return [(h, w)] * b, [(0, 0)] * b
        return [(int(mk.any(1).sum()), int(mk.any(0).sum())) for mk in mask], [(0, 0)] * b

    def _encode(self, x, extents, offsets=None):
        """Pad to a multiple, append coordinates, run the down path -> list of features per level."""
        b, _, h, w = x.shape
        m = self.multiple
        ph, pw = -(-h // m) * m, -(-w // m) * m
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        if offsets is None:
            offsets = [(0, 0)] * b
        if self.coord_channels:
            if all(e == (h, w) for e in extents):
                coords = coordinate_channels(h, w, ph, pw, device=x.device, dtype=x.dtype).expand(b, -1, -1, -1)
            else:
                coords = torch.stack([coordinate_channels(eh, ew, ph, pw, top=t, left=l, device=x.device,
                                                          dtype=x.dtype)
                                      for (eh, ew), (t, l) in zip(extents, offsets)])
            x = torch.cat([x, coords], 1)
        if self.resolution_channel:
            res = torch.tensor([math.log2(ew / 128) for _, ew in extents], device=x.device, dtype=x.dtype)
            x = torch.cat([x, res[:, None, None, None].expand(b, 1, ph, pw)], 1)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        return skips

    def encoder_features(self, x):
        """The deepest encoder features (B, widths[-1], H / 2^k, W / 2^k) of ``x`` (B, C, H, W).

        The encoder alone, without the context branch or decoder (used for self-supervised
        pretraining of the encoder).
        """
        return self._encode(x, self._check(x, None)[0])[-1]

    def forward(self, x, mask=None, *, window=None):
        extents, offsets = self._check(x, mask, window)
        h, w = x.shape[-2:]
        if self.context is not None:
            thumbs = self._thumbnails(x if window is None else window[0], extents)
        skips = self._encode(x, extents, offsets)
        x = skips[-1]
        if self.context is not None:
            x = x + self._sample_context(self.context(thumbs), extents, x.shape[-2:], offsets)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)[:, :, :h, :w]


# The network sees images scaled to [0, 1] and then standardised with these (fixed, not learned).
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.25, 0.25, 0.25)


class ImageModel(nn.Module):
    """A UNet on standardised RGB images; subclasses add the task's head and set :attr:`task`.

    Shapes: ``images`` (B, 3, H, W) float in [0, 1]; ``mask`` optional (B, H, W) bool (padding);
    ``window`` optional (full images, offsets (B, 2)) when ``images`` are crops (see :class:`UNet`).

    Example:
        >>> m = ImageModel(widths=(4, 8)).eval()
        >>> m.features(torch.rand(1, 3, 10, 12)).shape
        torch.Size([1, 1, 10, 12])
    """

    #: the name of the task (:class:`carve.learn.task.Task`) the model belongs to, stored in checkpoints
    task: str | None = None

    def __init__(self, widths=(8, 16, 32, 64, 128), coord_channels=True, global_context=True, context_size=64,
                 out_channels=1, resolution_channel=False):
        super().__init__()
        self.unet = UNet(3, out_channels, widths=widths, coord_channels=coord_channels,
                         global_context=global_context, context_size=context_size,
                         resolution_channel=resolution_channel)
        self.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    def config(self) -> dict:
        """The network keywords a task's ``build`` takes (stored in checkpoints)."""
        c = self.unet.config()
        return {k: c[k] for k in ("widths", "coord_channels", "global_context", "context_size", "resolution_channel")}

    def features(self, images, mask=None, window=None):
        """The UNet's raw output (B, out_channels, H, W) on the standardised images."""
        if window is not None:
            window = ([(f - self.image_mean[0]) / self.image_std[0] for f in window[0]], window[1])
        return self.unet((images - self.image_mean) / self.image_std, mask, window=window)

    def encoder_features(self, images):
        """Deepest encoder features (B, C, h, w) of the standardised images (for pretraining)."""
        return self.unet.encoder_features((images - self.image_mean) / self.image_std)
