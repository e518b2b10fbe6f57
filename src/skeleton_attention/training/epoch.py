"""One training epoch: the step loop, with every running metric kept on the device.

Reading a CUDA scalar on the host (``float(loss)``, ``int(correct)``, ``if not isfinite(loss)``)
waits for the GPU to finish all queued work, so a per-step read serializes the host's batch
preparation with the GPU's compute. The loop below therefore adds each step's loss, loss parts,
correct count and sample count into device tensors and reads them once, after the last step
(and, under DDP, after summing them over the ranks). A non-finite loss is recorded on the device
too (the first such step and its loss parts) and raised at the end of the epoch on every rank
together; raising on one rank in the middle of an epoch would leave the others waiting in DDP's
gradient all-reduce. The only other host reads are the progress bar's, at most once per second,
and only when the bar is shown.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from skeleton_attention.training.distributed import all_reduce_sums

if TYPE_CHECKING:  # pragma: no cover
    from skeleton_attention.training.trainer import Trainer

#: seconds between the progress bar's reads of the running loss and accuracy (each read is a sync)
POSTFIX_INTERVAL_S = 1.0


def compute_loss(output: Any, labels: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its named parts (``ce``, ``ce_<head>``, ``reg_<name>``), in float32."""
    parts: dict[str, Tensor] = {"ce": F.cross_entropy(output.logits.float(), labels, label_smoothing=label_smoothing)}
    for name, logits in (output.head_logits or {}).items():
        parts[f"ce_{name}"] = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    for name, value in (output.regularization or {}).items():
        if value.dim() != 0:
            raise ValueError(f"regularization term {name!r} must be a scalar, got shape {tuple(value.shape)}")
        parts[f"reg_{name}"] = value.float()
    total = torch.stack(list(parts.values())).sum()
    return total, parts


def move_batch(batch: Mapping[str, Any], device: torch.device, non_blocking: bool = False) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v) for k, v in batch.items()}


@dataclass
class EpochSums:
    """Running sums of one epoch, as device tensors (no host sync until :meth:`read`)."""

    device: torch.device
    names: list[str] = field(default_factory=list)  # "loss" and the loss parts, in first-seen order
    sums: Tensor | None = None  # (len(names),) float64: value x batch size, summed
    correct: Tensor | None = None
    seen: int = 0  # batch sizes are known on the host
    steps: int = 0
    bad_step: Tensor | None = None  # first step (1-based) with a non-finite loss, 0 if none
    bad_values: Tensor | None = None  # the loss and its parts at that step

    def add(self, loss: Tensor, parts: Mapping[str, Tensor], logits: Tensor, labels: Tensor) -> None:
        n = int(labels.shape[0])
        if not self.names:
            self.names = ["loss", *parts]
            size = len(self.names)
            self.sums = torch.zeros(size, dtype=torch.float64, device=self.device)
            self.correct = torch.zeros((), dtype=torch.int64, device=self.device)
            self.bad_step = torch.zeros((), dtype=torch.int64, device=self.device)
            self.bad_values = torch.zeros(size, dtype=torch.float64, device=self.device)
        elif list(parts) != self.names[1:]:
            raise ValueError(f"the loss parts changed within an epoch: {self.names[1:]} -> {list(parts)}")
        values = torch.stack([loss.detach(), *(v.detach() for v in parts.values())]).double()
        self.steps += 1
        self.seen += n
        self.sums += values * n
        self.correct += (logits.detach().argmax(dim=1) == labels).sum()
        first = (self.bad_step == 0) & ~torch.isfinite(values[0])
        self.bad_step.copy_(torch.where(first, torch.full_like(self.bad_step, self.steps), self.bad_step))
        self.bad_values.copy_(torch.where(first, values, self.bad_values))

    def running(self) -> tuple[float, float]:
        """Mean loss and accuracy so far (a host sync: the progress bar only)."""
        assert self.sums is not None and self.correct is not None
        return float(self.sums[0]) / self.seen, int(self.correct) / self.seen

    def read(self, trainer: Trainer) -> tuple[dict[str, float], int, int, int]:
        """The epoch's sums over all ranks: ``({name: sum}, correct, seen, first bad step)``; one
        host read, after one all-reduce under DDP."""
        assert self.sums is not None and self.correct is not None and self.bad_step is not None
        size = len(self.names)
        # one vector for a single all-reduce; the first bad step is summed as (rank-local) step
        # numbers are not comparable: what matters is whether any rank saw one
        packed = torch.cat(
            [
                self.sums,
                self.correct.double().reshape(1),
                torch.tensor([float(self.seen)], dtype=torch.float64, device=self.device),
                self.bad_step.double().reshape(1),
                self.bad_values,
            ]
        )
        local_bad = self.bad_step.clone()
        all_reduce_sums(packed, trainer.dist)
        host = packed.cpu().tolist()
        sums = dict(zip(self.names, host[:size], strict=True))
        correct, seen, any_bad = round(host[size]), round(host[size + 1]), host[size + 2]
        if any_bad:
            local = int(local_bad.cpu())
            detail = dict(zip(self.names, self.bad_values.cpu().tolist(), strict=True)) if local else {}
            raise FloatingPointError(
                f"non-finite loss at epoch {trainer.current_epoch} step {local or '?'} of rank {trainer.dist.rank} "
                f"(parts: {detail or 'on another rank'}); steps are only checked at the end of an epoch"
            )
        return sums, correct, seen, self.steps


def train_one_epoch(trainer: Trainer, loader, epoch: int, total: int, phase: Mapping[str, Any]) -> dict[str, Any]:
    """Run one epoch of ``trainer``'s current phase; returns the ``train_*`` metrics (over all ranks)."""
    cfg = trainer.config
    optimizer = trainer.optimizer
    assert optimizer is not None
    module = trainer.train_module
    module.train()
    running = EpochSums(trainer.device)
    started = time.perf_counter()
    last_postfix = started
    num_batches = len(loader)
    if cfg.max_steps_per_epoch:
        num_batches = min(num_batches, cfg.max_steps_per_epoch)
    show = cfg.progress and trainer.is_main
    bar = tqdm(
        total=num_batches,
        desc=f"epoch {epoch}/{total} {phase['name']}",
        disable=not show,
        leave=False,
        dynamic_ncols=True,
        unit="batch",
    )
    try:
        for batch in loader:
            if cfg.max_steps_per_epoch and running.steps >= cfg.max_steps_per_epoch:
                break
            batch = move_batch(batch, trainer.device, non_blocking=True)
            labels = batch["label"]
            with trainer.autocast():
                out = module(batch)
            loss, parts = compute_loss(out, labels, cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            if trainer.scaler is not None:
                trainer.scaler.scale(loss).backward()
                trainer.scaler.unscale_(optimizer)
                trainer.clip_gradients()
                trainer.scaler.step(optimizer)
                trainer.scaler.update()
            else:
                loss.backward()
                trainer.clip_gradients()
                optimizer.step()
            running.add(loss, parts, out.logits, labels)
            bar.update(1)
            now = time.perf_counter()
            if show and now - last_postfix >= POSTFIX_INTERVAL_S:
                last_postfix = now
                mean_loss, acc = running.running()
                bar.set_postfix(
                    loss=f"{mean_loss:.4f}",
                    acc=f"{acc:.3f}",
                    sps=f"{running.seen / (now - started):.0f}",
                    refresh=False,
                )
    finally:
        bar.close()
    if running.steps == 0:
        raise ValueError("the training loader yielded no batch")
    sums, correct, seen, _ = running.read(trainer)
    train_time = time.perf_counter() - started
    metrics: dict[str, Any] = {"train_loss": sums["loss"] / seen, "train_acc": correct / seen}
    for name, value in sums.items():
        if name != "loss":
            metrics[f"train_{name}"] = value / seen
    # the regularization terms together (STA-LSTM eq. 7), apart from the cross-entropy
    metrics["train_reg"] = sum(v for k, v in sums.items() if k.startswith("reg_")) / seen
    metrics["train_samples_per_s"] = seen / max(train_time, 1e-9)  # all ranks together
    metrics["train_time_s"] = train_time
    return metrics
