"""The view-attention ablations from the command line, on the embedded NTU multi-view table.

As STA-LSTM's variant tests (tests/test_cli_runs.py, whose ``embedded_project`` fixture prepares the
embedded data once per test run): one ``kedro run --pipelines=train_view_attention`` process per
ablation (paper Table 1 variants, Table 2 depths, and the single-view mode on the single-view
table), with a tiny network and two epochs. Checks the artifact, metrics, plots and the view
weights the report logs.
"""

from __future__ import annotations

import json

import pytest

from skeleton_attention.training.checkpoints import load_model_artifact
from tests.test_cli_runs import _kedro, embedded_project  # noqa: F401 (the fixture)

#: a tiny network and two epochs: these runs check wiring, not accuracy
TINY = (
    "train_view_attention.model.kwargs.hidden_size=8,train_view_attention.model.kwargs.attention_hidden_size=4,"
    "train_view_attention.model.kwargs.spatial_fc_size=4,train_view_attention.model.kwargs.bilstm_size=4,"
    "train_view_attention.model.kwargs.view_fc_size=4,train_view_attention.training.progress=false,"
    "train_view_attention.evaluation.attention_samples=2,"
    "train_view_attention.datasets.{dataset}.training.epochs=2"
)


def _run(project, dataset: str, extra: str, name: str):
    params = f"run.dataset={dataset},run.name={name},{TINY.format(dataset=dataset)},{extra}"
    result = _kedro(project, "run", "--env=embedded", "--pipelines=train_view_attention", f"--params={params}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return project / "data"


@pytest.mark.slow
@pytest.mark.parametrize("variant, layers", [("deep_lstm", 3), ("st_am", 3), ("st_am_vam", 1), ("st_am_vam", 4)])
def test_every_ablation_runs_from_the_command_line(embedded_project, variant, layers):  # noqa: F811
    name = f"{variant}_l{layers}"
    extra = f"train_view_attention.model.variant={variant},train_view_attention.model.kwargs.num_layers={layers}"
    out = _run(embedded_project, "ntu_multiview", extra, name)
    run = f"embedded/ntu_multiview/ntu60_xsub/{name}"
    artifact = load_model_artifact(out / f"06_models/train_view_attention/{run}/model.pt")
    assert artifact["model_name"] == "view_attention"
    assert artifact["model_kwargs"]["variant"] == variant and artifact["model_kwargs"]["num_layers"] == layers
    assert artifact["model_kwargs"]["data"]["multi_view"] and artifact["model_kwargs"]["data"]["num_views"] == 3
    assert (
        sum(1 for k in artifact["state_dict"] if k.startswith("subnetworks.0.lstms.") and k.endswith("weight_ih_l0"))
        == layers
    )
    metrics = json.loads((out / f"08_reporting/train_view_attention/{run}/metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["num_test_samples"] > 0
    view_keys = sorted(k for k in metrics if k.startswith("test_mean_view_attention_"))
    if variant == "st_am_vam":  # the mean view weight per camera, over the test samples
        assert view_keys == [f"test_mean_view_attention_{k}" for k in (1, 2, 3)]
        assert 0.99 < sum(metrics[k] for k in view_keys) < 1.01  # every test recording has 3 cameras
    else:
        assert view_keys == []
    for png in ("curves", "confusion_matrix", "attention"):
        assert (out / f"08_reporting/train_view_attention/{run}/{png}.png").stat().st_size > 5000


@pytest.mark.slow
def test_single_view_mode_from_the_command_line(embedded_project):  # noqa: F811
    out = _run(embedded_project, "ntu", "train_view_attention.model.kwargs.num_layers=2", "single")
    run = "embedded/ntu/ntu60_xsub/single"
    artifact = load_model_artifact(out / f"06_models/train_view_attention/{run}/model.pt")
    assert artifact["model_name"] == "view_attention_single"  # chosen by the data set's block
    assert not artifact["model_kwargs"]["data"]["multi_view"]
    assert not any(k.startswith("subnetworks.1.") for k in artifact["state_dict"])
    metrics = json.loads((out / f"08_reporting/train_view_attention/{run}/metrics.json").read_text())
    assert metrics["num_test_samples"] == 120 and not any("view_attention" in k for k in metrics)
