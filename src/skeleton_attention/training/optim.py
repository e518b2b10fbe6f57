"""Optimizers and epoch-level learning-rate schedules, built from plain settings dicts.

Kept apart from the training loop so that every model family (and a later DDP launcher) builds
them the same way; see docs/training.md for the keys.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "multistep", "plateau", "cosine")


def check_optimizer(config: Mapping[str, Any]) -> None:
    name = config.get("name", "adam")
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} is not one of {OPTIMIZERS}")
    if float(config.get("lr", 0)) <= 0:
        raise ValueError(f"optimizer lr must be > 0, got {config.get('lr')}")


def check_schedule(config: Mapping[str, Any]) -> None:
    name = config.get("name", "none")
    if name not in SCHEDULES:
        raise ValueError(f"schedule {name!r} is not one of {SCHEDULES}")


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
