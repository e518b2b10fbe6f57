"""Run groups: one model per named run block (e.g. DSTA-Net's four streams), then score fusion;
on a cross-validated protocol, every named run of every fold, fused fold by fold.

``kedro run --pipelines=train_<family>`` comes here (``cli.py``) when the family's parameters hold
``runs`` (blocks selected by ``run.name``, experiments/config.py), the family has a
``fuse_<family>`` pipeline and no ``run.name`` is given. The driver

* trains each named run as its own ``kedro run ... --params=...,run.name=<name>`` process in a child
  MLflow run of one parent run, one at a time (``run_group.workers``: these are the largest models;
  their memory, not the cores, is the limit), and on a cross-validated protocol each
  ``(name, fold)`` pair (``run.name=<name>,run.fold=<k>``; ``cross_validation.folds`` picks a subset);
* then runs the fusion pipeline: inside the parent run on a train/test protocol; per fold, in a
  child run ``fused fold <k>``, on a cross-validated one;
* on a cross-validated protocol aggregates the fused folds and each named run's folds (mean +- std,
  pooled confusion matrix) into ``runs/summary.json``, the figures beside it, the parent run's
  metrics and one metrics file (``<metrics_dir>/<pipeline>_fused/<run dir>/metrics.json``).

Finished members (process exit 0 and test metrics of the same composed configuration) are not
retrained, so an interrupted group resumes where it stopped; interrupting marks the runs KILLED.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skeleton_attention.experiments.config import fingerprint, run_dir
from skeleton_attention.experiments.cross_validation import aggregate_folds
from skeleton_attention.experiments.fold_driver import (
    flat_fold_metrics,
    folds_label,
    metrics_root,
    protocol_folds_of,
    select_folds,
    write_fold_figures,
)
from skeleton_attention.experiments.processes import (
    STATE_FILE,
    Member,
    ParentRun,
    finished_members,
    kedro_command,
    read_state,
    run_members,
    sigterm_as_interrupt,
    with_run,
    worker_env,
    write_json,
)

logger = logging.getLogger(__name__)

GROUP_STATE_DIR = "runs"


@dataclass
class RunGroupPlan:
    """What a run group will do; built by :func:`plan_run_group`. ``fingerprints`` is keyed by
    :meth:`member_key` (the name, or ``<name>/fold<k>`` when ``folds`` are given)."""

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
    folds: list[int] = field(default_factory=list)  # empty: a train/test protocol (or run.fold given)
    num_folds_total: int | None = None
    workers: int = 1

    def run_dir(self, name: str | None, fold: int | None = None) -> str:
        run = self.config["run"]
        return run_dir(run["tag"], run["dataset"], run["protocol"], fold if fold is not None else run.get("fold"), name)

    def reporting(self, name: str | None, fold: int | None = None, pipeline: str | None = None) -> Path:
        return self.project_path / "data" / "08_reporting" / (pipeline or self.pipeline) / self.run_dir(name, fold)

    @property
    def state_dir(self) -> Path:
        return self.reporting(None) / GROUP_STATE_DIR

    def metrics_path(self, name: str, fold: int | None = None) -> Path:
        return self.reporting(name, fold) / "test_metrics.json"

    def fused_metrics_path(self, fold: int | None = None) -> Path:
        return self.reporting(None, fold, f"{self.pipeline}_fused") / "test_metrics.json"

    def model_output(self, name: str | None) -> Path:
        """The run's directory of per-sample scores (catalog_train.yml ``test_scores``)."""
        base = self.project_path / "data" / "07_model_output" / self.pipeline
        return base if name is None else base / self.run_dir(name)

    def member_key(self, name: str, fold: int | None = None) -> str:
        return name if fold is None else f"{name}/fold{fold}"

    @property
    def fingerprint(self) -> str:
        return fingerprint({"runs": self.fingerprints})


def group_command(
    plan: RunGroupPlan, name: str | None, pipeline: str | None = None, fold: int | None = None
) -> list[str]:
    """The ``kedro run`` of one named run (``run.name=<name>``, ``run.fold=<k>``), or of the fusion."""
    params = dict(plan.runtime_params)  # metrics_dir included: every member writes its own metrics file
    selectors = {**({"name": name} if name is not None else {}), **({"fold": fold} if fold is not None else {})}
    if selectors:
        params = with_run(params, **selectors)
    return kedro_command(pipeline or plan.pipeline, params, plan.env)


def group_members(plan: RunGroupPlan) -> list[Member]:
    """Every named run (of every fold, fold by fold), in the order they are trained."""
    pairs = [(name, fold) for fold in plan.folds for name in plan.names] or [(name, None) for name in plan.names]
    members = []
    for name, fold in pairs:
        key = plan.member_key(name, fold)
        label = f"run {name}" + (f", fold {fold}" if fold is not None else "")
        tags = {"run_name": name, "run_group": "member", **({"fold": str(fold)} if fold is not None else {})}
        members.append(
            Member(
                key=key,
                label=label,
                command=group_command(plan, name, fold=fold),
                log_path=plan.state_dir / f"{key.replace('/', '_')}.log",
                fingerprint=plan.fingerprints[key],
                metrics_path=plan.metrics_path(name, fold),
                child_name=key.replace("/", " "),
                child_tags=tags,
            )
        )
    return members


def finished_runs(plan: RunGroupPlan, state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Members whose process completed and whose metrics come from the current configuration."""
    return finished_members(group_members(plan), state)


def _parent(plan: RunGroupPlan, state: dict[str, Any]) -> ParentRun:
    model, data = plan.config["model"], plan.config["data"]
    where = f"{data['dataset']}/{data['protocol']}" + ("/cv" if plan.folds else "")
    name = f"{model['name']}/{model.get('variant') or model['name']} {where} fused"
    tags = {
        "model": str(model["name"]),
        "variant": str(model.get("variant") or model["name"]),
        "dataset": str(data["dataset"]),
        "protocol": str(data["protocol"]),
        "pipeline": plan.pipeline,
        "run_group": "parent",
        "runs": ",".join(plan.names),
        "env_tag": str(plan.config["run"]["tag"]),
        **({"cross_validation": "parent", "num_folds": str(len(plan.folds))} if plan.folds else {}),
    }
    return ParentRun(plan.experiment_name, state, plan.fingerprint, name, tags)


def run_group(plan: RunGroupPlan) -> dict[str, Any]:
    """Train the unfinished named runs of ``plan``, then fuse their scores (per fold when the
    protocol is cross-validated, and aggregate the folds)."""
    plan.state_dir.mkdir(parents=True, exist_ok=True)
    state_path = plan.state_dir / STATE_FILE
    state = read_state(state_path)
    members = group_members(plan)
    done = finished_members(members, state)
    todo = [m for m in members if m.key not in done]
    data = plan.config["data"]
    logger.info(
        "%s on %s/%s: runs %s%s, %d of %d already finished",
        plan.pipeline,
        data["dataset"],
        data["protocol"],
        plan.names,
        f" x folds {plan.folds}" if plan.folds else "",
        len(done),
        len(members),
    )
    parent = _parent(plan, state) if plan.tracking else None
    state["fingerprint"] = plan.fingerprint
    write_json(state_path, state)
    # one run at a time: every core, unless the caller set threads
    env = worker_env(plan.workers, os.environ)
    try:
        with sigterm_as_interrupt():
            codes = run_members(todo, plan.workers, plan.project_path, env, state, state_path, parent)
            failed = sorted(k for k, code in codes.items() if code != 0)
            if failed:
                logs = ", ".join(str(m.log_path) for m in members if m.key in failed[:3])
                raise RuntimeError(f"runs {failed} failed; see {logs}")
            summary = _fuse(plan, env, parent) if plan.fusion_pipeline else {}
    except RuntimeError:
        if parent:
            parent.end("FAILED")
        raise
    except BaseException:
        if parent:
            parent.end("KILLED")
        raise
    summary.update(config_fingerprint=plan.fingerprint, **_member_summary(plan, finished_runs(plan, state)))
    _write_outputs(plan, summary, parent)
    if parent:
        parent.end("FINISHED")
    logger.info(
        "%s: per-run test top-1 %s; fused %s",
        plan.pipeline,
        {k: v.get("top1", v.get("top1_mean")) for k, v in summary["runs"].items()},
        summary.get("fused_top1", summary.get("fused_top1_mean")),
    )
    return summary


def _fuse(plan: RunGroupPlan, env: Mapping[str, str], parent: ParentRun | None) -> dict[str, Any]:
    """Run the fusion pipeline (per fold on a cross-validated protocol); the fused metrics."""
    assert plan.fusion_pipeline
    fused: dict[int | None, dict[str, Any]] = {}
    for fold in plan.folds or [None]:
        child = None
        if parent:
            child = (
                parent.run_id
                if fold is None
                else parent.child(f"fused fold {fold}", {"run_group": "fusion", "fold": str(fold)})
            )
        suffix = "" if fold is None else f"_fold{fold}"
        log_path = plan.state_dir / f"fusion{suffix}.log"
        command = group_command(plan, None, plan.fusion_pipeline, fold=fold)
        code = _run_logged(command, plan.project_path, {**env, **({"MLFLOW_RUN_ID": child} if child else {})}, log_path)
        if code != 0:
            if parent and fold is not None:
                parent.end_child(child, "FAILED")
            raise RuntimeError(f"fusion ({plan.fusion_pipeline}) failed (exit {code}); see {log_path}")
        if plan.fused_metrics_path(fold).is_file():
            fused[fold] = json.loads(plan.fused_metrics_path(fold).read_text())
    if not plan.folds:
        return {"fused_top1": fused[None].get("top1")} if None in fused else {}
    missing = sorted(set(plan.folds) - set(fused))
    if missing:
        raise RuntimeError(f"fusion wrote no test metrics for folds {missing} ({plan.fused_metrics_path(missing[0])})")
    aggregate = aggregate_folds(fused)
    aggregate["num_folds_total"] = plan.num_folds_total or len(plan.folds)
    return {"fused": aggregate, "fused_top1_mean": aggregate["top1_mean"], "fused_top1_std": aggregate["top1_std"]}


def _run_logged(command: list[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> int:
    """One child process to completion, its output in ``log_path``; an interrupt stops it."""
    import subprocess

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
        try:
            return process.wait()
        except BaseException:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise


def _member_summary(plan: RunGroupPlan, done: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each named run's test metrics (train/test protocol) or its folds aggregated."""
    runs: dict[str, Any] = {}
    for name in plan.names:
        if not plan.folds:
            metrics = done.get(name) or {}
            runs[name] = {k: metrics.get(k) for k in ("top1", "top5", "mean_class_acc", "num_samples")}
            continue
        by_fold = {fold: done[plan.member_key(name, fold)] for fold in plan.folds}
        aggregate = aggregate_folds(by_fold)
        runs[name] = {k: aggregate.get(k) for k in ("top1_mean", "top1_std", "pooled_top1", "num_samples")}
        runs[name]["per_fold"] = {str(f): m.get("top1") for f, m in by_fold.items()}
    return {"runs": runs}


def _write_outputs(plan: RunGroupPlan, summary: dict[str, Any], parent: ParentRun | None) -> None:
    write_json(plan.state_dir / "summary.json", summary)
    metrics: dict[str, Any] = {}
    figures: list[str] = []
    if plan.folds and "fused" in summary:
        figures = write_fold_figures(plan.state_dir, summary["fused"], plan.config["data"]["protocol"], " (fused)")
        flat = flat_fold_metrics(summary["fused"])
        for name, values in summary["runs"].items():
            flat[f"{name}_cv_top1_mean"] = values["top1_mean"]
            flat[f"{name}_cv_top1_std"] = values["top1_std"]
        write_json(
            metrics_root(plan.project_path, plan.runtime_params.get("metrics_dir"))
            / f"{plan.pipeline}_fused"
            / plan.run_dir(None)
            / "metrics.json",
            flat,
        )
        # the runs table's columns of a plain run hold the fused mean over folds
        metrics = {**flat, "test.top1": summary["fused_top1_mean"], "test.top1_std": summary["fused_top1_std"]}
        logger.info(
            "fused %s cross-validation: test top-1 %.4f +- %.4f over %s",
            plan.pipeline,
            summary["fused_top1_mean"],
            summary["fused_top1_std"],
            folds_label(summary["fused"]),
        )
    else:
        metrics = {f"{name}_test_top1": values.get("top1") for name, values in summary["runs"].items()}
    if parent:
        parent.log_metrics(metrics)
        for name in ("summary.json", *figures):
            parent.log_artifact(plan.state_dir / name, artifact_path="run_group")


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

    bootstrap_project(project_path)
    with KedroSession.create(project_path=project_path, env=env, runtime_params=dict(runtime_params)) as session:
        context = session.load_context()
        params = context.params
        family, config = params.get(pipeline), params.get(f"{pipeline}_config")
        if not isinstance(family, Mapping) or not isinstance(config, Mapping) or not family.get("runs"):
            return None
        if config["run"].get("name"):
            return None
        all_folds = protocol_folds_of(context, config) if config["data"].get("fold") is None else []
        folds = select_folds(all_folds, (params.get("cross_validation") or {}).get("folds")) if all_folds else []
        names = [str(name) for name in family["runs"]]
        run = params["run"]
        fingerprints = {
            (name if not folds else f"{name}/fold{fold}"): fingerprint(
                compose(family, {**run, "name": name, **({"fold": fold} if folds else {})})
            )
            for name in names
            for fold in folds or [None]
        }
        mlflow_config = getattr(context, "mlflow", None)
        tracking = mlflow_config is not None and pipeline not in mlflow_config.tracking.disable_tracking.pipelines
        fusion = pipeline.replace("train_", "fuse_", 1)
        workers = int((params.get("run_group") or {}).get("workers") or 1)
        return RunGroupPlan(
            pipeline=pipeline,
            env=env,
            runtime_params=dict(runtime_params),
            config=dict(config),
            names=names,
            fingerprints=fingerprints,
            project_path=Path(project_path),
            fusion_pipeline=fusion if fusion in registered else None,
            # the experiment the member runs' and the fusion's own hook pick (mlflow_hooks)
            experiment_name=experiment_name(
                mlflow_config.tracking.experiment.name if mlflow_config else "skeleton-attention", config
            ),
            tracking=tracking,
            folds=folds,
            num_folds_total=len(all_folds) or None,
            workers=max(1, workers),
        )
