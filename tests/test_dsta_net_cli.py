"""DSTA-Net from the command line, on the embedded data in a temporary copy of the project:

* every Table 1 variant through ``kedro run --pipelines=train_dsta_net
  --params=run.name=spatial_temporal,train_dsta_net.model.variant=<v>`` (one stream, a tiny network);
* the four streams and their fusion from one ``kedro run --pipelines=train_dsta_net``: a child
  MLflow run per stream under one parent, the fused metrics on the parent and in their own file.
"""

from __future__ import annotations

import json
import os

import mlflow
import pytest
import yaml

from skeleton_attention.models.dsta_net import VARIANTS
from skeleton_attention.training.checkpoints import load_model_artifact
from tests.test_cli_runs import EMBEDDED_RUN, _kedro, embedded_project  # noqa: F401 - the shared fixture

#: a one-layer network, one epoch, 8-frame clips: these runs check wiring, not accuracy
TINY = {
    "train_dsta_net": {
        "model": {"kwargs": {"channels": [8], "strides": [1], "num_heads": 2}},
        "training": {"epochs": 1, "schedule": {"name": "none"}, "progress": False},
        "evaluation": {"attention_samples": 1},
        "datasets": {"ntu": {"data": {"sampling": [{"resample": {"length": 12}}, {"crop": {"length": 8}}]}}},
        "runs": {
            "slow_temporal": {
                "data": {"sampling": [{"resample": {"length": 12}}, {"crop": {"length": 8}}, {"stride": {"step": 2}}]}
            }
        },
    }
}


@pytest.fixture(scope="module")
def dsta_project(embedded_project):  # noqa: F811 - the fixture imported above
    path = embedded_project / "conf" / "embedded" / "parameters_train_dsta_net.yml"
    config = yaml.safe_load(path.read_text())
    family = config["train_dsta_net"]
    for key, value in TINY["train_dsta_net"].items():
        family[key] = {**family.get(key, {}), **value} if key != "model" else value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return embedded_project


def _read(project, layer: str, pipeline: str, run: str, name: str):
    return project / "data" / layer / pipeline / run / name


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_table_1_variant_runs_from_the_command_line(dsta_project, variant):
    result = _kedro(
        dsta_project, "run", "--env=embedded", "--pipelines=train_dsta_net",
        f"--params=run.name=spatial_temporal,train_dsta_net.model.variant={variant}",
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    run = f"{EMBEDDED_RUN}/spatial_temporal"
    artifact = load_model_artifact(_read(dsta_project, "06_models", "train_dsta_net", run, "model.pt"))
    assert artifact["model_kwargs"]["variant"] == variant
    assert artifact["model_kwargs"]["data"]["streams"] == ["joint"]
    metrics = json.loads(_read(dsta_project, "08_reporting", "train_dsta_net", run, "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["num_test_samples"] == 120
    assert _read(dsta_project, "08_reporting", "train_dsta_net", run, "attention.png").stat().st_size > 10_000


@pytest.mark.slow
def test_four_streams_and_their_fusion_from_one_command(dsta_project):
    result = _kedro(dsta_project, "run", "--env=embedded", "--pipelines=train_dsta_net", timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    streams = {"spatial_temporal": "joint", "spatial": "bone", "fast_temporal": "motion_fast",
               "slow_temporal": "motion_fast"}  # fmt: skip
    for name, stream in streams.items():
        run = f"{EMBEDDED_RUN}/{name}"
        artifact = load_model_artifact(_read(dsta_project, "06_models", "train_dsta_net", run, "model.pt"))
        assert artifact["model_kwargs"]["data"]["streams"] == [stream]
        expected_frames = 4 if name == "slow_temporal" else 8  # the half-rate clip
        assert artifact["model_kwargs"]["data"]["num_frames"] == expected_frames
        assert _read(dsta_project, "07_model_output", "train_dsta_net", run, "val_scores.parquet").is_file()
    fused = json.loads(
        _read(dsta_project, "08_reporting", "train_dsta_net_fused", EMBEDDED_RUN, "metrics.json").read_text()
    )
    assert 0.0 <= fused["test_top1"] <= 1.0 and fused["num_test_samples"] == 120
    assert {f"{name}_test_top1" for name in streams} <= set(fused) and "val_top1" in fused

    mlflow.set_tracking_uri(f"sqlite:///{dsta_project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    # the streams, their parent and the fusion share the data set's experiment (mlflow_hooks.experiment_name)
    experiment = client.get_experiment_by_name("skeleton-attention/ntu/ntu60_xsub")
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.run_group = 'parent'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    # kedro-mlflow names the runs after the model; the driver's tag says which stream each one is
    assert sorted(c.data.tags["run_name"] for c in children) == sorted(streams)
    assert all(c.info.status == "FINISHED" for c in children)
    fused_keys = [key for key in parent.data.metrics if key.endswith("fused_test_top1")]
    assert fused_keys and parent.data.metrics[fused_keys[0]] == pytest.approx(fused["test_top1"])
    assert {f"{name}_test_top1" for name in streams} <= set(parent.data.metrics)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
