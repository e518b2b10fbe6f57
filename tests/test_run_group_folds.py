"""A run group over a cross-validated protocol, end to end: ``kedro run --pipelines=train_dsta_net``
on a 2-fold protocol trains every (stream, fold) pair, fuses each fold, and aggregates the fused
folds and each stream's folds, with one MLflow parent run over all of them.

Two tiny joint-stream "streams" (the toy table holds the joint stream only) keep it to four
one-epoch trainings and two fusions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tests.test_cross_validation import _kedro, _project

STREAMS = ("spatial_temporal", "joint_b")


def _dsta_on_toy(project) -> None:
    path = project / "conf/base/parameters_train_dsta_net.yml"
    params = yaml.safe_load(path.read_text())
    family = params["train_dsta_net"]
    family["model"]["kwargs"].update(channels=[8], strides=[1], num_heads=2)
    family["training"].update(epochs=1, schedule={"name": "none"}, progress=False)
    family["evaluation"]["attention_samples"] = 1
    family["runs"] = {"spatial_temporal": {"data": {"streams": ["joint"]}}, "joint_b": {"seed": 1}}
    family["datasets"]["toy"] = {
        "data": {
            "num_bodies": 1, "val_fraction": 0.2, "num_workers": 0, "shuffle": "full", "batch_size": 8,
            "sampling": [{"resample": {"length": 12}}, {"crop": {"length": 8}}],
        }
    }  # fmt: skip
    params["fuse_dsta_net"]["weights"] = {name: 1.0 for name in STREAMS}
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow
def test_streams_times_folds_then_fusion_per_fold_and_aggregated(shared_data, tmp_path):
    import mlflow

    project = _project(tmp_path, shared_data)
    _dsta_on_toy(project)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    process = _kedro(project, tracking, "run.dataset=toy", "run.protocol=toy_fold", pipeline="train_dsta_net")
    output, _ = process.communicate(timeout=1200)
    assert process.returncode == 0, output[-4000:]
    assert "runs ['spatial_temporal', 'joint_b'] x folds [1, 2], 0 of 4 already finished" in output

    base = project / "data/08_reporting"
    group = base / "train_dsta_net/base/toy/toy_fold/runs"
    summary = json.loads((group / "summary.json").read_text())
    fused = [json.loads((base / f"train_dsta_net_fused/base/toy/toy_fold/fold{k}/test_metrics.json").read_text())
             for k in (1, 2)]  # fmt: skip
    # the fused folds aggregated: each test sample once, the mean of the per-fold fused accuracies
    assert summary["fused"]["folds"] == [1, 2]
    assert summary["fused"]["num_samples"] == sum(m["num_samples"] for m in fused)
    assert summary["fused_top1_mean"] == pytest.approx(np.mean([m["top1"] for m in fused]))
    for name in STREAMS:
        per_fold = [
            json.loads((base / f"train_dsta_net/base/toy/toy_fold/{name}/fold{k}/test_metrics.json").read_text())
            for k in (1, 2)
        ]
        assert summary["runs"][name]["top1_mean"] == pytest.approx(np.mean([m["top1"] for m in per_fold]))
    metrics = json.loads((base / "train_dsta_net_fused/base/toy/toy_fold/metrics.json").read_text())
    assert metrics["cv_top1_mean"] == pytest.approx(summary["fused_top1_mean"]) and metrics["num_folds"] == 2
    assert {f"{name}_cv_top1_mean" for name in STREAMS} <= set(metrics)
    assert (group / "folds.png").stat().st_size > 5000 and (group / "confusion_matrix.png").stat().st_size > 5000

    mlflow.set_tracking_uri(tracking)
    runs = mlflow.search_runs(experiment_names=["skeleton-attention/toy/toy_fold"], output_format="list")
    parents = [r for r in runs if r.data.tags.get("run_group") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.metrics["test.top1"] == pytest.approx(summary["fused_top1_mean"])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert all(c.info.status == "FINISHED" for c in children)
    members = sorted((c.data.tags["run_name"], c.data.tags["fold"]) for c in children if "run_name" in c.data.tags)
    assert members == sorted((name, str(k)) for name in STREAMS for k in (1, 2))
    fusions = sorted(c.data.tags["fold"] for c in children if c.data.tags.get("run_group") == "fusion")
    assert fusions == ["1", "2"]

    again = _kedro(project, tracking, "run.dataset=toy", "run.protocol=toy_fold", pipeline="train_dsta_net")
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 0, output[-3000:]
    assert "4 of 4 already finished" in output  # nothing retrained; only the fusion and the aggregation rerun
