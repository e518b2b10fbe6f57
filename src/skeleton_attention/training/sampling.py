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

Composable form: ``data.sampling`` may instead be a list of typed steps applied in order, each a
small frozen class with an explicit train (random, from the sample's generator) and evaluation
(deterministic) behaviour: ``cap`` (:class:`Cap`), ``resample`` (:class:`Resample`), ``crop``
(:class:`Crop`: fixed length or ratio, optional resize), ``segments`` (:class:`Segments`) and
``stride`` (:class:`Stride`: every k-th frame, a lower frame rate), e.g.
DSTA-Net's ``[{resample: {length: 150}}, {crop: {length: 128}}]``. Each mode above is one step
(:meth:`TemporalSampling.as_step`), so both forms give identical frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

    def as_step(self) -> SamplingStep | None:
        """The equivalent composable step (None for ``full`` without a cap: every frame)."""
        if self.mode == "full":
            return None if self.max_frames is None else Cap(self.max_frames)
        if self.mode == "resample":
            return Resample(self.length)
        if self.mode == "crop_resize":
            return Crop(
                ratio=self.crop_ratio,
                test_ratio=self.test_crop_ratio,
                min_frames=self.min_crop_frames,
                resize=self.length,
            )
        return Segments(self.num_segments, self.frames_per_segment)

    @property
    def steps(self) -> tuple[SamplingStep, ...]:
        step = self.as_step()
        return () if step is None else (step,)

    @property
    def fixed_length(self) -> int | None:
        """The output length when it does not depend on the input (None for ``full``)."""
        return SamplingPipeline(self.steps).fixed_length

    def output_length(self, num_frames: int) -> int:
        """How many frames a sample of ``num_frames`` frames has after sampling."""
        return SamplingPipeline(self.steps).output_length(num_frames)

    def positions(self, num_frames: int, rng: np.random.Generator | None, train: bool) -> np.ndarray:
        """Fractional source frame positions (float64) of the output frames."""
        if num_frames < 1:
            raise ValueError("cannot sample a sequence with no frames")
        step = self.as_step()
        if step is None:
            return np.arange(num_frames, dtype=np.float64)
        return step.positions(num_frames, rng, train)

    def apply(
        self,
        streams: Mapping[str, np.ndarray],
        rng: np.random.Generator | None,
        train: bool,
    ) -> dict[str, np.ndarray]:
        """Sample every stream of one sample with the same frame positions."""
        return SamplingPipeline(self.steps).apply(streams, rng, train)


# --- composable steps ---------------------------------------------------------------------------------


def _need_rng(rng: np.random.Generator | None, train: bool, name: str) -> None:
    if train and rng is None:
        raise ValueError(f"training-time {name} sampling needs a random generator")


@dataclass(frozen=True)
class Cap:
    """Every frame, but sequences longer than ``max_frames`` are uniformly resampled down to it.
    Deterministic (train = eval)."""

    max_frames: int

    def __post_init__(self) -> None:
        if self.max_frames < 1:
            raise ValueError(f"cap.max_frames must be >= 1, got {self.max_frames}")

    def output_length(self, num_frames: int) -> int:
        return min(num_frames, self.max_frames)

    def fixed_output(self, input_length: int | None) -> int | None:
        return None if input_length is None else min(input_length, self.max_frames)

    def positions(self, num_frames: int, rng: np.random.Generator | None, train: bool) -> np.ndarray:
        if num_frames <= self.max_frames:
            return np.arange(num_frames, dtype=np.float64)
        return resize_positions(0.0, float(num_frames), self.max_frames)


@dataclass(frozen=True)
class Resample:
    """Linear interpolation of the whole sequence to exactly ``length`` frames (SAN: 32; DSTA-Net:
    150 before its crop). Deterministic (train = eval)."""

    length: int

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"resample.length must be >= 1, got {self.length}")

    def output_length(self, num_frames: int) -> int:
        return self.length

    def fixed_output(self, input_length: int | None) -> int | None:
        return self.length

    def positions(self, num_frames: int, rng: np.random.Generator | None, train: bool) -> np.ndarray:
        return resize_positions(0.0, float(num_frames), self.length)


@dataclass(frozen=True)
class Crop:
    """A temporal window: fixed ``length`` frames, or a fraction of the sequence (``ratio``).

    * ``length``: a window of ``min(length, T)`` consecutive frames (DSTA-Net: 128 of the 150
      resampled frames). Training: random start; evaluation: the centred window.
    * ``ratio`` ``(a, b)``: training takes a fraction ``p ~ U[a, b]`` of the frames (at least
      ``min_frames``) at a random start; evaluation the centred window of ``test_ratio``.
    * ``resize``: resize the window to this many frames (linear interpolation); null keeps the
      window's own frames. ``ratio`` + ``resize`` is the legacy ``crop_resize`` mode.
    """

    length: int | None = None
    ratio: tuple[float, float] | None = None
    test_ratio: float = 1.0
    min_frames: int = 1
    resize: int | None = None

    def __post_init__(self) -> None:
        if (self.length is None) == (self.ratio is None):
            raise ValueError("crop needs exactly one of length (frames) or ratio ([a, b] of the sequence)")
        if self.length is not None and self.length < 1:
            raise ValueError(f"crop.length must be >= 1, got {self.length}")
        if self.ratio is not None:
            low, high = self.ratio
            if not 0.0 < low <= high <= 1.0:
                raise ValueError(f"crop_ratio must satisfy 0 < a <= b <= 1, got {self.ratio}")
        if not 0.0 < self.test_ratio <= 1.0:
            raise ValueError(f"crop.test_ratio must be in (0, 1], got {self.test_ratio}")
        if self.min_frames < 1 or (self.resize is not None and self.resize < 1):
            raise ValueError("crop.min_frames and crop.resize must be >= 1")

    def output_length(self, num_frames: int) -> int:
        if self.resize is not None:
            return self.resize
        if self.length is not None:
            return min(num_frames, self.length)
        # the window size depends on the random ratio; its upper bound
        return num_frames

    def fixed_output(self, input_length: int | None) -> int | None:
        if self.resize is not None:
            return self.resize
        if self.length is not None and input_length is not None:
            return min(input_length, self.length)
        return None

    def window(self, num_frames: int, rng: np.random.Generator | None, train: bool) -> tuple[int, int]:
        """``(start, stop)`` frame indices of the window."""
        _need_rng(rng, train, "crop")
        if self.length is not None:
            size = min(num_frames, self.length)
        else:
            assert self.ratio is not None
            ratio = rng.uniform(*self.ratio) if train else self.test_ratio  # type: ignore[union-attr]
            size = int(np.floor(ratio * num_frames + 0.5))
            size = min(num_frames, max(size, self.min_frames, 1))
        # training: a random start; evaluation: the centred window
        start = int(rng.integers(0, num_frames - size + 1)) if train else (num_frames - size) // 2  # type: ignore[union-attr]
        return start, start + size

    def positions(self, num_frames: int, rng: np.random.Generator | None, train: bool) -> np.ndarray:
        start, stop = self.window(num_frames, rng, train)
        if self.resize is None:
            return np.arange(start, stop, dtype=np.float64)
        return resize_positions(float(start), float(stop), self.resize)


@dataclass(frozen=True)
class Segments:
    """TSN-style segments (see the module docstring, ``segments``): ``num`` equal parts, one random
    frame each (training) or the middle frame (evaluation); with ``frames_per_segment > 1`` each
    part is resized to that many frames (training jitters the borders)."""

    num: int = 3
    frames_per_segment: int = 1

    def __post_init__(self) -> None:
        if self.num < 1 or self.frames_per_segment < 1:
            raise ValueError("num_segments and frames_per_segment must be >= 1")

    def output_length(self, num_frames: int) -> int:
        return self.num * self.frames_per_segment

    def fixed_output(self, input_length: int | None) -> int | None:
        return self.num * self.frames_per_segment

    def positions(self, num_frames: int, rng: np.random.Generator | None, train: bool) -> np.ndarray:
        _need_rng(rng, train, "segments")
        bounds = np.linspace(0.0, float(num_frames), self.num + 1)
        parts = []
        for k in range(self.num):
            start, stop = bounds[k], bounds[k + 1]
            if self.frames_per_segment == 1:
                if train:
                    # a random frame index inside the segment (floor of a uniform position)
                    position = np.floor(rng.uniform(start, stop)) if stop > start else start  # type: ignore[union-attr]
                else:
                    position = np.floor((start + stop) / 2.0)
                parts.append(np.array([min(position, num_frames - 1)], dtype=np.float64))
            else:
                if train:
                    step = (stop - start) / self.frames_per_segment
                    shift = rng.uniform(-0.5, 0.5) * step  # type: ignore[union-attr]
                    start, stop = start + shift, stop + shift
                parts.append(resize_positions(start, stop, self.frames_per_segment))
        return np.clip(np.concatenate(parts), 0.0, float(num_frames - 1))


@dataclass(frozen=True)
class Stride:
    """Every ``step``-th frame: the clip at a lower frame rate (DSTA-Net's slow-temporal stream
    differences the frames of such a clip). ``floor(T / step)`` frames (at least one); training
    starts at a random phase in ``[0, step)``, evaluation at frame 0."""

    step: int = 2

    def __post_init__(self) -> None:
        if self.step < 1:
            raise ValueError(f"stride.step must be >= 1, got {self.step}")

    def output_length(self, num_frames: int) -> int:
        return max(1, num_frames // self.step)

    def fixed_output(self, input_length: int | None) -> int | None:
        return None if input_length is None else self.output_length(input_length)

    def positions(self, num_frames: int, rng: np.random.Generator | None, train: bool) -> np.ndarray:
        _need_rng(rng, train, "stride")
        count = self.output_length(num_frames)
        # phases p with p + step * (count - 1) <= T - 1 keep all count frames inside the clip
        phases = min(self.step, num_frames - self.step * (count - 1))
        phase = int(rng.integers(0, phases)) if train else 0  # type: ignore[union-attr]
        return np.minimum(phase + self.step * np.arange(count, dtype=np.float64), num_frames - 1)


SamplingStep = Cap | Resample | Crop | Segments | Stride

#: config name -> step class (``sampling: [{resample: {length: 150}}, {crop: {length: 128}}]``)
STEP_TYPES: dict[str, type] = {
    "cap": Cap,
    "resample": Resample,
    "crop": Crop,
    "segments": Segments,
    "stride": Stride,
}


def _step_from_config(item: Any) -> SamplingStep:
    if not isinstance(item, Mapping) or len(item) != 1:
        raise ValueError(f"a sampling step is a one-key mapping like {{resample: {{length: 64}}}}, got {item!r}")
    ((name, options),) = item.items()
    if name not in STEP_TYPES:
        raise ValueError(f"unknown sampling step {name!r}; known: {sorted(STEP_TYPES)}")
    options = dict(options or {})
    cls = STEP_TYPES[name]
    known = set(cls.__dataclass_fields__)
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)} for sampling step {name!r}; known: {sorted(known)}")
    if options.get("ratio") is not None:
        options["ratio"] = tuple(float(v) for v in options["ratio"])
    return cls(**options)


@dataclass(frozen=True)
class SamplingPipeline:
    """Temporal sampling as a list of steps applied in order (resample -> crop -> segments).

    Every step sees the previous step's output frames; each one draws its randomness from the
    sample's generator in training and is deterministic in evaluation. All streams of a sample get
    the same frames (one set of positions per step).
    """

    steps: tuple[SamplingStep, ...] = ()

    @classmethod
    def from_config(cls, config: Sequence[Any]) -> SamplingPipeline:
        return cls(tuple(_step_from_config(item) for item in config))

    @property
    def fixed_length(self) -> int | None:
        """The output length when every sample gets the same one (else None)."""
        length: int | None = None
        for step in self.steps:
            length = step.fixed_output(length)
        return length

    def output_length(self, num_frames: int) -> int:
        for step in self.steps:
            num_frames = step.output_length(num_frames)
        return num_frames

    def apply(
        self,
        streams: Mapping[str, np.ndarray],
        rng: np.random.Generator | None,
        train: bool,
    ) -> dict[str, np.ndarray]:
        """Run every step on every stream of one sample (same positions for all streams)."""
        lengths = {name: a.shape[1] for name, a in streams.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"streams of one sample disagree on their frame count: {lengths}")
        out = dict(streams)
        num_frames = next(iter(lengths.values()))
        if num_frames < 1:
            raise ValueError("cannot sample a sequence with no frames")
        if not self.steps:
            return {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in out.items()}
        for step in self.steps:
            positions = step.positions(num_frames, rng, train)
            out = {name: interpolate_frames(a, positions) for name, a in out.items()}
            num_frames = len(positions)
        return out


Sampling = TemporalSampling | SamplingPipeline


def sampling_from_config(config: Mapping[str, Any] | Sequence[Any] | None) -> Sampling:
    """``{mode: ...}`` (or null) gives a :class:`TemporalSampling`; a list of steps a :class:`SamplingPipeline`."""
    if isinstance(config, Sequence) and not isinstance(config, str):
        return SamplingPipeline.from_config(config)
    if config is None or isinstance(config, Mapping):
        return TemporalSampling.from_config(config)
    raise ValueError(f"data.sampling must be a mapping with mode, or a list of steps; got {config!r}")


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


#: what to do with a sample that has more bodies (or views) than the batch holds
TRUNCATION_POLICIES = ("error", "keep_first")


def pad_bodies(x: np.ndarray, num_bodies: int, policy: str = "error") -> np.ndarray:
    """Zero-pad ``x`` (M, T, V, C) to exactly ``num_bodies`` bodies.

    A sample with more bodies is an error unless ``policy="keep_first"``, which keeps the first
    ones (the prepare pipeline orders bodies by importance, so that keeps the main actors). The
    dataset decides this for the whole split up front and logs how many samples it cuts.
    """
    if policy not in TRUNCATION_POLICIES:
        raise ValueError(f"bodies_policy must be one of {TRUNCATION_POLICIES}, got {policy!r}")
    m = x.shape[0]
    if m == num_bodies:
        return x
    if m > num_bodies:
        if policy == "error":
            raise ValueError(f"sample has {m} bodies but the batch holds {num_bodies} (bodies_policy: error)")
        return np.ascontiguousarray(x[:num_bodies])
    pad = np.zeros((num_bodies - m, *x.shape[1:]), dtype=x.dtype)
    return np.concatenate([x, pad], axis=0)
