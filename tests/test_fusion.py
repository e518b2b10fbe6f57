"""Score fusion (training/fusion.py, pipelines/fuse_dsta_net) on hand-made score tables, the
pairwise attention plots, and the run-group commands of the driver."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skeleton_attention.experiments.group_driver import RunGroupPlan, finished_runs, group_command
from skeleton_attention.pipelines.fuse_dsta_net.nodes import fuse_streams, report_fusion
from skeleton_attention.training.fusion import fuse_score_tables, score_table_summary
from skeleton_attention.training.metrics import scores_frame
from skeleton_attention.training.plots import pairwise_axis, plot_attention


def _table(ids: list[str], labels: list[int], scores: list[list[float]], label_ids=(3, 5, 7)) -> pd.DataFrame:
    return scores_frame(ids, np.array(labels), np.array(scores, dtype=np.float32), list(label_ids))


A = _table(["s1", "s2", "s3"], [0, 1, 2], [[2.0, 1.0, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 3.0]])
B = _table(["s3", "s1", "s2"], [2, 0, 1], [[0.0, 1.0, 0.0], [0.0, 3.0, 0.0], [0.0, 2.0, 0.0]])


def test_weighted_mean_aligned_by_sample_id() -> None:
    fused = fuse_score_tables({"a": A, "b": B}, {"a": 1.0, "b": 1.0})
    assert list(fused["sample_id"]) == ["s1", "s2", "s3"]
    np.testing.assert_allclose(
        fused[["score_3", "score_5", "score_7"]].to_numpy(), [[1.0, 2.0, 0.0], [0.0, 1.5, 0.25], [0.0, 0.5, 1.5]]
    )
    assert list(fused["pred"]) == [5, 5, 7] and list(fused["label"]) == [3, 5, 7]
    summary = score_table_summary(fused)
    assert summary["top1"] == pytest.approx(2 / 3)
    # the weights decide: stream a alone gets every sample right
    only_a = fuse_score_tables({"a": A, "b": B}, {"a": 1.0, "b": 0.0})
    assert score_table_summary(only_a)["top1"] == 1.0
    heavy_a = fuse_score_tables({"a": A, "b": B}, {"a": 3.0, "b": 1.0})
    np.testing.assert_allclose(heavy_a.loc[0, ["score_3", "score_5", "score_7"]].to_numpy(dtype=float), [1.5, 1.5, 0.0])


def test_softmax_fusion_uses_probabilities() -> None:
    fused = fuse_score_tables({"a": A, "b": B}, scores="softmax")
    probs = fused[["score_3", "score_5", "score_7"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_missing_and_extra_samples_fail_clearly() -> None:
    with pytest.raises(ValueError, match=r"'b' does not cover the same samples as 'a': 1 missing \(e.g. \['s3'\]\)"):
        fuse_score_tables({"a": A, "b": B[B["sample_id"] != "s3"]})
    extra = pd.concat([B, _table(["s9"], [0], [[1.0, 0.0, 0.0]])], ignore_index=True)
    with pytest.raises(ValueError, match=r"1 extra \(e.g. \['s9'\]\)"):
        fuse_score_tables({"a": A, "b": extra})


def test_inconsistent_tables_and_weights_fail() -> None:
    relabelled = B.copy()
    relabelled.loc[0, "label"] = 3
    with pytest.raises(ValueError, match="other labels"):
        fuse_score_tables({"a": A, "b": relabelled})
    with pytest.raises(ValueError, match="other classes"):
        fuse_score_tables({"a": A, "b": _table(["s1", "s2", "s3"], [0, 1, 2], np.eye(3).tolist(), (3, 5, 8))})
    with pytest.raises(ValueError, match="repeats sample ids"):
        fuse_score_tables({"a": pd.concat([A, A.iloc[:1]], ignore_index=True)})
    with pytest.raises(ValueError, match="weights are given for"):
        fuse_score_tables({"a": A, "b": B}, {"a": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        fuse_score_tables({"a": A, "b": B}, {"a": -1.0, "b": 1.0})
    with pytest.raises(ValueError, match="no score tables"):
        fuse_score_tables({})


def _write_stream(root: Path, run: str, name: str, table: pd.DataFrame, val: pd.DataFrame | None) -> None:
    out = root / "data/07_model_output/train_dsta_net" / run / name
    out.mkdir(parents=True)
    table.to_parquet(out / "test_scores.parquet")
    if val is not None:
        val.to_parquet(out / "val_scores.parquet")
    report = root / "data/08_reporting/train_dsta_net" / run / name
    report.mkdir(parents=True)
    (report / "test_metrics.json").write_text(json.dumps({"per_class": {"c3": 1, "c5": 1, "c7": 1}}))


def test_fusion_node_reads_the_stream_runs_and_reports(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = "embedded/ntu/ntu60_xsub"
    _write_stream(tmp_path, run, "joints", A, A.iloc[:2])
    _write_stream(tmp_path, run, "bones", B, B[B["sample_id"] != "s3"])
    config = {
        "run": {"tag": "embedded", "dataset": "ntu", "protocol": "ntu60_xsub", "fold": None},
        "data": {"protocol": "ntu60_xsub"},
    }
    fusion = {"weights": {"joints": 1.0, "bones": 1.0}}
    fused, fused_val, metrics = fuse_streams(config, fusion)
    assert len(fused) == 3 and len(fused_val) == 2
    assert metrics["top1"] == pytest.approx(2 / 3) and list(metrics["per_class"]) == ["c3", "c5", "c7"]
    assert metrics["streams"]["joints"]["test_top1"] == 1.0
    assert metrics["streams"]["bones"]["test_top1"] == pytest.approx(1 / 3)
    figure, flat, mlflow = report_fusion(metrics, fusion)
    assert flat["test_top1"] == pytest.approx(2 / 3) and flat["joints_test_top1"] == 1.0 and "val_top1" in flat
    assert mlflow["fused_test_top1"]["value"] == pytest.approx(2 / 3)
    assert figure.axes
    _, _, joints_only = fuse_streams(config, {"weights": {"joints": 1.0, "bones": 0.0, "absent": 0.0}})
    assert joints_only["top1"] == 1.0 and list(joints_only["streams"]) == ["joints"]
    with pytest.raises(ValueError, match="non-zero weight"):
        fuse_streams(config, {"weights": {"joints": 0.0}})
    with pytest.raises(FileNotFoundError, match="stream 'other'"):
        fuse_streams(config, {"weights": {"joints": 1.0, "other": 1.0}})


def test_pairwise_maps_are_drawn_as_square_matrices() -> None:
    assert pairwise_axis("layer 1 spatial [joints x joints]") == "joint"
    assert pairwise_axis("layer 8 temporal [frames x frames]") == "frame"
    assert pairwise_axis("spatial") is None
    sample = {
        "title": "s1: true a, predicted a",
        "length": 6,
        "attention": {
            "layer 1 spatial [joints x joints]": np.random.default_rng(0).normal(size=(4, 4)),
            "layer 1 temporal [frames x frames]": np.random.default_rng(1).normal(size=(8, 8)),
        },
    }
    figure = plot_attention([sample], joint_names=["a", "b", "c", "d"])
    images = [ax.images[0] for ax in figure.axes if ax.images]
    assert [im.get_array().shape for im in images] == [(4, 4), (6, 6)]  # frames cut to the valid length
    low, high = images[0].get_clim()
    assert low == -high  # symmetric about zero: tanh maps can be negative
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["a", "b", "c", "d"]


def _plan(tmp_path: Path) -> RunGroupPlan:
    return RunGroupPlan(
        pipeline="train_dsta_net",
        env="embedded",
        runtime_params={"run": {"dataset": "ntu"}, "metrics_dir": "m"},
        config={
            "run": {"tag": "embedded", "dataset": "ntu", "protocol": "ntu60_xsub", "fold": None},
            "model": {"name": "dsta_net"},
            "data": {"dataset": "ntu", "protocol": "ntu60_xsub"},
        },
        names=["spatial", "fast"],
        fingerprints={"spatial": "f1", "fast": "f2"},
        project_path=tmp_path,
        fusion_pipeline="fuse_dsta_net",
    )


def test_run_group_commands_and_resume(tmp_path) -> None:
    plan = _plan(tmp_path)
    command = group_command(plan, "spatial")
    assert command[1:3] == ["run", "--pipelines=train_dsta_net"] and command[-1] == "--env=embedded"
    assert "run.dataset=ntu" in command[3] and "run.name=spatial" in command[3] and "metrics_dir=m" in command[3]
    fusion = group_command(plan, None, "fuse_dsta_net")
    assert fusion[2] == "--pipelines=fuse_dsta_net" and "run.name" not in fusion[3]
    assert plan.run_dir("spatial") == "embedded/ntu/ntu60_xsub/spatial"
    # a run counts as finished only with a completed process and metrics of the same configuration
    metrics = plan.metrics_path("spatial")
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"config_fingerprint": "f1", "top1": 0.5}))
    assert list(finished_runs(plan, {"completed": {"spatial": "f1"}})) == ["spatial"]
    assert finished_runs(plan, {"completed": {}}) == {}
    metrics.write_text(json.dumps({"config_fingerprint": "old", "top1": 0.5}))
    assert finished_runs(plan, {"completed": {"spatial": "f1"}}) == {}
