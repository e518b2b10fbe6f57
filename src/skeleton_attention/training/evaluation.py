"""Evaluation: predictions over a loader (``Trainer.predict``) and the per-epoch validation metrics.

:func:`predict` returns every sample's logits and a few attention maps, in loader order (the
evaluate node's test and validation scores). :func:`validation_metrics` needs only sums, so it
keeps them on the device (one host read per validation pass) and, under DDP, adds them over the
ranks, each of which has scored its own block of the validation rows: every rank then holds the
same ``val_*`` numbers and takes the same selection and early-stopping decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skeleton_attention.training.distributed import DistEnv, all_reduce_sums
from skeleton_attention.training.epoch import compute_loss, move_batch

VAL_KEYS = ("val_ce", "val_loss_total", "val_loss", "val_reg", "val_acc", "val_top5")


@dataclass
class Predictions:
    """Model outputs over a loader, in loader order."""

    logits: np.ndarray  # (N, C) float32
    labels: np.ndarray  # (N,) int64
    indices: np.ndarray  # (N,) dataset indices
    lengths: np.ndarray  # (N,) valid frames (from the mask; 0 when the batch has none)
    attention: list[dict[str, np.ndarray]] = field(default_factory=list)  # first k samples
    #: the maps named in ``predict(collect_attention=...)`` for every sample, stacked (N, ...)
    attention_all: dict[str, np.ndarray] = field(default_factory=dict)
    #: mean training objective (CE with the configured label smoothing + head CEs + regularization)
    loss: float = float("nan")
    #: mean plain cross-entropy of the main logits (no label smoothing, no regularization)
    ce: float = float("nan")
    #: mean sum of the model's regularization terms (0 for a model without any)
    reg: float = float("nan")


def valid_lengths(batch: Mapping[str, Any], n: int) -> np.ndarray:
    """(N,) valid frames per sample: the batch's ``length`` when given, else from ``mask`` (N, T), or
    (N, views, T) (a frame counts when any view has it); zeros when the batch has neither."""
    length = batch.get("length")
    if isinstance(length, Tensor) and tuple(length.shape) == (n,):
        return length.cpu().numpy().astype(np.int64)
    mask = batch.get("mask")
    if isinstance(mask, Tensor) and mask.dim() >= 2 and mask.shape[0] == n:
        frames = mask.reshape(n, -1, mask.shape[-1]).any(dim=1)
        return frames.sum(dim=1).cpu().numpy().astype(np.int64)
    return np.zeros(n, dtype=np.int64)


def _evaluated_batches(
    model: nn.Module,
    loader,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager],
    label_smoothing: float,
) -> Iterator[tuple[dict[str, Tensor], Any, Tensor, dict[str, Tensor]]]:
    """Each batch on ``device`` with the model's output and its loss (eval mode, no grad): the
    forward pass that prediction and validation share."""
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            batch = move_batch(batch, device, non_blocking=True)
            with autocast():
                out = model(batch)
            loss, parts = compute_loss(out, batch["label"], label_smoothing)
            yield batch, out, loss, parts


def predict(
    model: nn.Module,
    loader,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager],
    label_smoothing: float = 0.0,
    keep_attention: int = 0,
    collect_attention: Sequence[str] = (),
) -> Predictions:
    """Logits of every sample (eval mode, no grad) and the attention maps of the first few;
    the maps named in ``collect_attention`` (small ones, e.g. view weights) of every sample."""
    logits, labels, indices, lengths, attention = [], [], [], [], []
    collected: dict[str, list[np.ndarray]] = {name: [] for name in collect_attention}
    loss_sum, ce_sum, reg_sum, count = 0.0, 0.0, 0.0, 0
    for batch, out, loss, parts in _evaluated_batches(model, loader, device, autocast, label_smoothing):
        y = batch["label"]
        loss_sum += float(loss) * y.shape[0]
        ce_sum += float(F.cross_entropy(out.logits.float(), y, reduction="sum"))
        reg_sum += sum(float(v) for k, v in parts.items() if k.startswith("reg_")) * y.shape[0]
        count += y.shape[0]
        logits.append(out.logits.float().cpu().numpy())
        labels.append(y.cpu().numpy())
        indices.append(batch["index"].cpu().numpy() if "index" in batch else np.arange(count - y.shape[0], count))
        lengths.append(valid_lengths(batch, y.shape[0]))
        for name, maps in collected.items():
            if name not in (out.attention or {}):
                raise ValueError(f"collect_attention: the model returned no attention map {name!r}")
            maps.append(out.attention[name].detach().float().cpu().numpy())
        for i in range(y.shape[0]):
            if len(attention) >= keep_attention:
                break
            attention.append({name: a[i].detach().float().cpu().numpy() for name, a in (out.attention or {}).items()})
    num_classes = logits[0].shape[1] if logits else 0
    return Predictions(
        logits=np.concatenate(logits) if logits else np.zeros((0, num_classes), np.float32),
        labels=np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64),
        indices=np.concatenate(indices).astype(np.int64) if indices else np.zeros(0, np.int64),
        lengths=np.concatenate(lengths).astype(np.int64) if lengths else np.zeros(0, np.int64),
        attention=attention,
        attention_all={name: np.concatenate(maps) for name, maps in collected.items() if maps},
        loss=loss_sum / count if count else float("nan"),
        ce=ce_sum / count if count else float("nan"),
        reg=reg_sum / count if count else float("nan"),
    )


def _rank_of_label(logits: Tensor, labels: Tensor) -> Tensor:
    """0-based rank of each true class among the logits, ties going to the lower class index
    (the same order as a stable descending sort): classes scoring higher, plus equal ones before it."""
    true = logits.gather(1, labels[:, None])
    classes = torch.arange(logits.shape[1], device=logits.device)[None, :]
    ahead = (logits > true) | ((logits == true) & (classes < labels[:, None]))
    return ahead.sum(dim=1)


def validation_metrics(
    model: nn.Module,
    loader,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager],
    label_smoothing: float,
    dist: DistEnv,
) -> dict[str, float]:
    """``val_ce`` (plain cross-entropy of the main logits) is what a loss-based selection should
    watch; ``val_loss_total`` (alias ``val_loss``) adds label smoothing, head losses and the
    regularization terms, which move with the weights and attention, not with how well validation
    samples are classified; ``val_reg`` is the regularization alone. Sums stay on the device and
    are added over the ranks (``loader`` holds this rank's share)."""
    # loss x n, ce, reg x n, top-1 hits, top-5 hits, samples
    sums = torch.zeros(6, dtype=torch.float64, device=device)
    for batch, out, loss, parts in _evaluated_batches(model, loader, device, autocast, label_smoothing):
        y = batch["label"]
        n = y.shape[0]
        logits = out.logits.float()
        reg = sum((v for k, v in parts.items() if k.startswith("reg_")), torch.zeros((), device=device))
        rank = _rank_of_label(logits, y)
        k = min(5, logits.shape[1])
        sums += torch.stack(
            [
                loss.double() * n,
                F.cross_entropy(logits, y, reduction="sum").double(),
                reg.double() * n,
                (rank == 0).sum().double(),
                (rank < k).sum().double(),
                torch.tensor(float(n), dtype=torch.float64, device=device),
            ]
        )
    loss_sum, ce_sum, reg_sum, top1, top5, count = all_reduce_sums(sums, dist).cpu().tolist()
    if count == 0:
        return {key: float("nan") for key in VAL_KEYS}
    return {
        "val_ce": ce_sum / count,
        "val_loss_total": loss_sum / count,
        "val_loss": loss_sum / count,
        "val_reg": reg_sum / count,
        "val_acc": top1 / count,
        "val_top5": top5 / count,
    }
