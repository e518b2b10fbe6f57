"""Kubeflow Pipelines: every registered Kedro pipeline compiles to a KFP v2 spec whose graph is
Kedro's (docs/kubeflow.md).

No cluster runs here: the spec YAML is checked against the Kedro pipeline (tasks, edges, GPU
requests, commands, parameters, volume), and each task's shell wrapper is executed with a stand-in
``kedro`` that reports what it received. The slow test runs the compiled training pipeline's
commands locally, task by task, as a cluster would (each in its own process).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kedro.pipeline import Pipeline, node

from skeleton_attention.kubeflow.compiler import MLFLOW_TASK, CompileRequest, compile_pipeline
from skeleton_attention.kubeflow.graph import plan_tasks, task_names
from skeleton_attention.kubeflow.settings import KubeflowConfigError, read_settings
from tests.kedro_helpers import REPO_ROOT
from tests.test_cli_runs import embedded_project  # noqa: F401 - the shared fixture

# one worker builds the module fixtures (every pipeline compiled: about 50 s on 2 cores)
pytestmark = pytest.mark.xdist_group("kubeflow")
IMAGE = "registry.invalid/skeleton-attention:test"
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
TELEMETRY = {
    "DO_NOT_TRACK": "1",
    "KEDRO_DISABLE_TELEMETRY": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
}


def _project_config(key: str, env: str = "base") -> dict[str, Any]:
    from tests.kedro_helpers import config_loader

    loader = config_loader(env)
    loader.config_patterns.update({key: [f"{key}*", f"{key}*/**"]})
    return dict(loader[key])


@pytest.fixture(scope="module")
def registry() -> dict[str, Pipeline]:
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(REPO_ROOT)
    from skeleton_attention.pipeline_registry import register_pipelines

    return register_pipelines()


@pytest.fixture(scope="module")
def settings():
    import dataclasses

    return dataclasses.replace(read_settings(_project_config("kubeflow")), image=IMAGE)


@pytest.fixture(scope="module")
def compiled(registry, settings, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """Every registered pipeline compiled with conf/base: {name: {spec, platform, tracked, in_memory}}."""
    from skeleton_attention.cli import in_memory_datasets

    disabled = _project_config("mlflow")["tracking"]["disable_tracking"]["pipelines"]
    catalog = _project_config("catalog")
    out = tmp_path_factory.mktemp("kfp")
    specs = {}
    for name, pipeline in registry.items():
        in_memory = in_memory_datasets(pipeline, catalog, {})
        request = CompileRequest(name, "base", "run.dataset=ntu", tracked=name not in disabled, in_memory=in_memory)
        path = compile_pipeline(pipeline, request, settings, out / f"{name.strip('_')}.yaml")
        spec, platform = yaml.safe_load_all(path.read_text())
        specs[name] = {"spec": spec, "platform": platform, "tracked": request.tracked, "in_memory": in_memory}
    return specs


def _producers(pipeline: Pipeline) -> dict[str, set[str]]:
    """{node: names of the nodes producing its inputs}, from the nodes' inputs and outputs alone."""
    made_by = {output: n.name for n in pipeline.nodes for output in n.outputs}
    return {n.name: {made_by[i] for i in n.inputs if i in made_by} for n in pipeline.nodes}


def _node_tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in spec["root"]["dag"]["tasks"].items() if k != MLFLOW_TASK}


def _executor(spec: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    component = spec["components"][task["componentRef"]["name"]]
    return spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]


def _task_of_node(spec: dict[str, Any]) -> dict[str, str]:
    """{Kedro node: task} from each task's ``kedro run --nodes=`` argument."""
    found: dict[str, str] = {}
    for key, task in _node_tasks(spec).items():
        (nodes,) = [a.removeprefix("--nodes=") for a in _executor(spec, task)["args"] if a.startswith("--nodes=")]
        for node_name in nodes.split(","):
            assert node_name not in found, f"{node_name} runs in {found[node_name]} and {key}"
            found[node_name] = key
    return found


def test_every_registered_pipeline_compiles_to_its_kedro_graph(registry, compiled):
    assert len(compiled) == len(registry) >= 15
    fused = 0
    for name, pipeline in registry.items():
        spec, tracked = compiled[name]["spec"], compiled[name]["tracked"]
        tasks = _node_tasks(spec)
        task_of = _task_of_node(spec)
        assert set(task_of) == {n.name for n in pipeline.nodes}, name  # every node runs, in one task
        assert all(DNS_LABEL.match(key) for key in tasks), sorted(tasks)
        assert (MLFLOW_TASK in spec["root"]["dag"]["tasks"]) == tracked, name
        # a task runs one node, except nodes handing over in-memory data, which must share one
        for dataset in compiled[name]["in_memory"]:
            users = {task_of[n.name] for n in pipeline.nodes if dataset in n.inputs or dataset in n.outputs}
            assert len(users) == 1, (name, dataset, users)
        for key, task in tasks.items():
            nodes = [n for n, k in task_of.items() if k == key]
            if len(nodes) == 1:
                assert task["taskInfo"]["name"] == nodes[0]
            else:
                fused += 1
                assert task["taskInfo"]["name"] == "+".join(nodes)
                linked = {d for n in pipeline.nodes if n.name in nodes for d in n.outputs} & {
                    d for n in pipeline.nodes if n.name in nodes for d in n.inputs
                }
                assert linked & compiled[name]["in_memory"], (name, nodes)
        for key, task in tasks.items():  # a task waits for its nodes' producers, and nothing else
            assert {f"--pipelines={name}", "--env=base"} <= set(_executor(spec, task)["args"])
            own = [n for n, k in task_of.items() if k == key]
            expected = {task_of[p] for n in own for p in _producers(pipeline)[n]} - {key}
            assert set(task.get("dependentTasks", [])) == expected | ({MLFLOW_TASK} if tracked else set()), key
    # no project pipeline hands data over in memory any more (the attention maps are a pickle file);
    # the grouping itself is checked on a pipeline of its own below
    assert fused == 0


def test_gpu_requests_exactly_on_training_nodes(registry, compiled, settings):
    training_seen = 0
    for name, pipeline in registry.items():
        spec = compiled[name]["spec"]
        tasks = _node_tasks(spec)
        task_of = _task_of_node(spec)
        for key, task in tasks.items():
            nodes = [n for n in pipeline.nodes if task_of[n.name] == key]
            resources = _executor(spec, task).get("resources", {})
            accelerator = resources.get("accelerator")
            if any("training" in n.tags for n in nodes):
                training_seen += 1
                assert accelerator == {
                    "count": "1",
                    "resourceCount": "1",
                    "resourceType": "nvidia.com/gpu",
                    "type": "nvidia.com/gpu",
                }, (name, key)
                assert resources["resourceMemoryRequest"] == settings.gpu.memory_request
            else:
                assert accelerator is None, (name, key)
                assert resources["resourceCpuRequest"] == settings.default_resources.cpu_request
    assert training_seen == 6  # five train_<family> pipelines and the default pipeline


def test_parameters_volume_environment_and_caching(compiled, settings):
    for entry in compiled.values():
        spec, platform = entry["spec"], entry["platform"]
        inputs = spec["root"]["inputDefinitions"]["parameters"]
        assert inputs["mlflow_tracking_uri"]["defaultValue"] == settings.mlflow_tracking_uri
        assert inputs["kedro_params"]["defaultValue"] == "run.dataset=ntu"
        assert inputs["data_pvc"]["defaultValue"] == "skeleton-attention-data"
        executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for key, task in spec["root"]["dag"]["tasks"].items():
            params = task["inputs"]["parameters"]
            assert params["mlflow_tracking_uri"] == {"componentInputParameter": "mlflow_tracking_uri"}, key
            assert params["kedro_params"] == {"componentInputParameter": "kedro_params"}, key
            if key != MLFLOW_TASK and entry["tracked"]:
                assert params["mlflow_run_id"]["taskOutputParameter"] == {
                    "outputParameterKey": "run_id",
                    "producerTask": MLFLOW_TASK,
                }
            assert not task.get("cachingOptions", {}).get("enableCache"), key
            container = _executor(spec, task)
            assert container["image"] == IMAGE
            assert {e["name"]: e["value"] for e in container["env"]}.items() >= TELEMETRY.items()
            mounts = executors[task["componentRef"]["name"].replace("comp-", "exec-", 1)]["pvcMount"]
            assert {(m["subPath"], m["mountPath"]) for m in mounts} == {
                ("data", "/app/data"),
                ("mlruns", "/app/mlruns"),
            }
            assert all(m["pvcNameParameter"] == {"componentInputParameter": "data_pvc"} for m in mounts)


def _fake_kedro(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``kedro`` prints its working directory, arguments and MLflow variables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kedro"
    script.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "print(json.dumps({'cwd': os.getcwd(), 'argv': sys.argv[1:], "
        "'uri': os.environ.get('MLFLOW_TRACKING_URI'), 'run': os.environ.get('MLFLOW_RUN_ID')}))\n"
    )
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}


def _resolve(value: Any, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    """A container argument with KFP's placeholders filled in (as the KFP launcher does)."""
    if isinstance(value, str) and value.startswith('{"Concat"'):
        return "".join(_resolve(part, inputs, outputs) for part in json.loads(value)["Concat"])
    value = re.sub(r"\{\{\$\.inputs\.parameters\['(\w+)'\]\}\}", lambda m: inputs[m.group(1)], value)
    value = re.sub(r"\{\{\$\.outputs\.parameters\['(\w+)'\]\.output_file\}\}", lambda m: outputs[m.group(1)], value)
    return value.replace("{{$.pipeline_job_uuid}}", "kfp-local-test")


def test_each_task_command_runs_its_node_with_the_mlflow_uri(compiled, tmp_path):
    spec = compiled["train_sta_lstm"]["spec"]
    task_of = _task_of_node(spec)
    env = _fake_kedro(tmp_path)
    inputs = {
        "mlflow_tracking_uri": "http://mlflow.invalid:5000",
        "kedro_params": "run.dataset=sbu,run.fold=2",
        "mlflow_run_id": "0123abcd",
    }
    for key, task in _node_tasks(spec).items():
        container = _executor(spec, task)
        command = [*container["command"], *(_resolve(a, inputs, {}) for a in container["args"])]
        command[command.index("/app")] = str(tmp_path)  # the image's workdir
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        seen = json.loads(result.stdout)
        assert seen["uri"] == "http://mlflow.invalid:5000" and seen["run"] == "0123abcd", key
        assert seen["cwd"] == str(tmp_path)
        nodes = ",".join(n for n, k in task_of.items() if k == key)
        assert seen["argv"] == [
            "run",
            "--pipelines=train_sta_lstm",
            f"--nodes={nodes}",
            "--env=base",
            "--params=run.dataset=sbu,run.fold=2",
        ]
    # no MLflow run id (tracking off, or mlflow_single_run: false): kedro-mlflow opens its own run;
    # no tracking URI: the image's conf/base/mlflow.yml decides
    container = _executor(spec, next(iter(_node_tasks(spec).values())))
    empty = {**inputs, "mlflow_run_id": "", "mlflow_tracking_uri": ""}
    command = [*container["command"], *(_resolve(a, empty, {}) for a in container["args"])]
    command[command.index("/app")] = str(tmp_path)
    seen = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)
    assert seen["run"] is None and seen["uri"] is None and seen["argv"][0] == "run"


def test_node_names_kubeflow_dislikes_map_to_valid_unique_task_names(settings, tmp_path):
    def step(*_: Any) -> int:
        return 1

    long_name = "prepare." + "very_long_stage_name_" * 5
    # Kedro 1.7 allows letters, digits, "-", "_" and "." in names (no brackets: a node without a
    # name is "<function>__<hash>"); KFP allows lower-case letters, digits and "-"
    merge = node(step, ["a", "b", "a2"], "c")
    pipeline = Pipeline(
        [
            node(step, "raw", "a", name="Prep.A-1"),
            node(step, "raw", "b", name="prep_a_1"),
            node(step, "raw", "a2", name="prep.a.1"),
            merge,
            node(step, "c", "d", name=long_name),
            node(step, ["c", "d"], "e", name="1st_mlflow-run"),
            node(step, "e", "f", name="mlflow-run"),  # the name of the MLflow task
        ]
    )
    path = compile_pipeline(pipeline, CompileRequest("custom", "base", tracked=True), settings, tmp_path / "c.yaml")
    spec = next(yaml.safe_load_all(path.read_text()))
    tasks = _node_tasks(spec)
    assert len(tasks) == 7 and all(DNS_LABEL.match(key) for key in tasks), sorted(tasks)
    display = {task["taskInfo"]["name"]: key for key, task in tasks.items()}
    assert set(display) == {n.name for n in pipeline.nodes} and re.fullmatch(r"step__[0-9a-f]+", merge.name)
    same = [display[name] for name in ("Prep.A-1", "prep_a_1", "prep.a.1")]
    assert len(set(same)) == 3 and all(re.fullmatch(r"prep-a-1-[0-9a-f]{8}", key) for key in same), same
    assert display[merge.name] == merge.name.replace("__", "-")
    assert display["1st_mlflow-run"] == "n-1st-mlflow-run" and len(display[long_name]) <= 63
    assert display["mlflow-run"].startswith("mlflow-run-")
    assert set(tasks[display[merge.name]]["dependentTasks"]) == {*same, MLFLOW_TASK}
    assert spec["root"]["dag"]["tasks"][MLFLOW_TASK]["taskInfo"]["name"] == MLFLOW_TASK
    assert f"--nodes={merge.name}" in _executor(spec, tasks[display[merge.name]])["args"]
    assert f"--nodes={long_name}" in _executor(spec, tasks[display[long_name]])["args"]
    # the mapping does not depend on the order the names come in
    names = [n.name for n in pipeline.nodes]
    assert task_names(names, ["mlflow-run"]) == task_names(list(reversed(names)), ["mlflow-run"])


def test_group_by_namespace(registry):
    plans = plan_tasks(registry["__default__"], "namespace")
    training = [p for p in plans if p.display_name == "train_sta_lstm"]
    family_nodes = len(registry["train_sta_lstm"].nodes)
    assert len(training) == 1 and len(training[0].nodes) == family_nodes and "training" in training[0].tags
    assert set(training[0].after) == {"build-ntu-streams"}  # it reads the table prepare_ntu writes
    assert len(plans) == len(registry["__default__"].nodes) - (family_nodes - 1)

    def step(*_: Any) -> int:
        return 1

    # a -> b -> a across namespaces: grouping would make two tasks wait for each other
    with pytest.warns(UserWarning, match="interrupted"):  # Kedro notices too
        loop = Pipeline(
            [
                node(step, "x", "y", name="first", namespace="one"),
                node(step, "y", "z", name="only", namespace="two"),
                node(step, "z", "w", name="last", namespace="one"),
            ]
        )
    with pytest.raises(ValueError, match="wait for each other"):
        plan_tasks(loop, "namespace")
    assert [p.display_name for p in plan_tasks(loop, "none")] == ["one.first", "two.only", "one.last"]


def test_in_memory_hand_overs_share_a_task():
    def step(*_: Any) -> int:
        return 1

    pipeline = Pipeline(
        [
            node(step, "raw", "table", name="prepare"),
            node(step, "table", "scores", name="evaluate"),
            node(step, ["scores", "table"], "plot", name="plot"),
        ]
    )
    plans = plan_tasks(pipeline, in_memory={"scores"})
    assert [(p.nodes, p.after) for p in plans] == [(("prepare",), ()), (("evaluate", "plot"), ("prepare",))]
    assert plans[1].display_name == "evaluate+plot" and plans[1].name == "evaluate-plot"
    with pytest.raises(ValueError, match="'raw', which is kept in memory and made by no node"):
        plan_tasks(pipeline, in_memory={"raw"})


def test_settings_errors_name_the_key():
    with pytest.raises(KubeflowConfigError, match="gpus"):
        read_settings({"resources": {"gpus": {}}})
    with pytest.raises(KubeflowConfigError, match=r"resources\.gpu.*accelerator"):
        read_settings({"resources": {"gpu": {"accelerators": 1}}})
    with pytest.raises(KubeflowConfigError, match="accelerator_limit"):
        read_settings({"resources": {"gpu": {"accelerator_limit": 0}}})
    with pytest.raises(KubeflowConfigError, match="mount paths"):
        read_settings({"volume": {"pvc_name": "p", "mounts": [{"mount_path": "data"}]}})


def test_compile_command(registry, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from skeleton_attention.cli import cli

    monkeypatch.chdir(REPO_ROOT)
    out = tmp_path / "t.yaml"
    args = [
        "kubeflow",
        "compile",
        "--pipeline",
        "train_sta_lstm",
        "--env",
        "embedded",
        "--image",
        IMAGE,
        "--params",
        "run.dataset=sbu",
        "--params",
        "run.fold=2",
        "--group-by",
        "namespace",
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    nodes = len(registry["train_sta_lstm"].nodes)
    assert f"train_sta_lstm, {nodes} nodes in 1 tasks + the MLflow run task" in result.output
    spec = next(yaml.safe_load_all(out.read_text()))
    assert (
        spec["root"]["inputDefinitions"]["parameters"]["kedro_params"]["defaultValue"] == "run.dataset=sbu,run.fold=2"
    )
    (task,) = _node_tasks(spec).values()
    assert "--env=embedded" in _executor(spec, task)["args"]

    missing = CliRunner().invoke(cli, ["kubeflow", "compile", "--pipeline", "train_sta_lstm", "-o", str(out)])
    assert missing.exit_code == 1 and "no image" in missing.output
    unknown = CliRunner().invoke(cli, ["kubeflow", "compile", "--pipeline", "train_nope", "--image", IMAGE])
    assert unknown.exit_code == 1 and "no pipeline 'train_nope'" in unknown.output
    bad = CliRunner().invoke(
        cli, ["kubeflow", "compile", "--pipeline", "synthetic", "--image", IMAGE, "--params", "nokey"]
    )
    assert bad.exit_code == 2 and "must contain a key and a value" in bad.output


def _run_spec_locally(spec: dict[str, Any], project: Path, values: dict[str, str], env: dict[str, str]) -> list[str]:
    """Execute a compiled spec's tasks on this machine, one process each, in dependency order, with
    the placeholders filled in as the KFP launcher fills them; the image's workdir is ``project``."""
    from graphlib import TopologicalSorter

    tasks = spec["root"]["dag"]["tasks"]
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    values = {**{k: v.get("defaultValue", "") for k, v in defaults.items()}, **values}
    outputs: dict[str, dict[str, str]] = {}
    order = list(TopologicalSorter({k: set(t.get("dependentTasks", [])) for k, t in tasks.items()}).static_order())
    for key in order:
        task = tasks[key]
        inputs = {}
        for name, source in task["inputs"]["parameters"].items():
            if "componentInputParameter" in source:
                inputs[name] = values[source["componentInputParameter"]]
            elif "taskOutputParameter" in source:
                produced = source["taskOutputParameter"]
                inputs[name] = outputs[produced["producerTask"]][produced["outputParameterKey"]]
            else:
                inputs[name] = source["runtimeValue"]["constant"]
        component = spec["components"][task["componentRef"]["name"]]
        declared = component.get("outputDefinitions", {}).get("parameters", {})
        files = {name: str(project / f".kfp-{key}-{name}") for name in declared}
        container = _executor(spec, task)
        command = [*container["command"], *(_resolve(a, inputs, files) for a in container["args"])]
        command[command.index("/app")] = str(project)
        task_env = {**env, **{e["name"]: e["value"] for e in container.get("env", [])}}
        result = subprocess.run(command, env=task_env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{key}: {(result.stdout + result.stderr)[-4000:]}"
        outputs[key] = {name: Path(path).read_text() for name, path in files.items()}
    return order


@pytest.mark.slow
def test_compiled_training_pipeline_runs_task_by_task(embedded_project, tmp_path):  # noqa: F811 - imported above
    """The compiled train_sta_lstm spec, each task in a process of its own (as in separate pods,
    sharing the project's data/ directory as the volume): the model trains and every task logs
    into the one MLflow run the first task opened, in the data set's experiment."""
    import shutil

    import mlflow

    from tests.test_cli_runs import EMBEDDED_METRICS, TINY, _new_project, _user_env

    project = _new_project(tmp_path / "project")
    shutil.copytree(embedded_project / "data" / "04_feature", project / "data" / "04_feature")
    out = tmp_path / "train.yaml"
    from click.testing import CliRunner

    from skeleton_attention.cli import cli

    result = CliRunner().invoke(
        cli, ["kubeflow", "compile", "-p", "train_sta_lstm", "-e", "embedded", "-i", IMAGE, "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    spec = next(yaml.safe_load_all(out.read_text()))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = _user_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    order = _run_spec_locally(spec, project, {"mlflow_tracking_uri": uri, "kedro_params": TINY}, env)
    from kedro.framework.project import pipelines

    # the opener + a task per node (evaluate_model hands the attention maps to report through a file)
    assert order[0] == MLFLOW_TASK and len(order) == 1 + len(pipelines["train_sta_lstm"].nodes)

    metrics = json.loads((project / EMBEDDED_METRICS).read_text())
    assert metrics["num_test_samples"] == 120
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    runs = client.search_runs(list(experiments))
    assert len(runs) == 1, [(r.info.run_name, experiments[r.info.experiment_id]) for r in runs]
    (run,) = runs
    assert experiments[run.info.experiment_id] == "skeleton-attention/ntu/ntu60_xsub"
    # the readable name a whole-pipeline `kedro run` gives (mlflow_hooks.run_name), not the task's
    assert run.info.status == "FINISHED" and run.info.run_name == "sta_lstm joint s0 ntu/ntu60_xsub [embedded]"
    assert run.data.tags["kubeflow_run_id"] == "kfp-local-test" and run.data.tags["model"] == "sta_lstm"
    logged = [v for k, v in run.data.metrics.items() if k.startswith("test") and k.endswith("top1")]
    assert logged == [pytest.approx(metrics["test_top1"])], run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plots", "outputs"} <= artifacts, artifacts  # from the evaluate and report tasks
    models = client.search_logged_models(list(experiments))  # MLflow 3 keeps models beside the run
    assert [m.source_run_id for m in models] == [run.info.run_id]  # from the export task


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (instruction, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO_ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), " ".join(rest.split())))
    return stages


def test_dockerfile_copies_existing_files_and_installs_torch_first(settings):
    """No Docker daemon here (docs/kubeflow.md): what can be checked without building."""
    import tomllib

    stages = _dockerfile_stages()
    assert [args for instruction, args in (s[0] for s in stages)] == ["python:3.11-slim AS wheel", "python:3.11-slim"]
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()}
    assert {"data", ".venv", "mlruns", "mlflow.db", ".git"} <= ignored
    for stage in stages:
        for instruction, args in stage:
            if instruction == "COPY" and not args.startswith("--from"):
                *sources, _ = args.split()
                for source in sources:
                    assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
                    assert source.strip("/").split("/")[0] not in ignored, f"COPY {source}: excluded by .dockerignore"
    runtime = stages[-1]
    runs = [args for instruction, args in runtime if instruction == "RUN"]
    torch_step = next(i for i, run in enumerate(runs) if '"torch==${TORCH_VERSION}"' in run)
    project_step = next(i for i, run in enumerate(runs) if "pip install /wheels/" in run)
    assert torch_step < project_step
    pinned = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_pin = next(d for d in pinned if d.startswith("torch==")).removeprefix("torch==")
    assert ("ARG", f"TORCH_VERSION={torch_pin}") in runtime  # the version pyproject.toml pins
    assert ("WORKDIR", settings.workdir) in runtime
    assert all(m.mount_path.startswith(settings.workdir + "/") for m in settings.mounts)
    env = " ".join(args for instruction, args in runtime if instruction == "ENV")
    assert all(f"{name}={value}" in env for name, value in TELEMETRY.items())
