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
from collections.abc import Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from skeleton_attention.training.callbacks import Callback, CallbackList
from skeleton_attention.training.checkpoints import (
    CheckpointDir,
    capture_rng_state,
    restore_rng_state,
    seed_everything,
)
from skeleton_attention.training.optim import (
    EpochSchedule,
    build_optimizer,
    check_optimizer,
    check_schedule,
)

logger = logging.getLogger(__name__)

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
        check_optimizer(self.optimizer)
        check_schedule(self.schedule)
        for i, phase in enumerate(self.phase_list()):
            if int(phase.get("epochs", 0)) < 1:
                raise ValueError(f"phase {i} ({phase.get('name')}) needs epochs >= 1")
            check_optimizer({**self.optimizer, **phase.get("optimizer", {})})
            check_schedule({**self.schedule, **phase.get("schedule", {})})
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
    #: the maps named in ``predict(collect_attention=...)`` for every sample, stacked (N, ...)
    attention_all: dict[str, np.ndarray] = field(default_factory=dict)
    #: mean training objective (CE with the configured label smoothing + head CEs + regularization)
    loss: float = float("nan")
    #: mean plain cross-entropy of the main logits (no label smoothing, no regularization)
    ce: float = float("nan")
    #: mean sum of the model's regularization terms (0 for a model without any)
    reg: float = float("nan")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def move_batch(batch: Mapping[str, Any], device: torch.device, non_blocking: bool = False) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v) for k, v in batch.items()}


def _valid_lengths(batch: Mapping[str, Any], n: int) -> np.ndarray:
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


def _cpu_copy(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


@dataclass
class _FitState:
    """The bookkeeping of one fit that a checkpoint carries (besides model/optimizer/RNG state)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    best_metric: float = float("nan")
    best_epoch: int = 0
    best_phase: int = 0
    best_state: dict[str, Tensor] | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    finished: bool = False


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
        self._check_phases()
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

    def _check_phases(self) -> None:
        """Every phase against the model (``model.check_phase`` where it has one), before any
        epoch runs: a phase naming a module the model lacks fails here, not hours into training."""
        check = getattr(self.model, "check_phase", None)
        if not callable(check):
            return
        for index, phase in enumerate(self.phases):
            try:
                check(phase)
            except ValueError as err:
                raise ValueError(f"training.phases[{index}]: {err}") from err

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

    def predict(self, loader, keep_attention: int = 0, collect_attention: Sequence[str] = ()) -> Predictions:
        """Logits of every sample (eval mode, no grad) and the attention maps of the first few;
        the maps named in ``collect_attention`` (small ones, e.g. view weights) of every sample."""
        self.model.eval()
        logits, labels, indices, lengths, attention = [], [], [], [], []
        collected: dict[str, list[np.ndarray]] = {name: [] for name in collect_attention}
        loss_sum, ce_sum, reg_sum, count = 0.0, 0.0, 0.0, 0
        with torch.inference_mode():
            for batch in loader:
                batch = move_batch(batch, self.device, non_blocking=True)
                with self._autocast():
                    out = self.model(batch)
                y = batch["label"]
                loss, parts = compute_loss(out, y, self.config.label_smoothing)
                loss_sum += float(loss) * y.shape[0]
                ce_sum += float(F.cross_entropy(out.logits.float(), y, reduction="sum"))
                reg_sum += sum(float(v) for k, v in parts.items() if k.startswith("reg_")) * y.shape[0]
                count += y.shape[0]
                logits.append(out.logits.float().cpu().numpy())
                labels.append(y.cpu().numpy())
                indices.append(
                    batch["index"].cpu().numpy() if "index" in batch else np.arange(count - y.shape[0], count)
                )
                lengths.append(_valid_lengths(batch, y.shape[0]))
                for name, maps in collected.items():
                    if name not in (out.attention or {}):
                        raise ValueError(f"collect_attention: the model returned no attention map {name!r}")
                    maps.append(out.attention[name].detach().float().cpu().numpy())
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
            attention_all={name: np.concatenate(maps) for name, maps in collected.items() if maps},
            loss=loss_sum / count if count else float("nan"),
            ce=ce_sum / count if count else float("nan"),
            reg=reg_sum / count if count else float("nan"),
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
        patience = int(early.get("patience", 0))
        min_delta = float(early.get("min_delta", 0.0))
        if patience and cfg.monitor.startswith("val_") and val_loader is None:
            raise ValueError("early stopping needs a validation loader")

        generator = self._sampler_generator(train_loader)
        run = _FitState()
        start_phase, start_epoch_in_phase, resumed_mid_phase = 0, 0, False
        if cfg.resume and self.checkpoints is not None and self.checkpoints.has_last():
            start_phase, start_epoch_in_phase, resumed_mid_phase = self._restore(run, generator)
        else:
            seed_everything(cfg.seed)
            if generator is not None and getattr(train_loader.sampler, "seed", None) is not None:
                generator.manual_seed(int(train_loader.sampler.seed))

        self.callbacks.on_fit_start(self, run.history)
        total = cfg.total_epochs
        for phase_index in range(start_phase, len(self.phases)):
            if run.finished:
                break
            phase = self.phases[phase_index]
            # a phase resumed from its middle was already configured (and its optimizer restored)
            if not (resumed_mid_phase and phase_index == start_phase):
                self._start_phase(phase_index)
                run.bad_epochs = 0
                self.callbacks.on_phase_start(self, phase_index, phase)
            first = start_epoch_in_phase if phase_index == start_phase else 0
            phase_epochs = int(phase["epochs"])
            for epoch_in_phase in range(first, phase_epochs):
                run.epoch += 1
                metrics = self._run_epoch(train_loader, val_loader, run.epoch, total, phase_index, phase)
                if cfg.monitor not in metrics:
                    # a misspelt monitor would otherwise never improve and silently keep the last epoch
                    raise ValueError(
                        f"monitor {cfg.monitor!r} is not an epoch metric; available: "
                        f"{sorted(k for k, v in metrics.items() if isinstance(v, float))}"
                    )
                monitored = metrics.get(cfg.monitor)
                assert self.schedule is not None
                self.schedule.step(None if monitored is None else float(monitored))
                value = float(monitored) if monitored is not None else float("nan")
                if self._selectable(phase_index) and self._improved(value, run.best_metric):
                    self._record_best(run, value, phase_index)
                phase_stopped = False
                if patience:
                    phase_best = [h[cfg.monitor] for h in run.history if h["phase_index"] == phase_index]
                    reference = (max if cfg.monitor_mode == "max" else min)(phase_best) if phase_best else float("nan")
                    run.bad_epochs = 0 if self._improved(value, reference, min_delta) else run.bad_epochs + 1
                    phase_stopped = run.bad_epochs >= patience
                metrics["best_" + cfg.monitor] = run.best_metric
                run.history.append(metrics)
                phase_finished = phase_stopped or epoch_in_phase + 1 == phase_epochs
                run.stopped_early = run.stopped_early or phase_stopped
                run.finished = phase_finished and phase_index == len(self.phases) - 1
                if self.checkpoints is not None:
                    self.checkpoints.save_last(
                        self._last_checkpoint(run, phase_index, epoch_in_phase + 1, phase_finished, generator)
                    )
                self.callbacks.on_epoch_end(self, metrics)
                if phase_stopped:
                    logger.info(
                        "early stopping phase %d (%s) at epoch %d: no %s improvement for %d epochs",
                        phase_index,
                        phase["name"],
                        run.epoch,
                        cfg.monitor,
                        patience,
                    )
                    break

        if run.best_state is None:
            # nothing selectable was seen (e.g. no finite monitored value): keep the final weights
            run.best_state = _cpu_copy(self.model.state_dict())
            run.best_epoch, run.best_phase = run.epoch, self.current_phase_index
        result = FitResult(
            history=run.history,
            best_epoch=run.best_epoch,
            best_metric=run.best_metric,
            best_phase_index=run.best_phase,
            best_state=run.best_state,
            monitor=cfg.monitor,
            epochs_run=run.epoch,
            stopped_early=run.stopped_early,
        )
        self.callbacks.on_fit_end(self, result)
        return result

    def _record_best(self, run: _FitState, value: float, phase_index: int) -> None:
        """Keep (and write ``best.pt`` for) the weights of a new best validation epoch."""
        run.best_metric, run.best_epoch, run.best_phase = value, run.epoch, phase_index
        run.best_state = _cpu_copy(self.model.state_dict())
        if self.checkpoints is not None:
            self.checkpoints.save_best(
                {
                    "model": run.best_state,
                    "epoch": run.epoch,
                    "phase_index": phase_index,
                    "metric": value,
                    "monitor": self.config.monitor,
                }
            )

    def _last_checkpoint(
        self,
        run: _FitState,
        phase_index: int,
        epoch_in_phase: int,
        phase_finished: bool,
        generator: torch.Generator | None,
    ) -> dict[str, Any]:
        """Everything :meth:`_restore` needs to continue bit-identically after this epoch."""
        assert self.schedule is not None
        return {
            "fingerprint": self.config.fingerprint(self.fingerprint_extra),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": run.epoch,
            "phase_index": phase_index,
            "epoch_in_phase": epoch_in_phase,
            "phase_finished": phase_finished,
            "finished": run.finished,
            "stopped_early": run.stopped_early,
            "best_metric": run.best_metric,
            "best_epoch": run.best_epoch,
            "best_phase_index": run.best_phase,
            "bad_epochs": run.bad_epochs,
            "history": run.history,
            "rng": capture_rng_state(),
            "sampler_generator": generator.get_state() if generator is not None else None,
        }

    def _restore(self, run: _FitState, generator: torch.Generator | None) -> tuple[int, int, bool]:
        """Load ``last.pt`` into the model, optimizer, schedule, scaler, RNGs and ``run``; returns
        ``(first phase, first epoch in it, resumed in the middle of that phase)``."""
        assert self.checkpoints is not None
        state = self.checkpoints.load_last(map_location="cpu")
        expected = self.config.fingerprint(self.fingerprint_extra)
        if state.get("fingerprint") != expected:
            raise ValueError(
                f"{self.checkpoints.last} was written with different training settings "
                f"(fingerprint {state.get('fingerprint')} != {expected}); "
                "delete the checkpoint directory or set resume: false"
            )
        idx = int(state["phase_index"])
        # configure first (it may re-initialize weights or change requires_grad), then load the
        # weights over it; never configure again after loading
        self._configure(idx)
        self.model.load_state_dict(state["model"])
        self.model.to(self.device)
        run.history = list(state["history"])
        run.best_metric = float(state["best_metric"])
        run.best_epoch, run.best_phase = int(state["best_epoch"]), int(state["best_phase_index"])
        run.bad_epochs = int(state["bad_epochs"])
        run.epoch = int(state["epoch"])
        run.stopped_early = bool(state["stopped_early"])
        run.finished = bool(state["finished"])
        if self.checkpoints.best.is_file():
            run.best_state = self.checkpoints.load_best(map_location="cpu")["model"]
        mid_phase = not state["phase_finished"]
        if mid_phase:
            self._start_phase(idx, configure=False)
            assert self.optimizer is not None and self.schedule is not None
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            start = (idx, int(state["epoch_in_phase"]), True)
        else:
            start = (idx + 1, 0, False)
        # the scaler lives across phases (it is not rebuilt per phase), so its calibrated scale
        # must come back at a phase boundary too, or fp16 restarts from the initial scale
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if generator is not None and state.get("sampler_generator") is not None:
            generator.set_state(state["sampler_generator"])
        restore_rng_state(state["rng"])
        logger.info("resumed from %s at epoch %d (phase %d)", self.checkpoints.last, run.epoch, idx)
        return start

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
        # the regularization terms together (STA-LSTM eq. 7), apart from the cross-entropy
        metrics["train_reg"] = sum(v for k, v in sums.items() if k.startswith("reg_")) / seen
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
                if k.startswith(("train_loss", "train_ce", "train_reg", "train_acc", "val_", "lr"))
                and k != "val_loss"
                and isinstance(v, float)
            ),
        )
        return metrics

    def _validate(self, loader) -> dict[str, float]:
        """Validation metrics. ``val_ce`` (plain cross-entropy of the main logits) is what a loss-based
        selection should watch; ``val_loss_total`` (alias ``val_loss``) adds label smoothing, head
        losses and the regularization terms, which move with the weights and attention, not with
        how well validation samples are classified; ``val_reg`` is the regularization alone."""
        preds = self.predict(loader)
        if preds.labels.size == 0:
            keys = ("val_ce", "val_loss_total", "val_loss", "val_reg", "val_acc", "val_top5")
            return {key: float("nan") for key in keys}
        ranked = np.argsort(-preds.logits, axis=1, kind="stable")
        k = min(5, preds.logits.shape[1])
        return {
            "val_ce": preds.ce,
            "val_loss_total": preds.loss,
            "val_loss": preds.loss,
            "val_reg": preds.reg,
            "val_acc": float(np.mean(ranked[:, 0] == preds.labels)),
            "val_top5": float(np.mean(np.any(ranked[:, :k] == preds.labels[:, None], axis=1))),
        }

    def _clip(self) -> None:
        if self.config.grad_clip_norm:
            nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], float(self.config.grad_clip_norm)
            )
