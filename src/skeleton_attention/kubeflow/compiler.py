"""Compile a Kedro pipeline into a Kubeflow Pipelines (v2) pipeline spec with the kfp 2 SDK.

Each task (kubeflow/graph.py) is a container component of its own, named after its node(s), that
runs ``kedro run --pipelines=<p> --nodes=<its nodes> --env=<env> --params=<kedro_params>`` in the
project's image; it starts after the tasks producing its inputs. The pipeline has three run-time
parameters: ``mlflow_tracking_uri`` (exported as ``MLFLOW_TRACKING_URI`` in every task),
``kedro_params`` (passed to every ``kedro run``) and ``data_pvc`` (the PersistentVolumeClaim every
task mounts, so one node's outputs are the next node's inputs). With ``mlflow_single_run`` a first
task opens one MLflow run (``kedro kubeflow mlflow-run``) and every node logs into it
(``MLFLOW_RUN_ID``), as the cross-validation driver does for its folds; without it each task's
``kedro run`` opens a run of its own.

No ``from __future__ import annotations`` here: kfp reads the component functions' annotations as
types.
"""

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import compiler, dsl, kubernetes

from skeleton_attention.kubeflow.graph import GroupBy, TaskPlan, plan_tasks, task_names
from skeleton_attention.kubeflow.settings import KubeflowConfigError, KubeflowSettings

#: the task that opens the pipeline run's MLflow run (a name no node task can take: graph.task_names)
MLFLOW_TASK = "mlflow-run"
#: $1 = project directory, $2 = tracking URI ("" = the image's conf/ decides), $3 = MLflow run id
#: ("" = kedro-mlflow opens a run of its own); the rest is the command, passed on untouched
_EXPORT_URI = 'if [ -n "$2" ]; then export MLFLOW_TRACKING_URI="$2"; fi'
_NODE_SCRIPT = f'cd "$1" && {_EXPORT_URI} && if [ -n "$3" ]; then export MLFLOW_RUN_ID="$3"; fi && shift 3 && exec "$@"'
_START_SCRIPT = f'cd "$1" && {_EXPORT_URI} && shift 2 && exec "$@"'
PIPELINE_PREFIX = "skeleton-attention"


@dataclass(frozen=True)
class CompileRequest:
    """What to compile: a registered pipeline, its Kedro environment and ``--params`` string."""

    pipeline_name: str
    env: str
    kedro_params: str = ""
    group_by: GroupBy = "none"
    tracked: bool = True  # False where conf/<env>/mlflow.yml disables tracking for the pipeline
    in_memory: frozenset[str] = frozenset()  # datasets that die with their `kedro run` (graph.plan_tasks)


def kedro_run_args(request: CompileRequest, nodes: Sequence[str]) -> list[str]:
    """The ``kedro run`` a task executes (the ``--params`` value is appended at run time)."""
    return [
        "kedro",
        "run",
        f"--pipelines={request.pipeline_name}",
        f"--nodes={','.join(nodes)}",
        f"--env={request.env}",
    ]


def _node_component(plan: TaskPlan, request: CompileRequest, settings: KubeflowSettings) -> Any:
    image, workdir, args = settings.image, settings.workdir, kedro_run_args(request, plan.nodes)

    def component(mlflow_tracking_uri: str, kedro_params: str, mlflow_run_id: str):
        return dsl.ContainerSpec(
            image=image,
            command=["sh", "-c", _NODE_SCRIPT, plan.name],
            args=[
                workdir,
                mlflow_tracking_uri,
                mlflow_run_id,
                *args,
                dsl.ConcatPlaceholder(["--params=", kedro_params]),
            ],
        )

    component.__name__ = plan.name
    component.__doc__ = f"kedro run --nodes={','.join(plan.nodes)}"
    return dsl.container_component(component)


def _mlflow_component(request: CompileRequest, settings: KubeflowSettings) -> Any:
    image, workdir = settings.image, settings.workdir
    command = ["kedro", "kubeflow", "mlflow-run", f"--pipeline={request.pipeline_name}", f"--env={request.env}"]

    def component(mlflow_tracking_uri: str, kedro_params: str, run_id: dsl.OutputPath(str)):
        return dsl.ContainerSpec(
            image=image,
            command=["sh", "-c", _START_SCRIPT, MLFLOW_TASK],
            args=[
                workdir,
                mlflow_tracking_uri,
                *command,
                dsl.ConcatPlaceholder(["--params=", kedro_params]),
                f"--kfp-run-id={dsl.PIPELINE_JOB_ID_PLACEHOLDER}",
                "--output",
                run_id,
            ],
        )

    component.__name__ = MLFLOW_TASK
    component.__doc__ = "Open the MLflow run every node of this pipeline run logs into."
    return dsl.container_component(component)


def _configure(task: Any, plan: TaskPlan | None, settings: KubeflowSettings, data_pvc: Any) -> None:
    """Display name, caching, environment, volume and resources of one task."""
    if plan is not None:
        task.set_display_name(plan.display_name)
    task.set_caching_options(enable_caching=settings.caching)
    for name, value in settings.env.items():
        task.set_env_variable(name, value)
    kubernetes.set_image_pull_policy(task, settings.image_pull_policy)
    for mount in settings.mounts:
        kubernetes.mount_pvc(task, pvc_name=data_pvc, mount_path=mount.mount_path, sub_path=mount.sub_path)
    gpu = plan is not None and settings.gpu.wants_gpu(plan.nodes, plan.tags)
    resources = settings.gpu if gpu else settings.default_resources
    for setter, value in (
        (task.set_cpu_request, resources.cpu_request),
        (task.set_memory_request, resources.memory_request),
        (task.set_cpu_limit, resources.cpu_limit),
        (task.set_memory_limit, resources.memory_limit),
    ):
        if value is not None:
            setter(value)
    if gpu:
        task.set_accelerator_type(settings.gpu.accelerator_type)
        task.set_accelerator_limit(settings.gpu.accelerator_limit)
        for toleration in settings.gpu.tolerations:
            kubernetes.add_toleration(task, **toleration)
        for key, value in settings.gpu.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=str(value))


def pipeline_spec_name(pipeline_name: str) -> str:
    """``skeleton-attention-train-sta-lstm``: KFP pipeline names are lower-case DNS-like names."""
    return task_names([f"{PIPELINE_PREFIX}-{pipeline_name}"])[f"{PIPELINE_PREFIX}-{pipeline_name}"]


def build_pipeline(pipeline: Any, request: CompileRequest, settings: KubeflowSettings) -> Any:
    """The kfp pipeline function of a Kedro ``Pipeline`` (compile it with :func:`compile_pipeline`)."""
    if not settings.image:
        raise KubeflowConfigError("no image: pass --image or set image in conf/<env>/kubeflow.yml")
    if not settings.pvc_name or not settings.mounts:
        raise KubeflowConfigError("volume.pvc_name and volume.mounts are needed: the tasks share data through them")
    single_run = settings.mlflow_single_run and request.tracked
    plans = plan_tasks(pipeline, request.group_by, reserved=[MLFLOW_TASK], in_memory=request.in_memory)
    components = {plan.name: _node_component(plan, request, settings) for plan in plans}
    start = _mlflow_component(request, settings) if single_run else None

    def kedro_pipeline(
        mlflow_tracking_uri: str = settings.mlflow_tracking_uri,
        kedro_params: str = request.kedro_params,
        data_pvc: str = settings.pvc_name,
    ):
        run_id: Any = ""
        if start is not None:
            opener = start(mlflow_tracking_uri=mlflow_tracking_uri, kedro_params=kedro_params)
            _configure(opener, None, settings, data_pvc)
            run_id = opener.outputs["run_id"]
        tasks: dict[str, Any] = {}
        for plan in plans:
            task = components[plan.name](
                mlflow_tracking_uri=mlflow_tracking_uri, kedro_params=kedro_params, mlflow_run_id=run_id
            )
            task.after(*(tasks[name] for name in plan.after))
            _configure(task, plan, settings, data_pvc)
            tasks[plan.name] = task

    kedro_pipeline.__doc__ = f"Kedro pipeline {request.pipeline_name} (env {request.env}) of skeleton-attention"
    return dsl.pipeline(name=pipeline_spec_name(request.pipeline_name))(kedro_pipeline)


def compile_pipeline(pipeline: Any, request: CompileRequest, settings: KubeflowSettings, output: Path) -> Path:
    """Write the KFP v2 pipeline spec YAML of ``pipeline`` to ``output`` (atomically)."""
    function = build_pipeline(pipeline, request, settings)
    output = Path(output)
    if output.suffix not in (".yaml", ".yml"):
        raise KubeflowConfigError(f"the output must be a .yaml file (KFP picks the format by suffix): {output}")
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp.yaml", dir=output.parent)
    os.close(handle)
    try:
        compiler.Compiler().compile(function, package_path=tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return output
