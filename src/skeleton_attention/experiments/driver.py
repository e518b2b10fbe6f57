"""Running every fold of a cross-validated protocol: one Kedro run per fold, one MLflow parent run.

``kedro run --pipelines=train_<family> --params=run.dataset=sbu`` comes here (``cli.py``) when the
run's protocol is cross-validated and no ``run.fold`` is given. The driver

* opens (or, after an interruption, reopens) a parent MLflow run, named and tagged as its fold runs
  are (``.../<protocol>/cv ...``), in the data set's experiment (``<base>/<dataset>/<protocol>``,
  mlflow_hooks.experiment_name);
* runs each unfinished fold as its own ``kedro run ... --params=...,run.fold=k`` process, logged
  into a child run of the parent (``MLFLOW_RUN_ID``), ``cross_validation.workers`` at a time, each
  with its share of the CPU threads; a fold's output and log go to its own run directory;
* counts a fold as finished when its process ended successfully (recorded in ``cv/state.json``)
  and its ``test_metrics.json`` was produced by the same composed configuration
  (``config_fingerprint``), so a killed run resumes with the folds it had not finished, and a
  changed configuration retrains them all;
* aggregates the folds (mean +- std of top-1, pooled confusion matrix), writes them under
  ``data/08_reporting/<pipeline>/<run dir>/cv/`` and one metrics file (the DVC one when
  ``metrics_dir`` is given), and logs them to the parent run.

Interrupting the driver terminates the fold processes and marks their runs KILLED.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skeleton_attention.experiments.config import fingerprint, run_dir
from skeleton_attention.experiments.cross_validation import aggregate_folds, plot_fold_accuracies
from skeleton_attention.skeletons.ingest import resolve_workers as available_cores

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"


@dataclass
class FoldPlan:
    """What a cross-validation run will do; built by :func:`plan_cross_validation`."""

    pipeline: str
    env: str | None
    runtime_params: dict[str, Any]
    config: dict[str, Any]
    folds: list[int]
    fold_fingerprints: dict[int, str]
    workers: int
    project_path: Path
    metrics_dir: str | None = None
    experiment_name: str = "skeleton-attention"
    tracking: bool = True
    num_folds_total: int | None = None  # the protocol's folds when cross_validation.folds picks a subset

    @property
    def base_dir(self) -> str:
        run = self.config["run"]
        return run_dir(run["tag"], run["dataset"], run["protocol"], None, run.get("name"))

    def fold_dir(self, fold: int) -> str:
        run = self.config["run"]
        return run_dir(run["tag"], run["dataset"], run["protocol"], fold, run.get("name"))

    def reporting(self, sub: str) -> Path:
        return self.project_path / "data" / "08_reporting" / self.pipeline / sub

    @property
    def cv_dir(self) -> Path:
        return self.reporting(self.base_dir) / "cv"


def fold_metrics_path(plan: FoldPlan, fold: int) -> Path:
    """Where fold ``fold``'s evaluation writes its metrics (catalog_train.yml ``test_metrics``)."""
    return plan.reporting(plan.fold_dir(fold)) / "test_metrics.json"


def finished_folds(plan: FoldPlan, state: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Folds whose process completed and whose metrics come from the current configuration."""
    completed = state.get("completed") or {}
    done = {}
    for fold in plan.folds:
        path = fold_metrics_path(plan, fold)
        if completed.get(str(fold)) != plan.fold_fingerprints[fold] or not path.is_file():
            continue
        metrics = json.loads(path.read_text())
        if metrics.get("config_fingerprint") == plan.fold_fingerprints[fold]:
            done[fold] = metrics
        else:
            logger.info("fold %d: outputs come from another configuration; it will be retrained", fold)
    return done


def resolve_workers(workers: Any, num_folds: int) -> int:
    """``null``/0: one fold per core; never more folds at once than there are folds."""
    return min(available_cores(workers), max(1, num_folds))


def _dotlist(params: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``{"run": {"fold": 2}}`` -> ``["run.fold=2"]``: values as YAML/JSON literals for ``--params``."""
    items = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items.extend(_dotlist(value, f"{name}."))
        elif isinstance(value, str):
            items.append(f"{name}={value}")
        else:
            items.append(f"{name}={json.dumps(value)}")
    return items


def fold_command(plan: FoldPlan, fold: int) -> list[str]:
    """The ``kedro run`` of one fold (the same selectors and overrides, plus ``run.fold``)."""
    params = {k: v for k, v in plan.runtime_params.items() if k != "metrics_dir"}
    params["run"] = {**dict(params.get("run") or {}), "fold": fold}
    kedro = Path(sys.executable).with_name("kedro")
    command = [str(kedro)] if kedro.exists() else [sys.executable, "-m", "kedro"]
    command += ["run", f"--pipelines={plan.pipeline}", f"--params={','.join(_dotlist(params))}"]
    if plan.env:
        command.append(f"--env={plan.env}")
    return command


class _Tracker:
    """The parent and child MLflow runs of a cross-validation (no-op when tracking is off)."""

    def __init__(self, plan: FoldPlan, state: dict[str, Any]) -> None:
        import mlflow

        self.client = mlflow.MlflowClient()
        experiment = mlflow.get_experiment_by_name(plan.experiment_name)
        self.experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment(plan.experiment_name)
        )
        self.parent_id = self._parent(plan, state)
        state["parent_run_id"] = self.parent_id

    def _parent(self, plan: FoldPlan, state: dict[str, Any]) -> str:
        previous = state.get("parent_run_id")
        if previous and state.get("fingerprint") == _plan_fingerprint(plan):
            try:
                found = self.client.get_run(previous)
                if found.info.experiment_id != self.experiment_id:
                    # an older version put the parent in another experiment; fold runs must share it
                    raise LookupError(f"parent run {previous} is in experiment {found.info.experiment_id}")
                self.client.update_run(previous, status="RUNNING")
                self._kill_orphans(previous)
                logger.info("resuming cross-validation parent run %s", previous)
                return previous
            except Exception:  # deleted, another store or another experiment: start a new parent
                logger.info("previous parent run %s not found here; starting a new one", previous)
        from skeleton_attention.mlflow_hooks import run_name, run_tags

        # the fold runs' names and tags (mlflow_hooks), with /cv for the fold: runs that differ differ here too
        name = run_name(plan.config, cross_validation=True)
        tags = {**run_tags(plan.config, plan.pipeline), "cross_validation": "parent", "num_folds": str(len(plan.folds))}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        return run.info.run_id

    def _kill_orphans(self, parent: str) -> None:
        for run in self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
        ):
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, "KILLED")

    def child(self, plan: FoldPlan, fold: int) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"fold {fold}",
            tags={"mlflow.parentRunId": self.parent_id, "fold": str(fold), "cross_validation": "fold"},
        )
        return run.info.run_id

    def child_failed(self, run_id: str, status: str) -> None:
        run = self.client.get_run(run_id)
        if run.info.status == "RUNNING":
            self.client.set_terminated(run_id, status)


def _plan_fingerprint(plan: FoldPlan) -> str:
    return fingerprint({"folds": plan.fold_fingerprints})


def _thread_env(workers: int) -> dict[str, str]:
    threads = str(max(1, available_cores(None) // workers))
    return {name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def _run_folds(plan: FoldPlan, todo: list[int], tracker: _Tracker | None, state: dict[str, Any]) -> dict[int, int]:
    """Run the folds ``todo``, ``plan.workers`` at a time; returns their exit codes. A fold that
    ends successfully is recorded in ``state`` (and ``cv/state.json``) at once."""
    codes: dict[int, int] = {}
    running: dict[int, tuple[subprocess.Popen, Any, str | None, float]] = {}
    queue = list(todo)
    started = time.monotonic()
    try:
        while queue or running:
            while queue and len(running) < plan.workers:
                fold = queue.pop(0)
                log_path = plan.cv_dir / f"fold{fold}.log"
                log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed when the fold ends
                env = {**os.environ, **_thread_env(plan.workers)}
                child = tracker.child(plan, fold) if tracker else None
                if child:
                    env["MLFLOW_RUN_ID"] = child
                process = subprocess.Popen(
                    fold_command(plan, fold), cwd=plan.project_path, env=env, stdout=log, stderr=subprocess.STDOUT
                )
                running[fold] = (process, log, child, time.monotonic())
                logger.info("fold %d started (log: %s)", fold, log_path)
            time.sleep(0.5)
            for fold in [f for f, (p, *_rest) in running.items() if p.poll() is not None]:
                process, log, child, began = running.pop(fold)
                log.close()
                codes[fold] = process.returncode
                if process.returncode == 0:
                    state.setdefault("completed", {})[str(fold)] = plan.fold_fingerprints[fold]
                    _write_json(plan.cv_dir / STATE_FILE, state)
                elif child and tracker:
                    tracker.child_failed(child, "FAILED")
                finished = len(todo) - len(queue) - len(running)
                outcome = "done" if process.returncode == 0 else f"FAILED (exit {process.returncode})"
                metrics = fold_metrics_path(plan, fold)
                ok = metrics.is_file() and not process.returncode
                top1 = json.loads(metrics.read_text()).get("top1") if ok else None
                logger.info(
                    "fold %d %s in %.0f s%s [%d/%d, %.0f s elapsed]", fold, outcome, time.monotonic() - began,
                    f": test top-1 {top1:.4f}" if top1 is not None else "", finished, len(todo),
                    time.monotonic() - started,
                )
    except BaseException:
        for _fold, (process, log, child, _began) in running.items():
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
            if child and tracker:
                tracker.child_failed(child, "KILLED")
        raise
    return codes


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _terminate_as_interrupt() -> Any:
    """SIGTERM (a scheduler, `kill`) stops the folds and marks the runs KILLED, as Ctrl-C does."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def run_cross_validation(plan: FoldPlan) -> dict[str, Any]:
    """Run the unfinished folds of ``plan`` and aggregate all of them; returns the summary."""
    plan.cv_dir.mkdir(parents=True, exist_ok=True)
    state_path = plan.cv_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    done = finished_folds(plan, state)
    todo = [f for f in plan.folds if f not in done]
    logger.info(
        "%s on %s/%s: %d folds, %d already finished, %d to run, %d at a time",
        plan.pipeline, plan.config["data"]["dataset"], plan.config["data"]["protocol"], len(plan.folds), len(done),
        len(todo), plan.workers,
    )
    tracker = _Tracker(plan, state) if plan.tracking else None
    state["fingerprint"] = _plan_fingerprint(plan)
    _write_json(state_path, state)
    previous = _terminate_as_interrupt()
    try:
        codes = _run_folds(plan, todo, tracker, state)
    except BaseException:
        if tracker:
            tracker.client.set_terminated(tracker.parent_id, "KILLED")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    failed = sorted(f for f, code in codes.items() if code != 0)
    done = finished_folds(plan, state)
    if failed or len(done) != len(plan.folds):
        if tracker:
            tracker.client.set_terminated(tracker.parent_id, "FAILED")
        missing = sorted(set(plan.folds) - set(done))
        logs = ", ".join(str(plan.cv_dir / f"fold{f}.log") for f in (failed or missing)[:3])
        raise RuntimeError(f"cross-validation incomplete: folds {failed or missing} failed; see {logs}")
    summary = aggregate_folds(done)
    summary.update(_validation_summary(plan))
    summary.update(
        pipeline=plan.pipeline, dataset=plan.config["data"]["dataset"], protocol=plan.config["data"]["protocol"],
        config_fingerprint=_plan_fingerprint(plan),
        num_folds_total=plan.num_folds_total or len(plan.folds),
    )
    _write_outputs(plan, summary, tracker)
    if tracker:
        tracker.client.set_terminated(tracker.parent_id, "FINISHED")
    logger.info(
        "%s cross-validation: test top-1 %.4f +- %.4f over %s (pooled %.4f; validation %.4f); %s",
        plan.config["data"]["protocol"], summary["top1_mean"], summary["top1_std"], _folds_label(summary),
        summary["pooled_top1"], summary.get("val_top1_mean", float("nan")), plan.cv_dir / "summary.json",
    )
    return summary


def _validation_summary(plan: FoldPlan) -> dict[str, Any]:
    """Mean and spread over folds of the selected models' validation accuracy (each fold's own
    held-out training groups): the number to compare configurations on, never the test folds."""
    values = []
    for fold in plan.folds:
        path = plan.reporting(plan.fold_dir(fold)) / "metrics.json"
        value = json.loads(path.read_text()).get("val_top1") if path.is_file() else None
        if value is not None:
            values.append(float(value))
    if len(values) != len(plan.folds):
        return {}
    import numpy as np

    return {"val_top1_mean": float(np.mean(values)), "val_top1_std": float(np.std(values, ddof=1)) if len(values) > 1
            else 0.0, "val_top1_per_fold": values}


def _write_outputs(plan: FoldPlan, summary: dict[str, Any], tracker: _Tracker | None) -> None:
    from skeleton_attention.training.plots import plot_confusion_matrix

    _write_json(plan.cv_dir / "summary.json", summary)
    figures = {
        "confusion_matrix.png": plot_confusion_matrix(
            summary["confusion_matrix"], summary["class_names"],
            title=f"pooled confusion matrix, {_folds_label(summary)}",
        ),
        "folds.png": plot_fold_accuracies(summary, title=f"{plan.config['data']['protocol']}: test top-1 per fold"),
    }
    for name, figure in figures.items():
        tmp = plan.cv_dir / f".{name}.tmp.png"
        figure.savefig(tmp, dpi=110)
        os.replace(tmp, plan.cv_dir / name)
    flat = {
        "cv_top1_mean": summary["top1_mean"], "cv_top1_std": summary["top1_std"],
        "cv_top5_mean": summary.get("top5_mean"), "cv_mean_class_acc_mean": summary.get("mean_class_acc_mean"),
        "cv_pooled_top1": summary["pooled_top1"], "num_folds": summary["num_folds"],
        "num_folds_total": summary.get("num_folds_total", summary["num_folds"]),
        "cv_val_top1_mean": summary.get("val_top1_mean"),
        "num_test_samples": summary["num_samples"],
    }
    metrics_root = Path(plan.metrics_dir) if plan.metrics_dir else plan.project_path / "data" / "08_reporting"
    if not metrics_root.is_absolute():
        metrics_root = plan.project_path / metrics_root
    _write_json(metrics_root / plan.pipeline / plan.base_dir / "metrics.json", flat)
    if tracker:
        # the runs table's columns of a plain run (test.top1, ...) hold the parent's mean over folds
        same_keys = {f"test.{k}": summary.get(f"{k}_mean") for k in ("top1", "top5", "mean_class_acc", "loss")}
        for key, value in {**flat, **same_keys, "test.top1_std": summary["top1_std"]}.items():
            if value is not None:
                tracker.client.log_metric(tracker.parent_id, key, float(value))
        for name in ("summary.json", *figures):
            tracker.client.log_artifact(tracker.parent_id, str(plan.cv_dir / name), artifact_path="cross_validation")


def _folds_label(summary: Mapping[str, Any]) -> str:
    run, total = summary["num_folds"], summary.get("num_folds_total", summary["num_folds"])
    return f"{run} folds" if run == total else f"{run} of {total} folds"


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def plan_cross_validation(
    project_path: Path, pipeline: str, env: str | None, runtime_params: Mapping[str, Any]
) -> FoldPlan | None:
    """The fold plan of ``kedro run --pipelines=<pipeline>``, or None when it is not a
    cross-validation (not a training family, a fold chosen, a train/test protocol, or no table yet:
    then the plain run goes ahead and says what is missing)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from skeleton_attention.experiments.config import compose
    from skeleton_attention.mlflow_hooks import experiment_name
    from skeleton_attention.training.data import protocol_folds

    bootstrap_project(project_path)
    with KedroSession.create(project_path=project_path, env=env, runtime_params=dict(runtime_params)) as session:
        context = session.load_context()
        params = context.params
        config = params.get(f"{pipeline}_config")
        if not isinstance(config, Mapping) or config["data"].get("fold") is not None:
            return None
        try:
            bundle = context.catalog.load("training_samples")
        except Exception as error:  # no prepared table yet: the plain run reports it
            logger.debug("no table for a cross-validation plan: %s", error)
            return None
        all_folds = protocol_folds(bundle.table.metadata(), config["data"]["protocol"])
        if not all_folds:
            return None
        folds = select_folds(all_folds, (params.get("cross_validation") or {}).get("folds"))
        if len(folds) < len(all_folds):
            logger.warning(
                "cross_validation.folds: running %d of the %d folds of %s (a subset; the summary says so)",
                len(folds), len(all_folds), config["data"]["protocol"],
            )
        family, run = params[pipeline], params["run"]
        fingerprints = {k: fingerprint(compose(family, {**run, "fold": k})) for k in folds}
        mlflow_config = getattr(context, "mlflow", None)
        tracking = mlflow_config is not None and pipeline not in mlflow_config.tracking.disable_tracking.pipelines
        workers = resolve_workers((params.get("cross_validation") or {}).get("workers"), len(folds))
        return FoldPlan(
            pipeline=pipeline, env=env, runtime_params=dict(runtime_params), config=dict(config), folds=folds,
            fold_fingerprints=fingerprints, workers=workers, project_path=Path(project_path),
            metrics_dir=runtime_params.get("metrics_dir"),
            # the experiment the fold runs' own hook picks (mlflow_hooks.MlflowExperimentHooks)
            experiment_name=experiment_name(
                mlflow_config.tracking.experiment.name if mlflow_config else "skeleton-attention", config
            ),
            tracking=tracking, num_folds_total=len(all_folds),
        )


def select_folds(folds: list[int], selection: Any) -> list[int]:
    """The folds ``cross_validation.folds`` asks for: null = all; a list of fold numbers; or
    ``{every: k, start: s}`` = every k-th fold from the s-th (1-based position), a spread-out
    subset of a long protocol such as UTKinect's 199 leave-one-sequence-out folds."""
    if selection is None:
        return list(folds)
    if isinstance(selection, Mapping):
        unknown = set(selection) - {"every", "start"}
        every, start = selection.get("every"), selection.get("start", 1)
        if unknown or not isinstance(every, int) or not isinstance(start, int) or every < 1 or start < 1:
            raise ValueError(
                "cross_validation.folds must be null, a list of folds or {every: k >= 1, start: s >= 1}; "
                f"got {selection!r}"
            )
        return list(folds)[start - 1 :: every]
    if isinstance(selection, (list, tuple)) and selection and all(isinstance(f, int) for f in selection):
        missing = sorted(set(selection) - set(folds))
        if missing:
            raise ValueError(f"cross_validation.folds {missing} are not folds of this protocol (folds: {list(folds)})")
        return [f for f in folds if f in set(selection)]
    raise ValueError(
        f"cross_validation.folds must be null, a list of fold numbers or {{every: k, start: s}}; got {selection!r}"
    )


# --- run groups: one model per named run block (e.g. DSTA-Net's four streams), then score fusion ------
#
# ``kedro run --pipelines=train_<family>`` comes here when the family's parameters hold ``runs``
# (blocks selected by run.name, experiments/config.py) and no run.name is given. Each named run is
# trained as its own ``kedro run ... --params=...,run.name=<name>`` process in a child MLflow run of
# one parent run, one after the other; then the fusion pipeline (``fuse_<family>``) runs inside the
# parent run and writes the fused metrics. Finished runs (process exit 0 and test metrics of the
# same composed configuration) are not retrained.

GROUP_STATE_DIR = "runs"


@dataclass
class RunGroupPlan:
    """What a run group will do; built by :func:`plan_run_group`."""

    pipeline: str
    env: str | None
    runtime_params: dict[str, Any]
    config: dict[str, Any]
    names: list[str]
    fingerprints: dict[str, str]
    project_path: Path
    fusion_pipeline: str | None = None
    experiment_name: str = "skeleton-attention"
    tracking: bool = True

    def run_dir(self, name: str | None) -> str:
        run = self.config["run"]
        return run_dir(run["tag"], run["dataset"], run["protocol"], run.get("fold"), name)

    def reporting(self, name: str | None) -> Path:
        return self.project_path / "data" / "08_reporting" / self.pipeline / self.run_dir(name)

    @property
    def state_dir(self) -> Path:
        return self.reporting(None) / GROUP_STATE_DIR

    def metrics_path(self, name: str) -> Path:
        return self.reporting(name) / "test_metrics.json"

    def model_output(self, name: str | None) -> Path:
        """The run's directory of per-sample scores (catalog_train.yml ``test_scores``)."""
        base = self.project_path / "data" / "07_model_output" / self.pipeline
        return base if name is None else base / self.run_dir(name)


def finished_runs(plan: RunGroupPlan, state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Named runs whose process completed and whose metrics come from the current configuration."""
    completed = state.get("completed") or {}
    done = {}
    for name in plan.names:
        path = plan.metrics_path(name)
        if completed.get(name) != plan.fingerprints[name] or not path.is_file():
            continue
        metrics = json.loads(path.read_text())
        if metrics.get("config_fingerprint") == plan.fingerprints[name]:
            done[name] = metrics
    return done


def group_command(plan: RunGroupPlan, name: str | None, pipeline: str | None = None) -> list[str]:
    """The ``kedro run`` of one named run (``run.name=<name>``), or of the fusion pipeline."""
    params = dict(plan.runtime_params)  # metrics_dir included: every member writes its own metrics file
    if name is not None:
        params["run"] = {**dict(params.get("run") or {}), "name": name}
    kedro = Path(sys.executable).with_name("kedro")
    command = [str(kedro)] if kedro.exists() else [sys.executable, "-m", "kedro"]
    command += ["run", f"--pipelines={pipeline or plan.pipeline}"]
    if params:
        command.append(f"--params={','.join(_dotlist(params))}")
    if plan.env:
        command.append(f"--env={plan.env}")
    return command


class _GroupTracker(_Tracker):
    """The parent MLflow run of a run group and a child run per named run."""

    def _parent(self, plan: RunGroupPlan, state: dict[str, Any]) -> str:  # type: ignore[override]
        previous = state.get("parent_run_id")
        if previous and state.get("fingerprint") == _group_fingerprint(plan):
            try:
                self.client.get_run(previous)
                self.client.update_run(previous, status="RUNNING")
                self._kill_orphans(previous)
                return previous
            except Exception:  # deleted or another store: start a new parent
                logger.info("previous parent run %s not found; starting a new one", previous)
        model, data = plan.config["model"], plan.config["data"]
        name = f"{model['name']}/{model.get('variant') or model['name']} {data['dataset']}/{data['protocol']} fused"
        tags = {
            "model": str(model["name"]),
            "variant": str(model.get("variant") or model["name"]),
            "dataset": str(data["dataset"]),
            "protocol": str(data["protocol"]),
            "pipeline": plan.pipeline,
            "run_group": "parent",
            "runs": ",".join(plan.names),
            "env_tag": str(plan.config["run"]["tag"]),
        }
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def child(self, plan: Any, name: Any) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=str(name),
            tags={"mlflow.parentRunId": self.parent_id, "run_name": str(name), "run_group": "member"},
        )
        return run.info.run_id


def _group_fingerprint(plan: RunGroupPlan) -> str:
    return fingerprint({"runs": plan.fingerprints})


def _run_process(command: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> int:
    """Run one child ``kedro run`` to completion, its output in ``log_path``; an interrupt stops it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            return process.wait()
        except BaseException:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise


def run_group(plan: RunGroupPlan) -> dict[str, Any]:
    """Train the unfinished named runs of ``plan`` one after the other, then fuse their scores."""
    plan.state_dir.mkdir(parents=True, exist_ok=True)
    state_path = plan.state_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    done = finished_runs(plan, state)
    todo = [name for name in plan.names if name not in done]
    logger.info(
        "%s on %s/%s: runs %s, %d already finished",
        plan.pipeline,
        plan.config["data"]["dataset"],
        plan.config["data"]["protocol"],
        plan.names,
        len(done),
    )
    tracker = _GroupTracker(plan, state) if plan.tracking else None  # type: ignore[arg-type]
    state["fingerprint"] = _group_fingerprint(plan)
    _write_json(state_path, state)
    previous = _terminate_as_interrupt()
    env = {**_thread_env(1), **os.environ}  # one run at a time: every core, unless the caller set threads
    try:
        for name in todo:
            child = tracker.child(plan, name) if tracker else None
            child_env = {**env, **({"MLFLOW_RUN_ID": child} if child else {})}
            started = time.monotonic()
            logger.info("run %s started (log: %s)", name, plan.state_dir / f"{name}.log")
            code = _run_process(group_command(plan, name), plan.project_path, child_env, plan.state_dir / f"{name}.log")
            if code != 0:
                if child and tracker:
                    tracker.child_failed(child, "FAILED")
                raise RuntimeError(f"run {name} failed (exit {code}); see {plan.state_dir / f'{name}.log'}")
            state.setdefault("completed", {})[name] = plan.fingerprints[name]
            _write_json(state_path, state)
            metrics = json.loads(plan.metrics_path(name).read_text())
            logger.info("run %s done in %.0f s: test top-1 %.4f", name, time.monotonic() - started, metrics["top1"])
        summary = {"runs": {}, "config_fingerprint": _group_fingerprint(plan)}
        for name, metrics in finished_runs(plan, state).items():
            summary["runs"][name] = {k: metrics.get(k) for k in ("top1", "top5", "mean_class_acc", "num_samples")}
        if tracker:
            for name, values in summary["runs"].items():
                tracker.client.log_metric(tracker.parent_id, f"{name}_test_top1", float(values["top1"]))
        if plan.fusion_pipeline:
            fusion_env = {**env, **({"MLFLOW_RUN_ID": tracker.parent_id} if tracker else {})}
            log_path = plan.state_dir / "fusion.log"
            code = _run_process(
                group_command(plan, None, plan.fusion_pipeline), plan.project_path, fusion_env, log_path
            )
            if code != 0:
                raise RuntimeError(f"fusion ({plan.fusion_pipeline}) failed (exit {code}); see {log_path}")
            fused = plan.project_path / "data" / "08_reporting" / f"{plan.pipeline}_fused" / plan.run_dir(None)
            if (fused / "test_metrics.json").is_file():
                summary["fused_top1"] = json.loads((fused / "test_metrics.json").read_text()).get("top1")
    except RuntimeError:
        if tracker:
            tracker.client.set_terminated(tracker.parent_id, "FAILED")
        raise
    except BaseException:
        if tracker:
            tracker.client.set_terminated(tracker.parent_id, "KILLED")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    _write_json(plan.state_dir / "summary.json", summary)
    if tracker:
        tracker.client.log_artifact(tracker.parent_id, str(plan.state_dir / "summary.json"), artifact_path="run_group")
        tracker.client.set_terminated(tracker.parent_id, "FINISHED")
    logger.info("%s: per-run test top-1 %s; fused %s", plan.pipeline, summary["runs"], summary.get("fused_top1"))
    return summary


def plan_run_group(
    project_path: Path, pipeline: str, env: str | None, runtime_params: Mapping[str, Any]
) -> RunGroupPlan | None:
    """The run group of ``kedro run --pipelines=<pipeline>``, or None when the family has no
    ``runs`` blocks or a run.name is given (then it is one plain run)."""
    from kedro.framework.project import pipelines as registered
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from skeleton_attention.experiments.config import compose
    from skeleton_attention.mlflow_hooks import experiment_name
    from skeleton_attention.training.data import protocol_folds

    bootstrap_project(project_path)
    with KedroSession.create(project_path=project_path, env=env, runtime_params=dict(runtime_params)) as session:
        context = session.load_context()
        params = context.params
        family, config = params.get(pipeline), params.get(f"{pipeline}_config")
        if not isinstance(family, Mapping) or not isinstance(config, Mapping) or not family.get("runs"):
            return None
        if config["run"].get("name"):
            return None
        if config["data"].get("fold") is None:
            try:
                bundle = context.catalog.load("training_samples")
            except Exception:  # no table yet: each run reports it
                bundle = None
            if bundle is not None and protocol_folds(bundle.table.metadata(), config["data"]["protocol"]):
                raise ValueError(
                    f"{pipeline}: the named runs {sorted(family['runs'])} over the cross-validated protocol "
                    f"{config['data']['protocol']!r} are not supported together; choose one fold (run.fold=k)"
                )
        names = [str(name) for name in family["runs"]]
        run = params["run"]
        fingerprints = {name: fingerprint(compose(family, {**run, "name": name})) for name in names}
        mlflow_config = getattr(context, "mlflow", None)
        tracking = mlflow_config is not None and pipeline not in mlflow_config.tracking.disable_tracking.pipelines
        fusion = pipeline.replace("train_", "fuse_", 1)
        return RunGroupPlan(
            pipeline=pipeline,
            env=env,
            runtime_params=dict(runtime_params),
            config=dict(config),
            names=names,
            fingerprints=fingerprints,
            project_path=Path(project_path),
            fusion_pipeline=fusion if fusion in registered else None,
            # the experiment the stream runs' and the fusion's own hook pick (mlflow_hooks)
            experiment_name=experiment_name(
                mlflow_config.tracking.experiment.name if mlflow_config else "skeleton-attention", config
            ),
            tracking=tracking,
        )
