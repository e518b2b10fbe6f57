"""Kedro hooks that put each MLflow run into its comparison's experiment, and name and tag it.

Experiments (:class:`MlflowExperimentHooks`, :func:`experiment_name`): one per data set and
protocol, ``<base>/<dataset>/<protocol>`` (``<base>`` = ``tracking.experiment.name`` of
``conf/base/mlflow.yml``, e.g. ``skeleton-attention/sbu/sbu_fold``), so every run that can be
compared sits in one experiment; the report pipeline logs into ``<base>/report``. The
cross-validation driver (experiments/fold_driver.py) opens its parent and fold runs in the same
experiment, through the same function.

kedro-mlflow starts the run in its own ``before_pipeline_run`` (plugin hooks are registered after
the project's, so pluggy calls them first; ``trylast`` makes the order explicit). This hook then
finds the training nodes of the pipeline (tag ``training``), reads their parameters block and sets

* the run name ``<model>[/<variant>] [<name>] [fold<k>] <streams> s<seed> <dataset>/<protocol> [<tag>]``,
  e.g. ``sta_lstm/ta_lstm ta_lstm fold2 joint s0 sbu/sbu_fold`` (a cross-validation's parent run:
  ``cv`` in place of ``fold<k>``; the variant is left out when it is the model's name). What tells
  runs of one experiment apart comes first: the UI's runs table cuts names after ~25 characters;
* tags ``model, variant, dataset, protocol, fold, stream, seed, run_name, env_tag, pipeline``.

Nothing happens when no MLflow run is active (tracking disabled for the pipeline) or the pipeline
has no training node. A run with several training pipelines gets the tags of each under
``<namespace>.<tag>`` and keeps kedro-mlflow's name.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

#: MLflow 3's notice about kedro-mlflow's ``KedroPipelineModel.predict`` (no type hints)
_PREDICT_TYPE_HINT_NOTICE = "Add type hints to the `predict` method"


def import_kedro_mlflow_quietly() -> None:
    """Import kedro-mlflow's pyfunc model class without MLflow's type-hint notice.

    kedro-mlflow defines ``KedroPipelineModel(mlflow.pyfunc.PythonModel)`` with an un-annotated
    ``predict``; defining that class makes MLflow 3 print "Add type hints to the `predict`
    method..." on every ``kedro`` command. This project never logs that model (trained models go
    through the pytorch flavor), so the notice is noise. MLflow wraps the check in its own
    ``simplefilter("once")``, which overrides any ignore filter, so the class is imported here
    (settings.py imports this module before kedro-mlflow's plugin loads) while recording warnings;
    every other warning of that import is re-issued unchanged.
    """
    # Kedro configures logging (which takes over warnings.showwarning) when kedro.framework.project
    # is first imported; that must happen before recording starts, or the notice goes to the log.
    import kedro.framework.project  # noqa: F401

    with warnings.catch_warnings(record=True) as caught:
        import kedro_mlflow.mlflow.kedro_pipeline_model  # noqa: F401
    for warning in caught:
        if _PREDICT_TYPE_HINT_NOTICE not in str(warning.message):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


import_kedro_mlflow_quietly()

TRAINING_TAG = "training"
#: node tag of the report pipeline (pipelines/report): its run goes to ``<base>/report``
REPORT_TAG = "report"


def experiment_name(base: str, params: Mapping[str, Any] | None = None, *, report: bool = False) -> str:
    """The experiment of a run: ``<base>/<dataset>/<protocol>`` for a training configuration (the
    composed ``train_<family>_config``), ``<base>/report`` for the report, else ``base``."""
    if report:
        return f"{base}/report"
    data = (params or {}).get("data") or {}
    if not data.get("dataset") or not data.get("protocol"):
        return base
    return f"{base}/{data['dataset']}/{data['protocol']}"


def _streams(data: Mapping[str, Any]) -> str:
    streams = data.get("streams", ["joint"])
    return "+".join(map(str, [streams] if isinstance(streams, str) else streams))


def run_name(params: Mapping[str, Any], *, cross_validation: bool = False) -> str:
    """A readable MLflow run name from a composed training configuration (module docstring); the
    parent run of a cross-validation has ``cv`` where a fold run has ``fold<k>``."""
    model = params.get("model", {})
    data = params.get("data", {})
    run = params.get("run") or {}
    name = str(model.get("name", "model"))
    variant = str(model.get("variant") or name)
    parts = [name if variant == name else f"{name}/{variant}"]
    if run.get("name"):
        parts.append(str(run["name"]))
    if data.get("fold") is not None:
        parts.append(f"fold{data['fold']}")
    elif cross_validation:
        parts.append("cv")
    parts += [_streams(data), f"s{params.get('seed', 0)}"]
    parts.append("/".join(str(p) for p in (data.get("dataset"), data.get("protocol", "?")) if p))
    if run.get("tag") and run["tag"] != "base":
        parts.append(f"[{run['tag']}]")
    return " ".join(parts)


def run_tags(params: Mapping[str, Any], pipeline_name: str) -> dict[str, str]:
    """The searchable tags of a training run (module docstring)."""
    model = params.get("model", {})
    data = params.get("data", {})
    return {
        "model": str(model.get("name", "")),
        "variant": str(model.get("variant") or model.get("name", "")),
        "dataset": str(data.get("dataset") or ""),
        "protocol": str(data.get("protocol", "")),
        "fold": "" if data.get("fold") is None else str(data["fold"]),
        "stream": _streams(data),
        "seed": str(params.get("seed", 0)),
        "pipeline": pipeline_name,
        "run_name": str((params.get("run") or {}).get("name") or ""),
        "env_tag": str((params.get("run") or {}).get("tag") or ""),
    }


def training_parameters(pipeline, catalog, *, any_node: bool = False) -> dict[str, dict[str, Any]]:
    """``{namespace: params}`` of every training node of ``pipeline`` (tag ``training``); with
    ``any_node`` of every node reading a training configuration (e.g. a score fusion's)."""
    found: dict[str, dict[str, Any]] = {}
    for node in pipeline.nodes:
        if TRAINING_TAG not in node.tags and not any_node:
            continue
        for name in node.inputs:
            if name.startswith("params:"):
                value = catalog.load(name)
                if isinstance(value, Mapping) and "model" in value and "data" in value:
                    found[node.namespace or name[len("params:") :]] = dict(value)
    return found


class MlflowRunHooks:
    """Readable run names and searchable tags for training runs (see the module docstring)."""

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        try:
            import mlflow
        except ImportError:  # pragma: no cover - mlflow is a project dependency
            return
        if mlflow.active_run() is None:
            return
        runner = run_params.get("runner")
        if isinstance(runner, str) and " object at 0x" in runner:
            # kedro-mlflow tags the run with every run parameter; the runner's is an object repr
            # ("<kedro.runner.sequential_runner.SequentialRunner object at 0x7f...>"), different in
            # every run, so the compare view lists it as a difference: keep the class name
            mlflow.set_tag("runner", runner.strip("<>").split(" object at ")[0].rsplit(".", 1)[-1])
        specs = training_parameters(pipeline, catalog)
        if not specs:
            return
        if len(specs) == 1:
            namespace, params = next(iter(specs.items()))
            name = run_name(params)
            mlflow.set_tag("mlflow.runName", name)
            mlflow.set_tags(run_tags(params, namespace))
            logger.info("MLflow run %s: %s", mlflow.active_run().info.run_id, name)
            return
        for namespace, params in specs.items():
            mlflow.set_tags({f"{namespace}.{k}": v for k, v in run_tags(params, namespace).items()})


class MlflowExperimentHooks:
    """Opens the run of a training pipeline in its data set's experiment and the report's in
    ``<base>/report`` (:func:`experiment_name`).

    kedro-mlflow sets the experiment of ``mlflow.yml`` when the context is created, before the
    pipeline (and so its data set) is known, and starts the run in ``before_pipeline_run``; this
    hook runs first there (``tryfirst``) and points kedro-mlflow's configuration at the right
    experiment, creating it when needed. A run started outside Kedro (``MLFLOW_RUN_ID``: the
    cross-validation driver's fold runs, a Kubeflow pipeline's run) decides the experiment itself:
    the driver opens it in the one :func:`experiment_name` gives. Several training pipelines on
    different data in one run, or a pipeline with tracking disabled, keep the configured experiment.
    """

    def __init__(self) -> None:
        self._config = None

    @hook_impl(trylast=True)
    def after_context_created(self, context) -> None:
        self._config = getattr(context, "mlflow", None)  # kedro-mlflow's configuration (its hook ran first)

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        config = self._config
        if config is None:
            return
        import mlflow

        names = run_params.get("pipeline_names") or [run_params.get("pipeline_name") or "__default__"]
        disabled = set(config.tracking.disable_tracking.pipelines)
        if mlflow.active_run() is not None or any(name in disabled for name in names):
            return
        orchestrated = os.environ.get("MLFLOW_RUN_ID")
        if orchestrated:
            name = _join_run(config, orchestrated)
        else:
            name = pipeline_experiment(config.tracking.experiment.name, pipeline, catalog)
        if name == config.tracking.experiment.name:
            return
        config.tracking.experiment.name = name
        config._set_experiment()  # creates (or restores) it and makes it MLflow's active experiment
        logger.info("MLflow experiment %s", name)

    @hook_impl(trylast=True)
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        close_ended_runs()

    @hook_impl(trylast=True)
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline, catalog) -> None:
        close_ended_runs()


def close_ended_runs() -> None:
    """Take runs that kedro-mlflow has already ended off MLflow's active-run stack.

    With ``tracking.run.nested: True`` kedro-mlflow reopens its run before every node, which pushes
    the same run once more onto the stack, and ends it once after the pipeline: the run is FINISHED
    (or FAILED) in the store but still "active" in the process, so the next pipeline run in the same
    process (a notebook, a test) would log into it. Runs still RUNNING (one an orchestrator opened)
    are left alone; the status in the store is kept as it is.
    """
    import mlflow

    while (active := mlflow.active_run()) is not None:
        status = mlflow.MlflowClient().get_run(active.info.run_id).info.status
        if status == "RUNNING":
            return
        mlflow.end_run(status=status)


class MlflowTerminationHooks:
    """A training run stopped by SIGTERM (``kill``, a scheduler) or SIGINT (Ctrl-C) ends KILLED in the
    MLflow store, not RUNNING or FINISHED.

    Without this, SIGTERM ends the process without any Python clean-up (the run stays RUNNING for
    ever), and Ctrl-C raises ``KeyboardInterrupt``, which Kedro does not pass to ``on_pipeline_error``
    (it is no ``Exception``), so kedro-mlflow never ends the run and MLflow's own ``atexit`` handler
    ends it FINISHED, as if it had completed. kedro-mlflow has no signal handling of its own.

    While a tracked pipeline runs (its MLflow run is active; kedro-mlflow started it first, this hook
    is ``trylast``), SIGTERM and SIGINT raise ``SystemExit(128 + signal)`` / ``KeyboardInterrupt`` in
    the main thread, so the interpreter unwinds as on Ctrl-C, and an ``atexit`` handler ends every
    active run KILLED. It is registered after MLflow's, and ``atexit`` runs last-in first-out, so it
    runs first and MLflow's finds no run left to end. A forked child (a DataLoader worker inherits the
    handler) dies of the signal as before. The previous handlers are restored when the pipeline ends.
    The experiment drivers (experiments/fold_driver.py, group_driver.py) handle their parent and member runs.
    """

    SIGNALS = ("SIGTERM", "SIGINT")

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._pid: int | None = None

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        import os
        import signal
        import threading

        import mlflow

        if mlflow.active_run() is None or threading.current_thread() is not threading.main_thread():
            return
        self._pid = os.getpid()
        for name in self.SIGNALS:
            number = getattr(signal, name)
            self._previous[number] = signal.signal(number, self._on_signal)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        self._restore()

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline, catalog) -> None:
        self._restore()

    def _restore(self) -> None:
        import signal

        while self._previous:
            number, previous = self._previous.popitem()
            signal.signal(number, previous)

    def _on_signal(self, signum: int, frame: Any) -> None:
        import atexit
        import os
        import signal

        if os.getpid() != self._pid:  # a forked worker: die of the signal, as without this hook
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self._restore()  # a second signal acts as it would without this hook
        atexit.register(end_active_runs, "KILLED")
        logger.warning("signal %d: stopping; the MLflow run ends KILLED", signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)


def end_active_runs(status: str) -> None:
    """End every run on MLflow's active-run stack with ``status`` (kedro-mlflow may have pushed the
    same run several times: ``close_ended_runs``)."""
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run(status=status)


def pipeline_experiment(base: str, pipeline, catalog) -> str:
    """The experiment of a pipeline's run: the report's, the one data set and protocol its training
    configurations name, else ``base``."""
    if any(REPORT_TAG in node.tags for node in pipeline.nodes):
        return experiment_name(base, report=True)
    # a fusion reads its family's configuration too: it joins the same experiment
    specs = list(training_parameters(pipeline, catalog, any_node=True).values())
    candidates = {experiment_name(base, params) for params in specs}
    return candidates.pop() if len(candidates) == 1 else base


def _join_run(config, run_id: str) -> str:
    """The experiment of a run an orchestrator opened (``MLFLOW_RUN_ID``), whose name kedro-mlflow
    keeps when it resumes it.

    A Kubeflow pipeline (kubeflow/compiler.py) runs each node in a ``kedro run`` of its own, all
    logging into one run its first task opened; a node that reads no training configuration (a
    model export) would otherwise pick the base experiment, and MLflow refuses to resume a run of
    another experiment. kedro-mlflow renames the run it resumes to ``tracking.run.name`` or the
    pipeline name: the run's own name is kept instead (the training node's hook still sets the
    readable name).
    """
    import mlflow

    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    if not config.tracking.run.name:
        config.tracking.run.name = run.info.run_name
    return client.get_experiment(run.info.experiment_id).name


def open_orchestrated_run(config, pipeline, catalog, pipeline_name: str, tags: Mapping[str, str]) -> str:
    """Open (create, not start) the MLflow run that every node of an orchestrated run of
    ``pipeline`` logs into (``MLFLOW_RUN_ID``, :func:`_join_run`), in the experiment, and with the
    name and tags, that a ``kedro run`` of the whole pipeline would give it; returns its id."""
    import mlflow

    client = mlflow.MlflowClient()
    name = pipeline_experiment(config.tracking.experiment.name, pipeline, catalog)
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    if experiment is not None and experiment.lifecycle_stage == "deleted":  # as kedro-mlflow's restore_if_deleted
        client.restore_experiment(experiment_id)
    specs = training_parameters(pipeline, catalog)
    if len(specs) == 1:
        namespace, params = next(iter(specs.items()))
        title, run_tag_values = run_name(params), run_tags(params, namespace)
    else:
        title, run_tag_values = pipeline_name, {"pipeline": pipeline_name}
    run = client.create_run(experiment_id, run_name=title, tags={**run_tag_values, **tags})
    return run.info.run_id
