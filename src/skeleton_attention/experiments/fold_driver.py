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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skeleton_attention.experiments.config import fingerprint, run_dir
from skeleton_attention.experiments.cross_validation import aggregate_folds, plot_fold_accuracies
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
from skeleton_attention.skeletons.bundle import SUMMARY_FILE
from skeleton_attention.skeletons.ingest import resolve_workers as available_cores

logger = logging.getLogger(__name__)


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

    @property
    def fingerprint(self) -> str:
        return fingerprint({"folds": self.fold_fingerprints})


def fold_metrics_path(plan: FoldPlan, fold: int) -> Path:
    """Where fold ``fold``'s evaluation writes its metrics (catalog_train.yml ``test_metrics``)."""
    return plan.reporting(plan.fold_dir(fold)) / "test_metrics.json"


def fold_command(plan: FoldPlan, fold: int) -> list[str]:
    """The ``kedro run`` of one fold (the same selectors and overrides, plus ``run.fold``)."""
    params = {k: v for k, v in plan.runtime_params.items() if k != "metrics_dir"}
    return kedro_command(plan.pipeline, with_run(params, fold=fold), plan.env)


def fold_members(plan: FoldPlan) -> list[Member]:
    return [
        Member(
            key=str(fold),
            label=f"fold {fold}",
            command=fold_command(plan, fold),
            log_path=plan.cv_dir / f"fold{fold}.log",
            fingerprint=plan.fold_fingerprints[fold],
            metrics_path=fold_metrics_path(plan, fold),
            # the fold's own hook (mlflow_hooks) renames the run after its configuration when it starts
            child_name=f"fold {fold}",
            child_tags={"fold": str(fold), "cross_validation": "fold"},
        )
        for fold in plan.folds
    ]


def finished_folds(plan: FoldPlan, state: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Folds whose process completed and whose metrics come from the current configuration."""
    return {int(key): metrics for key, metrics in finished_members(fold_members(plan), state).items()}


def resolve_workers(workers: Any, num_folds: int) -> int:
    """``null``/0: one fold per core; never more folds at once than there are folds."""
    return min(available_cores(workers), max(1, num_folds))


def _parent(plan: FoldPlan, state: dict[str, Any]) -> ParentRun:
    from skeleton_attention.mlflow_hooks import run_name, run_tags

    # the fold runs' names and tags (mlflow_hooks), with /cv for the fold: runs that differ differ here too
    tags = {**run_tags(plan.config, plan.pipeline), "cross_validation": "parent", "num_folds": str(len(plan.folds))}
    return ParentRun(plan.experiment_name, state, plan.fingerprint, run_name(plan.config, cross_validation=True), tags)


def run_cross_validation(plan: FoldPlan) -> dict[str, Any]:
    """Run the unfinished folds of ``plan`` and aggregate all of them; returns the summary."""
    plan.cv_dir.mkdir(parents=True, exist_ok=True)
    state_path = plan.cv_dir / STATE_FILE
    state = read_state(state_path)
    members = fold_members(plan)
    done = finished_members(members, state)
    todo = [m for m in members if m.key not in done]
    logger.info(
        "%s on %s/%s: %d folds, %d already finished, %d to run, %d at a time",
        plan.pipeline,
        plan.config["data"]["dataset"],
        plan.config["data"]["protocol"],
        len(plan.folds),
        len(done),
        len(todo),
        plan.workers,
    )
    parent = _parent(plan, state) if plan.tracking else None
    state["fingerprint"] = plan.fingerprint
    write_json(state_path, state)
    try:
        with sigterm_as_interrupt():
            env = worker_env(plan.workers, os.environ)
            codes = run_members(todo, plan.workers, plan.project_path, env, state, state_path, parent)
    except BaseException:
        if parent:
            parent.end("KILLED")
        raise
    failed = sorted(int(k) for k, code in codes.items() if code != 0)
    done = finished_folds(plan, state)
    if failed or len(done) != len(plan.folds):
        if parent:
            parent.end("FAILED")
        missing = sorted(set(plan.folds) - set(done))
        logs = ", ".join(str(plan.cv_dir / f"fold{f}.log") for f in (failed or missing)[:3])
        raise RuntimeError(f"cross-validation incomplete: folds {failed or missing} failed; see {logs}")
    summary = aggregate_folds(done)
    summary.update(_validation_summary(plan))
    summary.update(
        pipeline=plan.pipeline,
        dataset=plan.config["data"]["dataset"],
        protocol=plan.config["data"]["protocol"],
        config_fingerprint=plan.fingerprint,
        num_folds_total=plan.num_folds_total or len(plan.folds),
    )
    _write_outputs(plan, summary, parent)
    if parent:
        parent.end("FINISHED")
    logger.info(
        "%s cross-validation: test top-1 %.4f +- %.4f over %s (pooled %.4f; validation %.4f); %s",
        plan.config["data"]["protocol"],
        summary["top1_mean"],
        summary["top1_std"],
        folds_label(summary),
        summary["pooled_top1"],
        summary.get("val_top1_mean", float("nan")),
        plan.cv_dir / "summary.json",
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

    return {
        "val_top1_mean": float(np.mean(values)),
        "val_top1_std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "val_top1_per_fold": values,
    }


def write_fold_figures(directory: Path, summary: Mapping[str, Any], protocol: str, what: str = "") -> list[str]:
    """The pooled confusion matrix and the per-fold accuracies of ``summary`` as PNGs in ``directory``."""
    from skeleton_attention.training.plots import plot_confusion_matrix

    figures = {
        "confusion_matrix.png": plot_confusion_matrix(
            summary["confusion_matrix"],
            summary["class_names"],
            title=f"pooled confusion matrix{what}, {folds_label(summary)}",
        ),
        "folds.png": plot_fold_accuracies(summary, title=f"{protocol}: test top-1 per fold{what}"),
    }
    for name, figure in figures.items():
        tmp = directory / f".{name}.tmp.png"
        figure.savefig(tmp, dpi=110)
        os.replace(tmp, directory / name)
    return list(figures)


def flat_fold_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics file of a cross-validation (DVC ``metrics``): means, spread and counts."""
    return {
        "cv_top1_mean": summary["top1_mean"],
        "cv_top1_std": summary["top1_std"],
        "cv_top5_mean": summary.get("top5_mean"),
        "cv_mean_class_acc_mean": summary.get("mean_class_acc_mean"),
        "cv_pooled_top1": summary["pooled_top1"],
        "num_folds": summary["num_folds"],
        "num_folds_total": summary.get("num_folds_total", summary["num_folds"]),
        "cv_val_top1_mean": summary.get("val_top1_mean"),
        "num_test_samples": summary["num_samples"],
    }


def metrics_root(project_path: Path, metrics_dir: str | None) -> Path:
    root = Path(metrics_dir) if metrics_dir else project_path / "data" / "08_reporting"
    return root if root.is_absolute() else project_path / root


def _write_outputs(plan: FoldPlan, summary: dict[str, Any], parent: ParentRun | None) -> None:
    write_json(plan.cv_dir / "summary.json", summary)
    figures = write_fold_figures(plan.cv_dir, summary, plan.config["data"]["protocol"])
    flat = flat_fold_metrics(summary)
    write_json(metrics_root(plan.project_path, plan.metrics_dir) / plan.pipeline / plan.base_dir / "metrics.json", flat)
    if parent:
        # the runs table's columns of a plain run (test.top1, ...) hold the parent's mean over folds
        same_keys = {f"test.{k}": summary.get(f"{k}_mean") for k in ("top1", "top5", "mean_class_acc", "loss")}
        parent.log_metrics({**flat, **same_keys, "test.top1_std": summary["top1_std"]})
        for name in ("summary.json", *figures):
            parent.log_artifact(plan.cv_dir / name, artifact_path="cross_validation")


def folds_label(summary: Mapping[str, Any]) -> str:
    run, total = summary["num_folds"], summary.get("num_folds_total", summary["num_folds"])
    return f"{run} folds" if run == total else f"{run} of {total} folds"


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

    bootstrap_project(project_path)
    if not _may_be_cross_validated(project_path, pipeline, env, runtime_params):
        return None
    with KedroSession.create(project_path=project_path, env=env, runtime_params=dict(runtime_params)) as session:
        context = session.load_context()
        params = context.params
        config = params[f"{pipeline}_config"]  # a family's config with no fold: the first look checked
        all_folds = protocol_folds_of(context, config)
        if not all_folds:
            return None
        folds = select_folds(all_folds, (params.get("cross_validation") or {}).get("folds"))
        family, run = params[pipeline], params["run"]
        fingerprints = {k: fingerprint(compose(family, {**run, "fold": k})) for k in folds}
        mlflow_config = getattr(context, "mlflow", None)
        tracking = mlflow_config is not None and pipeline not in mlflow_config.tracking.disable_tracking.pipelines
        workers = resolve_workers((params.get("cross_validation") or {}).get("workers"), len(folds))
        return FoldPlan(
            pipeline=pipeline,
            env=env,
            runtime_params=dict(runtime_params),
            config=dict(config),
            folds=folds,
            fold_fingerprints=fingerprints,
            workers=workers,
            project_path=Path(project_path),
            metrics_dir=runtime_params.get("metrics_dir"),
            # the experiment the fold runs' own hook picks (mlflow_hooks.MlflowExperimentHooks)
            experiment_name=experiment_name(
                mlflow_config.tracking.experiment.name if mlflow_config else "skeleton-attention", config
            ),
            tracking=tracking,
            num_folds_total=len(all_folds),
        )


def _may_be_cross_validated(
    project_path: Path, pipeline: str, env: str | None, runtime_params: Mapping[str, Any]
) -> bool:
    """A cheap first look with the project's config loader alone, no Kedro session: False when the
    run is surely not a cross-validation (no fold chosen, a protocol the prepared table lists as
    train/test, or no table yet). A full session (MLflow store, hooks, the table's metadata) costs
    seconds that every plain ``kedro run --pipelines=train_*`` would pay twice (docs/performance.md §6)."""
    from kedro.framework.project import settings

    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(Path(project_path) / settings.CONF_SOURCE),
        env=env or os.getenv("KEDRO_ENV"),
        runtime_params=dict(runtime_params),
        **settings.CONFIG_LOADER_ARGS,
    )
    config = loader["parameters"].get(f"{pipeline}_config")
    if not isinstance(config, Mapping) or config["data"].get("fold") is not None:
        return False
    try:
        table = Path(project_path) / loader["catalog"]["training_samples"]["path"]
        summary = json.loads((table / SUMMARY_FILE).read_text())
    except (KeyError, OSError, ValueError):  # no table yet, or an unusual catalog: ask the session
        return True
    fold_protocols = summary.get("fold_protocols")
    return fold_protocols is None or config["data"]["protocol"] in fold_protocols


def protocol_folds_of(context: Any, config: Mapping[str, Any]) -> list[int]:
    """The folds of the run's protocol in its prepared table (empty: a train/test protocol, or no
    table yet, which the plain run then reports)."""
    from skeleton_attention.training.data import protocol_folds

    try:
        bundle = context.catalog.load("training_samples")
    except Exception as error:
        logger.debug("no table for a cross-validation plan: %s", error)
        return []
    return protocol_folds(bundle.table.metadata(), config["data"]["protocol"])


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
        chosen = list(folds)[start - 1 :: every]
    elif isinstance(selection, (list, tuple)) and selection and all(isinstance(f, int) for f in selection):
        missing = sorted(set(selection) - set(folds))
        if missing:
            raise ValueError(f"cross_validation.folds {missing} are not folds of this protocol (folds: {list(folds)})")
        chosen = [f for f in folds if f in set(selection)]
    else:
        raise ValueError(
            f"cross_validation.folds must be null, a list of fold numbers or {{every: k, start: s}}; got {selection!r}"
        )
    if len(chosen) < len(folds):
        logger.warning(
            "cross_validation.folds: running %d of the %d folds (a subset; the summary says so)",
            len(chosen),
            len(folds),
        )
    return chosen
