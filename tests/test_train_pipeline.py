"""End to end: the ``train_sta_lstm`` Kedro pipeline on a real prepared table, tracked in MLflow.

The table is built from the 20 real UTKinect-Action3D recordings in ../shared/data (with the
project's own preparation functions), placed in a temporary copy of the project configuration as
the pipeline's input, and the pipeline runs in a KedroSession (so kedro-mlflow and the project's
hooks are active) against a temporary sqlite MLflow store, which is then read back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from skeleton_attention.experiments.config import compose
from skeleton_attention.mlflow_hooks import run_name
from skeleton_attention.pipelines.preparation import build_streams
from skeleton_attention.pipelines.prepare_utkinect.nodes import ingest_utkinect
from skeleton_attention.pipelines.training_common import resolve_phases, training_pipeline
from skeleton_attention.skeletons.bundle import PreparedBundle, write_bundle
from skeleton_attention.training.checkpoints import load_model_artifact

REPO = Path(__file__).resolve().parents[1]


def _prepare_utkinect(shared_data: Path, target: Path) -> Path:
    prep = yaml.safe_load((REPO / "conf/base/parameters_prepare.yml").read_text())["prepare_utkinect"]
    raw = sorted((shared_data / "utkinect_raw").glob("joints_*.txt"))
    write_bundle(target / "intermediate", ingest_utkinect(raw, {**prep, "workers": 1}))
    write_bundle(target / "features", build_streams(PreparedBundle(target / "intermediate"), prep))
    return target / "features"


def _merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _project(tmp_path: Path) -> tuple[Path, dict]:
    """A temporary project: the repo's pyproject and conf, STA-LSTM's UTKinect block made small (one
    epoch per Algorithm 1 step). The prepared table goes where ``run.dataset=utkinect`` reads it."""
    project = tmp_path / "project"
    (project / "conf" / "local").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    (project / "src").mkdir()  # bootstrap_project wants a source dir; the package is already importable
    shutil.copytree(REPO / "conf" / "base", project / "conf" / "base")
    shutil.copy(REPO / "conf" / "logging.yml", project / "conf" / "logging.yml")
    all_params = yaml.safe_load((REPO / "conf/base/parameters_train_sta_lstm.yml").read_text())
    family = all_params["train_sta_lstm"]
    small = {
        "model": {"kwargs": {"hidden_size": 16, "attention_hidden_size": 16}},
        "data": {"batch_size": 16},
        "training": {"phases": {"kwargs": {"pretrain_epochs": 1, "n1_epochs": 1, "n2_epochs": 1}}, "progress": False},
        "evaluation": {"attention_samples": 2},
    }
    family["datasets"]["utkinect"] = _merged(family["datasets"]["utkinect"], small)
    (project / "conf/base/parameters_train_sta_lstm.yml").write_text(yaml.safe_dump(all_params))
    run = {"dataset": "utkinect", "protocol": "utkinect_xsub", "fold": None, "name": None, "tag": "base"}
    return project, compose(family, run)


@pytest.mark.slow
def test_train_sta_lstm_pipeline_end_to_end_with_mlflow(shared_data, tmp_path, monkeypatch):
    import mlflow
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project, params = _project(tmp_path)
    bundle = _prepare_utkinect(shared_data, project / "data" / "04_feature_tmp")
    (project / "data" / "04_feature").mkdir(parents=True)
    bundle = bundle.rename(project / "data" / "04_feature" / "utkinect")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    monkeypatch.chdir(project)
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params={"run": {"dataset": "utkinect"}}) as session:
        session.run(pipeline_names=["train_sta_lstm"])

    out = project / "data"
    run = "base/utkinect/utkinect_xsub"
    # --- files ----------------------------------------------------------------------------------
    splits = pd.read_parquet(out / f"05_model_input/train_sta_lstm/{run}/splits.parquet")
    meta = PreparedBundle(bundle).table.metadata().set_index("sample_id")
    subset_split = meta.loc[splits["sample_id"], "split_utkinect_xsub"].to_numpy()
    assert set(subset_split[splits["subset"].to_numpy() != "test"]) == {"train"}  # val carved from train
    assert set(subset_split[splits["subset"].to_numpy() == "test"]) == {"test"}
    assert (splits["subset"] == "val").sum() >= 10  # at least one per class

    scores = pd.read_parquet(out / f"07_model_output/train_sta_lstm/{run}/test_scores.parquet")
    test_ids = sorted(splits.loc[splits["subset"] == "test", "sample_id"])
    assert sorted(scores["sample_id"]) == test_ids
    assert [c for c in scores.columns if c.startswith("score_")] == [f"score_{i}" for i in range(10)]
    np.testing.assert_array_equal(scores["pred"], scores.filter(like="score_").to_numpy().argmax(1))

    dvc = json.loads((out / f"08_reporting/train_sta_lstm/{run}/metrics.json").read_text())
    top1 = float(np.mean(scores["pred"] == scores["label"]))
    assert dvc["test_top1"] == pytest.approx(top1)
    assert dvc["num_test_samples"] == len(test_ids)
    phases = resolve_phases(params["training"]["phases"])
    assert dvc["epochs_run"] == sum(p["epochs"] for p in phases) == 8
    # the selected epoch is in the final phase (select_best_from_phase: -1) and chosen on validation
    history = pd.read_csv(out / f"08_reporting/train_sta_lstm/{run}/history.csv")
    final = history[history["phase_index"] == len(phases) - 1]
    assert params["training"]["monitor"] == "val_ce"
    assert dvc["best_epoch"] == int(final.loc[final["val_ce"].idxmin(), "epoch"])
    assert dvc["best_val_ce"] == pytest.approx(final["val_ce"].min())
    # the plain cross-entropy and the regularization are reported apart (STA-LSTM eq. 7)
    assert {"train_ce", "train_reg", "val_ce", "val_reg", "val_loss_total", "val_loss"} <= set(history.columns)
    np.testing.assert_allclose(history["val_loss_total"], history["val_ce"] + history["val_reg"], rtol=1e-4)
    np.testing.assert_allclose(history["train_loss"], history["train_ce"] + history["train_reg"], rtol=1e-4)
    assert (history["val_reg"] > 0).all()  # STA-LSTM's regularization is on
    # the selected model's validation scores, in the test scores' format
    val_scores = pd.read_parquet(out / f"07_model_output/train_sta_lstm/{run}/val_scores.parquet")
    assert list(val_scores.columns) == list(scores.columns)
    assert sorted(val_scores["sample_id"]) == sorted(splits.loc[splits["subset"] == "val", "sample_id"])
    assert dvc["val_top1"] == pytest.approx(float(np.mean(val_scores["pred"] == val_scores["label"])))
    for png in ("curves", "confusion_matrix", "attention", "attention_skeleton"):
        assert (out / f"08_reporting/train_sta_lstm/{run}/{png}.png").stat().st_size > 5000
    assert (out / f"06_models/train_sta_lstm/{run}/model.pt").is_file()
    artifact = load_model_artifact(out / f"06_models/train_sta_lstm/{run}/model.pt")
    description = artifact["model_kwargs"]["data"]  # the data description, as a plain dict
    assert {k: description[k] for k in ("num_classes", "num_joints", "num_bodies", "streams", "multi_view")} == {
        "num_classes": 10,
        "num_joints": 20,
        "num_bodies": 1,
        "streams": ["joint"],
        "multi_view": False,
    }
    assert artifact["info"]["truncated_bodies"] == 0
    assert (out / f"06_models/train_sta_lstm/{run}/checkpoints/last.pt").is_file()

    # --- MLflow ---------------------------------------------------------------------------------
    mlflow.set_tracking_uri(tracking)
    # one experiment per data set and protocol (mlflow_hooks.experiment_name)
    runs = mlflow.search_runs(experiment_names=["skeleton-attention/utkinect/utkinect_xsub"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == run_name(params) == "sta_lstm joint s0 utkinect/utkinect_xsub"
    tags = run.data.tags
    assert {k: tags[k] for k in ("model", "variant", "dataset", "protocol", "stream", "seed")} == {
        "model": "sta_lstm",
        "variant": "sta_lstm",
        "dataset": "utkinect",
        "protocol": "utkinect_xsub",
        "stream": "joint",
        "seed": "0",
    }
    logged = run.data.params
    # kedro-mlflow logs the composed configuration that trained, not the per-data-set blocks
    assert logged["train_sta_lstm_config.model.name"] == "sta_lstm"
    assert logged["train_sta_lstm_config.data.protocol"] == "utkinect_xsub"
    assert logged["train_sta_lstm_config.data.batch_size"] == "16"
    assert logged["train_sta_lstm_config.training.optimizer.lr"] == "0.005"
    assert not any(key.startswith("train_sta_lstm.datasets") for key in logged)
    metrics = run.data.metrics
    assert metrics["test.top1"] == pytest.approx(top1)
    client = mlflow.MlflowClient()
    for key in ("val_acc", "val_ce", "val_loss_total", "train_ce", "train_reg"):
        val_history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in val_history) == list(range(1, 9))
        np.testing.assert_allclose([m.value for m in sorted(val_history, key=lambda m: m.step)], history[key])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {
        "plots/curves.png",
        "plots/confusion_matrix.png",
        "plots/attention.png",
        "plots/attention_skeleton.png",
    }
    outputs = {a.path for a in client.list_artifacts(run.info.run_id, "outputs")}
    assert {
        "outputs/test_scores.parquet",
        "outputs/val_scores.parquet",
        "outputs/test_metrics.json",
        "outputs/history.csv",
    } <= outputs
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert len(models) == 1 and models[0].source_run_id == run.info.run_id
    reloaded = mlflow.pytorch.load_model(models[0].model_uri)
    assert type(reloaded).__name__ == "STALSTM"


def test_pipeline_structure_and_namespaces():
    pipe = training_pipeline(run_key="train_demo", samples="msr_samples", params="train_demo")
    assert pipe.inputs() == {"msr_samples", "params:train_demo"}
    assert {n.name for n in pipe.nodes} == {
        f"train_demo.{n}"
        for n in ("split_samples", "train_model", "evaluate_model", "report", "export_model", "prediction_table")
    }
    assert {"train_demo.dvc_metrics", "train_demo.predictions"} <= pipe.outputs()
    with pytest.raises(ValueError, match="start with 'train_'"):
        training_pipeline(run_key="demo", samples="x", params="y")


def test_phase_preset_takes_the_variant_and_depth_of_the_model():
    preset = {"preset": "skeleton_attention.models.sta_lstm:algorithm_1_phases", "kwargs": {"n1_epochs": 2}}
    assert [p["step"] for p in resolve_phases(preset)] == list(range(2, 10))  # no model block: the full model
    assert [p["step"] for p in resolve_phases(preset, {"name": "sta_lstm", "variant": "lstm"})] == [8, 9]
    ta = resolve_phases(preset, {"name": "sta_lstm", "variant": "ta_lstm", "kwargs": {"num_main_layers": 2}})
    assert [p["step"] for p in ta] == [2, 3, 4, 8, 9] and max(p["main_layers"] for p in ta) == 2
    assert all(p["spatial"] == "ones" for p in ta)
    contradicting = {**preset, "kwargs": {"variant": "sta_lstm"}}
    with pytest.raises(ValueError, match=r"phases.kwargs.variant='sta_lstm' contradicts the model's variant='lstm'"):
        resolve_phases(contradicting, {"name": "sta_lstm", "variant": "lstm"})
    same = {**preset, "kwargs": {"variant": "lstm"}}
    assert len(resolve_phases(same, {"name": "sta_lstm", "variant": "lstm"})) == 2
