"""Automatic mixed precision: which dtype (if any) a fit runs under, its autocast and its GradScaler.

``training.amp`` is ``null``, ``bf16`` or ``fp16``; it applies on CUDA only (on the CPU the setting is
logged and training runs in float32). fp16 needs a :class:`torch.amp.GradScaler`; bf16 has float32's
range and needs none. The scaler lives for the whole fit (not rebuilt per phase) and is
checkpointed. Under DDP every rank runs the same autocast; the scaler's skipped-step decision
depends only on the gradients, which DDP has already averaged, so the ranks stay in step.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext

import torch

logger = logging.getLogger(__name__)

AMP_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def check_amp(setting: str | None) -> None:
    if setting is not None and setting not in AMP_DTYPES:
        raise ValueError(f"amp must be null or one of {sorted(AMP_DTYPES)}, got {setting!r}")


def amp_dtype(setting: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``training.amp`` on ``device`` (None: float32)."""
    check_amp(setting)
    if setting is None:
        return None
    if device.type != "cuda":
        logger.info("AMP %s requested but the device is %s: running in float32", setting, device)
        return None
    return AMP_DTYPES[setting]


def grad_scaler(dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling; bf16 and float32 do not."""
    return torch.amp.GradScaler("cuda") if dtype is torch.float16 else None


def autocast(dtype: torch.dtype | None, device: torch.device) -> AbstractContextManager:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
