"""The Trainer's settings (``training:`` in a family's parameters; docs/training.md lists every key)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skeleton_attention.training import amp as amp_
from skeleton_attention.training.distributed import DISTRIBUTED_MODES
from skeleton_attention.training.optim import check_optimizer, check_schedule

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
    #: ``auto``: DistributedDataParallel when torchrun started several processes; ``off``: never
    distributed: str = "auto"
    #: DDP's ``find_unused_parameters``, for a model whose forward leaves trainable parameters unused
    find_unused_parameters: bool = False
    #: ``torch.compile`` the training step: false (default), true, or a mapping of ``torch.compile``
    #: keyword arguments (e.g. ``{dynamic: false}``; docs/training.md "Distributed training")
    compile: bool | dict[str, Any] = False

    def __post_init__(self) -> None:
        if self.monitor_mode not in ("max", "min"):
            raise ValueError(f"monitor_mode must be 'max' or 'min', got {self.monitor_mode!r}")
        amp_.check_amp(self.amp)
        if not isinstance(self.compile, bool | Mapping):
            raise ValueError(f"compile must be true, false or torch.compile arguments, got {self.compile!r}")
        if self.distributed not in DISTRIBUTED_MODES:
            raise ValueError(f"distributed must be one of {DISTRIBUTED_MODES}, got {self.distributed!r}")
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
