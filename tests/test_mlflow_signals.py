"""A tracked run stopped by SIGTERM or SIGINT ends KILLED in the MLflow store (mlflow_hooks.MlflowTerminationHooks).

Each case is a child process holding an active MLflow run (sqlite store) the way a ``kedro run`` does
while it trains: the hook installed by ``before_pipeline_run``, the main thread busy. The control
case without the hook shows what the hook is for: SIGTERM leaves the run RUNNING.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kedro_helpers import REPO_ROOT

CHILD = """
import sys, time
import mlflow
from skeleton_attention.mlflow_hooks import MlflowTerminationHooks

mlflow.set_tracking_uri(sys.argv[1])
run = mlflow.start_run()
mlflow.log_metric("val_ce", 1.0, step=1)
if sys.argv[2] == "hooked":
    MlflowTerminationHooks().before_pipeline_run({}, None, None)
print("RUN", run.info.run_id, flush=True)
while True:  # training
    sum(range(10_000))
    time.sleep(0.01)
"""


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An sqlite store with MLflow's tables, made once: creating them (migrations) is the slow part."""
    import mlflow

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def _run_and_signal(tmp_path: Path, signum: int, hooked: bool) -> tuple[int, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "MLFLOW_DISABLE_TELEMETRY": "true"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, uri, "hooked" if hooked else "plain"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        run_id = ""
        for line in child.stdout:  # Kedro's logging notice may come first
            if line.startswith("RUN "):
                run_id = line.split()[1]
                break
        assert run_id, child.stderr.read()[-3000:]
        time.sleep(0.3)
        child.send_signal(signum)
        code = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    import mlflow

    return code, mlflow.MlflowClient(uri).get_run(run_id).info.status


@pytest.mark.parametrize(
    ("signum", "hooked", "status"),
    [(signal.SIGTERM, True, "KILLED"), (signal.SIGINT, True, "KILLED"), (signal.SIGTERM, False, "RUNNING")],
    ids=["sigterm", "sigint", "sigterm-without-hook"],
)
def test_a_signalled_run_ends_killed(tmp_path, empty_store, signum, hooked, status):
    import shutil

    shutil.copy(empty_store, tmp_path / "mlflow.db")
    code, found = _run_and_signal(tmp_path, signum, hooked)
    assert found == status
    if hooked and signum == signal.SIGTERM:
        assert code == 128 + signal.SIGTERM  # the shell's convention for a process ended by SIGTERM
    assert code != 0
