"""Learning: the networks, losses and training machinery shared by the learned modules.

Light by design: importing ``carve.learn`` imports nothing (no torch), so that
:mod:`carve.learn.config` and :mod:`carve.learn.cli` stay cheap for the command line. The modules:

- :mod:`~carve.learn.task`: the :class:`~carve.learn.task.Task` protocol, what a learned module
  (``carve.depth.DEPTH``, ``carve.segmentation.network.SILHOUETTE``) gives the loop.
- :mod:`~carve.learn.config`: :class:`~carve.learn.config.TrainConfig` (torch-free).
- :mod:`~carve.learn.cli`: its command-line options (torch-free) and :func:`~carve.learn.cli.run`.
- :mod:`~carve.learn.nets`: :class:`~carve.learn.nets.UNet`, :class:`~carve.learn.nets.ImageModel`,
  global BatchNorm; :mod:`~carve.learn.losses`: depth and mask losses.
- :mod:`~carve.learn.scenes`: rendered splits and their cache; :mod:`~carve.learn.augment`:
  seeded augmentation, rescaled crops.
- :mod:`~carve.learn.loop`: :func:`~carve.learn.loop.fit`; :mod:`~carve.learn.phase`: optimiser,
  schedule, epochs; :mod:`~carve.learn.pretrain`: rotation pretraining;
  :mod:`~carve.learn.distributed`: torchrun / DDP.
- :mod:`~carve.learn.checkpoints`: safe model files; :mod:`~carve.learn.inference`: the one
  padded-inference loop; :mod:`~carve.learn.plots`: training curves; :mod:`~carve.learn.card`:
  model cards (``python -m carve.learn.card MODEL``).
"""
