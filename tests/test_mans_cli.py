"""Every MANs ablation (Table 4) through ``kedro run --env=embedded --pipelines=train_mans
--params=train_mans.model.variant=<v>``, a ``kedro`` process each on the embedded data (the same
path as the STA-LSTM variant runs in test_cli_runs.py), with a tiny network and one epoch."""

from __future__ import annotations

import json

import pytest

from skeleton_attention.models.mans import VARIANTS
from skeleton_attention.training.checkpoints import load_model_artifact
from tests.test_cli_runs import EMBEDDED_RUN, _kedro
from tests.test_cli_runs import embedded_project as embedded_project  # the shared fixture

#: a tiny network and one epoch: these runs check wiring, not accuracy
TINY = (
    "train_mans.model.kwargs.image_size=12,train_mans.model.kwargs.hidden_size=4,"
    "train_mans.training.progress=false,train_mans.evaluation.attention_samples=2,"
    "train_mans.datasets.ntu.training.epochs=1,train_mans.datasets.ntu.data.sampling.length=32"
)


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_mans_ablation_runs_from_the_command_line(embedded_project, variant):
    result = _kedro(
        embedded_project,
        "run",
        "--env=embedded",
        "--pipelines=train_mans",
        f"--params=train_mans.model.variant={variant},{TINY}",
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    out = embedded_project / "data"
    artifact = load_model_artifact(out / f"06_models/train_mans/{EMBEDDED_RUN}/model.pt")
    assert artifact["model_kwargs"]["variant"] == variant
    assert artifact["model_kwargs"]["data"]["num_frames"] == 32
    metrics = json.loads((out / f"08_reporting/train_mans/{EMBEDDED_RUN}/metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["num_test_samples"] == 120
    for png in ("curves", "confusion_matrix", "attention"):
        assert (out / f"08_reporting/train_mans/{EMBEDDED_RUN}/{png}.png").stat().st_size > 5000
