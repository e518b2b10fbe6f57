"""The MLflow round trip a user sees: a real tracking server on loopback (sqlite backend), the
embedded training run and the report logged to it by ``kedro run``, read back over the REST API.

Checks the experiment per data set and protocol (``skeleton-attention/ntu/ntu60_xsub``) and the
report's own (``skeleton-attention/report``), the run name and tags, and that the logged metrics
(``test.top1``, ``test.top5``, ``val_ce``) are the numbers the evaluation wrote to disk.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.kedro_helpers import REPO_ROOT
from tests.test_cli_runs import EMBEDDED_METRICS, EMBEDDED_RUN, TINY, embedded_project  # noqa: F401 (fixture)

BIN = Path(sys.executable).parent
QUIET = {"DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def mlflow_server(tmp_path):
    """``mlflow server`` on a free loopback port with a sqlite store; yields its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1",
        ],
        cwd=tmp_path, env={**os.environ, **QUIET}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its worker: the group this fixture started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def _kedro(project: Path, url: str, *args: str) -> None:
    env = {**os.environ, **QUIET, "MLFLOW_TRACKING_URI": url, "PYTHONPATH": str(REPO_ROOT / "src")}
    env.pop("PYTEST_CURRENT_TEST", None)
    result = subprocess.run(
        [str(BIN / "kedro"), "run", *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _runs(url: str, experiment: str) -> list[dict]:
    name = urllib.parse.quote(experiment)
    experiment_id = _get(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}")["experiment"][
        "experiment_id"
    ]
    return _post(f"{url}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]}).get("runs", [])


def _flat(entries: list[dict]) -> dict:
    return {e["key"]: e["value"] for e in entries or []}


@pytest.mark.slow
def test_runs_read_back_from_a_live_tracking_server(embedded_project, mlflow_server):  # noqa: F811
    project = embedded_project
    _kedro(project, mlflow_server, "--env=embedded", "--pipelines=train_sta_lstm", f"--params={TINY}")
    _kedro(project, mlflow_server, "--env=embedded", "--pipelines=report")

    runs = _runs(mlflow_server, "skeleton-attention/ntu/ntu60_xsub")
    assert len(runs) == 1
    run = runs[0]
    tags, metrics = _flat(run["data"].get("tags")), _flat(run["data"].get("metrics"))
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["run_name"] == "sta_lstm joint s0 ntu/ntu60_xsub [embedded]"
    assert {k: tags[k] for k in ("model", "variant", "dataset", "protocol", "stream", "seed", "env_tag", "fold")} == {
        "model": "sta_lstm", "variant": "sta_lstm", "dataset": "ntu", "protocol": "ntu60_xsub", "stream": "joint",
        "seed": "0", "env_tag": "embedded", "fold": "",
    }  # fmt: skip
    written = json.loads((project / f"data/08_reporting/train_sta_lstm/{EMBEDDED_RUN}/test_metrics.json").read_text())
    flat = json.loads((project / EMBEDDED_METRICS).read_text())
    assert metrics["test.top1"] == pytest.approx(written["top1"]) == pytest.approx(flat["test_top1"])
    assert metrics["test.top5"] == pytest.approx(written["top5"])
    assert metrics["best_val_ce"] == pytest.approx(flat["best_val_ce"])
    assert metrics["val_top1"] == pytest.approx(flat["val_top1"])  # the kept model's, not the last epoch's
    assert {"val_ce", "val_acc", "train_loss"} <= set(metrics)
    assert tags["runner"] == "SequentialRunner"  # not kedro-mlflow's object repr, which differs in every run

    # register-best over the server's REST API: the one training run, ranked by its validation top-1
    from skeleton_attention.model_registry import register_best

    (registered,) = register_best(mlflow_server, "skeleton-attention")
    assert registered.name == "skeleton-attention.embedded.ntu.ntu60_xsub.sta_lstm" and registered.created
    assert registered.candidate.run_id == run["info"]["run_id"]
    assert registered.candidate.best_epoch == flat["best_epoch"]
    # val_acc at best_epoch is the selected model's validation accuracy, as the evaluation computed it
    assert registered.candidate.val_top1 == pytest.approx(flat["val_top1"])

    (report,) = _runs(mlflow_server, "skeleton-attention/report")
    assert report["info"]["status"] == "FINISHED"
    assert _flat(report["data"].get("metrics"))["report.runs"] == 1
    listed = _get(
        f"{mlflow_server}/api/2.0/mlflow/artifacts/list?run_id={report['info']['run_id']}&path=report"
    )  # fmt: skip
    assert {f["path"] for f in listed["files"]} == {"report/report.md", "report/report.html", "report/leaderboard.csv"}
    markdown = (project / "data/08_reporting/report/report.md").read_text()
    assert f"{100 * written['top1']:.2f}" in markdown and "[embedded environment]" in markdown
