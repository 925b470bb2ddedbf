"""Monocular depth: one photograph in, a metric depth map (and a coloured point cloud) out.

- :class:`DepthModel`: a :class:`carve.nets.UNet` with a positive depth head (it predicts log depth;
  depth = exp(log depth)), trained on the procedural scenes of :mod:`data.scenes`.
- :func:`predict`: depth maps of one image, a batch, or a list of images of different sizes (each
  comes back at its own size; unequal sizes are padded to a common canvas with a mask, never
  resized). ``model=None`` uses the model shipped in ``carve/models/depth_default.pt``. Its metric
  scale is that of the training scenes' lens (:data:`TRAINING_FOV` degrees, horizontal). Through
  other lenses the network reads part of the change from perspective, not all of it: on 12 test
  scenes seen at 40 and 70 degrees its depths come out 19% short and 16% long (per-image medians).
- :func:`to_points`: a coloured point cloud from an image, its depth and its camera (through
  :func:`geometry.depth_to_points`). Depths of several calibrated views can also feed
  :func:`carve.carve_depth`.
- :func:`train`, and :func:`add_train_depth_arguments` / :func:`run_train_depth` for the command line
  (``carve train-depth``; ``python -m carve.depth`` runs the same, also under ``torchrun``).

Convention: images are RGB, numpy ``(H, W, 3)`` / ``(B, H, W, 3)`` (uint8, or float in [0, 1]) or
torch ``(3, H, W)`` / ``(B, 3, H, W)`` float in [0, 1]; depth is the z coordinate in the camera frame
(OpenCV axes), in the units of the training scenes, per pixel.

Example:
    >>> import numpy as np
    >>> from carve.depth import predict
    >>> depth = predict(np.zeros((96, 128, 3), np.uint8))
    >>> depth.shape, depth.dtype, bool((depth > 0).all())
    ((96, 128), dtype('float32'), True)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data import scenes
from carve.training import (MODELS_DIR, CheckpointError, ImageModel, TrainConfig, add_arguments, fit,
                            inference_model, load_model, model_file,
                            run, to_input, train_command, window_of, _color_jitter)

__all__ = ["DepthModel", "predict", "TRAINING_FOV", "to_points", "train", "load", "default_model_path",
           "add_train_depth_arguments", "run_train_depth", "CheckpointError"]

DEFAULT_MODEL = "depth_default.pt"
TRAINING_FOV = scenes.FOV  # horizontal field of view of every training scene, degrees
_LOG_DEPTH_LIMIT = 20.0


class DepthModel(ImageModel):
    """UNet + positive depth head.

    Args:
        widths, coord_channels, global_context, context_size, resolution_channel: see :class:`carve.nets.UNet`.

    Shapes:
        images: (B, 3, H, W) float RGB in [0, 1];  mask: optional (B, H, W) bool (padding = False).
        forward -> depth (B, H, W) > 0;  log_depth -> (B, H, W).
    """

    task = "depth"

    def __init__(self, widths=(8, 16, 32, 64, 128), coord_channels=True, global_context=True, context_size=64,
                 resolution_channel=False):
        super().__init__(widths, coord_channels, global_context, context_size, out_channels=1,
                         resolution_channel=resolution_channel)

    def log_depth(self, images, mask=None, window=None):
        return self.features(images, mask, window)[:, 0].clamp(-_LOG_DEPTH_LIMIT, _LOG_DEPTH_LIMIT)

    def forward(self, images, mask=None, window=None):
        return torch.exp(self.log_depth(images, mask, window))


# ----------------------------------------------------------------------------------------------
# the training task (used by carve.training.fit)


class _DepthTask:
    name = "depth"
    primary = "val_abs_rel"
    metric_names = ("abs_rel", "rmse", "delta1", "silog")

    @staticmethod
    def better(a, b):
        return a < b

    @staticmethod
    def build(**config):
        return DepthModel(**config)

    @staticmethod
    def init_from_data(model, scenes):
        d = scenes.depth
        valid = d > 0
        if valid.any():
            with torch.no_grad():
                model.unet.head.bias.fill_(float(torch.log(d[valid]).mean()))

    @staticmethod
    def extra_tensors(scenes):
        """The training set's mean depth map (H, W) over pixels with depth: the baseline to beat."""
        d = scenes.depth
        valid = (d > 0).float()
        mean = (d * valid).sum(0) / valid.sum(0).clamp_min(1)
        return {"mean_depth": mean.float()}

    @staticmethod
    def train_sample(scenes, i, g):
        x = _color_jitter(to_input(scenes.images[i:i + 1])[0], g)
        d = scenes.depth[i]
        if bool(torch.rand(1, generator=g) < 0.5):
            x, d = x.flip(-1), d.flip(-1)
        valid = d > 0
        return {"image": x, "log_depth": torch.where(valid, torch.log(d.clamp_min(1e-6)), torch.zeros_like(d)),
                "valid": valid}

    @staticmethod
    def val_batch(scenes, idx):
        return {"image": to_input(scenes.images[idx]), "depth": scenes.depth[idx]}

    @staticmethod
    def loss(model, batch, cfg):
        from carve.losses import depth_loss

        # through __call__, so that DDP syncs gradients
        log_pred = torch.log(model(batch["image"], window=window_of(batch)))
        return depth_loss(log_pred, batch["log_depth"], batch["valid"], lam=cfg.silog_lambda,
                          grad_weight=cfg.grad_weight)

    @staticmethod
    def evaluate(model, batch, cfg):
        from carve.depth_metrics import depth_metrics
        from carve.losses import silog_loss

        log_pred = model.log_depth(batch["image"])
        gt = batch["depth"]
        m = depth_metrics(torch.exp(log_pred).cpu(), gt.cpu(), reduce="none")
        valid = gt > 0
        silog = [float(silog_loss(log_pred[i:i + 1], torch.log(gt[i:i + 1].clamp_min(1e-6)), valid[i:i + 1],
                                  lam=cfg.silog_lambda)) for i in range(len(gt))]
        return {"abs_rel": np.nan_to_num(m["abs_rel"]), "rmse": np.nan_to_num(m["rmse"]),
                "delta1": np.nan_to_num(m["delta1"]), "silog": np.asarray(silog)}


TASK = _DepthTask()


# ----------------------------------------------------------------------------------------------
# loading


def default_model_path():
    """Path of the shipped default depth model (``carve/models/depth_default.pt``)."""
    return MODELS_DIR / DEFAULT_MODEL


def _model_file(path):
    return model_file(path, "depth", DEFAULT_MODEL, "carve train-depth")


def load(path=None):
    """Load a depth model file (default: the shipped one) -> :class:`DepthModel` in eval mode (CPU).

    Raises:
        CheckpointError (a ValueError): missing, corrupt or foreign file, or a model of another task.
    """
    return load_model(_model_file(path), "depth")


def _resolve_model(model):
    if model is None or isinstance(model, (str, Path)):
        return inference_model(_model_file(model), "depth")
    if isinstance(model, DepthModel):
        return model
    if isinstance(model, torch.nn.Module) and getattr(getattr(model, "module", None), "task", None) == "depth":
        return model.module
    raise TypeError(f"model must be None (the shipped model), a path or a DepthModel, got {type(model).__name__}")


# ----------------------------------------------------------------------------------------------
# inference


def _one_image(k, im, torch_layout):
    """-> (3, H, W) float32 tensor in [0, 1]."""
    where = "images" if k is None else f"images[{k}]"
    if isinstance(im, torch.Tensor):
        if im.ndim != 3 or im.shape[0] != 3:
            raise ValueError(f"{where} must be a (3, H, W) tensor (torch images are channels-first), "
                             f"got shape {tuple(im.shape)}")
        x = im.detach()
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    else:
        a = np.asarray(im)
        if a.ndim != 3 or a.shape[-1] != 3:
            hint = "; for a grey image use np.repeat(image[..., None], 3, -1)" if a.ndim == 2 else ""
            raise ValueError(f"{where} must be an (H, W, 3) RGB array, got shape {a.shape}{hint}")
        if a.dtype == np.uint8:
            x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0
        elif np.issubdtype(a.dtype, np.floating):
            x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)
        else:
            raise TypeError(f"{where} must be uint8 (0..255) or float in [0, 1], got dtype {a.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{where} must be finite, got NaN or inf values")
    if x.numel() and (float(x.max()) > 1.0 + 1e-3 or float(x.min()) < -1e-3):
        raise ValueError(f"{where} holds floats outside [0, 1] (range {float(x.min()):.3g}..{float(x.max()):.3g}); "
                         f"pass uint8 or divide by 255")
    if min(x.shape[1:]) < 1:
        raise ValueError(f"{where} must have at least one pixel, got size {tuple(x.shape[1:])}")
    return x


def _as_image_list(images):
    """-> (list of (3, H, W) tensors, kind) with kind 'single', 'batch' or 'list', and torch_out flag."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images must hold at least one image, got an empty list")
        xs = [_one_image(k, im, isinstance(im, torch.Tensor)) for k, im in enumerate(images)]
        return xs, "list", [isinstance(im, torch.Tensor) for im in images]
    if isinstance(images, torch.Tensor):
        if images.ndim == 4:
            return [_one_image(k, im, True) for k, im in enumerate(images)], "batch", True
        if images.ndim == 3:
            return [_one_image(None, images, True)], "single", True
        raise ValueError(f"images must be a (3, H, W) or (B, 3, H, W) tensor, got shape {tuple(images.shape)}")
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return [_one_image(k, im, False) for k, im in enumerate(images)], "batch", False
        if images.ndim == 3:
            return [_one_image(None, images, False)], "single", False
        raise ValueError(f"images must be an (H, W, 3) or (B, H, W, 3) array, got shape {images.shape}")
    raise TypeError(f"images must be a numpy array, a torch tensor or a list of them, got {type(images).__name__}")


def _run_padded(model, xs, device):
    """Run the model on images of possibly different sizes, padded to one canvas with a mask."""
    m = model.unet.multiple
    h_max = max(x.shape[1] for x in xs)
    w_max = max(x.shape[2] for x in xs)
    ph, pw = -(-h_max // m) * m, -(-w_max // m) * m
    same = all(x.shape[1:] == xs[0].shape[1:] for x in xs)
    if same:
        batch = torch.stack(xs).to(device)
        mask = None
    else:
        batch = torch.stack([F.pad(x[None], (0, pw - x.shape[2], 0, ph - x.shape[1]), mode="replicate")[0]
                             for x in xs]).to(device)
        mask = torch.zeros((len(xs), ph, pw), dtype=torch.bool, device=device)
        for i, x in enumerate(xs):
            mask[i, :x.shape[1], :x.shape[2]] = True
    batch = batch.contiguous(memory_format=torch.channels_last)
    out = model(batch, mask)
    return [out[i, :x.shape[1], :x.shape[2]] for i, x in enumerate(xs)]


def predict(images, model=None, *, batch_size=8, device=None, progress=None):
    """Metric depth maps of RGB images.

    Args:
        images: one image — numpy (H, W, 3) uint8 or float in [0, 1], or torch (3, H, W) float in
            [0, 1] — or a batch ((B, H, W, 3) array, (B, 3, H, W) tensor), or a list of single images
            whose sizes may differ.
        model: None (the shipped default), a path to a model file, or a :class:`DepthModel`.
        batch_size: images per forward pass (bounds memory).
        device: torch device to run on (default: the model's).
        progress: tqdm bar over batches (default: when there are more than 4 batches and stderr is a tty).

    Returns:
        depth: float32 (H, W) for one image, (B, H, W) for a batch, or a list of (H_i, W_i) for a
        list; numpy for numpy input, torch (on the input's device) for torch input.

    Raises:
        ValueError / TypeError: malformed images; CheckpointError: an unusable model file.
    """
    xs, kind, torch_out = _as_image_list(images)
    net = _resolve_model(model)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if device is None:
        device = next(net.parameters()).device
    was_training = net.training
    net = net.to(device).eval()
    chunks = range(0, len(xs), batch_size)
    if progress is None:
        import sys
        progress = len(chunks) > 4 and sys.stderr.isatty()
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, desc="depth", leave=False)
    outs = []
    try:
        with torch.inference_mode():
            for k in chunks:
                outs.extend(o.float().cpu() for o in _run_padded(net, xs[k:k + batch_size], device))
    finally:
        net.train(was_training)

    def back(t, as_torch, like):
        if as_torch:
            return t.to(like.device) if isinstance(like, torch.Tensor) else t
        return t.numpy()

    if kind == "single":
        return back(outs[0], torch_out, images)
    if kind == "batch":
        return back(torch.stack(outs), torch_out, images)
    return [back(o, t, im) for o, t, im in zip(outs, torch_out, images)]


def to_points(image, depth, camera, mask=None):
    """A coloured point cloud from an image, its depth map and its camera.

    Args:
        image: (H, W, 3) RGB (numpy uint8 or float), the colours.
        depth: (H, W) depth z per pixel (e.g. from :func:`predict`); 0/NaN = no depth.
        camera: a :class:`geometry.Camera` holding one camera (its size, if set, must be W x H).
        mask: optional (H, W) bool; only these pixels become points (e.g. a silhouette).

    Returns:
        points: (M, 3) world points; colors: (M, 3) of the image's dtype.
    """
    from geometry import Camera, depth_to_points

    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a geometry.Camera, got {type(camera).__name__}")
    if len(camera) != 1:
        raise ValueError(f"camera must hold one camera for one image, got {len(camera)}")
    image = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    depth = depth.detach().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    if depth.shape != image.shape[:2]:
        raise ValueError(f"depth must have the image's shape {image.shape[:2]}, got {depth.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"mask must be a boolean array, got dtype {mask.dtype}; convert with `mask > 0`")
        if mask.shape != depth.shape:
            raise ValueError(f"mask must have the depth's shape {depth.shape}, got {mask.shape}")
        depth = np.where(mask, depth, 0)
    return depth_to_points(depth, camera, image=image)


# ----------------------------------------------------------------------------------------------
# training


def train(out="runs/depth", *, resume=None, progress=True, **config):
    """Train a depth model on procedural scenes (see :class:`carve.training.TrainConfig`).

    Args:
        out: output directory (``model.pt``, ``last.pt``, ``best.pt``, ``history.json``, ``curves.png``).
        resume: a ``last.pt`` to continue from.
        **config: any :class:`TrainConfig` field (size, train, val, widths, epochs, batch_size, lr,
            pretrain, label_fraction, seed, ...).

    Returns:
        dict with ``model`` (trained :class:`DepthModel`), ``history`` and ``best``.
    """
    return fit(TrainConfig(task="depth", out=str(out), **config), resume=resume, progress=progress)


def add_train_depth_arguments(parser):
    """Add the options of ``carve train-depth`` to an argparse (sub)parser."""
    return add_arguments(parser, "depth")


def run_train_depth(args):
    """Run ``carve train-depth`` from options parsed by :func:`add_train_depth_arguments`; returns 0."""
    return run(args, "depth")


def main(argv=None):
    return train_command("depth", argv, prog="python -m carve.depth",
                         description="Train a monocular depth model on procedural scenes "
                                     "(also under torchrun --nproc_per_node=N).")


if __name__ == "__main__":
    raise SystemExit(main())
