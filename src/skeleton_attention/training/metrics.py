"""Classification metrics from class scores (numpy): top-k, confusion matrix, per-class accuracy.

Scores are ``(N, C)`` arrays of logits or probabilities (only their ranking matters here); labels
are ``(N,)`` 0-based class indices. Ties are broken towards the lower class index (``argsort`` is
stable on the negated scores), so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {scores.shape}")
    if labels.shape != (scores.shape[0],):
        raise ValueError(f"labels must be ({scores.shape[0]},), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must lie in [0, {scores.shape[1]}), got [{labels.min()}, {labels.max()}]")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    return scores, labels.astype(np.int64)


def ranked_classes(scores: np.ndarray) -> np.ndarray:
    """Class indices per sample from best to worst score (ties: lower index first)."""
    return np.argsort(-np.asarray(scores), axis=1, kind="stable")


def predictions(scores: np.ndarray) -> np.ndarray:
    """Top-1 class per sample."""
    return ranked_classes(scores)[:, 0]


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose label is among the ``k`` best-scored classes (NaN for no samples)."""
    scores, labels = _check(scores, labels)
    if labels.size == 0:
        return float("nan")
    k = min(int(k), scores.shape[1])
    top = ranked_classes(scores)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts; row = true class, column = predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ in shape")
    for name, values in (("labels", labels), ("preds", preds)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes})")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix; NaN for classes with no samples."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.where(support > 0, support, 1), np.nan)


def mean_class_accuracy(cm: np.ndarray) -> float:
    """Mean of the per-class accuracies over the classes that have samples."""
    acc = per_class_accuracy(cm)
    present = ~np.isnan(acc)
    return float(acc[present].mean()) if present.any() else float("nan")


def classification_summary(
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    topk: Sequence[int] = (1, 5),
) -> dict[str, object]:
    """Every metric in one dict: ``top1``, ``top5``, ``mean_class_acc``, ``num_samples``,
    ``per_class`` ({class name: accuracy or None}) and ``confusion_matrix`` (nested lists)."""
    scores, labels = _check(scores, labels)
    num_classes = scores.shape[1]
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    cm = (
        confusion_matrix(labels, predictions(scores), num_classes)
        if labels.size
        else np.zeros((num_classes, num_classes), dtype=np.int64)
    )
    out: dict[str, object] = {f"top{k}": topk_accuracy(scores, labels, k) for k in topk}
    out["mean_class_acc"] = mean_class_accuracy(cm)
    out["num_samples"] = int(labels.size)
    out["per_class"] = {
        name: (None if np.isnan(a) else float(a)) for name, a in zip(names, per_class_accuracy(cm), strict=True)
    }
    out["confusion_matrix"] = cm.tolist()
    return out


def scores_frame(
    sample_ids: Sequence[str],
    labels: np.ndarray,
    scores: np.ndarray,
    label_ids: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Per-sample class scores for later fusion: ``sample_id, label, pred, score_<id> ...``.

    ``labels`` are model class indices (0..C-1). ``label_ids[i]`` is the table label of model class
    ``i`` (training/labels.py; default: ``i``): ``label``, ``pred`` and the score column names are
    written in those table label ids, so a model trained on a label subset (MSR ``msr_as1_xsub``:
    8 of 20 actions) writes ``score_1, score_2, score_4, ...`` and its scores line up by column name
    with any other run's. ``score_<id>`` are the model's raw scores (logits) as float32; score-level
    fusion (sum of the streams' scores, as in DSTA-Net / CTR-GCN ensembles) works on them directly,
    and a softmax can be applied when probabilities are wanted.
    """
    scores, labels = _check(scores, labels)
    if len(sample_ids) != labels.size:
        raise ValueError(f"{len(sample_ids)} sample ids for {labels.size} scores")
    ids = np.arange(scores.shape[1], dtype=np.int64) if label_ids is None else np.asarray(label_ids, dtype=np.int64)
    if ids.shape != (scores.shape[1],) or len(set(ids.tolist())) != ids.size:
        raise ValueError(f"label_ids must be {scores.shape[1]} distinct label ids, got {ids.tolist()[:10]}")
    pred = predictions(scores) if labels.size else np.zeros(0, dtype=np.int64)
    frame = pd.DataFrame(
        {
            "sample_id": pd.array([str(s) for s in sample_ids], dtype="string"),
            "label": ids[labels].astype(np.int64),
            "pred": ids[pred].astype(np.int64),
        }
    )
    score_columns = pd.DataFrame(scores.astype(np.float32), columns=[f"score_{int(i)}" for i in ids])
    return pd.concat([frame, score_columns], axis=1)
