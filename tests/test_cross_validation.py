"""Cross-validated protocols: aggregation, and a 2-fold run end to end through `kedro run`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from skeleton_attention.experiments.cross_validation import aggregate_folds, plot_fold_accuracies
from skeleton_attention.experiments.fold_driver import select_folds
from skeleton_attention.experiments.processes import dotlist, worker_env
from skeleton_attention.skeletons.bundle import BundleSource, BundleSpec, PreparedBundle, write_bundle

REPO = Path(__file__).resolve().parents[1]
TOY_SAMPLES = 80  # UTKinect subjects 1-4: 8 recordings x 10 actions


def _fold_metrics(cm: list[list[int]], loss: float) -> dict:
    cm_array = np.asarray(cm)
    return {
        "top1": float(np.trace(cm_array) / cm_array.sum()),
        "top5": 1.0,
        "mean_class_acc": 0.5,
        "loss": loss,
        "num_samples": int(cm_array.sum()),
        "per_class": {"a": 1.0, "b": 0.0},
        "confusion_matrix": cm,
    }


def test_aggregate_reports_mean_std_and_pools_the_confusion_matrices():
    summary = aggregate_folds({2: _fold_metrics([[3, 1], [0, 4]], 0.4), 1: _fold_metrics([[1, 1], [1, 1]], 0.9)})
    assert summary["folds"] == [1, 2]
    assert summary["top1_mean"] == pytest.approx((0.5 + 0.875) / 2)
    assert summary["top1_std"] == pytest.approx(np.std([0.5, 0.875], ddof=1))
    assert summary["confusion_matrix"] == [[4, 2], [1, 5]]
    assert summary["pooled_top1"] == pytest.approx(9 / 12)
    assert summary["num_samples"] == 12 and summary["class_names"] == ["a", "b"]
    assert plot_fold_accuracies(summary).axes
    bad = _fold_metrics([[1, 0], [0, 1]], 0.1)
    bad["per_class"] = {"a": 1.0, "c": 1.0}
    with pytest.raises(ValueError, match="other classes"):
        aggregate_folds({1: _fold_metrics([[1, 0], [0, 1]], 0.1), 2: bad})
    with pytest.raises(ValueError, match="no fold results"):
        aggregate_folds({})


def test_runtime_params_become_a_command_linedotlist():
    assert dotlist({"run": {"dataset": "sbu", "fold": 2}, "x": {"y": [1, 2], "z": None, "w": 0.5}}) == [
        "run.dataset=sbu",
        "run.fold=2",
        "x.y=[1, 2]",
        "x.z=null",
        "x.w=0.5",
    ]


def test_member_processes_share_the_cores_unless_the_user_set_the_threads():
    shared = worker_env(10_000, {"PATH": "/bin"})  # more workers than cores: one thread each
    assert shared["PATH"] == "/bin"
    assert shared["OMP_NUM_THREADS"] == shared["MKL_NUM_THREADS"] == shared["OPENBLAS_NUM_THREADS"] == "1"
    kept = worker_env(1, {"OMP_NUM_THREADS": "1"})
    # a user's explicit choice wins over the share, for every library (torch reads MKL's count)
    assert kept["OMP_NUM_THREADS"] == kept["MKL_NUM_THREADS"] == kept["OPENBLAS_NUM_THREADS"] == "1"
    assert worker_env(1, {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "3"})["MKL_NUM_THREADS"] == "3"


def test_fold_subset_selection_for_long_protocols():
    folds = list(range(1, 11))
    assert select_folds(folds, None) == folds
    assert select_folds(folds, [7, 2]) == [2, 7]  # protocol order
    assert select_folds(folds, {"every": 4}) == [1, 5, 9]
    assert select_folds(folds, {"every": 4, "start": 2}) == [2, 6, 10]
    with pytest.raises(ValueError, match=r"\[11\] are not folds"):
        select_folds(folds, [1, 11])
    for bad in ({"every": 0}, {"each": 2}, {"every": 2, "start": 0}, [], "all", [1.5]):
        with pytest.raises(ValueError, match=r"cross_validation\.folds must be"):
            select_folds(folds, bad)


def _toy_fold_table(shared_data: Path, target: Path) -> None:
    """The real UTKinect recordings with a subject-wise 2-fold protocol ``toy_fold``."""
    from skeleton_attention.pipelines.preparation import build_streams
    from skeleton_attention.pipelines.prepare_utkinect.nodes import ingest_utkinect

    prep = yaml.safe_load((REPO / "conf/base/parameters_prepare.yml").read_text())["prepare_utkinect"]
    raw = sorted((shared_data / "utkinect_raw").glob("joints_s0[1-4]_*.txt"))  # 4 subjects: small and quick
    write_bundle(target / "i", ingest_utkinect(raw, {**prep, "workers": 1}))
    write_bundle(target / "f", build_streams(PreparedBundle(target / "i"), prep))
    table = PreparedBundle(target / "f").table
    meta = table.metadata()

    def rows():
        for record in meta.to_dict("records"):
            arrays = table.read_one(int(record["row"]), ("joint",))
            row = {
                k: (None if isinstance(v, float) and v != v else v)  # NaN from pandas = null column value
                for k, v in record.items()
                if k != "row" and not k.startswith("split_")
            }
            row["split_toy_fold"] = 1 + int(record["subject"]) % 2
            yield {**row, "joint": arrays["joint"].reshape(-1)}

    spec = BundleSpec(protocols=(), fold_protocols=("toy_fold",), streams=("joint",), row_group_size=64)
    write_bundle(target.parent / "04_feature" / "toy", BundleSource(spec=spec, records=rows(), inputs_seen=len(meta)))


def _project(tmp_path: Path, shared_data: Path) -> Path:
    project = tmp_path / "project"
    (project / "conf" / "local").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    (project / "src").mkdir()
    shutil.copytree(REPO / "conf" / "base", project / "conf" / "base")
    shutil.copy(REPO / "conf" / "logging.yml", project / "conf" / "logging.yml")
    params = yaml.safe_load((REPO / "conf/base/parameters_train_sta_lstm.yml").read_text())
    toy = params["train_sta_lstm"]["datasets"]["utkinect"]
    toy["model"]["kwargs"].update(hidden_size=8, attention_hidden_size=8)
    toy["training"]["phases"]["kwargs"] = {"pretrain_epochs": 1, "n1_epochs": 1, "n2_epochs": 1}
    toy["training"]["progress"] = False
    params["train_sta_lstm"]["datasets"]["toy"] = toy
    (project / "conf/base/parameters_train_sta_lstm.yml").write_text(yaml.safe_dump(params))
    _toy_fold_table(shared_data, project / "data" / "tmp")
    return project


def _kedro(project: Path, tracking: str, *params: str, pipeline: str = "train_sta_lstm") -> subprocess.Popen:
    # this checkout's package (the venv may hold another checkout's), also for the fold processes
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "PYTHONPATH": str(REPO / "src")}
    kedro = Path(sys.executable).with_name("kedro")
    return subprocess.Popen(
        [str(kedro), "run", f"--pipelines={pipeline}", f"--params={','.join(params)}"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_two_fold_cross_validation_interrupted_resumed_and_logged_as_parent_and_children(shared_data, tmp_path):
    """One command trains both folds; stopping it in fold 2 leaves no RUNNING run; the same command
    resumes with fold 2 only under the same parent run; a third run only re-aggregates."""
    import mlflow

    project = _project(tmp_path, shared_data)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    selectors = ("run.dataset=toy", "run.protocol=toy_fold", "cross_validation.workers=1")
    out = project / "data/08_reporting/train_sta_lstm/base/toy/toy_fold"
    process = _kedro(project, tracking, *selectors)
    state = out / "cv/state.json"

    def fold2_running() -> bool:
        # fold 1 finished (recorded by the driver) and fold 2's process has started writing its log
        done = state.is_file() and "1" in json.loads(state.read_text()).get("completed", {})
        log = out / "cv/fold2.log"
        return done and log.is_file() and log.stat().st_size > 0

    deadline = time.monotonic() + 600
    while not fold2_running() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert fold2_running() and process.poll() is None, "fold 2 never started while the run was going"
    # SIGTERM (kill, a scheduler) stops fold 2 and marks the runs KILLED as Ctrl-C does; SIGINT itself
    # cannot be tested here: pytest-xdist workers ignore it, and children inherit an ignored SIGINT
    os.kill(process.pid, signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0, output[-3000:]
    mlflow.set_tracking_uri(tracking)
    runs = mlflow.search_runs(experiment_names=["skeleton-attention/toy/toy_fold"], output_format="list")
    assert not [r for r in runs if r.info.status == "RUNNING"]  # killed runs are not left RUNNING

    resumed = _kedro(project, tracking, *selectors)
    output, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, output[-3000:]
    assert "1 already finished, 1 to run" in output
    assert "cross-validation: test top-1" in output

    summary = json.loads((out / "cv/summary.json").read_text())
    per_fold = [json.loads((out / f"fold{k}/test_metrics.json").read_text()) for k in (1, 2)]
    assert summary["folds"] == [1, 2]
    assert summary["num_samples"] == sum(m["num_samples"] for m in per_fold) == TOY_SAMPLES  # each tested once
    assert summary["top1_mean"] == pytest.approx(np.mean([m["top1"] for m in per_fold]))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cv_top1_mean"] == pytest.approx(summary["top1_mean"]) and metrics["num_folds"] == 2
    assert (out / "cv/confusion_matrix.png").stat().st_size > 5000 and (out / "cv/folds.png").stat().st_size > 5000

    runs = mlflow.search_runs(experiment_names=["skeleton-attention/toy/toy_fold"], output_format="list")
    parents = [r for r in runs if r.data.tags.get("cross_validation") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the same parent, resumed
    parent = parents[0]
    assert parent.data.metrics["cv_top1_mean"] == pytest.approx(summary["top1_mean"])
    assert parent.data.metrics["test.top1"] == pytest.approx(summary["top1_mean"])  # the runs table's column
    assert parent.info.run_name == "sta_lstm cv joint s0 toy/toy_fold"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["fold"] for r in finished) == ["1", "2"]
    assert {r.info.run_name for r in finished} == {f"sta_lstm fold{k} joint s0 toy/toy_fold" for k in (1, 2)}
    for child in finished:
        assert child.data.metrics["test.top1"] == pytest.approx(per_fold[int(child.data.tags["fold"]) - 1]["top1"])

    again = _kedro(project, tracking, *selectors)
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output[-3000:]
    assert "2 already finished, 0 to run" in output


def test_the_cheap_first_look_skips_the_session_only_where_no_fold_can_be(shared_data, tmp_path, monkeypatch):
    """``plan_cross_validation`` opens a Kedro session only when the table lists the protocol as
    cross-validated (or there is no table to ask); a train/test protocol returns None without one."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from skeleton_attention.experiments import fold_driver

    project = _project(tmp_path, shared_data)
    bootstrap_project(project)
    monkeypatch.chdir(project)
    look = fold_driver._may_be_cross_validated
    assert look(project, "train_sta_lstm", None, {"run": {"dataset": "toy", "protocol": "toy_fold"}})
    assert look(project, "train_sta_lstm", None, {"run": {"dataset": "sbu"}})  # no table: the session decides
    assert not look(project, "train_sta_lstm", None, {"run": {"dataset": "toy", "protocol": "toy_fold", "fold": 1}})
    summary_path = project / "data/04_feature/toy/summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({**summary, "fold_protocols": []}))  # now a train/test protocol
    assert not look(project, "train_sta_lstm", None, {"run": {"dataset": "toy", "protocol": "toy_fold"}})

    def no_session(*args, **kwargs):
        raise AssertionError("a session was opened for a run that cannot be cross-validated")

    monkeypatch.setattr(KedroSession, "create", no_session)
    # kedro's CLI hands --params over as nested dicts
    plain = {"run": {"dataset": "toy", "protocol": "toy_fold"}}
    assert fold_driver.plan_cross_validation(project, "train_sta_lstm", None, plain) is None
