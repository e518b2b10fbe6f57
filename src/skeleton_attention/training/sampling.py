"""Temporal sampling: how a variable-length sequence becomes the frames a model sees.

Every sampler works on one sample's streams, a dict of ``(M, T, V, C)`` float32 arrays that share
their time axis, and applies the *same* frame selection to all of them (the joint and bone streams
of one sample must stay aligned). Randomness comes only from the ``numpy.random.Generator`` passed
in, so a sample's frames are a pure function of ``(sample, seed, train)``.

Modes (``TemporalSampling.mode``):

``full``
    Every frame, no resampling (STA-LSTM: "no temporal down-sampling"). ``max_frames`` optionally
    caps very long sequences (uniformly resampled down to it); the collate function pads the
    batch to its longest sample and the mask marks the valid frames.
``resample``
    Linear interpolation of the whole sequence to exactly ``length`` frames (SAN: "resized to 32
    frames by bilinear interpolation"; along time this is linear interpolation).
``crop_resize``
    Training: crop a random window holding a fraction ``p ~ U[crop_ratio]`` of the frames (at least
    ``min_crop_frames``) at a random start, then resize it to ``length``. Evaluation: the centred
    window of fraction ``test_crop_ratio``, resized to ``length`` (SAN / CTR-GCN ``valid_crop_resize``).
``segments``
    TSN-style: split the sequence into ``num_segments`` equal parts. With ``frames_per_segment == 1``
    training takes one random frame per segment and evaluation the middle frame; with more, each
    segment is resized to ``frames_per_segment`` frames (training jitters the segment borders by up
    to half a segment-frame). The output has ``num_segments * frames_per_segment`` frames, segment
    after segment, so a model can reshape it to ``(K, L)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("full", "resample", "crop_resize", "segments")


@dataclass(frozen=True)
class TemporalSampling:
    """The temporal sampling settings of one model (see the module docstring for the modes)."""

    mode: str = "full"
    length: int = 64
    max_frames: int | None = None
    crop_ratio: tuple[float, float] = (0.5, 1.0)
    test_crop_ratio: float = 0.9
    min_crop_frames: int = 1
    num_segments: int = 3
    frames_per_segment: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"sampling mode {self.mode!r} is not one of {MODES}")
        if self.length < 1:
            raise ValueError(f"sampling length must be >= 1, got {self.length}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or null, got {self.max_frames}")
        low, high = self.crop_ratio
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"crop_ratio must satisfy 0 < a <= b <= 1, got {self.crop_ratio}")
        if not 0.0 < self.test_crop_ratio <= 1.0:
            raise ValueError(f"test_crop_ratio must be in (0, 1], got {self.test_crop_ratio}")
        if self.num_segments < 1 or self.frames_per_segment < 1:
            raise ValueError("num_segments and frames_per_segment must be >= 1")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> TemporalSampling:
        """Build from a parameters dict; unknown keys are an error (typos must not pass silently)."""
        config = dict(config or {})
        known = set(cls.__dataclass_fields__)
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown sampling settings {sorted(unknown)}; known: {sorted(known)}")
        if "crop_ratio" in config:
            config["crop_ratio"] = tuple(float(v) for v in config["crop_ratio"])
        return cls(**config)

    def output_length(self, num_frames: int) -> int:
        """How many frames a sample of ``num_frames`` frames has after sampling."""
        if self.mode == "full":
            return num_frames if self.max_frames is None else min(num_frames, self.max_frames)
        if self.mode == "segments":
            return self.num_segments * self.frames_per_segment
        return self.length

    def positions(self, num_frames: int, rng: np.random.Generator | None, train: bool) -> np.ndarray:
        """Fractional source frame positions (float64) of the output frames."""
        if num_frames < 1:
            raise ValueError("cannot sample a sequence with no frames")
        if train and rng is None and self.mode in ("crop_resize", "segments"):
            raise ValueError(f"training-time {self.mode} sampling needs a random generator")
        if self.mode == "full":
            if self.max_frames is None or num_frames <= self.max_frames:
                return np.arange(num_frames, dtype=np.float64)
            return resize_positions(0.0, float(num_frames), self.max_frames)
        if self.mode == "resample":
            return resize_positions(0.0, float(num_frames), self.length)
        if self.mode == "crop_resize":
            start, stop = self._crop_window(num_frames, rng, train)
            return resize_positions(start, stop, self.length)
        return self._segment_positions(num_frames, rng, train)

    def _crop_window(self, num_frames: int, rng: np.random.Generator | None, train: bool) -> tuple[float, float]:
        if train:
            assert rng is not None
            ratio = rng.uniform(*self.crop_ratio)
        else:
            ratio = self.test_crop_ratio
        size = int(np.floor(ratio * num_frames + 0.5))
        size = min(num_frames, max(size, self.min_crop_frames, 1))
        if train:
            assert rng is not None
            start = int(rng.integers(0, num_frames - size + 1))
        else:
            start = (num_frames - size) // 2
        return float(start), float(start + size)

    def _segment_positions(self, num_frames: int, rng: np.random.Generator | None, train: bool) -> np.ndarray:
        bounds = np.linspace(0.0, float(num_frames), self.num_segments + 1)
        parts = []
        for k in range(self.num_segments):
            start, stop = bounds[k], bounds[k + 1]
            if self.frames_per_segment == 1:
                if train:
                    assert rng is not None
                    # a random frame index inside the segment (floor of a uniform position)
                    position = np.floor(rng.uniform(start, stop)) if stop > start else start
                else:
                    position = np.floor((start + stop) / 2.0)
                parts.append(np.array([min(position, num_frames - 1)], dtype=np.float64))
            else:
                if train:
                    assert rng is not None
                    step = (stop - start) / self.frames_per_segment
                    shift = rng.uniform(-0.5, 0.5) * step
                    start, stop = start + shift, stop + shift
                parts.append(resize_positions(start, stop, self.frames_per_segment))
        return np.clip(np.concatenate(parts), 0.0, float(num_frames - 1))

    def apply(
        self,
        streams: Mapping[str, np.ndarray],
        rng: np.random.Generator | None,
        train: bool,
    ) -> dict[str, np.ndarray]:
        """Sample every stream of one sample with the same frame positions."""
        lengths = {name: a.shape[1] for name, a in streams.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"streams of one sample disagree on their frame count: {lengths}")
        num_frames = next(iter(lengths.values()))
        positions = self.positions(num_frames, rng, train)
        return {name: interpolate_frames(a, positions) for name, a in streams.items()}


def resize_positions(start: float, stop: float, length: int) -> np.ndarray:
    """``length`` frame positions spanning the window ``[start, stop)`` (frame centres, align-corners off).

    This is the sampling grid of 1-D linear interpolation with ``align_corners=False``: output frame
    ``i`` reads the source at ``start + (i + 0.5) * (stop - start) / length - 0.5``, clipped to the
    window, so resizing a window to its own length returns it unchanged.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    scale = (stop - start) / length
    positions = start + (np.arange(length, dtype=np.float64) + 0.5) * scale - 0.5
    return np.clip(positions, start, max(start, stop - 1.0))


def interpolate_frames(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``x`` (M, T, V, C) along T at fractional ``positions``."""
    if x.ndim != 4:
        raise ValueError(f"expected (M, T, V, C), got shape {x.shape}")
    num_frames = x.shape[1]
    positions = np.clip(np.asarray(positions, dtype=np.float64), 0.0, num_frames - 1)
    lower = np.floor(positions).astype(np.intp)
    upper = np.minimum(lower + 1, num_frames - 1)
    weight = (positions - lower).astype(np.float32)[None, :, None, None]
    if not np.any(weight):
        return np.ascontiguousarray(x[:, lower], dtype=np.float32)
    out = x[:, lower] * (1.0 - weight) + x[:, upper] * weight
    return np.ascontiguousarray(out, dtype=np.float32)


def pad_bodies(x: np.ndarray, num_bodies: int) -> np.ndarray:
    """Zero-pad (or truncate to the first bodies) ``x`` (M, T, V, C) to exactly ``num_bodies`` bodies.

    The prepare pipeline orders bodies by importance, so truncation keeps the main actors.
    """
    m = x.shape[0]
    if m == num_bodies:
        return x
    if m > num_bodies:
        return np.ascontiguousarray(x[:num_bodies])
    pad = np.zeros((num_bodies - m, *x.shape[1:]), dtype=x.dtype)
    return np.concatenate([x, pad], axis=0)


