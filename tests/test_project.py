"""Project wiring: DVC stages, pipeline registry, configuration environments, command line."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import yaml

from tests.kedro_helpers import REPO_ROOT, load_config

DVC_FILES = ("dvc.yaml", "real/dvc.yaml")


def _dvc_stages(path: str = "dvc.yaml") -> dict:
    return yaml.safe_load((REPO_ROOT / path).read_text())["stages"]


def _kedro_command(path: str, stage: dict) -> tuple[str, dict[str, str], str]:
    """``(pipeline, --params as a dict, environment tag)`` of a stage's ``kedro run`` command."""
    document = yaml.safe_load((REPO_ROOT / path).read_text())
    command = stage["cmd"]
    for entry in document.get("vars", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                command = command.replace("${" + key + "}", str(value))
    words = shlex.split(command)  # a quoted --params=... may hold spaces ({every: 21})
    assert "kedro" in words[0] and words[1] == "run", command
    pipeline = next(w.split("=", 1)[1] for w in words if w.startswith("--pipelines="))
    params = next((w.split("=", 1)[1] for w in words if w.startswith("--params=")), "")
    runtime = dict(item.split("=", 1) for item in params.split(",") if item)
    tag = "embedded" if "--env=embedded" in words else "base"
    return pipeline, runtime, tag


@pytest.mark.parametrize("path", DVC_FILES)
def test_every_dvc_stage_runs_a_registered_pipeline_with_existing_deps_and_params(path):
    import importlib

    from skeleton_attention.experiments.config import run_dir

    _, params = load_config()
    defaults = yaml.safe_load((REPO_ROOT / "conf/base/globals.yml").read_text())["default_protocol"]
    for name, stage in _dvc_stages(path).items():
        pipeline, runtime, tag = _kedro_command(path, stage)
        assert name == pipeline or name.startswith(pipeline + "_"), f"{path}:{name} runs {pipeline}"
        importlib.import_module(f"skeleton_attention.pipelines.{pipeline}").create_pipeline()
        for dep in stage["deps"]:
            if not dep.startswith(("data/", "${")):
                assert (REPO_ROOT / dep).exists(), f"{name}: dependency {dep} does not exist"
        for entry in stage.get("params", []):
            for file, keys in entry.items():
                declared = yaml.safe_load((REPO_ROOT / file).read_text())
                assert all(key in declared for key in keys), f"{name}: {keys} not all in {file}"
        for metric in stage.get("metrics", []):
            (metric_path,) = metric
            assert metric_path.startswith("metrics/"), "DVC metrics must live outside git-ignored data/"
        if not pipeline.startswith("train_"):
            continue
        # the outputs declared are where Kedro writes this command's run (catalog_train.yml)
        dataset = runtime.get("run.dataset", params["run"]["dataset"])
        protocol = runtime.get("run.protocol") or defaults[dataset]
        fold = runtime.get("run.fold")
        run = run_dir(tag, dataset, protocol, int(fold) if fold else None, runtime.get("run.name"))
        assert f"data/04_feature/{dataset}" in stage["deps"], f"{name}: trains on {dataset}"
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
        for out in outs + [next(iter(m)) for m in stage.get("metrics", [])]:
            where = out.split("/", 2)[2] if out.startswith("data/") else out.split("/", 1)[1]
            assert any(where.startswith(f"{family}/{run}") for family in (pipeline, f"{pipeline}_fused")), (
                f"{path}:{name}: {out} is not under the run directory {run}"
            )
        assert any(o.startswith(f"data/08_reporting/{pipeline}/{run}") for o in outs), f"{name}: no reports"


def test_embedded_environment_overrides_single_keys_of_the_paper_configuration():
    _, base = load_config()
    _, embedded_params = load_config(env="embedded")
    paper, embedded = base["train_sta_lstm_config"], embedded_params["train_sta_lstm_config"]
    assert paper["data"]["batch_size"] == 256  # the paper's NTU batch
    assert embedded["data"]["batch_size"] == 32  # conf/embedded reaches the composed configuration
    # everything else is inherited, not dropped by the override
    assert embedded["model"] == paper["model"]
    assert embedded["data"]["protocol"] == paper["data"]["protocol"] == "ntu60_xsub"
    assert embedded["training"]["phases"] == paper["training"]["phases"]
    assert (paper["run"]["tag"], embedded["run"]["tag"]) == ("base", "embedded")


@pytest.mark.slow
def test_check_views_command_reports_residuals_on_a_users_ntu_directory(shared_data):
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}  # this checkout's package, not an installed one
    result = subprocess.run(
        [sys.executable, "-m", "skeleton_attention.commands", "check-views", str(shared_data / "ntu_multiview")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=env,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("S001P001R001")]
    assert len(lines) == 4  # two recordings x cameras 2 and 3 against camera 1
    assert "rigid" in result.stdout and "naive" in result.stdout


def test_the_package_turns_mlflow_telemetry_off_before_and_after_mlflow_is_imported():
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "PYTEST_CURRENT_TEST")
    }
    env["PYTHONPATH"] = str(REPO_ROOT / "src")
    script = (
        "import os, sys\n"
        "if sys.argv[1] == 'mlflow-first':\n"
        "    import mlflow.telemetry.client as c\n"
        "    from mlflow.telemetry.utils import is_telemetry_disabled as off\n"
        "    assert off() or c.get_telemetry_client() is not None  # on in a user's shell (not on CI)\n"
        "import skeleton_attention\n"
        "import mlflow.telemetry.client as c\n"
        "from mlflow.telemetry.utils import is_telemetry_disabled\n"
        "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], c.get_telemetry_client(), is_telemetry_disabled())\n"
    )
    for order in ("package-first", "mlflow-first"):
        result = subprocess.run(
            [sys.executable, "-c", script, order], capture_output=True, text=True, env=env, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["true", "None", "True"], order
    show = "import skeleton_attention, os; print(os.environ['MLFLOW_DISABLE_TELEMETRY'])"
    kept = subprocess.run(
        [sys.executable, "-c", show],
        capture_output=True,
        text=True,
        env={**env, "MLFLOW_DISABLE_TELEMETRY": "false"},
        timeout=120,
    )
    assert kept.stdout.strip() == "false"  # an explicit choice wins


def test_the_default_pipeline_trains_on_what_its_preparation_writes():
    """`make run` runs synthetic -> prepare_ntu -> train_sta_lstm in one Kedro run: the training
    nodes must read prepare_ntu's output by name, or Kedro may order them before it."""
    from kedro.framework.project import configure_project

    from skeleton_attention.pipeline_registry import register_pipelines

    configure_project("skeleton_attention")
    default = register_pipelines()["__default__"]
    assert "training_samples" not in default.inputs()
    order = [n.name for n in default.nodes]  # topologically sorted
    streams = order.index("build_ntu_streams")
    assert all(order.index(n) > streams for n in order if n.startswith("train_sta_lstm."))


def test_kedro_run_prepares_before_training_when_both_are_asked_for(monkeypatch):
    from skeleton_attention import cli

    calls = []
    monkeypatch.setattr(cli.kedro_run, "callback", lambda **kw: calls.append(kw["pipelines"]))
    monkeypatch.setattr(cli, "_train", lambda name, kw: calls.append([name]))
    params = {
        name: None
        for name in (
            "tags",
            "node_names",
            "to_nodes",
            "from_nodes",
            "from_inputs",
            "to_outputs",
            "namespaces",
            "conf_source",
            "env",
        )
    }
    cli.run.callback(**params, pipeline=None, pipelines=["train_sta_lstm", "prepare_sbu"], params={})
    assert calls == [["prepare_sbu"], ["train_sta_lstm"]]
    calls.clear()
    cli.run.callback(**{**params, "tags": ["x"]}, pipeline=None, pipelines=["train_sta_lstm"], params={})
    assert calls == [["train_sta_lstm"]]  # a node filter: Kedro's plain run, unchanged
