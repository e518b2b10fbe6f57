"""The commands a new user types, on the embedded data, in a temporary copy of the project.

* every STA-LSTM ablation through ``kedro run --pipelines=train_sta_lstm
  --params=train_sta_lstm.model.variant=<v>`` (a ``kedro`` process each, with a tiny network and
  one epoch per Algorithm 1 step so the six runs stay short);
* telemetry stays off with the telemetry environment variables removed (the committed
  ``.telemetry`` file, the package's MLflow default) and ``pyproject.toml`` is left untouched;
* the embedded result (``make run``'s headline) stays above a floor, in a real subprocess.

The embedded data are generated once per test run (``kedro run --env=embedded
--pipelines=synthetic,prepare_ntu``) and copied into each worker's own project.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from skeleton_attention.models.sta_lstm import VARIANTS, algorithm_1_phases
from skeleton_attention.training.checkpoints import load_model_artifact
from tests.kedro_helpers import MLFLOW_ENV_LEFTOVERS, REPO_ROOT

KEDRO = str(Path(sys.executable).with_name("kedro"))
TELEMETRY_VARIABLES = ("DO_NOT_TRACK", "KEDRO_DISABLE_TELEMETRY", "MLFLOW_DISABLE_TELEMETRY", "DVC_NO_ANALYTICS")
#: a tiny network and one epoch per Algorithm 1 step: these runs check wiring, not accuracy
TINY = (
    "train_sta_lstm.model.kwargs.hidden_size=8,train_sta_lstm.model.kwargs.attention_hidden_size=8,"
    "train_sta_lstm.model.kwargs.spatial_fc_size=8,train_sta_lstm.training.progress=false,"
    "train_sta_lstm.training.phases.kwargs.pretrain_epochs=1,train_sta_lstm.training.phases.kwargs.n1_epochs=1,"
    "train_sta_lstm.training.phases.kwargs.n2_epochs=1,train_sta_lstm.evaluation.attention_samples=1,"
    "train_sta_lstm.data.sampling.max_frames=40"
)
#: the start of kedro-telemetry's notice when consent is not given
KEDRO_NOTICE = "Kedro is sending anonymous usage data"
#: the embedded accuracy of seed 0 is about 0.91 (docs/results.md gives the range over seeds 0-4)
EMBEDDED_TOP1_FLOOR = 0.8

#: where `kedro run --env=embedded` puts the training outputs (catalog_train.yml run directory)
EMBEDDED_RUN = "embedded/ntu/ntu60_xsub"
EMBEDDED_METRICS = f"data/08_reporting/train_sta_lstm/{EMBEDDED_RUN}/metrics.json"


def _user_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no telemetry switches, no pytest marker (MLflow treats
    PYTEST_CURRENT_TEST as a test run and would stay quiet anyway), this checkout's package first."""
    # an in-process test's mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI into os.environ; a
    # user's shell has no such leftover, so the run logs to the project's own mlflow.db
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in TELEMETRY_VARIABLES and k != "PYTEST_CURRENT_TEST" and k not in MLFLOW_ENV_LEFTOVERS
    }
    env["PYTHONPATH"] = str(REPO_ROOT / "src")
    return {**env, **extra}


def _kedro(project: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([KEDRO, *args], cwd=project, env=_user_env(), capture_output=True, text=True, timeout=timeout)


def _new_project(target: Path) -> Path:
    """A copy of the project's conf, pyproject and .telemetry (the package comes from PYTHONPATH)."""
    target.mkdir(parents=True)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO_ROOT / name, target / name)
    shutil.copytree(REPO_ROOT / "conf", target / "conf", ignore=shutil.ignore_patterns("local"))
    (target / "conf" / "local").mkdir()
    (target / "src").mkdir()  # bootstrap_project wants one
    return target


@pytest.fixture(scope="session")
def embedded_project(tmp_path_factory) -> Path:
    """This session's (or xdist worker's) own project copy, with the embedded data prepared.

    The data are generated once for the whole test run: under pytest-xdist the first worker builds
    them in the run's shared temporary directory (under a lock) and every worker copies them, so
    the workers' runs never write into the same directory.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    prepared = shared / "embedded_prepared"
    with open(shared / "embedded_prepared.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (prepared / "data" / "04_feature" / "ntu").is_dir():
            shutil.rmtree(prepared, ignore_errors=True)
            _new_project(prepared)
            result = _kedro(prepared, "run", "--env=embedded", "--pipelines=synthetic,prepare_ntu")
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    project = _new_project(tmp_path_factory.mktemp("embedded") / "project")
    shutil.copytree(prepared / "data", project / "data")
    return project


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_ablation_runs_from_the_command_line(embedded_project, variant):
    # one process per run, as a user runs it (kedro-mlflow keeps its run id in a module-level hook,
    # so repeated in-process runs would log into the first run)
    result = _kedro(
        embedded_project,
        "run",
        "--env=embedded",
        "--pipelines=train_sta_lstm",
        f"--params=train_sta_lstm.model.variant={variant},{TINY}",
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    out = embedded_project / "data"
    artifact = load_model_artifact(out / f"06_models/train_sta_lstm/{EMBEDDED_RUN}/model.pt")
    assert artifact["model_kwargs"]["variant"] == variant
    expected = algorithm_1_phases(pretrain_epochs=1, n1_epochs=1, n2_epochs=1, variant=variant)
    history = pd.read_csv(out / f"08_reporting/train_sta_lstm/{EMBEDDED_RUN}/history.csv")
    assert list(history.groupby("phase_index", sort=True)["phase"].first()) == [p["name"] for p in expected]
    metrics = json.loads((embedded_project / EMBEDDED_METRICS).read_text())
    assert metrics["epochs_run"] == len(expected) and metrics["num_test_samples"] == 120
    assert artifact["phase"]["name"] == "joint_finetune"  # selected in the last phase


def test_telemetry_is_off_without_the_environment_variables(embedded_project, monkeypatch):
    from kedro_telemetry.plugin import _check_for_telemetry_consent

    for name in TELEMETRY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert _check_for_telemetry_consent(embedded_project) is False  # read from the committed .telemetry
    before = (embedded_project / "pyproject.toml").read_bytes()
    result = _kedro(embedded_project, "info")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert KEDRO_NOTICE not in output and "consent" not in output.lower()
    assert (embedded_project / "pyproject.toml").read_bytes() == before
    assert "kedro_telemetry" not in before.decode()


@pytest.mark.slow
def test_embedded_run_is_quiet_and_above_its_accuracy_floor(embedded_project):
    """What `make run` does on a new machine (seed 0, the embedded configuration unchanged)."""
    before = (embedded_project / "pyproject.toml").read_bytes()
    result = _kedro(
        embedded_project,
        "run",
        "--env=embedded",
        "--pipelines=train_sta_lstm",
        "--params=train_sta_lstm.seed=0,train_sta_lstm.training.progress=false",
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    assert KEDRO_NOTICE not in output
    assert "Add type hints to the `predict` method" not in output
    assert (embedded_project / "pyproject.toml").read_bytes() == before
    summary = subprocess.run(
        [sys.executable, "-m", "skeleton_attention.commands", "summary", str(EMBEDDED_METRICS)],
        cwd=embedded_project,
        env=_user_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    metrics = json.loads((embedded_project / EMBEDDED_METRICS).read_text())
    assert summary.startswith(f"test top-1 {metrics['test_top1']:.4f} ")
    assert metrics["num_test_samples"] == 120
    assert metrics["test_top1"] >= EMBEDDED_TOP1_FLOOR


@pytest.mark.slow
def test_the_report_node_redraws_the_figures_on_its_own(embedded_project):
    """`kedro run --nodes=train_<family>.report` reads the evaluation's outputs from disk (the
    attention maps are a pickle file, not an in-memory hand-over), so figures can be redrawn."""
    trained = _kedro(embedded_project, "run", "--env=embedded", "--pipelines=train_sta_lstm", f"--params={TINY}")
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-4000:]
    reporting = embedded_project / "data" / f"08_reporting/train_sta_lstm/{EMBEDDED_RUN}"
    figures = [reporting / name for name in ("attention.png", "attention_skeleton.png")]
    for figure in figures:
        figure.unlink()
    metrics_before = json.loads((embedded_project / EMBEDDED_METRICS).read_text())
    redrawn = _kedro(
        embedded_project, "run", "--env=embedded", "--pipelines=train_sta_lstm", "--nodes=train_sta_lstm.report"
    )
    assert redrawn.returncode == 0, (redrawn.stdout + redrawn.stderr)[-4000:]
    assert "Completed 1 out of 1 tasks" in redrawn.stdout + redrawn.stderr
    assert all(figure.stat().st_size > 10_000 for figure in figures)
    assert json.loads((embedded_project / EMBEDDED_METRICS).read_text()) == metrics_before
