"""The training engine shared by every model family (torch; no Kedro).

* :mod:`~skeleton_attention.training.data`: protocol splits (validation carved from train), the lazy
  Parquet-backed ``SkeletonDataset``, collate with padding and masks, the seeded sampler, loaders.
* :mod:`~skeleton_attention.training.sampling` / :mod:`~skeleton_attention.training.augment`:
  per-model temporal sampling and training-time augmentation (numpy).
* :mod:`~skeleton_attention.training.trainer`: ``Trainer`` (AMP, phases, schedules, early stopping,
  validation-based selection, exact resume, DDP under torchrun) and ``TrainerConfig``
  (:mod:`~skeleton_attention.training.trainer_config`); its step loop is in
  :mod:`~skeleton_attention.training.epoch`, prediction and validation in
  :mod:`~skeleton_attention.training.evaluation`, AMP in :mod:`~skeleton_attention.training.amp`,
  the process group, sharding and DDP wrapping in :mod:`~skeleton_attention.training.distributed`.
* :mod:`~skeleton_attention.training.optim`: optimizers and epoch-level LR schedules.
* :mod:`~skeleton_attention.training.checkpoints`, :mod:`~skeleton_attention.training.callbacks`,
  :mod:`~skeleton_attention.training.metrics`, :mod:`~skeleton_attention.training.plots`.

See docs/training.md.
"""
