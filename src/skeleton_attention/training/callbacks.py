"""Trainer callbacks: hooks at fit start, phase start, epoch end and fit end.

Experiment tracking is a callback, not part of the trainer: :class:`MlflowCallback` logs every
numeric per-epoch metric with ``step=epoch`` into the active MLflow run (kedro-mlflow starts it).
``mlflow`` is imported lazily so the training package works without it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from skeleton_attention.training.trainer import FitResult, Trainer

logger = logging.getLogger(__name__)


class Callback:
    """Base class; override the hooks you need. ``metrics`` dicts hold floats, ints and strings."""

    def on_fit_start(self, trainer: Trainer, history: Sequence[Mapping[str, Any]]) -> None:
        """Called once per ``fit``; ``history`` holds the epochs already done when resuming."""

    def on_phase_start(self, trainer: Trainer, phase_index: int, phase: Mapping[str, Any]) -> None:
        """Called when a training phase starts (not when resuming in the middle of it)."""

    def on_epoch_end(self, trainer: Trainer, metrics: Mapping[str, Any]) -> None:
        """Called after every epoch, after its checkpoint was written."""

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        """Called once when training finished (all phases run or stopped early)."""


class CallbackList(Callback):
    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_fit_start(self, trainer, history) -> None:
        for cb in self.callbacks:
            cb.on_fit_start(trainer, history)

    def on_phase_start(self, trainer, phase_index, phase) -> None:
        for cb in self.callbacks:
            cb.on_phase_start(trainer, phase_index, phase)

    def on_epoch_end(self, trainer, metrics) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(trainer, metrics)

    def on_fit_end(self, trainer, result) -> None:
        for cb in self.callbacks:
            cb.on_fit_end(trainer, result)


def numeric_metrics(metrics: Mapping[str, Any], exclude: Sequence[str] = ("epoch",)) -> dict[str, float]:
    """The finite numeric entries of a metrics dict (bools and strings dropped)."""
    out = {}
    for key, value in metrics.items():
        if key in exclude or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


def _is_main(trainer: Any) -> bool:
    """False on torchrun ranks other than 0 (a trainer without the notion counts as main)."""
    return bool(getattr(trainer, "is_main", True))


class MlflowCallback(Callback):
    """Logs per-epoch metrics to MLflow with ``step = epoch`` (1-based, counted over all phases).

    Uses the active run (kedro-mlflow's); with none active it logs nothing and warns once, so
    training outside a tracked session still works. ``prefix`` is prepended to metric names. On a
    resumed fit, the epochs done before the interruption are logged first, so the new run shows the
    complete curves. Under DDP only rank 0 logs (``trainer.is_main``): every rank holds the same
    all-reduced metrics, and the other ranks have no run of their own.
    """

    def __init__(self, prefix: str = "", log_history_on_resume: bool = True) -> None:
        self.prefix = prefix
        self.log_history_on_resume = log_history_on_resume
        self._warned = False

    def _active(self):
        import mlflow

        run = mlflow.active_run()
        if run is None and not self._warned:
            logger.warning("no active MLflow run: per-epoch metrics are not logged")
            self._warned = True
        return run

    def _log(self, metrics: Mapping[str, Any]) -> None:
        import mlflow

        if self._active() is None:
            return
        step = int(metrics["epoch"])
        values = {f"{self.prefix}{k}": v for k, v in numeric_metrics(metrics).items()}
        if values:
            mlflow.log_metrics(values, step=step)

    def on_fit_start(self, trainer, history) -> None:
        if self.log_history_on_resume and _is_main(trainer):
            for metrics in history:
                self._log(metrics)

    def on_epoch_end(self, trainer, metrics) -> None:
        if _is_main(trainer):
            self._log(metrics)

    def on_fit_end(self, trainer, result) -> None:
        import mlflow

        if not _is_main(trainer) or self._active() is None:
            return
        final = {
            f"{self.prefix}best_epoch": float(result.best_epoch),
            f"{self.prefix}best_{result.monitor}": float(result.best_metric),
        }
        # the kept model's validation accuracy, beside test.top1 in the runs table (the per-epoch
        # val_acc column shows the last epoch's, which is not the model that was kept)
        selected = [m for m in result.history if int(m.get("epoch", -1)) == int(result.best_epoch)]
        if selected and isinstance(selected[-1].get("val_acc"), int | float):
            final[f"{self.prefix}val_top1"] = float(selected[-1]["val_acc"])
        # at the last epoch's step: best_<monitor> is also a per-epoch series (the running best), and
        # a summary at step 0 would draw a line back to the start of its chart
        last = int(result.history[-1]["epoch"]) if result.history else 0
        mlflow.log_metrics(final, step=last)


class HistoryRecorder(Callback):
    """Keeps every epoch's metrics in memory (handy in tests and notebooks)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self.phases: list[int] = []

    def on_phase_start(self, trainer, phase_index, phase) -> None:
        self.phases.append(phase_index)

    def on_epoch_end(self, trainer, metrics) -> None:
        self.epochs.append(dict(metrics))


class StopAfterEpochs(Callback):
    """Raises :class:`TrainingInterruptedError` after ``epochs`` epochs (simulates a crash; tests, demos)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, trainer, metrics) -> None:
        if int(metrics["epoch"]) >= self.epochs:
            raise TrainingInterruptedError(f"stopped after epoch {metrics['epoch']}")


class TrainingInterruptedError(RuntimeError):
    """Raised by :class:`StopAfterEpochs`."""
