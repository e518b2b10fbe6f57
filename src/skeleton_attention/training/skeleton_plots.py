"""Attention drawn on the skeleton itself (STA-LSTM paper Fig. 5-6): key frames side by side.

Each joint is a circle on the bones of its layout (``skeletons/layouts.py``), its **area** and colour
growing with the joint's spatial attention weight at that frame; under the strip of key frames the
temporal weights are drawn over every frame, the key frames marked on the curve. This reads at a
glance where a heat map of joints x frames (``training/plots.py``) needs a legend of 25-50 row
labels.

Positions are the ``joint`` stream at the frames the model saw (``SkeletonDataset.positions``), in the
prepared table's frame (normalized: the spine along +z, the shoulders along +x, docs/geometry.md).
The drawing plane is chosen from the data, not assumed: the vertical axis is the coordinate along
which the spine (``layout.spine_bottom`` -> ``spine_top``) points, the horizontal one the remaining
coordinate along which the shoulders lie most (a frontal view). So raw camera coordinates (y up),
normalized ones (z up) and image keypoints (y down) all stand upright.

Colour and size share one scale per drawn sequence (0 to its largest weight over the valid frames),
so the key frames of a strip compare with each other. Bodies that are all zeros (padding, or the
absent second person) are not drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from skeleton_attention.models.base import attention_hints
from skeleton_attention.skeletons.layouts import JointLayout

#: marker area (pt^2) at weight 0 and at the sequence's largest weight; the area is linear in weight
MIN_AREA, MAX_AREA = 8.0, 170.0
CMAP = "YlOrRd"


@dataclass(frozen=True)
class Projection:
    """Which coordinates are drawn: ``horizontal`` and ``vertical`` axis indices, and the sign that
    makes the vertical one point up."""

    horizontal: int
    vertical: int
    up: float = 1.0

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(..., C) -> (..., 2) drawing coordinates."""
        return np.stack([points[..., self.horizontal], self.up * points[..., self.vertical]], axis=-1)


@dataclass(frozen=True)
class SkeletonArtists:
    """What :func:`draw_skeleton` added to the axes: one circle per drawn joint, one segment per bone."""

    joints: PathCollection
    bones: LineCollection
    #: (drawn joints, 2) body-major: body b's joint j at row b * V + j among the drawn bodies
    points: np.ndarray


def _present(positions: np.ndarray) -> np.ndarray:
    """(..., V, C) -> (...,) True where the body holds any non-zero coordinate."""
    return np.any(positions != 0, axis=(-1, -2))


def choose_projection(positions: np.ndarray, layout: JointLayout) -> Projection:
    """The drawing plane of a sequence (..., V, C): vertical along the mean spine, horizontal the
    other coordinate along which the shoulders lie most (a frontal view), among the present bodies."""
    dims = min(layout.spatial_dims, positions.shape[-1])
    bodies = positions.reshape(-1, positions.shape[-2], positions.shape[-1])[..., :dims]
    bodies = bodies[_present(bodies)]
    if not len(bodies) or dims < 2:
        return Projection(0, 1 if dims > 1 else 0)
    spine = (bodies[:, layout.spine_top] - bodies[:, layout.spine_bottom]).mean(axis=0)
    if not np.any(spine):
        return Projection(0, 1)
    vertical = int(np.argmax(np.abs(spine)))
    # a frontal view: horizontal along the shoulders (right -> left), else the widest spread
    shoulders = np.abs((bodies[:, layout.left_shoulder] - bodies[:, layout.right_shoulder]).mean(axis=0))
    spread = bodies.reshape(-1, dims).std(axis=0)
    others = [d for d in range(dims) if d != vertical]
    horizontal = max(others, key=lambda d: (shoulders[d], spread[d]))
    return Projection(horizontal, vertical, 1.0 if spine[vertical] > 0 else -1.0)


def draw_skeleton(
    ax: Any,
    positions: np.ndarray,
    layout: JointLayout,
    weights: np.ndarray | None = None,
    *,
    vmax: float | None = None,
    projection: Projection | None = None,
    cmap: str = CMAP,
) -> SkeletonArtists:
    """One frame: the layout's bones as lines, each joint a circle whose area (``MIN_AREA`` to
    ``MAX_AREA``, linear) and colour grow with its weight on the scale 0..``vmax`` (default: the
    largest weight given).

    ``positions`` (V, C) or (M, V, C); ``weights`` None (all joints alike) or M * V values in the
    same order (e.g. one frame of a (T, M*V) spatial map). A wrong joint count, a weight vector of
    the wrong length or a negative weight is an error.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim == 2:
        positions = positions[None]
    if positions.ndim != 3 or positions.shape[1] != layout.num_joints:
        raise ValueError(
            f"positions {positions.shape} do not hold the {layout.num_joints} joints of layout {layout.name!r}"
        )
    m, v = positions.shape[:2]
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.size != m * v:
            raise ValueError(
                f"{weights.size} weights for {m} x {v} joints of layout {layout.name!r}: "
                "the spatial attention map does not match the skeleton"
            )
        weights = weights.reshape(m, v)
        if np.any(weights[np.isfinite(weights)] < 0):
            raise ValueError("spatial attention weights must be >= 0 to be drawn as circle areas")
    projection = projection or choose_projection(positions, layout)
    keep = _present(positions)
    points = projection.apply(positions[keep]).reshape(-1, 2)
    segments = [
        projection.apply(np.stack([positions[b, child], positions[b, parent]]))
        for b in np.flatnonzero(keep)
        for child, parent in layout.bones
    ]
    bones = LineCollection(segments, colors="0.35", linewidths=1.6, zorder=1)
    ax.add_collection(bones)
    if weights is None:
        drawn = np.zeros(len(points))
        top = 1.0
    else:
        drawn = np.nan_to_num(weights[keep].reshape(-1), nan=0.0)
        top = float(vmax) if vmax is not None else float(drawn.max(initial=0.0))
    scale = np.clip(drawn / top, 0.0, 1.0) if top > 0 else np.zeros_like(drawn)
    sizes = MIN_AREA + (MAX_AREA - MIN_AREA) * scale
    colours = colormaps[cmap](Normalize(0.0, 1.0)(scale)) if weights is not None else "0.55"
    joints = ax.scatter(points[:, 0], points[:, 1], s=sizes, c=colours, edgecolors="0.15", linewidths=0.6, zorder=2)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    return SkeletonArtists(joints=joints, bones=bones, points=points)


def _frame_limits(
    positions: np.ndarray, projection: Projection
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Shared x and y limits of every present body of (M, T, V, C), padded (None: nothing present)."""
    bodies = positions.reshape(-1, *positions.shape[-2:])
    points = projection.apply(bodies[_present(bodies)]).reshape(-1, 2)
    if not len(points):
        return None
    low, high = points.min(axis=0), points.max(axis=0)
    pad = 0.08 * float(max(high - low)) + 1e-6
    return (low[0] - pad, high[0] + pad), (low[1] - pad, high[1] + pad)


def _set_limits(ax: Any, limits: tuple[tuple[float, float], tuple[float, float]] | None) -> None:
    if limits is not None:
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])


def key_frames(length: int, count: int) -> np.ndarray:
    """``count`` frames evenly spread over ``length`` valid frames, first and last included (0-based)."""
    if length < 1:
        raise ValueError("a sequence needs at least one valid frame")
    return np.unique(np.linspace(0, length - 1, min(count, length)).round().astype(int))


@dataclass(frozen=True)
class _Track:
    """One strip of the figure: a sequence of skeletons with its spatial and temporal weights."""

    title: str
    positions: np.ndarray  # (M, T, V, C)
    spatial: np.ndarray | None  # (T, M*V)
    spatial_name: str
    temporal: np.ndarray | None  # (T,) or (T, S)
    temporal_name: str
    temporal_hint: Mapping[str, Any]
    length: int


def _temporal_for(
    maps: Mapping[str, np.ndarray], hints: Mapping[str, Mapping[str, Any]], view: int | None, num_views: int
) -> tuple[np.ndarray | None, str, dict[str, Any]]:
    """The frame weights belonging to a track: a (T,) map, or column ``view`` of a (T, views) one."""
    for name in sorted(maps):
        att = np.asarray(maps[name], dtype=np.float64)
        kind = hints.get(name, {}).get("kind", "frames" if att.ndim == 1 else None)
        if kind != "frames":
            continue
        hint = dict(hints.get(name, {}))
        if att.ndim == 2 and view is not None and att.shape[1] == num_views:
            labels = list(hint.get("labels") or [])
            return att[:, view], f"{name} ({labels[view] if view < len(labels) else f'view {view + 1}'})", {}
        return att, name, hint
    return None, "", {}


def _tracks(sample: Mapping[str, Any]) -> list[_Track]:
    """A sample's strips: one per spatial ("joints") map, on the positions of its view; with no
    spatial map, one per present view, the bare skeletons under the temporal weights."""
    maps = {name: np.asarray(a, dtype=np.float64) for name, a in (sample.get("attention") or {}).items()}
    hints = attention_hints(sample.get("kinds"))
    positions = np.asarray(sample["positions"], dtype=np.float64)
    multi = positions.ndim == 5
    views = positions if multi else positions[None]
    length = int(sample.get("length") or views.shape[2])
    title = str(sample.get("title", ""))
    joint_maps = [
        name
        for name in sorted(maps)
        if hints.get(name, {}).get("kind", "joints" if maps[name].ndim >= 2 else "frames") == "joints"
        and maps[name].ndim >= 2
        and _per_joint(name)
    ]
    tracks = []
    for name in joint_maps:
        view = hints.get(name, {}).get("view")
        index = int(view) if view is not None else 0
        att = maps[name].reshape(maps[name].shape[0], -1)
        temporal, t_name, t_hint = _temporal_for(maps, hints, index if multi else None, len(views))
        tracks.append(_Track(title, views[index], att, name, temporal, t_name, t_hint, length))
    if not tracks:
        for index in np.flatnonzero(_present(views.reshape(len(views), -1, *views.shape[-2:])).any(axis=1)):
            temporal, t_name, t_hint = _temporal_for(maps, hints, int(index) if multi else None, len(views))
            label = f"{title} (view {index + 1})" if multi else title
            tracks.append(_Track(label, views[index], None, "", temporal, t_name, t_hint, length))
    return tracks


def _per_joint(name: str) -> bool:
    """Pairwise maps (``[joints x joints]``) and self-attention are not per-joint weights of a frame."""
    return not name.endswith("]") and "self_attention" not in name


def _draw_track(fig: Any, track: _Track, layout: JointLayout, count: int) -> None:
    """Key frames in a row with a colour bar, the temporal weights under them."""
    length = min(track.length, track.positions.shape[1])
    frames = key_frames(length, count)
    # the temporal strip only when there are temporal weights (SAN, DSTA-Net: key frames alone)
    strip_rows = [1.25] if track.temporal is not None else []
    grid = fig.add_gridspec(
        1 + len(strip_rows),
        len(frames) + 1,
        height_ratios=[3.0, *strip_rows],
        width_ratios=[1.0] * len(frames) + [0.08],
    )
    positions = track.positions[:, :length]
    projection = choose_projection(positions, layout)
    limits = _frame_limits(positions, projection)
    spatial = track.spatial[:length] if track.spatial is not None else None
    if spatial is not None and not np.isfinite(spatial).any():
        spatial = None  # an absent view: its skeleton is zeros too
    vmax = float(np.nanmax(spatial)) if spatial is not None else None
    for k, frame in enumerate(frames):
        ax = fig.add_subplot(grid[0, k])
        weights = spatial[frame] if spatial is not None else None
        draw_skeleton(ax, positions[:, frame], layout, weights, vmax=vmax, projection=projection)
        _set_limits(ax, limits)
        ax.set_title(f"frame {frame + 1}", fontsize=9)
    bar = fig.add_subplot(grid[0, -1])
    if spatial is not None:
        fig.colorbar(ScalarMappable(Normalize(0.0, vmax), cmap=CMAP), cax=bar)
        bar.set_ylabel(f"{track.spatial_name} weight", fontsize=8)
        bar.tick_params(labelsize=7)
    else:
        bar.set_axis_off()
    if strip_rows:
        _draw_temporal(fig.add_subplot(grid[1, :-1]), track, frames, length)
    if spatial is not None:
        what = f"{track.spatial_name} (circle area and colour)"
    else:
        what = "absent view" if limits is None else "no per-joint attention"
    fig.suptitle(f"{track.title}\n{what}", fontsize=9)


def _draw_temporal(ax: Any, track: _Track, frames: np.ndarray, length: int) -> None:
    """The temporal weights over every valid frame, the key frames marked."""
    x = np.arange(1, length + 1)
    assert track.temporal is not None
    att = track.temporal[:length]
    if att.ndim == 1:
        ax.plot(x, att, color="tab:blue", linewidth=1.3)
        ax.scatter(frames + 1, att[frames], color="tab:red", s=18, zorder=3)
    else:
        labels = list(track.temporal_hint.get("labels") or [])
        for j in range(att.shape[1]):
            ax.plot(x, att[:, j], linewidth=1.1, label=labels[j] if j < len(labels) else f"series {j + 1}")
        ax.legend(fontsize=7, ncols=min(att.shape[1], 4), loc="best")
    ax.set_ylabel(str(track.temporal_hint.get("ylabel") or track.temporal_name), fontsize=8)
    for frame in frames:
        ax.axvline(frame + 1, color="0.6", linestyle="--", linewidth=0.7)
    ax.set_xlim(0.5, length + 0.5)
    ax.set_xlabel("frame", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def plot_skeleton_attention(
    samples: Sequence[Mapping[str, Any]],
    layout: JointLayout | None,
    *,
    key_frame_count: int = 5,
    max_tracks: int = 4,
) -> Figure:
    """Attention on the skeleton for a few test samples: per sample (and per view of a multi-view
    sample), a strip of ``key_frame_count`` key frames with the temporal weights under it.

    Each sample is the record of ``training_common.evaluate_model`` (``attention``, ``kinds``,
    ``length``, ``title``) with ``positions`` (M, T, V, C) or (views, M, T, V, C). At most
    ``max_tracks`` strips are drawn (the figure stays readable at the logged size); samples without
    ``positions`` are skipped. Without a layout (a data set whose joints the project does not know)
    the figure says so.
    """
    tracks = [t for s in samples if "positions" in s for t in _tracks(s)][:max_tracks]
    if layout is None or not tracks:
        fig = Figure(figsize=(6.0, 2.0), layout="constrained")
        ax = fig.subplots()
        reason = "no joint layout known for this data set" if layout is None else "no sample with joint positions"
        ax.text(0.5, 0.5, f"skeleton attention: {reason}", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    count = max(1, int(key_frame_count))
    heights = [3.9 if t.temporal is not None else 2.8 for t in tracks]
    fig = Figure(figsize=(1.9 * count + 0.9, sum(heights)), layout="constrained")
    subfigures = fig.subfigures(len(tracks), 1, height_ratios=heights)
    for sub, track in zip(np.atleast_1d(subfigures), tracks, strict=True):
        _draw_track(sub, track, layout, count)
    return fig


def plot_skeleton_sequence(
    positions: np.ndarray,
    layout: JointLayout,
    *,
    key_frame_count: int = 6,
    title: str = "",
    view_names: Sequence[str] | None = None,
) -> Figure:
    """Key frames of one recording, no attention: (M, T, V, C) in one row, or (views, M, T, V, C)
    one row per view (an absent view, all zeros, is marked). Each row's frames share its axes."""
    positions = np.asarray(positions, dtype=np.float64)
    views = positions if positions.ndim == 5 else positions[None]
    if views.ndim != 5:
        raise ValueError(f"positions must be (M, T, V, C) or (views, M, T, V, C), got {positions.shape}")
    default = [f"view {k + 1}" for k in range(len(views))] if positions.ndim == 5 else [""]
    names = list(view_names or default)
    count = max(1, int(key_frame_count))
    fig = Figure(figsize=(1.7 * count + 0.6, 2.7 * len(views) + 0.4), layout="constrained")
    if title:
        fig.suptitle(title, fontsize=10)
    grid = fig.add_gridspec(len(views), count)
    for row, view in enumerate(views):
        present = _present(view.transpose(1, 0, 2, 3)).any(axis=1)  # frames holding any body
        length = int(np.flatnonzero(present).max()) + 1 if present.any() else 0
        if length == 0:
            ax = fig.add_subplot(grid[row, :])
            ax.text(0.5, 0.5, f"{names[row]}: absent", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        projection = choose_projection(view[:, :length], layout)
        limits = _frame_limits(view[:, :length], projection)
        for k, frame in enumerate(key_frames(length, count)):
            ax = fig.add_subplot(grid[row, k])
            draw_skeleton(ax, view[:, frame], layout, projection=projection)
            _set_limits(ax, limits)
            ax.set_title(
                f"{names[row]}, frame {frame + 1}" if k == 0 and names[row] else f"frame {frame + 1}", fontsize=8
            )
    return fig
