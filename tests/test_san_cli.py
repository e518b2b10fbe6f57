"""The SAN ablations (paper Tables 3-6) through ``kedro run --pipelines=train_san --params=...`` on
the embedded data, in a temporary project copy (the STA-LSTM pattern of tests/test_cli_runs.py):
one ``kedro`` process per configuration, a tiny network and one epoch, so the runs check the wiring
(variant, encoder, segments, consensus, depth, sequence length reach the model; the head losses
reach the history; metrics, scores and figures are written), not accuracy."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from skeleton_attention.training.checkpoints import load_model_artifact
from tests.test_cli_runs import EMBEDDED_RUN, _kedro, embedded_project  # noqa: F401 (fixture)

TINY = (
    "train_san.model.kwargs.ff_dim=8,train_san.model.kwargs.num_heads=2,train_san.training.epochs=1,train_san.training.progress=false,"
    "train_san.evaluation.attention_samples=1,san_frames_per_segment=8"
)

#: (run name, overrides, expected model kwargs, expected frames, extra history columns)
ABLATIONS = [
    (
        "table3_v1_ff",
        "train_san.model.variant=san_v1,train_san.model.kwargs.encoder=ff,train_san.model.kwargs.num_segments=1",
        {"variant": "san_v1", "encoder": "ff", "num_segments": 1},
        8,
        set(),
    ),
    (
        "table4_v2_seq24",
        "train_san.model.kwargs.num_segments=1,san_frames_per_segment=24",
        {"variant": "san_v2", "num_segments": 1},
        24,
        set(),
    ),
    (
        "table5_v3_max",
        "train_san.model.variant=san_v3,train_san.model.kwargs.consensus=max",
        {"variant": "san_v3", "consensus": "max", "num_segments": 3},
        24,
        {"train_ce_position", "train_ce_motion"},
    ),
    ("table6_l1h2", "train_san.model.kwargs.num_layers=1", {"num_layers": 1, "num_heads": 2}, 24, set()),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "overrides", "kwargs", "frames", "columns"), ABLATIONS, ids=[a[0] for a in ABLATIONS])
def test_every_ablation_runs_from_the_command_line(embedded_project, name, overrides, kwargs, frames, columns):  # noqa: F811
    result = _kedro(
        embedded_project,
        "run",
        "--env=embedded",
        "--pipelines=train_san",
        f"--params={TINY},{overrides},run.name={name}",
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    run = f"{EMBEDDED_RUN}/{name}"
    out = embedded_project / "data"
    artifact = load_model_artifact(out / f"06_models/train_san/{run}/model.pt")
    assert {k: artifact["model_kwargs"][k] for k in kwargs} == kwargs
    assert artifact["model_kwargs"]["data"]["num_frames"] == frames
    assert artifact["model_kwargs"]["data"]["streams"] == ["joint", "motion_fast"]
    history = pd.read_csv(out / f"08_reporting/train_san/{run}/history.csv")
    assert columns <= set(history.columns)
    metrics = json.loads((out / f"08_reporting/train_san/{run}/metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["num_test_samples"] == 120
    for figure in ("attention.png", "confusion_matrix.png", "curves.png"):
        assert (out / f"08_reporting/train_san/{run}/{figure}").stat().st_size > 10_000
    scores = pd.read_parquet(out / f"07_model_output/train_san/{run}/test_scores.parquet")
    assert len(scores) == 120


@pytest.mark.slow
def test_ts_san_needs_the_segments_sampling(embedded_project):  # noqa: F811
    """A data-set block that changes num_segments leaves the sampling (which follows the family
    block's num_segments) at 3 segments: the run stops before training, naming the fix."""
    result = _kedro(
        embedded_project,
        "run",
        "--env=embedded",
        "--pipelines=train_san",
        f"--params={TINY},train_san.datasets.ntu.model.kwargs.num_segments=2,run.name=mismatch",
    )
    assert result.returncode != 0
    assert "needs data.sampling to end with {segments: {num: 2" in result.stdout + result.stderr
