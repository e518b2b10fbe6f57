"""The one training loop for every model family.

A model is any ``nn.Module`` mapping a batch dict to a
:class:`~skeleton_attention.models.base.ModelOutput`; the loss is

    CE(logits) + sum over heads of CE(head_logits[h]) + sum(regularization.values())

The trainer owns devices, AMP, seeding and determinism, optimizers and LR schedules, gradient
clipping, training phases (``model.configure_phase`` + a fresh optimizer per phase, STA-LSTM's
Algorithm 1), early stopping and model selection on the *validation* metric, full checkpoints every
epoch with exact resume, a tqdm progress bar, and callbacks (MLflow logging is one).

Epochs are numbered 1.. over all phases together; ``history`` holds one metrics dict per epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import lr_scheduler
from tqdm.auto import tqdm

from skeleton_attention.training.callbacks import Callback, CallbackList
from skeleton_attention.training.checkpoints import (
    CheckpointDir,
    capture_rng_state,
    restore_rng_state,
    seed_everything,
)

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "multistep", "plateau", "cosine")
AMP_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


# --- configuration --------------------------------------------------------------------------------


@dataclass
class TrainerConfig:
    """Trainer settings; see docs/training.md for every key.

    ``phases``: a list of dicts, each with ``epochs`` (and optionally ``name``, ``optimizer`` and
    ``schedule`` overrides merged over the top-level ones; every other key is for the model's
    ``configure_phase``). Without phases there is one phase of ``epochs`` epochs.
    """

    epochs: int = 10
    optimizer: dict[str, Any] = field(default_factory=lambda: {"name": "adam", "lr": 1e-3})
    schedule: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    phases: list[dict[str, Any]] | None = None
    grad_clip_norm: float | None = None
    label_smoothing: float = 0.0
    amp: str | None = None
    device: str = "auto"
    seed: int = 0
    deterministic: bool = True
    monitor: str = "val_acc"
    monitor_mode: str = "max"
    early_stopping: dict[str, Any] | None = None
    select_best_from_phase: int = 0
    checkpoint_dir: str | None = None
    resume: bool = False
    progress: bool = True
    max_steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.monitor_mode not in ("max", "min"):
            raise ValueError(f"monitor_mode must be 'max' or 'min', got {self.monitor_mode!r}")
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise ValueError(f"amp must be null or one of {sorted(AMP_DTYPES)}, got {self.amp!r}")
        _check_optimizer(self.optimizer)
        _check_schedule(self.schedule)
        for i, phase in enumerate(self.phase_list()):
            if int(phase.get("epochs", 0)) < 1:
                raise ValueError(f"phase {i} ({phase.get('name')}) needs epochs >= 1")
            _check_optimizer({**self.optimizer, **phase.get("optimizer", {})})
            _check_schedule({**self.schedule, **phase.get("schedule", {})})
        n = len(self.phase_list())
        if not -n <= self.select_best_from_phase < n:
            raise ValueError(f"select_best_from_phase={self.select_best_from_phase} with {n} phase(s)")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TrainerConfig:
        config = dict(config)
        known = set(cls.__dataclass_fields__)
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown trainer settings {sorted(unknown)}; known: {sorted(known)}")
        if config.get("phases") is not None:
            config["phases"] = [dict(p) for p in config["phases"]]
        return cls(**config)

    def phase_list(self) -> list[dict[str, Any]]:
        if self.phases:
            return [{"name": p.get("name", f"phase{i}"), **p} for i, p in enumerate(self.phases)]
        return [{"name": "main", "epochs": int(self.epochs)}]

    @property
    def total_epochs(self) -> int:
        return sum(int(p["epochs"]) for p in self.phase_list())

    def fingerprint(self, extra: Mapping[str, Any] | None = None) -> str:
        """Hash of everything that changes the training trajectory (not device/progress/resume), plus
        ``extra`` (the caller's data and model settings)."""
        relevant = {
            k: getattr(self, k)
            for k in (
                "optimizer",
                "schedule",
                "grad_clip_norm",
                "label_smoothing",
                "amp",
                "seed",
                "monitor",
                "monitor_mode",
                "early_stopping",
                "select_best_from_phase",
                "max_steps_per_epoch",
            )
        }
        relevant["phases"] = self.phase_list()
        relevant["extra"] = dict(extra or {})
        return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_optimizer(config: Mapping[str, Any]) -> None:
    name = config.get("name", "adam")
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} is not one of {OPTIMIZERS}")
    if float(config.get("lr", 0)) <= 0:
        raise ValueError(f"optimizer lr must be > 0, got {config.get('lr')}")


def _check_schedule(config: Mapping[str, Any]) -> None:
    name = config.get("name", "none")
    if name not in SCHEDULES:
        raise ValueError(f"schedule {name!r} is not one of {SCHEDULES}")


# --- optimizer and schedule -----------------------------------------------------------------------


def build_optimizer(params: Iterable[nn.Parameter], config: Mapping[str, Any]) -> torch.optim.Optimizer:
    """adam / adamw / sgd (``momentum``, ``nesterov``) with ``lr`` and ``weight_decay``."""
    params = list(params)
    if not params:
        raise ValueError("no trainable parameters (every parameter has requires_grad=False)")
    name = config.get("name", "adam")
    lr = float(config["lr"])
    wd = float(config.get("weight_decay", 0.0))
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        betas = tuple(float(b) for b in config.get("betas", (0.9, 0.999)))
        return cls(params, lr=lr, betas=betas, eps=float(config.get("eps", 1e-8)), weight_decay=wd)
    momentum = float(config.get("momentum", 0.9))
    nesterov = bool(config.get("nesterov", False))
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)


class EpochSchedule:
    """An epoch-level LR schedule built from torch's scheduler classes.

    ``name``: none | step (``step_size``, ``gamma``) | multistep (``milestones``, epochs from the
    phase start, ``gamma``) | cosine (``eta_min``; over the phase's epochs after warm-up) | plateau
    (ReduceLROnPlateau on the monitored validation metric: ``factor``, ``patience``, ``cooldown``,
    ``min_lr``, ``threshold``). ``warmup_epochs`` > 0 puts a LinearLR warm-up from
    ``warmup_start_factor`` x lr in front (SequentialLR; for plateau the warm-up runs first and the
    plateau logic only sees the epochs after it).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        config: Mapping[str, Any],
        phase_epochs: int,
        monitor_mode: str = "max",
    ) -> None:
        self.name = config.get("name", "none")
        self.warmup_epochs = int(config.get("warmup_epochs", 0))
        self.epochs_done = 0
        warmup = None
        if self.warmup_epochs > 0:
            warmup = lr_scheduler.LinearLR(
                optimizer,
                start_factor=float(config.get("warmup_start_factor", 0.1)),
                end_factor=1.0,
                total_iters=self.warmup_epochs,
            )
        self.plateau: lr_scheduler.ReduceLROnPlateau | None = None
        main: lr_scheduler.LRScheduler | None = None
        if self.name == "step":
            main = lr_scheduler.StepLR(
                optimizer, step_size=int(config["step_size"]), gamma=float(config.get("gamma", 0.1))
            )
        elif self.name == "multistep":
            milestones = [int(m) - self.warmup_epochs for m in config["milestones"]]
            if any(m <= 0 for m in milestones):
                raise ValueError(f"multistep milestones {config['milestones']} must come after the warm-up")
            main = lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=float(config.get("gamma", 0.1)))
        elif self.name == "cosine":
            main = lr_scheduler.CosineAnnealingLR(
                optimizer,
                T_max=max(1, phase_epochs - self.warmup_epochs),
                eta_min=float(config.get("eta_min", 0.0)),
            )
        elif self.name == "plateau":
            self.plateau = lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode=monitor_mode,
                factor=float(config.get("factor", 0.1)),
                patience=int(config.get("patience", 5)),
                cooldown=int(config.get("cooldown", 0)),
                min_lr=float(config.get("min_lr", 0.0)),
                threshold=float(config.get("threshold", 1e-4)),
            )
        if warmup is not None and main is not None:
            self.scheduler: lr_scheduler.LRScheduler | None = lr_scheduler.SequentialLR(
                optimizer, schedulers=[warmup, main], milestones=[self.warmup_epochs]
            )
        else:
            self.scheduler = warmup if warmup is not None else main

    @property
    def needs_metric(self) -> bool:
        return self.plateau is not None

    def step(self, metric: float | None) -> None:
        """Advance one epoch; ``metric`` is the monitored validation value (plateau only)."""
        self.epochs_done += 1
        in_warmup = self.epochs_done <= self.warmup_epochs
        if self.scheduler is not None and (self.plateau is None or in_warmup):
            self.scheduler.step()
        elif self.plateau is not None:
            if metric is None or not math.isfinite(metric):
                raise ValueError("the plateau schedule needs a finite validation metric every epoch")
            self.plateau.step(metric)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epochs_done": self.epochs_done,
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "plateau": None if self.plateau is None else self.plateau.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epochs_done = int(state["epochs_done"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])


# --- loss -----------------------------------------------------------------------------------------


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


# --- results --------------------------------------------------------------------------------------


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_metric: float
    best_phase_index: int
    best_state: dict[str, Tensor]
    monitor: str
    epochs_run: int
    stopped_early: bool


@dataclass
class Predictions:
    """Model outputs over a loader, in loader order."""

    logits: np.ndarray  # (N, C) float32
    labels: np.ndarray  # (N,) int64
    indices: np.ndarray  # (N,) dataset indices
    lengths: np.ndarray  # (N,) valid frames (from the mask; 0 when the batch has none)
    attention: list[dict[str, np.ndarray]] = field(default_factory=list)  # first k samples
    loss: float = float("nan")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def move_batch(batch: Mapping[str, Any], device: torch.device, non_blocking: bool = False) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v) for k, v in batch.items()}


@contextmanager
def _deterministic(enabled: bool):
    """Deterministic algorithms for the duration of a fit (restored afterwards).

    ``fill_uninitialized_memory`` (on by default in deterministic mode: every ``torch.empty`` is
    filled with NaN, a debugging aid) is switched off: it only matters for ops that read memory they
    never wrote, and it cost 20-25 % of STA-LSTM's CPU training time (benchmarks/bench_train.py).
    """
    import torch.utils.deterministic as deterministic

    previous = torch.are_deterministic_algorithms_enabled()
    previous_fill = deterministic.fill_uninitialized_memory
    if enabled:
        torch.use_deterministic_algorithms(True)
        deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        deterministic.fill_uninitialized_memory = previous_fill


# --- trainer --------------------------------------------------------------------------------------


class Trainer:
    """Trains ``model`` with ``config``; see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainerConfig | Mapping[str, Any],
        callbacks: Sequence[Callback] = (),
        fingerprint_extra: Mapping[str, Any] | None = None,
    ) -> None:
        """``fingerprint_extra``: settings outside the trainer that also shape the run (data, model);
        a resume is refused when they differ from the checkpoint's."""
        self.config = config if isinstance(config, TrainerConfig) else TrainerConfig.from_config(config)
        self.fingerprint_extra = dict(fingerprint_extra or {})
        self.model = model
        self.callbacks = CallbackList(callbacks)
        self.device = resolve_device(self.config.device)
        self.phases = self.config.phase_list()
        amp = self.config.amp if self.device.type == "cuda" else None
        if self.config.amp and amp is None:
            logger.info("AMP %s requested but the device is %s: running in float32", self.config.amp, self.device)
        self.amp_dtype = AMP_DTYPES[amp] if amp else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype is torch.float16 else None
        self.checkpoints = CheckpointDir(self.config.checkpoint_dir) if self.config.checkpoint_dir else None
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: EpochSchedule | None = None
        self.current_phase_index = 0
        self.model.to(self.device)

    # -- public API --------------------------------------------------------------------------------

    def fit(self, train_loader, val_loader=None) -> FitResult:
        cfg = self.config
        monitor_needs_val = cfg.monitor.startswith("val_")
        if val_loader is None and monitor_needs_val:
            raise ValueError(
                f"monitor {cfg.monitor!r} needs a validation loader; set data.val_fraction > 0 "
                "(validation is carved from the training split, never from test)"
            )
        with _deterministic(cfg.deterministic and self.device.type == "cpu"):
            return self._fit(train_loader, val_loader)

    def predict(self, loader, keep_attention: int = 0) -> Predictions:
        """Logits of every sample (eval mode, no grad) and the attention maps of the first few."""
        self.model.eval()
        logits, labels, indices, lengths, attention = [], [], [], [], []
        loss_sum, count = 0.0, 0
        with torch.inference_mode():
            for batch in loader:
                batch = move_batch(batch, self.device, non_blocking=True)
                with self._autocast():
                    out = self.model(batch)
                y = batch["label"]
                loss, _ = compute_loss(out, y, self.config.label_smoothing)
                loss_sum += float(loss) * y.shape[0]
                count += y.shape[0]
                logits.append(out.logits.float().cpu().numpy())
                labels.append(y.cpu().numpy())
                indices.append(
                    batch["index"].cpu().numpy() if "index" in batch else np.arange(count - y.shape[0], count)
                )
                mask = batch.get("mask")
                batch_lengths = (
                    mask.sum(dim=1).cpu().numpy()
                    if isinstance(mask, Tensor) and mask.dim() == 2
                    else np.zeros(y.shape[0], dtype=np.int64)
                )
                lengths.append(batch_lengths)
                for i in range(y.shape[0]):
                    if len(attention) >= keep_attention:
                        break
                    attention.append(
                        {name: a[i].detach().float().cpu().numpy() for name, a in (out.attention or {}).items()}
                    )
        num_classes = logits[0].shape[1] if logits else 0
        return Predictions(
            logits=np.concatenate(logits) if logits else np.zeros((0, num_classes), np.float32),
            labels=np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64),
            indices=np.concatenate(indices).astype(np.int64) if indices else np.zeros(0, np.int64),
            lengths=np.concatenate(lengths).astype(np.int64) if lengths else np.zeros(0, np.int64),
            attention=attention,
            loss=loss_sum / count if count else float("nan"),
        )

    # -- internals ---------------------------------------------------------------------------------

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _phase_config(self, phase: Mapping[str, Any], key: str) -> dict[str, Any]:
        base = getattr(self.config, key)
        return {**base, **phase.get(key, {})}

    def _configure(self, index: int) -> None:
        configure = getattr(self.model, "configure_phase", None)
        if callable(configure):
            configure(self.phases[index])
        self.model.to(self.device)

    def _start_phase(self, index: int, configure: bool = True) -> None:
        """configure_phase (unless the model is already configured, e.g. restored from a checkpoint),
        then a fresh optimizer and schedule over the trainable parameters."""
        phase = self.phases[index]
        self.current_phase_index = index
        if configure:
            self._configure(index)
        self.optimizer = build_optimizer(
            (p for p in self.model.parameters() if p.requires_grad), self._phase_config(phase, "optimizer")
        )
        self.schedule = EpochSchedule(
            self.optimizer,
            self._phase_config(phase, "schedule"),
            int(phase["epochs"]),
            self.config.monitor_mode,
        )

    def _improved(self, value: float, best: float, min_delta: float = 0.0) -> bool:
        if not math.isfinite(value):
            return False
        if not math.isfinite(best):
            return True
        if self.config.monitor_mode == "max":
            return value > best + min_delta
        return value < best - min_delta

    def _selectable(self, phase_index: int) -> bool:
        first = self.config.select_best_from_phase % len(self.phases)
        return phase_index >= first

    def _sampler_generator(self, loader) -> torch.Generator | None:
        for owner in (
            getattr(loader, "sampler", None),
            getattr(getattr(loader, "batch_sampler", None), "sampler", None),
        ):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator):
                return generator
        return None

    def _fit(self, train_loader, val_loader) -> FitResult:
        cfg = self.config
        early = dict(cfg.early_stopping or {})
        patience = int(early.get("patience", 0)) if early else 0
        min_delta = float(early.get("min_delta", 0.0)) if early else 0.0
        if patience and cfg.monitor.startswith("val_") and val_loader is None:
            raise ValueError("early stopping needs a validation loader")

        history: list[dict[str, Any]] = []
        best_metric = float("nan")
        best_epoch, best_phase = 0, 0
        best_state: dict[str, Tensor] | None = None
        bad_epochs = 0
        epoch = 0
        start_phase, start_epoch_in_phase = 0, 0
        stopped_early = False
        finished = False
        generator = self._sampler_generator(train_loader)

        state = None
        if cfg.resume and self.checkpoints is not None and self.checkpoints.has_last():
            state = self.checkpoints.load_last(map_location="cpu")
            if state.get("fingerprint") != cfg.fingerprint(self.fingerprint_extra):
                raise ValueError(
                    f"{self.checkpoints.last} was written with different training settings "
                    f"(fingerprint {state.get('fingerprint')} != {cfg.fingerprint(self.fingerprint_extra)}); "
                    "delete the checkpoint directory or set resume: false"
                )
        else:
            seed_everything(cfg.seed)
            if generator is not None and getattr(train_loader.sampler, "seed", None) is not None:
                generator.manual_seed(int(train_loader.sampler.seed))

        if state is not None:
            idx = int(state["phase_index"])
            # configure first (it may re-initialize weights or change requires_grad), then load the
            # weights over it; never configure again after loading
            self._configure(idx)
            self.model.load_state_dict(state["model"])
            self.model.to(self.device)
            history = list(state["history"])
            best_metric = float(state["best_metric"])
            best_epoch, best_phase = int(state["best_epoch"]), int(state["best_phase_index"])
            bad_epochs = int(state["bad_epochs"])
            epoch = int(state["epoch"])
            stopped_early = bool(state["stopped_early"])
            finished = bool(state["finished"])
            if self.checkpoints is not None and self.checkpoints.best.is_file():
                best_state = self.checkpoints.load_best(map_location="cpu")["model"]
            if not state["phase_finished"]:
                self._start_phase(idx, configure=False)
                assert self.optimizer is not None and self.schedule is not None
                self.optimizer.load_state_dict(state["optimizer"])
                self.schedule.load_state_dict(state["schedule"])
                if self.scaler is not None and state.get("scaler"):
                    self.scaler.load_state_dict(state["scaler"])
                start_phase, start_epoch_in_phase = idx, int(state["epoch_in_phase"])
            else:
                start_phase, start_epoch_in_phase = idx + 1, 0
            if generator is not None and state.get("sampler_generator") is not None:
                generator.set_state(state["sampler_generator"])
            restore_rng_state(state["rng"])
            logger.info("resumed from %s at epoch %d (phase %d)", self.checkpoints.last, epoch, idx)

        self.callbacks.on_fit_start(self, history)
        total = cfg.total_epochs
        for phase_index in range(start_phase, len(self.phases)):
            if finished:
                break
            phase = self.phases[phase_index]
            # a phase resumed from its middle was already configured (and its optimizer restored) above
            resumed_mid_phase = state is not None and not state["phase_finished"] and phase_index == start_phase
            if not resumed_mid_phase:
                self._start_phase(phase_index)
                bad_epochs = 0
                self.callbacks.on_phase_start(self, phase_index, phase)
            first = start_epoch_in_phase if phase_index == start_phase else 0
            phase_epochs = int(phase["epochs"])
            phase_stopped = False
            for epoch_in_phase in range(first, phase_epochs):
                epoch += 1
                metrics = self._run_epoch(train_loader, val_loader, epoch, total, phase_index, phase)
                monitored = metrics.get(cfg.monitor)
                assert self.schedule is not None
                self.schedule.step(None if monitored is None else float(monitored))
                value = float(monitored) if monitored is not None else float("nan")
                if self._selectable(phase_index) and self._improved(value, best_metric):
                    best_metric, best_epoch, best_phase = value, epoch, phase_index
                    best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
                    if self.checkpoints is not None:
                        self.checkpoints.save_best(
                            {
                                "model": best_state,
                                "epoch": epoch,
                                "phase_index": phase_index,
                                "metric": value,
                                "monitor": cfg.monitor,
                            }
                        )
                if patience:
                    phase_best = [h[cfg.monitor] for h in history if h["phase_index"] == phase_index]
                    reference = (max if cfg.monitor_mode == "max" else min)(phase_best) if phase_best else float("nan")
                    bad_epochs = 0 if self._improved(value, reference, min_delta) else bad_epochs + 1
                    phase_stopped = bad_epochs >= patience
                metrics["best_" + cfg.monitor] = best_metric
                history.append(metrics)
                phase_finished = phase_stopped or epoch_in_phase + 1 == phase_epochs
                stopped_early = stopped_early or phase_stopped
                finished = phase_finished and phase_index == len(self.phases) - 1
                if self.checkpoints is not None:
                    self.checkpoints.save_last(
                        {
                            "fingerprint": cfg.fingerprint(self.fingerprint_extra),
                            "model": self.model.state_dict(),
                            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
                            "schedule": self.schedule.state_dict(),
                            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                            "epoch": epoch,
                            "phase_index": phase_index,
                            "epoch_in_phase": epoch_in_phase + 1,
                            "phase_finished": phase_finished,
                            "finished": finished,
                            "stopped_early": stopped_early,
                            "best_metric": best_metric,
                            "best_epoch": best_epoch,
                            "best_phase_index": best_phase,
                            "bad_epochs": bad_epochs,
                            "history": history,
                            "rng": capture_rng_state(),
                            "sampler_generator": generator.get_state() if generator is not None else None,
                        }
                    )
                self.callbacks.on_epoch_end(self, metrics)
                if phase_stopped:
                    logger.info(
                        "early stopping phase %d (%s) at epoch %d: no %s improvement for %d epochs",
                        phase_index,
                        phase["name"],
                        epoch,
                        cfg.monitor,
                        patience,
                    )
                    break

        if best_state is None:
            # nothing selectable was seen (e.g. no finite monitored value): keep the final weights
            best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            best_epoch, best_phase = epoch, self.current_phase_index
        result = FitResult(
            history=history,
            best_epoch=best_epoch,
            best_metric=best_metric,
            best_phase_index=best_phase,
            best_state=best_state,
            monitor=cfg.monitor,
            epochs_run=epoch,
            stopped_early=stopped_early,
        )
        self.callbacks.on_fit_end(self, result)
        return result

    def _run_epoch(
        self, train_loader, val_loader, epoch: int, total: int, phase_index: int, phase: Mapping[str, Any]
    ) -> dict[str, Any]:
        cfg = self.config
        assert self.optimizer is not None
        self.model.train()
        sums: dict[str, float] = {}
        seen, correct, steps = 0, 0, 0
        started = time.perf_counter()
        num_batches = len(train_loader)
        if cfg.max_steps_per_epoch:
            num_batches = min(num_batches, cfg.max_steps_per_epoch)
        bar = tqdm(
            total=num_batches,
            desc=f"epoch {epoch}/{total} {phase['name']}",
            disable=not cfg.progress,
            leave=False,
            dynamic_ncols=True,
            unit="batch",
        )
        try:
            for batch in train_loader:
                if cfg.max_steps_per_epoch and steps >= cfg.max_steps_per_epoch:
                    break
                batch = move_batch(batch, self.device, non_blocking=True)
                labels = batch["label"]
                with self._autocast():
                    out = self.model(batch)
                loss, parts = compute_loss(out, labels, cfg.label_smoothing)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss {float(loss.detach())} at epoch {epoch} step {steps + 1} "
                        f"(parts: { {k: float(v.detach()) for k, v in parts.items()} })"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                    self.scaler.unscale_(self.optimizer)
                    self._clip()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    loss.backward()
                    self._clip()
                    self.optimizer.step()
                n = labels.shape[0]
                steps += 1
                seen += n
                correct += int((out.logits.detach().argmax(dim=1) == labels).sum())
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * n
                for name, value in parts.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach()) * n
                elapsed = time.perf_counter() - started
                bar.update(1)
                bar.set_postfix(
                    loss=f"{sums['loss'] / seen:.4f}",
                    acc=f"{correct / seen:.3f}",
                    sps=f"{seen / max(elapsed, 1e-9):.0f}",
                    refresh=False,
                )
        finally:
            bar.close()
        train_time = time.perf_counter() - started
        if seen == 0:
            raise ValueError("the training loader yielded no batch")
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "phase_index": phase_index,
            "phase": str(phase["name"]),
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "train_loss": sums["loss"] / seen,
            "train_acc": correct / seen,
        }
        for name, value in sums.items():
            if name != "loss":
                metrics[f"train_{name}"] = value / seen
        metrics["train_samples_per_s"] = seen / max(train_time, 1e-9)
        metrics["train_time_s"] = train_time
        if val_loader is not None:
            val_started = time.perf_counter()
            metrics.update(self._validate(val_loader))
            metrics["val_time_s"] = time.perf_counter() - val_started
        logger.info(
            "epoch %d/%d [%s] %s",
            epoch,
            total,
            phase["name"],
            " ".join(
                f"{k}={v:.4g}"
                for k, v in metrics.items()
                if k.startswith(("train_loss", "train_acc", "val_", "lr")) and isinstance(v, float)
            ),
        )
        return metrics

    def _validate(self, loader) -> dict[str, float]:
        preds = self.predict(loader)
        if preds.labels.size == 0:
            return {"val_loss": float("nan"), "val_acc": float("nan"), "val_top5": float("nan")}
        ranked = np.argsort(-preds.logits, axis=1, kind="stable")
        k = min(5, preds.logits.shape[1])
        return {
            "val_loss": preds.loss,
            "val_acc": float(np.mean(ranked[:, 0] == preds.labels)),
            "val_top5": float(np.mean(np.any(ranked[:, :k] == preds.labels[:, None], axis=1))),
        }

    def _clip(self) -> None:
        if self.config.grad_clip_norm:
            nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], float(self.config.grad_clip_norm)
            )
