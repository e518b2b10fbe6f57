"""``kedro viz build`` (kedro-viz, dev extra) runs on the project offline and exports the graph:
the static site in build/ with the API responses as JSON, one per registered pipeline
(docs/pipeline-picture.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli_runs import _kedro, _new_project

PIPELINES = Path(__file__).resolve().parents[1] / "src" / "skeleton_attention" / "pipelines"


@pytest.mark.slow
def test_kedro_viz_build_exports_every_pipeline(tmp_path):
    project = _new_project(tmp_path / "project")
    result = _kedro(project, "viz", "build", timeout=180)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    build = project / "build"
    assert (build / "index.html").is_file()
    exported = {path.name for path in (build / "api" / "pipelines").iterdir()}
    # every pipelines/<name>/ package (find_pipelines) and the default
    assert exported == {p.name for p in PIPELINES.iterdir() if (p / "pipeline.py").is_file()} | {"__default__"}
    main = json.loads((build / "api" / "main").read_text())
    names = {node["name"] for node in main["nodes"]}
    # the default pipeline is the embedded run: generate, prepare, train STA-LSTM with its figures
    assert {"ingest_ntu", "train_sta_lstm.skeleton_attention_plot", "train_sta_lstm.attention_plot"} <= names
    edges = {(edge["source"], edge["target"]) for edge in main["edges"]}
    ids = {node["name"]: node["id"] for node in main["nodes"]}
    assert (ids["ntu_raw_files"], ids["ingest_ntu"]) in edges
