"""Checkpoint files: atomic writes, RNG state capture/restore, and the trained-model artifact.

Everything is written with ``torch.save`` to a temporary file in the target directory and moved
into place with ``os.replace`` (atomic on POSIX), so a crash mid-write leaves the previous file.
Everything is read with ``torch.load(weights_only=True)``: checkpoints hold only tensors and plain
Python containers (RNG states are converted to tensors/lists), never pickled objects, so loading
one cannot execute code.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skeleton_attention.skeletons.tempfiles import file_prefix, sweep_stale

LAST = "last.pt"
BEST = "best.pt"


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to ``path`` via a temporary file and ``os.replace``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target.parent, target.name)  # what a killed run left beside this file
    fd, tmp = tempfile.mkstemp(prefix=file_prefix(target.name), suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_torch_file(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a file written by :func:`atomic_torch_save` (tensors and plain containers only)."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


# --- RNG state ------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states of Python, NumPy (legacy global generator), torch and CUDA."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            int(np_pos),
            int(np_has_gauss),
            float(np_gauss),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((int(py_version), tuple(int(v) for v in py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state(
        (
            str(np_name),
            np.asarray(np_keys, dtype=np.int64).astype(np.uint32),
            int(np_pos),
            int(np_has_gauss),
            float(np_gauss),
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- checkpoint directory -------------------------------------------------------------------------


class CheckpointDir:
    """``last.pt`` (full training state, every epoch) and ``best.pt`` (best validation epoch)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def best(self) -> Path:
        return self.path / BEST

    def has_last(self) -> bool:
        return self.last.is_file()

    def save_last(self, state: Mapping[str, Any]) -> Path:
        return atomic_torch_save(dict(state), self.last)

    def save_best(self, state: Mapping[str, Any]) -> Path:
        return atomic_torch_save(dict(state), self.best)

    def load_last(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_torch_file(self.last, map_location)

    def load_best(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_torch_file(self.best, map_location)


# --- trained model artifact ----------------------------------------------------------------------


def model_artifact(
    *,
    model_name: str,
    model_kwargs: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    phase: Mapping[str, Any] | None,
    info: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything needed to rebuild a trained model: registry name, build kwargs, weights, the
    training phase it was selected in (``configure_phase`` is replayed on load), and metadata
    (class names, streams, sampling, best epoch...)."""
    return {
        "format": "skeleton_attention.model/1",
        "model_name": model_name,
        "model_kwargs": dict(model_kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "phase": None if phase is None else dict(phase),
        "info": dict(info),
    }


def save_model_artifact(artifact: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    if artifact.get("format") != "skeleton_attention.model/1":
        raise ValueError("not a model artifact (build it with model_artifact())")
    return atomic_torch_save(dict(artifact), path)


def load_model_artifact(path: str | os.PathLike[str]) -> dict[str, Any]:
    artifact = load_torch_file(path)
    if artifact.get("format") != "skeleton_attention.model/1":
        raise ValueError(f"{path} is not a model artifact written by save_model_artifact()")
    return artifact
