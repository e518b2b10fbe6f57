"""Score-level fusion of several models' per-sample class scores (multi-stream ensembles).

Each model's evaluation writes a score table (:func:`~skeleton_attention.training.metrics.scores_frame`:
``sample_id, label, pred, score_<label id> ...``). :func:`fuse_score_tables` combines several such
tables into one of the same format: the weighted mean of the scores of every sample (DSTA-Net
Sec. 3.6: "The classification scores are averaged to obtain the final result"; the official
ensemble sums them, which has the same arg-max for equal weights). The tables must describe the
same samples with the same labels and the same classes; anything else is an error that names the
table and examples, never a silent inner join.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from skeleton_attention.training.metrics import classification_summary

SCORE_KINDS = ("logits", "softmax")


def _score_columns(frame: pd.DataFrame, name: str) -> list[str]:
    missing = {"sample_id", "label"} - set(frame.columns)
    if missing:
        raise ValueError(f"score table {name!r} has no column {sorted(missing)} (columns: {list(frame.columns)[:8]})")
    columns = [c for c in frame.columns if str(c).startswith("score_")]
    if not columns:
        raise ValueError(f"score table {name!r} has no score_<label> columns")
    return columns


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fuse_score_tables(
    tables: Mapping[str, pd.DataFrame],
    weights: Mapping[str, float] | None = None,
    scores: str = "logits",
) -> pd.DataFrame:
    """The weighted mean of the tables' scores, per sample, as a score table.

    ``weights``: one non-negative weight per table name (default 1 each; a table without a weight
    and a weight without a table are errors). ``scores``: ``logits`` fuses the raw scores,
    ``softmax`` the class probabilities. Rows come out in the first table's order.
    """
    if not tables:
        raise ValueError("no score tables to fuse")
    if scores not in SCORE_KINDS:
        raise ValueError(f"scores must be one of {SCORE_KINDS}, got {scores!r}")
    names = list(tables)
    weights = {name: 1.0 for name in names} if weights is None else {k: float(v) for k, v in weights.items()}
    if set(weights) != set(names):
        raise ValueError(f"fusion weights are given for {sorted(weights)} but the score tables are {sorted(names)}")
    if any(w < 0 or not np.isfinite(w) for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"fusion weights must be finite, non-negative and not all zero: {weights}")
    first = tables[names[0]]
    columns = _score_columns(first, names[0])
    ids = first["sample_id"].astype(str)
    if ids.duplicated().any():
        raise ValueError(f"score table {names[0]!r} repeats sample ids, e.g. {ids[ids.duplicated()].tolist()[:5]}")
    total = np.zeros((len(first), len(columns)), dtype=np.float64)
    labels = first["label"].to_numpy(dtype=np.int64)
    for name in names:
        frame = tables[name]
        if sorted(_score_columns(frame, name)) != sorted(columns):
            raise ValueError(f"score table {name!r} has other classes than {names[0]!r}")
        indexed = frame.assign(sample_id=frame["sample_id"].astype(str)).set_index("sample_id")
        if indexed.index.duplicated().any():
            repeated = indexed.index[indexed.index.duplicated()].tolist()[:5]
            raise ValueError(f"score table {name!r} repeats sample ids, e.g. {repeated}")
        missing = sorted(set(ids) - set(indexed.index))
        extra = sorted(set(indexed.index) - set(ids))
        if missing or extra:
            raise ValueError(
                f"score table {name!r} does not cover the same samples as {names[0]!r}: "
                f"{len(missing)} missing (e.g. {missing[:5]}), {len(extra)} extra (e.g. {extra[:5]})"
            )
        aligned = indexed.loc[ids.tolist()]
        if not np.array_equal(aligned["label"].to_numpy(dtype=np.int64), labels):
            raise ValueError(f"score table {name!r} gives other labels than {names[0]!r} for the same samples")
        values = aligned[columns].to_numpy(dtype=np.float64)
        total += weights[name] * (_softmax(values) if scores == "softmax" else values)
    total /= sum(weights.values())
    label_ids = np.array([int(str(c)[len("score_") :]) for c in columns], dtype=np.int64)
    out = pd.DataFrame(
        {
            "sample_id": pd.array(ids.tolist(), dtype="string"),
            "label": labels,
            "pred": label_ids[total.argmax(axis=1)] if len(total) else np.zeros(0, np.int64),
        }
    )
    return pd.concat([out, pd.DataFrame(total.astype(np.float32), columns=columns)], axis=1)


def score_table_summary(table: pd.DataFrame, class_names: list[str] | None = None) -> dict[str, object]:
    """:func:`classification_summary` of a score table (labels mapped to the score columns' order)."""
    columns = _score_columns(table, "fused")
    label_ids = [int(str(c)[len("score_") :]) for c in columns]
    position = {label: i for i, label in enumerate(label_ids)}
    unknown = sorted(set(table["label"].astype(int)) - set(position))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} have no score column")
    labels = np.array([position[int(label)] for label in table["label"]], dtype=np.int64)
    return classification_summary(table[columns].to_numpy(dtype=np.float64), labels, class_names)
