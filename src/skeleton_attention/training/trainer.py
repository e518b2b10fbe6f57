"""The one training loop for every model family.

A model is any ``nn.Module`` mapping a batch dict to a
:class:`~skeleton_attention.models.base.ModelOutput`; the loss is

    CE(logits) + sum over heads of CE(head_logits[h]) + sum(regularization.values())

The trainer owns devices, AMP, seeding and determinism, optimizers and LR schedules, gradient
clipping, training phases (``model.configure_phase`` + a fresh optimizer per phase, STA-LSTM's
Algorithm 1), early stopping and model selection on the *validation* metric, full checkpoints every
epoch with exact resume, a tqdm progress bar, callbacks (MLflow logging is one) and data-parallel
training under ``torchrun`` (DistributedDataParallel; :mod:`~skeleton_attention.training.distributed`).

Epochs are numbered 1.. over all phases together; ``history`` holds one metrics dict per epoch.
The pieces live beside this module: the step loop in :mod:`~skeleton_attention.training.epoch`,
prediction and validation in :mod:`~skeleton_attention.training.evaluation`, AMP in
:mod:`~skeleton_attention.training.amp`, the settings in
:mod:`~skeleton_attention.training.trainer_config`; the names they define are re-exported here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from skeleton_attention.training import amp as amp_
from skeleton_attention.training.amp import AMP_DTYPES as AMP_DTYPES
from skeleton_attention.training.callbacks import Callback, CallbackList
from skeleton_attention.training.checkpoints import (
    CheckpointDir,
    capture_rng_state,
    restore_rng_state,
    seed_everything,
)
from skeleton_attention.training.distributed import (
    DistEnv,
    agree,
    all_gather_object,
    barrier,
    device_for,
    join_process_group,
    shard_loader,
    shard_train_loader,
    wrap,
)
from skeleton_attention.training.epoch import compute_loss as compute_loss
from skeleton_attention.training.epoch import move_batch as move_batch
from skeleton_attention.training.epoch import train_one_epoch
from skeleton_attention.training.evaluation import Predictions as Predictions
from skeleton_attention.training.evaluation import predict, validation_metrics
from skeleton_attention.training.evaluation import valid_lengths as _valid_lengths  # noqa: F401 (re-exported)
from skeleton_attention.training.optim import EpochSchedule as EpochSchedule
from skeleton_attention.training.optim import build_optimizer as build_optimizer
from skeleton_attention.training.trainer_config import TrainerConfig as TrainerConfig

logger = logging.getLogger(__name__)

__all__ = [
    "AMP_DTYPES",
    "EpochSchedule",
    "FitResult",
    "Predictions",
    "Trainer",
    "TrainerConfig",
    "build_optimizer",
    "compute_loss",
    "move_batch",
    "resolve_device",
]


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


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
    """Trains ``model`` with ``config``; see the module docstring.

    ``model`` stays the plain module (phases call its ``configure_phase``, checkpoints and
    ``best_state`` hold its own state dict, without a ``module.`` prefix); under DDP the training
    step calls :attr:`train_module`, a DistributedDataParallel wrapper built anew at every phase
    start. ``is_main`` is False on torchrun ranks other than 0: they neither write checkpoints nor
    (through :class:`~skeleton_attention.training.callbacks.MlflowCallback`) log.
    """

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
        self.dist = DistEnv.resolve(self.config.distributed)
        self.device = device_for(resolve_device(self.config.device), self.dist)
        self.phases = self.config.phase_list()
        self._check_phases()
        self.amp_dtype = amp_.amp_dtype(self.config.amp, self.device)
        self.scaler = amp_.grad_scaler(self.amp_dtype)
        self.checkpoints = CheckpointDir(self.config.checkpoint_dir) if self.config.checkpoint_dir else None
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: EpochSchedule | None = None
        self.current_phase_index = 0
        self.current_epoch = 0
        #: what the training step calls: the model, its DDP wrapper, or their compiled form
        self.train_module: nn.Module = model
        self.model.to(self.device)

    @property
    def is_main(self) -> bool:
        """True in a single process and on rank 0: the process that writes and logs."""
        return self.dist.is_main

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
        """Train on ``train_loader``, select on ``val_loader``. Under torchrun (``distributed: auto``
        and WORLD_SIZE > 1) the process joins the process group (and stays in it), shards the training
        loader's sampler (in place) and scores its own block of the validation rows."""
        cfg = self.config
        monitor_needs_val = cfg.monitor.startswith("val_")
        if val_loader is None and monitor_needs_val:
            raise ValueError(
                f"monitor {cfg.monitor!r} needs a validation loader; set data.val_fraction > 0 "
                "(validation is carved from the training split, never from test)"
            )
        join_process_group(self.dist, self.device)
        shard_train_loader(train_loader, self.dist)
        val_shard = shard_loader(val_loader, self.dist) if val_loader is not None else None
        try:
            with _deterministic(cfg.deterministic and self.device.type == "cpu"):
                result = self._fit(train_loader, val_shard)
        finally:
            self.train_module = self.model
        barrier(self.dist)  # rank 0's last checkpoint is on disk before any rank goes on
        return result

    def predict(self, loader, keep_attention: int = 0, collect_attention: Sequence[str] = ()) -> Predictions:
        """Logits of every sample (eval mode, no grad) and the attention maps of the first few;
        the maps named in ``collect_attention`` (small ones, e.g. view weights) of every sample.
        Not sharded: under DDP every rank predicts the whole loader."""
        return predict(
            self.model,
            loader,
            self.device,
            self._autocast,
            self.config.label_smoothing,
            keep_attention=keep_attention,
            collect_attention=collect_attention,
        )

    def autocast(self):
        """The AMP context of this trainer (a no-op without AMP)."""
        return amp_.autocast(self.amp_dtype, self.device)

    _autocast = autocast  # the name earlier code used

    def clip_gradients(self) -> None:
        """Clip the trainable parameters' gradient norm (DDP has averaged them: same on every rank)."""
        if self.config.grad_clip_norm:
            nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], float(self.config.grad_clip_norm)
            )

    _clip = clip_gradients

    # -- internals ---------------------------------------------------------------------------------

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
        a new DDP wrapper over the now-trainable parameters, a fresh optimizer and schedule."""
        phase = self.phases[index]
        self.current_phase_index = index
        if configure:
            self._configure(index)
        self.train_module = self._wrap()
        self.optimizer = build_optimizer(
            (p for p in self.model.parameters() if p.requires_grad), self._phase_config(phase, "optimizer")
        )
        self.schedule = EpochSchedule(
            self.optimizer,
            self._phase_config(phase, "schedule"),
            int(phase["epochs"]),
            self.config.monitor_mode,
        )

    def _wrap(self) -> nn.Module:
        """DDP (which broadcasts rank 0's weights, so a phase that re-initializes a module from a
        rank's own RNG still starts identical everywhere), then ``torch.compile`` if asked."""
        module = wrap(self.model, self.device, self.dist, self.config.find_unused_parameters)
        if self.config.compile:
            options = dict(self.config.compile) if isinstance(self.config.compile, Mapping) else {}
            module = torch.compile(module, **options)
        return module

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

    def _fingerprint(self) -> str:
        """The settings fingerprint; the world size joins it under DDP (it sets the global batch)."""
        extra = dict(self.fingerprint_extra)
        if self.dist.is_distributed:
            extra["world_size"] = self.dist.world_size
        return self.config.fingerprint(extra)

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
        resuming = bool(cfg.resume and self.checkpoints is not None and self.checkpoints.has_last())
        if resuming:
            start_phase, start_epoch_in_phase, resumed_mid_phase = self._restore(run, generator)
        # every rank must start from the same epoch (rank 0 wrote the checkpoint all ranks read)
        agree(float(run.epoch), self.dist, "the epoch to resume from", self.device)
        if not resuming:
            # rank r seeds with seed + r: dropout masks must differ between ranks (rank 0 and a single
            # process match; DDP's broadcast makes the weights equal whatever each rank draws)
            seed_everything(cfg.seed + self.dist.rank)
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
                    # the one collective of a checkpoint: every rank's RNG state (dropout streams differ)
                    rng_ranks = all_gather_object(capture_rng_state(), self.dist)
                    if self.is_main:  # the model, optimizer and metrics are the same on every rank
                        self.checkpoints.save_last(
                            self._last_checkpoint(
                                run, phase_index, epoch_in_phase + 1, phase_finished, generator, rng_ranks
                            )
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
        if self.checkpoints is not None and self.is_main:
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
        rng_ranks: list[Any] | None = None,
    ) -> dict[str, Any]:
        """Everything :meth:`_restore` needs to continue bit-identically after this epoch."""
        assert self.schedule is not None
        return {
            "fingerprint": self._fingerprint(),
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
            "rng_ranks": rng_ranks if rng_ranks and len(rng_ranks) > 1 else None,
            "sampler_generator": generator.get_state() if generator is not None else None,
        }

    def _restore(self, run: _FitState, generator: torch.Generator | None) -> tuple[int, int, bool]:
        """Load ``last.pt`` into the model, optimizer, schedule, scaler, RNGs and ``run``; returns
        ``(first phase, first epoch in it, resumed in the middle of that phase)``."""
        assert self.checkpoints is not None
        state = self.checkpoints.load_last(map_location="cpu")
        expected = self._fingerprint()
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
        per_rank = state.get("rng_ranks")
        restore_rng_state(per_rank[self.dist.rank] if per_rank else state["rng"])
        logger.info("resumed from %s at epoch %d (phase %d)", self.checkpoints.last, run.epoch, idx)
        return start

    def _run_epoch(
        self, train_loader, val_loader, epoch: int, total: int, phase_index: int, phase: Mapping[str, Any]
    ) -> dict[str, Any]:
        assert self.optimizer is not None
        self.current_epoch = epoch
        train = train_one_epoch(self, train_loader, epoch, total, phase)
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "phase_index": phase_index,
            "phase": str(phase["name"]),
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            **train,
        }
        if val_loader is not None:
            val_started = time.perf_counter()
            metrics.update(
                validation_metrics(
                    self.model, val_loader, self.device, self.autocast, self.config.label_smoothing, self.dist
                )
            )
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
