"""Decoupled input streams: joint, bone, fast motion, slow motion (DSTA-Net's four streams).

Every stream has the input's shape (M, T, V, C) and dtype float32, so a model can stack or
swap them freely. Channels ``[:layout.spatial_dims]`` are geometric (differenced); any further
channel (the OpenPose score of 2-D layouts) is a confidence and becomes the *minimum* of the two
confidences involved, so a bone or a displacement is only as trusted as its weakest end.

Missing data never produces a spike: a difference is zero wherever either operand is missing.
For 3-D layouts *missing* is decided per frame (a body's frame with every value zero), because
after centring one joint is legitimately at the origin; for 2-D layouts it is decided per joint
(score <= 0), because OpenPose drops single keypoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from skeleton_attention.skeletons.layouts import JointLayout
from skeleton_attention.skeletons.normalize import frame_valid_mask, joint_valid_mask

STREAM_NAMES: tuple[str, ...] = ("joint", "bone", "motion_fast", "motion_slow")


def valid_mask(coords: np.ndarray, layout: JointLayout | None = None) -> np.ndarray:
    """(M, T, V) bool presence mask used by the streams (see the module docstring)."""
    x = np.asarray(coords)
    if layout is not None and layout.spatial_dims < x.shape[-1]:
        # a confidence channel exists: trust it per joint
        return joint_valid_mask(x, score_channel=layout.spatial_dims)
    frame = frame_valid_mask(x, spatial_dims=x.shape[-1])
    return np.broadcast_to(frame[:, :, None], x.shape[:3]).copy()


def _spatial_dims(coords: np.ndarray, layout: JointLayout | None) -> int:
    return coords.shape[-1] if layout is None else min(layout.spatial_dims, coords.shape[-1])


def _combine(a: np.ndarray, b: np.ndarray, ok: np.ndarray, dims: int) -> np.ndarray:
    """``a - b`` on the geometric channels, ``min(a, b)`` on the rest, zero where not ``ok``."""
    if dims >= a.shape[-1]:  # geometric channels only (3-D data): one subtraction, no channel slices
        out = np.subtract(a, b, dtype=np.float32)
    else:
        out = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.float32)
        out[..., :dims] = a[..., :dims] - b[..., :dims]
        out[..., dims:] = np.minimum(a[..., dims:], b[..., dims:])
    out[~ok] = 0.0
    return out


def joint(coords: np.ndarray) -> np.ndarray:
    """The joint stream: the coordinates themselves (a float32 copy)."""
    return np.array(coords, dtype=np.float32, copy=True)


def bone(coords: np.ndarray, layout: JointLayout, valid: np.ndarray | None = None) -> np.ndarray:
    """Bone vectors: joint minus its parent along ``layout.parents``; the root's bone is zero.

    Zero where the joint or its parent is missing. For 2-D layouts the score channel is
    ``min(score_child, score_parent)`` (the root keeps its own score, min over its self-loop).
    """
    x = np.asarray(coords, dtype=np.float32)
    if x.shape[2] != layout.num_joints:
        raise ValueError(f"layout {layout.name} has {layout.num_joints} joints, coords have {x.shape[2]}")
    ok = valid_mask(x, layout) if valid is None else np.asarray(valid, dtype=bool)
    parents = layout.parent_index()
    return _combine(x, x[:, :, parents], ok & ok[:, :, parents], _spatial_dims(x, layout))


def _motion(coords: np.ndarray, step: int, layout: JointLayout | None, valid: np.ndarray | None) -> np.ndarray:
    x = np.asarray(coords, dtype=np.float32)
    ok = valid_mask(x, layout) if valid is None else np.asarray(valid, dtype=bool)
    out = np.zeros_like(x)
    if x.shape[1] > step:
        both = ok[:, step:] & ok[:, :-step]
        out[:, :-step] = _combine(x[:, step:], x[:, :-step], both, _spatial_dims(x, layout))
    return out


def motion_fast(coords: np.ndarray, layout: JointLayout | None = None, valid: np.ndarray | None = None) -> np.ndarray:
    """Fast temporal stream ``x[t+1] - x[t]``; the last frame is zero.

    This is also SAN's *velocity* input (Cho et al. feed position and velocity = first
    difference). Zero wherever frame t or t+1 is missing. Without ``layout`` every channel is
    treated as geometric and presence is decided per frame.
    """
    return _motion(coords, 1, layout, valid)


def motion_slow(coords: np.ndarray, layout: JointLayout | None = None, valid: np.ndarray | None = None) -> np.ndarray:
    """Slow temporal stream ``x[t+2] - x[t]``; the last two frames are zero.

    DSTA-Net's slow stream subsamples every second frame and then differences. Here the
    output keeps T frames so all streams share one shape: ``motion_slow(x)[::2]`` equals
    ``motion_fast(x[::2])`` (the subsample-then-difference of the even phase, same zero at its
    end) and ``motion_slow(x)[1::2]`` is the same for the odd phase.
    """
    return _motion(coords, 2, layout, valid)


_STREAMS: dict[str, Callable[[np.ndarray, JointLayout, np.ndarray], np.ndarray]] = {
    # np.where already returns a new float32 array: no second copy
    "joint": lambda x, layout, ok: np.where(ok[..., None], x, np.float32(0.0)),
    "bone": lambda x, layout, ok: bone(x, layout, ok),
    "motion_fast": lambda x, layout, ok: motion_fast(x, layout, ok),
    "motion_slow": lambda x, layout, ok: motion_slow(x, layout, ok),
}


def compute_streams(
    coords: np.ndarray, layout: JointLayout, names: Iterable[str] = STREAM_NAMES
) -> dict[str, np.ndarray]:
    """The named streams of one sample, each float32 with the input's shape.

    The joint stream is the input with missing joints set to zero (for 2-D layouts a
    keypoint with score 0 may carry stray coordinates; for 3-D data it is the input unchanged).
    """
    x = np.asarray(coords, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"coords must be (M, T, V, C), got shape {x.shape}")
    ok = valid_mask(x, layout)
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name not in _STREAMS:
            raise ValueError(f"unknown stream {name!r}; known: {list(_STREAMS)}")
        out[name] = _STREAMS[name](x, layout, ok).astype(np.float32, copy=False)
    return out


def compute_streams_many(
    samples: Sequence[np.ndarray], layout: JointLayout, names: Iterable[str] = STREAM_NAMES
) -> list[dict[str, np.ndarray]]:
    """:func:`compute_streams` of many samples of one layout with one set of numpy calls.

    At NTU's size a sample's streams are a few dozen small numpy calls, so their fixed cost, not
    the arithmetic, set the time (docs/performance.md). Here every body's frames of every sample
    are stacked into one (sum of M*T, V, C) array and each stream is computed on it once. Every
    stream value is an element-wise function of one or two input values (a difference, a minimum,
    a mask), so each comes out bit for bit as :func:`compute_streams` computes it; a motion
    difference that would cross from one body's (or sample's) last frames into the next one's
    first frames is set to zero, as the per-sample version's trailing frames are. The returned
    arrays are views into one buffer per stream, shaped like their sample.
    """
    names = tuple(names)
    for name in names:
        if name not in _STREAMS:
            raise ValueError(f"unknown stream {name!r}; known: {list(_STREAMS)}")
    arrays = [np.asarray(c, dtype=np.float32) for c in samples]
    for index, x in enumerate(arrays):
        if x.ndim != 4:
            raise ValueError(f"sample {index}: coords must be (M, T, V, C), got shape {x.shape}")
        if x.shape[2:] != arrays[0].shape[2:]:
            raise ValueError(f"sample {index}: joints and channels {x.shape[2:]} differ from {arrays[0].shape[2:]}")
    if not arrays:
        return []
    # rows = (sample, body, frame); a body's frames are contiguous, as in the sample's own layout
    stacked = np.concatenate([x.reshape(-1, *x.shape[2:]) for x in arrays])[None]
    ok = valid_mask(stacked, layout)
    bounds = np.cumsum([0] + [x.shape[0] * x.shape[1] for x in arrays])
    ends = np.concatenate(
        [np.arange(x.shape[0]) * x.shape[1] + x.shape[1] + start for x, start in zip(arrays, bounds[:-1], strict=True)]
    )
    if layout.spatial_dims >= stacked.shape[-1]:
        # presence is decided per frame (module docstring): whole rows of V * C values are kept or
        # zeroed, which numpy does far faster than masks broadcast over a last axis of 3
        streams = _frame_masked_streams(stacked[0], ok[0, :, 0], layout, names, ends, arrays)
        return [
            {name: streams[name][bounds[i] : bounds[i + 1]].reshape(x.shape) for name in names}
            for i, x in enumerate(arrays)
        ]
    out = {}
    for name in names:
        stream = _STREAMS[name](stacked, layout, ok).astype(np.float32, copy=False)
        if name in _MOTION_STEPS:
            step = _MOTION_STEPS[name]
            # the last ``step`` frames of each body have no partner frame in the same body
            rows = (ends[:, None] - np.arange(1, step + 1)[None, :]).reshape(-1)
            starts = np.repeat(ends - np.repeat([x.shape[1] for x in arrays], [x.shape[0] for x in arrays]), step)
            stream[0, rows[rows >= starts]] = 0.0
        out[name] = stream[0]
    return [
        {name: out[name][bounds[i] : bounds[i + 1]].reshape(x.shape) for name in names} for i, x in enumerate(arrays)
    ]


#: the frame step of each motion stream (compute_streams_many zeroes a body's last ``step`` frames)
_MOTION_STEPS: dict[str, int] = {"motion_fast": 1, "motion_slow": 2}


def _frame_masked_streams(
    rows: np.ndarray,
    frame_ok: np.ndarray,
    layout: JointLayout,
    names: tuple[str, ...],
    ends: np.ndarray,
    arrays: Sequence[np.ndarray],
) -> dict[str, np.ndarray]:
    """The streams of stacked (R, V, C) frames whose presence is per frame (``frame_ok``, (R,)).

    The same element-wise operations as ``_STREAMS`` (a float32 difference, or the value itself, and
    +0.0 where a frame is missing), on (R, V * C) rows.
    """
    count, joints, channels = rows.shape
    flat = rows.reshape(count, joints * channels)
    lengths = np.repeat([x.shape[1] for x in arrays], [x.shape[0] for x in arrays])
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "joint":
            stream = flat.copy()
            stream[~frame_ok] = 0.0
        elif name == "bone":
            columns = (layout.parent_index()[:, None] * channels + np.arange(channels)).reshape(-1)
            stream = np.subtract(flat, flat[:, columns], dtype=np.float32)
            stream[~frame_ok] = 0.0  # a bone's two joints share their frame: present together
        else:
            step = _MOTION_STEPS[name]
            stream = np.zeros_like(flat)
            if count > step:
                stream[:-step] = np.subtract(flat[step:], flat[:-step], dtype=np.float32)
                stream[:-step][~(frame_ok[step:] & frame_ok[:-step])] = 0.0
            tail = (ends[:, None] - np.arange(1, step + 1)[None, :]).reshape(-1)
            stream[tail[tail >= np.repeat(ends - lengths, step)]] = 0.0
        out[name] = stream.reshape(count, joints, channels)
    return out
