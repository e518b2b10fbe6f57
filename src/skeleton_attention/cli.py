"""Project commands for the ``kedro`` CLI (Kedro loads ``<package>.cli`` and lets it override).

``kedro run`` is Kedro's own command, with two additions:

* preparation before training: a training pipeline reads the table of ``run.dataset`` under the
  catalog name ``training_samples``, which no preparation node writes by that name, so
  ``--pipelines=prepare_sbu,train_sta_lstm`` runs the other pipelines first, then the training ones;
* cross-validation: when a training pipeline's protocol is cross-validated and no ``run.fold`` is
  given (e.g. ``kedro run --pipelines=train_sta_lstm --params=run.dataset=sbu``), every fold is
  trained and the folds are aggregated (experiments/fold_driver.py);
* run groups: when the family has a ``fuse_<family>`` pipeline, its parameters hold ``runs``
  blocks (e.g. DSTA-Net's four streams) and no ``run.name`` is given, every named run is trained
  and their scores are fused, fold by fold on a cross-validated protocol
  (experiments/group_driver.py).

Runs with a node filter, and everything else, go to Kedro unchanged.

``kedro kubeflow compile`` compiles a pipeline into a Kubeflow Pipelines (v2) YAML, a task per node
(docs/kubeflow.md); ``kedro kubeflow mlflow-run`` is the first task of such a pipeline.

Under ``torchrun`` (``WORLD_SIZE`` > 1; docs/training.md, "Distributed training") every rank runs
``kedro run`` for exactly one training pipeline and one run (``run.fold`` / ``run.name`` given
where the protocol or the family would otherwise plan several); rank 0 runs the whole pipeline,
the other ranks stop after ``train_model`` (``DistributedHooks`` keeps their outputs in memory).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from skeleton_attention.kubeflow.graph import GROUP_BY
from skeleton_attention.training.distributed import DistEnv

logger = logging.getLogger(__name__)

#: options that select part of a pipeline: with any of them the run is Kedro's plain run
_FILTERS = ("tags", "node_names", "to_nodes", "from_nodes", "from_inputs", "to_outputs", "namespaces")


@click.group(name="skeleton-attention")
def cli() -> None:
    """skeleton-attention project commands."""


@cli.command(name="run", params=list(kedro_run.params), help=kedro_run.help, short_help=kedro_run.short_help)
def run(**kwargs: Any) -> Any:
    selected = [kwargs["pipeline"]] if kwargs.get("pipeline") else list(kwargs.get("pipelines") or [])
    env = DistEnv.from_env()
    if env.is_distributed:
        return _run_distributed(selected, kwargs, env)
    plain = any(kwargs.get(name) for name in _FILTERS) or kwargs.get("conf_source")
    training = [name for name in selected if name.startswith("train_")]
    if plain or not training:
        return kedro_run.callback(**kwargs)
    others = [name for name in selected if not name.startswith("train_")]
    if others:  # e.g. prepare_sbu,train_sta_lstm: the table first
        kedro_run.callback(**{**kwargs, "pipeline": None, "pipelines": others})
    result: Any = None
    for name in training:
        result = _train(name, {**kwargs, "pipeline": None, "pipelines": [name]})
    return result


def _train(pipeline: str, kwargs: dict[str, Any]) -> Any:
    """One training pipeline: every named run of a run group, every fold of a cross-validated
    protocol, else Kedro's run."""
    from kedro.framework.project import pipelines as registered

    from skeleton_attention.experiments.fold_driver import plan_cross_validation, run_cross_validation
    from skeleton_attention.experiments.group_driver import plan_run_group, run_group

    # click.ClickException (one "Error: ..." line), not KedroCliError: see the note under Kubeflow below
    try:
        group = None
        if pipeline.replace("train_", "fuse_", 1) in registered:  # only families with a fusion step plan a group
            group = plan_run_group(Path.cwd(), pipeline, kwargs.get("env"), kwargs.get("params") or {})
        if group is not None:
            return run_group(group)
        plan = plan_cross_validation(Path.cwd(), pipeline, kwargs.get("env"), kwargs.get("params") or {})
    except (ValueError, RuntimeError) as error:  # a bad experiment setting, or a member that failed
        raise click.ClickException(str(error)) from error
    if plan is None:
        return kedro_run.callback(**kwargs)
    try:
        return run_cross_validation(plan)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from error


def _run_distributed(selected: list[str], kwargs: dict[str, Any], env: DistEnv) -> Any:
    """One rank of a torchrun launch: one training pipeline, one run; ranks > 0 stop after training."""
    from kedro.framework.project import pipelines as registered

    from skeleton_attention.experiments.fold_driver import plan_cross_validation
    from skeleton_attention.experiments.group_driver import plan_run_group

    if len(selected) != 1 or not selected[0].startswith("train_"):
        raise click.UsageError(
            f"under torchrun, run exactly one training pipeline (--pipelines=train_<family>), got {selected}; "
            "prepare the data with a plain `kedro run` first"
        )
    pipeline = selected[0]
    params = kwargs.get("params") or {}
    several = pipeline.replace("train_", "fuse_", 1) in registered and plan_run_group(
        Path.cwd(), pipeline, kwargs.get("env"), params
    )
    if several or plan_cross_validation(Path.cwd(), pipeline, kwargs.get("env"), params):
        raise click.UsageError(
            "under torchrun, each launch trains one run: give run.fold=<k> for a cross-validated protocol "
            "and run.name=<name> for a family with run groups (one torchrun per fold / named run)"
        )
    if env.is_main:
        return kedro_run.callback(**{**kwargs, "pipeline": None, "pipelines": [pipeline]})
    logger.info("rank %d of %d: running %s up to its training node", env.rank, env.world_size, pipeline)
    return kedro_run.callback(
        **{**kwargs, "pipeline": None, "pipelines": [pipeline], "to_nodes": [f"{pipeline}.train_model"]}
    )


# --- Kubeflow Pipelines (docs/kubeflow.md) ----------------------------------------------------------


# click.ClickException, not KedroCliError: kedro 1.7's KedroCliError.show() prints sys.exc_info(), which
# is empty by the time click shows it, so its message is lost ("NoneType: None").


def _project_path() -> Path:
    from kedro.framework.startup import bootstrap_project
    from kedro.utils import find_kedro_project

    project_path = find_kedro_project(Path.cwd())
    if project_path is None:
        raise click.ClickException(f"no Kedro project at or above {Path.cwd()}")
    bootstrap_project(project_path)  # already done by `kedro`; needed when called directly (tests)
    return Path(project_path)


def _kedro_params(values: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """``--params`` given once or more (``a=1,b.c=x``) as one ``kedro run --params`` string, and as
    the runtime parameters ``kedro run`` would read from it (checked the same way)."""
    from kedro.framework.cli.utils import _split_params

    text = ",".join(part.strip(",") for part in values if part.strip(","))
    context = click.get_current_context()
    option = next(param for param in context.command.params if param.name == "params")
    return text, _split_params(context, option, text)


def _config(project_path: Path, env: str, runtime_params: dict[str, Any], key: str) -> dict[str, Any]:
    """One configuration key (``kubeflow``, ``mlflow``) of ``conf/<env>`` over ``conf/base``."""
    from kedro.config import MissingConfigException
    from kedro.framework.project import settings

    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(project_path / settings.CONF_SOURCE),
        env=env,
        runtime_params=runtime_params,
        **settings.CONFIG_LOADER_ARGS,
    )
    loader.config_patterns.setdefault(key, [f"{key}*", f"{key}*/**"])
    try:
        return dict(loader[key])
    except MissingConfigException:
        return {}


def in_memory_datasets(pipeline: Any, catalog_config: dict[str, Any], credentials: dict[str, Any]) -> frozenset[str]:
    """The datasets of ``pipeline`` that live only inside one ``kedro run``: a ``MemoryDataset``,
    declared or by default (not in the catalog). The nodes they join must share a Kubeflow task."""
    from kedro.io import DataCatalog, MemoryDataset

    catalog = DataCatalog.from_config(catalog_config, credentials)
    names = {name for node in pipeline.nodes for name in (*node.inputs, *node.outputs)}
    return frozenset(
        name
        for name in names
        if not name.startswith("params:")
        and name != "parameters"
        and isinstance(catalog.get(name, fallback_to_runtime_pattern=True), MemoryDataset)
    )


_PARAMS_HELP = "kedro run --params for every node, k=v[,k=v...] (repeatable); the pipeline's kedro_params default"


@cli.group(name="kubeflow")
def kubeflow() -> None:
    """Kubeflow Pipelines: compile a pipeline to a KFP v2 pipeline spec (docs/kubeflow.md)."""


@kubeflow.command(name="compile")
@click.option(
    "--pipeline", "-p", "pipeline_name", default="__default__", show_default=True, help="a registered Kedro pipeline"
)
@click.option(
    "--env",
    "-e",
    default="base",
    show_default=True,
    help="Kedro environment: every task runs `kedro run --env=<env>`; conf/<env>/kubeflow.yml is read",
)
@click.option("--image", "-i", default=None, help="the image the tasks run (default: image in kubeflow.yml)")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the pipeline spec YAML [default: build/kubeflow/<pipeline>.yaml]",
)
@click.option("--params", multiple=True, help=_PARAMS_HELP)
@click.option(
    "--group-by",
    type=click.Choice(GROUP_BY),
    default="none",
    show_default=True,
    help="one task per node, or per top-level namespace (e.g. a training pipeline in one pod)",
)
def kubeflow_compile(
    pipeline_name: str, env: str, image: str | None, output: Path | None, params: tuple[str, ...], group_by: str
) -> None:
    """Compile a Kedro pipeline to a Kubeflow Pipelines (v2) YAML: a container task per node."""
    import dataclasses

    from kedro.framework.project import pipelines

    from skeleton_attention.kubeflow.settings import KubeflowConfigError, read_settings

    project_path = _project_path()
    params_text, runtime_params = _kedro_params(params)
    if pipeline_name not in pipelines:
        raise click.ClickException(f"no pipeline {pipeline_name!r}; registered: {', '.join(sorted(pipelines))}")
    try:
        from skeleton_attention.kubeflow.compiler import CompileRequest, compile_pipeline
    except ImportError as error:
        raise click.ClickException(f"the kfp SDK is missing ({error}): pip install '.[kubeflow]'") from error
    mlflow_conf = _config(project_path, env, runtime_params, "mlflow")
    disabled = ((mlflow_conf.get("tracking") or {}).get("disable_tracking") or {}).get("pipelines") or []
    in_memory = in_memory_datasets(
        pipelines[pipeline_name],
        _config(project_path, env, runtime_params, "catalog"),
        _config(project_path, env, runtime_params, "credentials"),
    )
    request = CompileRequest(
        pipeline_name, env, params_text, group_by, tracked=pipeline_name not in disabled, in_memory=in_memory
    )
    output = output or project_path / "build" / "kubeflow" / f"{pipeline_name.strip('_')}.yaml"
    try:
        settings = read_settings(_config(project_path, env, runtime_params, "kubeflow"))
        if image:
            settings = dataclasses.replace(settings, image=image)
        compile_pipeline(pipelines[pipeline_name], request, settings, output)
    except (KubeflowConfigError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    from skeleton_attention.kubeflow.compiler import MLFLOW_TASK
    from skeleton_attention.kubeflow.graph import plan_tasks

    tasks = len(plan_tasks(pipelines[pipeline_name], group_by, [MLFLOW_TASK], in_memory))
    opener = " + the MLflow run task" if request.tracked and settings.mlflow_single_run else ""
    click.echo(
        f"{output}: Kubeflow pipeline of {pipeline_name}, {len(pipelines[pipeline_name].nodes)} nodes "
        f"in {tasks} tasks{opener}"
    )


@kubeflow.command(name="mlflow-run")
@click.option("--pipeline", "-p", "pipeline_name", required=True)
@click.option("--env", "-e", default="base", show_default=True)
@click.option("--params", multiple=True, help=_PARAMS_HELP)
@click.option("--kfp-run-id", default="", help="the Kubeflow run, tagged on the MLflow run")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="file that receives the run id (empty when tracking is off for the pipeline)",
)
def kubeflow_mlflow_run(pipeline_name: str, env: str, params: tuple[str, ...], kfp_run_id: str, output: Path) -> None:
    """First task of a compiled pipeline: open the MLflow run every node logs into."""
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession

    from skeleton_attention.mlflow_hooks import open_orchestrated_run

    project_path = _project_path()
    _, runtime_params = _kedro_params(params)
    run_id = ""
    with KedroSession.create(project_path=project_path, env=env, runtime_params=runtime_params) as session:
        context = session.load_context()
        config = getattr(context, "mlflow", None)
        if config is not None and pipeline_name not in config.tracking.disable_tracking.pipelines:
            tags = {"orchestrator": "kubeflow", "kubeflow_run_id": kfp_run_id} if kfp_run_id else {}
            run_id = open_orchestrated_run(config, pipelines[pipeline_name], context.catalog, pipeline_name, tags)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(run_id)
    tmp.replace(output)
    click.echo(f"MLflow run {run_id or '(tracking off for this pipeline)'}")
