"""Figures for a training run: curves, confusion matrix, attention maps (matplotlib, no pyplot state).

Figures are built with ``matplotlib.figure.Figure`` directly (Agg rendering, no GUI backend, no
global pyplot state), so they are safe in worker threads and headless CI. Kedro's
``matplotlib.MatplotlibDataset`` saves them.

Attention maps follow the model contract: per sample, time is the first axis — ``(T,)`` for a
temporal attention (one weight per frame), ``(T, J)`` or ``(T, M, V)`` for a spatial one (one
weight per joint and frame). Spatial maps are drawn as joints x frames heat maps (paper Fig. 6);
temporal ones as a curve of beta_t with its increment beta_t - beta_{t-1} (paper Fig. 5b/c).
A model may declare each map's kind (``SkeletonModel.attention_kinds``): ``frames`` maps with several
series (T, S) are one curve per series, ``views`` maps (views,) a bar per view and, over every test
sample, the distribution per view slot.
A map whose name contains ``self_attention`` and whose per-sample shape is ``(H, T, T)`` or
``(T, T)`` is a frames x frames self-attention (query frame x key frame, one per head, SAN Fig. 5):
its heads are tiled into one panel.

Pairwise maps (relations between elements, e.g. DSTA-Net's joints x joints and frames x frames
attention) are named with a suffix ``[joints x joints]`` or ``[frames x frames]``
(:data:`PAIRWISE_SUFFIXES`): they are drawn as square matrices (row element attends to column
element) on a colour scale symmetric about zero, since tanh attention can be negative.
A declared kind may be a hint dict (``models.base.attention_hints``): ``{"kind": "frames",
"labels": [...], "ylabel": ...}`` draws a ``(T, k)`` map as k labelled curves over the frames (e.g.
MANs' frame weights, one per coordinate TARM). The same maps drawn on the skeleton itself are in
``training/skeleton_plots.py``.

Labels are sized for the logged figure (``save_args: {dpi: 110}``, catalog_train.yml): tick labels
are never below 6 pt, and a panel grows with the number of joints it labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from skeleton_attention.models.base import attention_hints

#: the smallest tick label, in points: 6 pt is 9 px at the logged 110 dpi
MIN_FONT = 6.0


def plot_training_curves(
    history: Sequence[Mapping[str, Any]], monitor: str = "val_acc", best_epoch: int | None = None
) -> Figure:
    """Loss, accuracy and learning rate per epoch; phase changes dashed; the selected epoch
    (``best_epoch``, else the best ``monitor`` value) marked."""
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    if not history:
        for ax in axes:
            ax.text(0.5, 0.5, "no epochs", ha="center", va="center", transform=ax.transAxes)
        return fig
    epochs = np.array([h["epoch"] for h in history])

    def series(key: str) -> np.ndarray | None:
        values = [h.get(key) for h in history]
        if all(v is None for v in values):
            return None
        return np.array([np.nan if v is None else float(v) for v in values])

    for ax, (title, keys) in zip(
        axes[:2],
        (
            ("loss", ("train_loss", "train_ce", "val_loss", "val_ce")),
            ("accuracy", ("train_acc", "val_acc", "val_top5")),
        ),
        strict=True,
    ):
        for key in keys:
            values = series(key)
            if values is not None:
                ax.plot(epochs, values, marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    lr = series("lr")
    if lr is not None:
        axes[2].plot(epochs, lr, marker="o", markersize=3, color="tab:purple")
        if np.all(lr > 0):
            axes[2].set_yscale("log")
    axes[2].set_title("learning rate")
    axes[2].set_xlabel("epoch")
    axes[2].grid(alpha=0.3)
    phases = [h.get("phase_index", 0) for h in history]
    for i in range(1, len(history)):
        if phases[i] != phases[i - 1]:
            for ax in axes:
                ax.axvline(epochs[i] - 0.5, color="grey", linestyle="--", linewidth=0.8)
    monitored = series(monitor)
    lossy = "loss" in monitor or monitor.endswith("_ce")  # drawn on the loss panel, lower is better
    if monitored is not None and np.isfinite(monitored).any():
        if best_epoch is None:
            best = int(np.nanargmin(monitored)) if lossy else int(np.nanargmax(monitored))
        else:
            matches = np.flatnonzero(epochs == best_epoch)
            best = int(matches[0]) if matches.size else None
        if best is not None:
            target = axes[0] if lossy else axes[1]
            target.axvline(epochs[best], color="tab:green", linewidth=1.0, alpha=0.7)
            target.annotate(
                f"selected: epoch {epochs[best]}\n{monitor} {monitored[best]:.3f}",
                (epochs[best], monitored[best]),
                fontsize=7,
                xytext=(4, -20),
                textcoords="offset points",
                color="tab:green",
            )
    return fig


def plot_confusion_matrix(
    cm: np.ndarray, class_names: Sequence[str], normalize: bool = True, title: str = "confusion matrix (test)"
) -> Figure:
    """Rows = true class, columns = predicted; row-normalized (recall) by default."""
    cm = np.asarray(cm, dtype=np.float64)
    c = cm.shape[0]
    if cm.shape != (c, c) or len(class_names) != c:
        raise ValueError(f"confusion matrix {cm.shape} and {len(class_names)} class names disagree")
    if normalize:
        support = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    size = float(np.clip(0.16 * c + 3.0, 4.0, 22.0))
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(cm, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "count")
    font = float(np.clip(180.0 / max(c, 1), 3.0, 9.0))
    ax.set_xticks(range(c))
    ax.set_yticks(range(c))
    ax.set_xticklabels(class_names, rotation=90, fontsize=font)
    ax.set_yticklabels(class_names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if c <= 20:
        for i in range(c):
            for j in range(c):
                if cm[i, j] > 0:
                    ax.text(
                        j,
                        i,
                        f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if cm[i, j] > 0.5 * max(cm.max(), 1e-9) else "black",
                    )
    return fig


def _joint_labels(num_rows: int, joint_names: Sequence[str] | None) -> list[str] | None:
    """Row labels of a spatial map: joint names, prefixed by the body when several bodies are stacked."""
    if not joint_names:
        return None
    v = len(joint_names)
    if num_rows == v:
        return list(joint_names)
    if num_rows % v == 0:
        return [f"b{m + 1}:{name}" for m in range(num_rows // v) for name in joint_names]
    return None


def _draw_curves(ax: Any, att: np.ndarray, name: str, hint: Mapping[str, Any] | None = None) -> None:
    """A "frames" map: one curve per series (T, S) with its label (hint ``labels``, else "series
    k"), or the curve of a (T,) map with its increments (STA-LSTM's beta_t and Delta beta_t, paper
    Fig. 5b/c)."""
    hint = hint or {}
    frames = np.arange(1, att.shape[0] + 1)
    if att.ndim == 1:
        ax.plot(frames, att, color="tab:blue", label=f"{name} β_t")
        ax.plot(frames[1:], np.diff(att), color="tab:orange", linewidth=0.8, label="Δβ_t")
    else:
        labels = list(hint.get("labels") or [])
        for k in range(att.shape[1]):
            if np.isfinite(att[:, k]).any():  # an absent view (NaN) draws nothing
                ax.plot(frames, att[:, k], linewidth=1.0, label=labels[k] if k < len(labels) else f"series {k + 1}")
    if hint.get("ylabel"):
        ax.set_ylabel(str(hint["ylabel"]), fontsize=8)
    ax.set_xlabel("frame")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _draw_views(ax: Any, weights: np.ndarray) -> None:
    """A "views" map of one sample: a bar per view slot with its weight; an absent view is marked."""
    weights = weights.reshape(-1)
    slots = np.arange(1, weights.shape[0] + 1)
    present = np.isfinite(weights)
    ax.bar(slots[present], weights[present], color="tab:blue")
    for k, w in zip(slots, weights, strict=True):
        ax.text(
            k,
            (w if np.isfinite(w) else 0.0) + 0.02,
            f"{w:.2f}" if np.isfinite(w) else "absent",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(slots)
    ax.set_xticklabels([f"view {k}" for k in slots])
    ax.set_ylim(0.0, 1.1)
    ax.set_ylabel("weight")
    ax.grid(alpha=0.3, axis="y")


def _draw_distribution(ax: Any, maps: np.ndarray, name: str, title: str) -> None:
    """Every sample's "views" weights: a box per view slot over the samples where the view is
    present, the samples as dots, the mean as a diamond; the uniform weight 1/slots dashed."""
    maps = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    slots = np.arange(1, maps.shape[1] + 1)
    columns = [maps[np.isfinite(maps[:, k]), k] for k in range(maps.shape[1])]
    shown = [k for k, col in enumerate(columns) if col.size]
    if shown:
        ax.boxplot([columns[k] for k in shown], positions=slots[shown], widths=0.5, showfliers=False)
        rng = np.random.default_rng(0)
        for k in shown:
            col = columns[k]
            ax.scatter(slots[k] + rng.uniform(-0.18, 0.18, col.size), col, s=6, alpha=0.35, color="tab:blue")
            ax.scatter([slots[k]], [col.mean()], marker="D", color="tab:red", zorder=3)
    ax.axhline(1.0 / maps.shape[1], color="grey", linestyle="--", linewidth=0.8, label=f"uniform 1/{maps.shape[1]}")
    ax.set_xticks(slots)
    ax.set_xticklabels(
        [
            f"view {k}\n(n={columns[k - 1].size}, mean {columns[k - 1].mean():.2f})"
            if columns[k - 1].size
            else f"view {k}\n(never present)"
            for k in slots
        ]
    )
    ax.set_xlim(0.4, maps.shape[1] + 0.6)
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel(f"{name} weight")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(f"{title}: {name} weights per view", fontsize=9)


def _kind(name: str, att: np.ndarray, hints: Mapping[str, Mapping[str, Any]]) -> str:
    """The declared kind of a map, else its shape's: 1-D (or one column) frames, else joints."""
    if name in hints:
        return str(hints[name]["kind"])
    return "frames" if att.ndim == 1 else "joints"


def is_self_attention(name: str, att: np.ndarray) -> bool:
    """A frames x frames map: named ``*self_attention*``, per sample ``(H, T, T)`` or ``(T, T)``."""
    return "self_attention" in name and att.ndim in (2, 3) and att.shape[-1] == att.shape[-2]


def _draw_self_attention(fig: Figure, ax: Any, att: np.ndarray, length: int) -> None:
    """Heads tiled (about 1.7 times as many columns as rows, the panel's shape) as query frame x key
    frame heat maps, cut to the valid frames."""
    att = att[None] if att.ndim == 2 else att
    if 0 < length < att.shape[-1]:
        att = att[:, :length, :length]
    heads, t = att.shape[0], att.shape[-1]
    cols = min(heads, max(1, round(np.sqrt(1.7 * heads))))
    rows = -(-heads // cols)
    gap = max(1, t // 16)
    mosaic = np.full((rows * (t + gap) - gap, cols * (t + gap) - gap), np.nan)
    for k in range(heads):
        r, c = divmod(k, cols)
        mosaic[r * (t + gap) : r * (t + gap) + t, c * (t + gap) : c * (t + gap) + t] = att[k]
    finite = mosaic[np.isfinite(mosaic)]
    # the 99.5th percentile keeps one very sharp head from washing out the others
    vmax = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    image = ax.imshow(mosaic, cmap="magma", interpolation="nearest", vmin=0.0, vmax=max(vmax, 1e-9))
    fig.colorbar(image, ax=ax, shrink=0.9, label="attention probability")
    for k in range(heads):
        r, c = divmod(k, cols)
        ax.text(c * (t + gap) + 0.5, r * (t + gap) + 0.5, f"h{k + 1}", color="white", fontsize=7, va="top")
    # frame numbers 1, middle, t on the first head row and column (every head has the same frames)
    ticks = sorted({0, (t - 1) // 2, t - 1})
    ax.set_xticks([c * (t + gap) + k for c in range(cols) for k in ticks])
    ax.set_xticklabels([str(k + 1) for _ in range(cols) for k in ticks], fontsize=MIN_FONT + 1)
    ax.set_yticks([r * (t + gap) + k for r in range(rows) for k in ticks])
    ax.set_yticklabels([str(k + 1) for _ in range(rows) for k in ticks], fontsize=MIN_FONT + 1)
    ax.set_xlabel(f"key frame (1..{t}, per head)")
    ax.set_ylabel(f"query frame (1..{t}, top to bottom)")


#: name suffix of a pairwise map -> the axis label of both its axes
PAIRWISE_SUFFIXES = {"[joints x joints]": "joint", "[frames x frames]": "frame"}


def pairwise_axis(name: str) -> str | None:
    """``"joint"`` or ``"frame"`` when the map ``name`` is a pairwise one, else None."""
    for suffix, axis in PAIRWISE_SUFFIXES.items():
        if name.endswith(suffix):
            return axis
    return None


def _plot_pairwise(
    fig: Figure, ax: Any, att: np.ndarray, axis: str, length: int, joint_names: Sequence[str] | None
) -> None:
    """A square map, rows attending to columns; frames cut to the valid ``length`` when it applies."""
    if axis == "frame" and 0 < length < att.shape[0]:
        att = att[:length, :length]
    bound = float(np.nanmax(np.abs(att))) if att.size else 1.0
    n = att.shape[0]
    # frames numbered from 1, as on every other frame axis of the figures
    extent = (0.5, n + 0.5, n + 0.5, 0.5) if axis == "frame" else None
    image = ax.imshow(att, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest", extent=extent)
    fig.colorbar(image, ax=ax, shrink=0.85)
    labels = _joint_labels(att.shape[0], joint_names) if axis == "joint" else None
    if labels:
        ax.set_xticks(range(len(labels)))
        ax.set_yticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=90, fontsize=MIN_FONT)
        ax.set_yticklabels(labels, fontsize=MIN_FONT)
    ax.set_xlabel(f"{axis} (attended)")
    ax.set_ylabel(f"{axis} (attending)")


def plot_attention(
    samples: Sequence[Mapping[str, Any]],
    joint_names: Sequence[str] | None = None,
) -> Figure:
    """Attention of a few test samples: one row per sample, one panel per attention map.

    Each sample is a dict with ``attention`` ({name: array, time first}), ``length`` (valid
    frames; maps are cut there), a ``title`` string and optionally ``kinds`` ({name: kind}, see
    ``models.base.ATTENTION_KINDS``: ``joints`` heat map, ``frames`` curves, ``views`` bars; or a
    hint dict, ``models.base.attention_hints``). An item
    with ``distribution`` ({name: (N, views)}) instead of ``attention`` holds a map of every test
    sample; it adds a bottom row with the distribution per view slot.
    """
    items = list(samples)
    samples = [s for s in items if "distribution" not in s]
    distributions = [s for s in items if "distribution" in s]
    names = sorted({name for s in samples for name in s.get("attention", {})})
    dist_panels = [(s, name) for s in distributions for name in sorted(s["distribution"])]
    rows, cols = max(1, len(samples)), max(1, len(names))
    tiled = any(
        is_self_attention(name, np.asarray(s["attention"][name])) for s in samples for name in s.get("attention", {})
    )
    # tiled self-attention heads need a larger panel to stay legible; so do labelled joint rows
    # (about 0.11 in per label keeps MIN_FONT labels apart) and joints x joints matrices
    width, height = (8.0, 4.6) if tiled else (5.5, 3.6)
    rows_labelled = max((_labelled_rows(s, name) for s in samples for name in s.get("attention", {})), default=0)
    height = max(height, 1.2 + 0.115 * rows_labelled)
    if any(pairwise_axis(name) == "joint" for name in names):
        width = max(width, height + 1.4)
    fig = Figure(
        figsize=(width * max(cols, min(len(dist_panels), 2)), height * rows + 4.2 * bool(dist_panels)),
        layout="constrained",
    )
    if dist_panels:
        top, bottom = fig.subfigures(2, 1, height_ratios=[height * rows, 4.2])
        dist_axes = np.atleast_1d(bottom.subplots(1, len(dist_panels), squeeze=False)[0])
        for ax, (item, name) in zip(dist_axes, dist_panels, strict=True):
            _draw_distribution(ax, item["distribution"][name], name, str(item.get("title", "")))
    else:
        top = fig
    axes = np.atleast_2d(top.subplots(rows, cols, squeeze=False))
    if not names:
        axes[0, 0].text(
            0.5,
            0.5,
            "the model returned no attention maps",
            ha="center",
            va="center",
            transform=axes[0, 0].transAxes,
        )
        return fig
    for r, sample in enumerate(samples):
        length = int(sample.get("length") or 0)
        hints = attention_hints(sample.get("kinds"))
        for c, name in enumerate(names):
            ax = axes[r, c]
            att = sample.get("attention", {}).get(name)
            if att is None:
                ax.set_axis_off()
                continue
            att = np.asarray(att, dtype=np.float64)
            axis = pairwise_axis(name)
            if axis is not None and att.ndim == 2:
                _plot_pairwise(top, ax, att, axis, length, joint_names)
                ax.set_title(f"{sample.get('title', '')}\n{name}", fontsize=8)
                continue
            if is_self_attention(name, att):
                _draw_self_attention(top, ax, att, length)
                ax.set_title(f"{sample.get('title', '')}\n{name}", fontsize=8)
                continue
            kind = _kind(name, att, hints)
            title = f"{sample.get('title', '')}\n{name}"
            ax.set_title(title, fontsize=8)
            if kind == "views":
                _draw_views(ax, att)
                continue
            if length > 0 and att.ndim >= 1 and att.shape[0] >= length:
                att = att[:length]
            att = att.reshape(att.shape[0], -1) if att.ndim >= 2 else att
            if att.ndim == 2 and att.shape[1] == 1:
                att = att[:, 0]
            if kind == "frames" or att.ndim == 1:
                _draw_curves(ax, att, name, hints.get(name))
            elif not np.isfinite(att).any():  # e.g. the spatial map of an absent view
                ax.text(0.5, 0.5, "absent view", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                image = ax.imshow(
                    att.T,
                    aspect="auto",
                    cmap="magma",
                    interpolation="nearest",
                    origin="lower",
                    extent=(0.5, att.shape[0] + 0.5, -0.5, att.shape[1] - 0.5),
                )
                top.colorbar(image, ax=ax, shrink=0.9)
                labels = _joint_labels(att.shape[1], joint_names)
                ax.set_yticks(range(att.shape[1]))
                ax.set_yticklabels(labels if labels else range(att.shape[1]), fontsize=MIN_FONT)
                ax.set_xlabel("frame")
                ax.set_ylabel("joint")
    return fig


def _labelled_rows(sample: Mapping[str, Any], name: str) -> int:
    """How many joint labels the panel of map ``name`` stacks vertically (0: none)."""
    att = np.asarray(sample["attention"][name])
    if pairwise_axis(name) == "joint" and att.ndim == 2:
        return int(att.shape[0])
    if is_self_attention(name, att) or pairwise_axis(name) or att.ndim < 2:
        return 0
    kind = _kind(name, att, attention_hints(sample.get("kinds")))
    return int(np.prod(att.shape[1:])) if kind == "joints" else 0
