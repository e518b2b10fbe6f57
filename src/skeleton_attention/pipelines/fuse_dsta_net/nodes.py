"""Fusion nodes: read the stream runs' score tables, fuse them, report.

The stream runs live in run directories that differ by ``run.name`` (the stream), which one
catalog entry cannot address, so the node reads them from the directories the training catalog
writes (``data/07_model_output/train_dsta_net/<run dir>/``); the fusion itself is
:func:`skeleton_attention.training.fusion.fuse_score_tables`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from skeleton_attention.experiments.config import fingerprint, run_dir
from skeleton_attention.training.fusion import fuse_score_tables, score_table_summary
from skeleton_attention.training.plots import plot_confusion_matrix

logger = logging.getLogger(__name__)


def _stream_dir(config: Mapping[str, Any], name: str) -> str:
    run = config["run"]
    return run_dir(run.get("tag"), run["dataset"], run["protocol"], run.get("fold"), name)


def _read_scores(path: Path, stream: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"stream {stream!r}: no scores at {path}; train it first (run.name={stream})")
    return pd.read_parquet(path)


def fuse_streams(
    config: Mapping[str, Any], fusion: Mapping[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Fused test scores, fused validation scores (empty when a stream has none) and the fused test
    metrics with every stream's own test and validation accuracy."""
    given = {str(k): float(v) for k, v in (fusion.get("weights") or {}).items()}
    # a stream with weight 0 is left out: its run need not exist (e.g. --params=fuse_dsta_net.weights.spatial=0)
    weights = {name: w for name, w in given.items() if w != 0.0}
    if not weights:
        raise ValueError(f"fuse_dsta_net.weights must give some stream a non-zero weight, got {given}")
    kind = str(fusion.get("scores", "logits"))
    scores_root = Path(fusion.get("scores_root", "data/07_model_output/train_dsta_net"))
    reporting_root = Path(fusion.get("reporting_root", "data/08_reporting/train_dsta_net"))
    dirs = {name: _stream_dir(config, name) for name in weights}
    test = {name: _read_scores(scores_root / d / "test_scores.parquet", name) for name, d in dirs.items()}
    fused = fuse_score_tables(test, weights, kind)
    val_paths = {name: scores_root / d / "val_scores.parquet" for name, d in dirs.items()}
    if all(p.is_file() for p in val_paths.values()):
        val = {name: pd.read_parquet(p) for name, p in val_paths.items()}
        fused_val = fuse_score_tables(val, weights, kind)
    else:
        logger.warning(
            "no validation scores for %s: validation fusion skipped",
            [n for n, p in val_paths.items() if not p.is_file()],
        )
        val, fused_val = {}, fused.iloc[0:0].copy()
    first_metrics = reporting_root / next(iter(dirs.values())) / "test_metrics.json"
    names = list(json.loads(first_metrics.read_text()).get("per_class", {})) if first_metrics.is_file() else []
    summary = score_table_summary(fused, names or None)
    per_stream = {
        name: {
            "test_top1": float((table["label"] == table["pred"]).mean()),
            "val_top1": float((val[name]["label"] == val[name]["pred"]).mean()) if name in val else None,
            "weight": weights[name],
        }
        for name, table in test.items()
    }
    summary.update(
        {
            "streams": per_stream,
            "scores": kind,
            "val_top1": float((fused_val["label"] == fused_val["pred"]).mean()) if len(fused_val) else None,
            "protocol": config["data"]["protocol"],
            "config_fingerprint": fingerprint({"config": dict(config), "fusion": dict(fusion)}),
        }
    )
    logger.info(
        "fused %s: test top-1 %.4f (streams %s)",
        list(weights),
        summary["top1"],
        {n: round(s["test_top1"], 4) for n, s in per_stream.items()},
    )
    return fused, fused_val, summary


def report_fusion(
    metrics: Mapping[str, Any], fusion: Mapping[str, Any]
) -> tuple[Figure, dict[str, float], dict[str, dict[str, float]]]:
    """The fused confusion matrix, the flat metrics file (the headline number) and MLflow metrics."""
    names = list(metrics.get("per_class") or {}) or [str(i) for i in range(len(metrics["confusion_matrix"]))]
    figure = plot_confusion_matrix(metrics["confusion_matrix"], names, title="confusion matrix (test, fused streams)")
    flat: dict[str, float] = {
        "test_top1": float(metrics["top1"]),
        "test_top5": float(metrics["top5"]),
        "test_mean_class_acc": float(metrics["mean_class_acc"]),
        "num_test_samples": int(metrics["num_samples"]),
    }
    if metrics.get("val_top1") is not None:
        flat["val_top1"] = float(metrics["val_top1"])
    for name, values in metrics["streams"].items():
        flat[f"{name}_test_top1"] = float(values["test_top1"])
        if values.get("val_top1") is not None:
            flat[f"{name}_val_top1"] = float(values["val_top1"])
    mlflow = {f"fused_{k}": {"value": float(v), "step": 0} for k, v in flat.items()}
    return figure, flat, mlflow
