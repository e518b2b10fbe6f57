"""Figures for a training run: curves, confusion matrix, attention maps (matplotlib, no pyplot state).

Figures are built with ``matplotlib.figure.Figure`` directly (Agg rendering, no GUI backend, no
global pyplot state), so they are safe in worker threads and headless CI. Kedro's
``matplotlib.MatplotlibDataset`` saves them.

Attention maps follow the model contract: per sample, time is the first axis — ``(T,)`` for a
temporal attention (one weight per frame), ``(T, J)`` or ``(T, M, V)`` for a spatial one (one
weight per joint and frame). Spatial maps are drawn as joints x frames heat maps (paper Fig. 6);
temporal ones as a curve of beta_t with its increment beta_t - beta_{t-1} (paper Fig. 5b/c).
A sample may carry drawing hints per map (``plot``: {name: {"kind": "curves", "labels": [...],
"ylabel": ...}}, from the model's ``attention_plot``): a ``(T, k)`` map of kind ``curves`` is drawn
as k labelled curves over the frames (e.g. MANs' frame weights, one per coordinate TARM).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure


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


def plot_attention(
    samples: Sequence[Mapping[str, Any]],
    joint_names: Sequence[str] | None = None,
) -> Figure:
    """Attention of a few test samples: one row per sample, one panel per attention map.

    Each sample is a dict with ``attention`` ({name: array, time first}), ``length`` (valid
    frames; maps are cut there) and a ``title`` string.
    """
    samples = list(samples)
    names = sorted({name for s in samples for name in s.get("attention", {})})
    rows, cols = max(1, len(samples)), max(1, len(names))
    fig = Figure(figsize=(5.5 * cols, 3.6 * rows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
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
        for c, name in enumerate(names):
            ax = axes[r, c]
            att = sample.get("attention", {}).get(name)
            if att is None:
                ax.set_axis_off()
                continue
            att = np.asarray(att, dtype=np.float64)
            if length > 0 and att.ndim >= 1 and att.shape[0] >= length:
                att = att[:length]
            att = att.reshape(att.shape[0], -1) if att.ndim >= 2 else att
            if att.ndim == 2 and att.shape[1] == 1:
                att = att[:, 0]
            title = f"{sample.get('title', '')}\n{name}"
            hint = (sample.get("plot") or {}).get(name) or {}
            if hint.get("kind") == "curves" and att.ndim == 2:
                _plot_curves(ax, att, hint)
            elif att.ndim == 1:
                frames = np.arange(1, att.shape[0] + 1)
                ax.plot(frames, att, color="tab:blue", label=f"{name} β_t")
                ax.plot(frames[1:], np.diff(att), color="tab:orange", linewidth=0.8, label="Δβ_t")
                ax.set_xlabel("frame")
                ax.legend(fontsize=7)
                ax.grid(alpha=0.3)
            else:
                image = ax.imshow(
                    att.T,
                    aspect="auto",
                    cmap="magma",
                    interpolation="nearest",
                    origin="lower",
                    extent=(0.5, att.shape[0] + 0.5, -0.5, att.shape[1] - 0.5),
                )
                fig.colorbar(image, ax=ax, shrink=0.9)
                labels = _joint_labels(att.shape[1], joint_names)
                ax.set_yticks(range(att.shape[1]))
                ax.set_yticklabels(labels if labels else range(att.shape[1]), fontsize=4 if att.shape[1] > 30 else 6)
                ax.set_xlabel("frame")
                ax.set_ylabel("joint")
            ax.set_title(title, fontsize=8)
    return fig


def _plot_curves(ax: Any, att: np.ndarray, hint: Mapping[str, Any]) -> None:
    """A ``(T, k)`` map as k labelled curves over the frames (hint: ``labels``, ``ylabel``)."""
    labels = list(hint.get("labels") or [])
    frames = np.arange(1, att.shape[0] + 1)
    for j in range(att.shape[1]):
        ax.plot(frames, att[:, j], linewidth=1.2, label=labels[j] if j < len(labels) else f"{j}")
    ax.set_xlabel("frame")
    ax.set_ylabel(str(hint.get("ylabel", "weight")), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=min(att.shape[1], 4))
