"""What every model family shares: the output record, the base class and batch checks.

The trainer (``skeleton_attention.training``) only talks to models through this module:

* ``model(batch) -> ModelOutput``; the loss is ``cross_entropy(logits) + sum of the cross-entropies
  of head_logits + sum(regularization.values())``.
* ``model.configure_phase(phase)`` is called at the start of each training phase (a dict from the
  model's schedule, e.g. STA-LSTM's Algorithm 1); the trainer then rebuilds its optimizer over the
  parameters whose ``requires_grad`` is True.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class ModelOutput:
    """What a model returns for one batch.

    ``logits`` (N, classes) is the prediction. ``head_logits`` are extra classifier heads whose
    cross-entropies the trainer adds to the loss. ``regularization`` holds named scalar loss
    terms that are already multiplied by their weights (the trainer adds them as they are).
    ``attention`` holds named attention maps for plots (may be detached).
    """

    logits: Tensor
    head_logits: dict[str, Tensor] = field(default_factory=dict)
    regularization: dict[str, Tensor] = field(default_factory=dict)
    attention: dict[str, Tensor] = field(default_factory=dict)


class SkeletonModel(nn.Module):
    """Base class of all model families.

    Every model reads the sequence batch the data loader builds: ``batch["x"]`` float
    (N, M, T, V, C) plus ``batch["mask"]`` bool (N, T) of valid frames.
    """

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} does not implement forward(batch)")

    def configure_phase(self, phase: Mapping[str, Any]) -> None:
        """Switch the model into a training phase; models without phases ignore it."""
        del phase


def check_sequence_batch(
    batch: Mapping[str, Tensor],
    *,
    num_bodies: int,
    num_joints: int,
    in_channels: int,
) -> tuple[Tensor, Tensor]:
    """Validate a ``"sequence"`` batch and return ``(x, mask)``.

    Raises ``ValueError`` naming the problem when a key is missing, a shape or dtype is wrong, or a
    sample has no valid frame (its temporal average would be a division by zero).
    """
    for key in ("x", "mask"):
        if key not in batch:
            raise ValueError(f"batch has no {key!r} entry (keys: {sorted(batch)})")
    x, mask = batch["x"], batch["mask"]
    if x.dim() != 5 or not torch.is_floating_point(x):
        raise ValueError(f"batch['x'] must be a float tensor (N, M, T, V, C); got {x.dtype} {tuple(x.shape)}")
    n, m, t, v, c = x.shape
    if (m, v, c) != (num_bodies, num_joints, in_channels):
        raise ValueError(
            f"batch['x'] has (M, V, C) = {(m, v, c)} but the model was built for "
            f"{(num_bodies, num_joints, in_channels)}"
        )
    if mask.dtype != torch.bool or tuple(mask.shape) != (n, t):
        raise ValueError(f"batch['mask'] must be bool (N, T) = {(n, t)}; got {mask.dtype} {tuple(mask.shape)}")
    if t == 0 or not bool(mask.any(dim=1).all()):
        raise ValueError("every sample needs at least one valid frame (a row of batch['mask'] is all False)")
    return x, mask
