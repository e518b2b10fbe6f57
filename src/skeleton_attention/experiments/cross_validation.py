"""Aggregating the folds of a cross-validated protocol (plain numpy; no Kedro, no MLflow).

Each fold's evaluation writes ``test_metrics.json`` (training/metrics.py ``classification_summary``
plus ``loss``). :func:`aggregate_folds` reports what papers report, the mean and the standard
deviation of the per-fold accuracies, and also the pooled accuracy and the pooled confusion matrix
(every test sample of every fold counted once), which weighs folds by their size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from skeleton_attention.training.metrics import mean_class_accuracy

FOLD_METRICS = ("top1", "top5", "mean_class_acc", "loss")


def aggregate_folds(results: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean, standard deviation (ddof=1, over folds), min and max of each metric, pooled accuracy
    and the pooled confusion matrix of ``{fold: test_metrics}``."""
    if not results:
        raise ValueError("no fold results to aggregate")
    folds = sorted(int(k) for k in results)
    names = _class_names(results[folds[0]])
    pooled = np.zeros((len(names), len(names)), dtype=np.int64)
    summary: dict[str, Any] = {"folds": folds, "num_folds": len(folds), "per_fold": {}}
    for fold in folds:
        metrics = results[fold]
        if _class_names(metrics) != names:
            raise ValueError(f"fold {fold} was evaluated on other classes than fold {folds[0]}")
        cm = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
        if cm.shape != pooled.shape:
            raise ValueError(f"fold {fold}: confusion matrix {cm.shape}, expected {pooled.shape}")
        pooled += cm
        summary["per_fold"][str(fold)] = {key: _float(metrics.get(key)) for key in (*FOLD_METRICS, "num_samples")}
    for key in FOLD_METRICS:
        values = np.array([_float(results[f].get(key)) for f in folds], dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size:
            summary[f"{key}_mean"] = float(values.mean())
            summary[f"{key}_std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
            summary[f"{key}_min"], summary[f"{key}_max"] = float(values.min()), float(values.max())
    total = int(pooled.sum())
    summary["num_samples"] = total
    summary["pooled_top1"] = float(np.trace(pooled) / total) if total else float("nan")
    summary["pooled_mean_class_acc"] = mean_class_accuracy(pooled)
    summary["class_names"] = names
    summary["confusion_matrix"] = pooled.tolist()
    return summary


def _class_names(metrics: Mapping[str, Any]) -> list[str]:
    per_class = metrics.get("per_class")
    if isinstance(per_class, Mapping):
        return [str(name) for name in per_class]
    return [str(i) for i in range(len(metrics["confusion_matrix"]))]


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def plot_fold_accuracies(summary: Mapping[str, Any], title: str = "test top-1 per fold") -> Figure:
    """A bar per fold with the mean and +-1 std band, legible at the logged size."""
    folds: Sequence[int] = summary["folds"]
    values = [summary["per_fold"][str(f)]["top1"] for f in folds]
    width = float(np.clip(0.35 * len(folds) + 3.0, 5.0, 18.0))
    fig = Figure(figsize=(width, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.bar([str(f) for f in folds], values, color="#4C72B0")
    mean, std = summary["top1_mean"], summary["top1_std"]
    ax.axhline(mean, color="#C44E52", lw=1.5, label=f"mean {mean:.3f} +- {std:.3f}")
    ax.axhspan(mean - std, mean + std, color="#C44E52", alpha=0.12)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("fold")
    ax.set_ylabel("top-1 accuracy")
    if len(folds) > 30:  # leave-one-out protocols: label every n-th fold only
        step = int(np.ceil(len(folds) / 30))
        for i, label in enumerate(ax.get_xticklabels()):
            label.set_visible(i % step == 0)
    ax.set_title(title)
    ax.legend(loc="lower right")
    return fig
