"""``skeleton-attention register-best`` against a sqlite MLflow store (model_registry.py).

The runs are logged the way a training pipeline logs them (tags of mlflow_hooks.run_tags, per-epoch
``val_acc`` / ``val_ce`` at step = epoch, ``best_epoch``, ``test.*``, a pytorch-flavor model named
``model``), with numbers chosen so that every wrong rule picks another run: the best by test top-1,
the best at the last epoch, a run without a model, an unfinished run and a synthetic-data run each
look better than the right one.
"""

from __future__ import annotations

import pytest

from skeleton_attention.model_registry import ALIAS, register_best

BASE = "skeleton-attention"
EXPERIMENT = f"{BASE}/sbu/sbu_fold"


def _log_run(mlflow, name: str, *, val_acc: list[float], best_epoch: int, test_top1: float, env_tag: str = "base",
             model: str = "sta_lstm", with_model: bool = True, status: str = "FINISHED") -> str:  # fmt: skip
    import torch

    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags(
            {"model": model, "variant": model, "dataset": "sbu", "protocol": "sbu_fold", "env_tag": env_tag}
        )
        for epoch, value in enumerate(val_acc, start=1):
            mlflow.log_metrics({"val_acc": value, "val_ce": 1.0 - value}, step=epoch)
        mlflow.log_metrics({"best_epoch": float(best_epoch), "test.top1": test_top1})
        if with_model:
            mlflow.pytorch.log_model(
                torch.nn.Linear(2, 2), name="model", pip_requirements=["torch"], serialization_format="pickle"
            )
    if status != "FINISHED":
        mlflow.MlflowClient().set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An sqlite store with MLflow's tables, made once: creating them (migrations) is the slow part."""
    import mlflow

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, monkeypatch, empty_store):
    import shutil

    import mlflow

    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(EXPERIMENT)
    yield uri, mlflow
    mlflow.set_tracking_uri(None)


def test_the_best_validation_run_of_each_family_is_registered_never_by_test(store):
    uri, mlflow = store
    best = _log_run(mlflow, "best", val_acc=[0.5, 0.9, 0.6], best_epoch=2, test_top1=0.70)
    _log_run(mlflow, "better on test", val_acc=[0.5, 0.8, 0.8], best_epoch=2, test_top1=0.95)
    _log_run(mlflow, "better at the last epoch", val_acc=[0.5, 0.7, 0.95], best_epoch=2, test_top1=0.8)
    _log_run(mlflow, "no model", val_acc=[0.99], best_epoch=1, test_top1=0.9, with_model=False)
    _log_run(mlflow, "killed", val_acc=[0.99], best_epoch=1, test_top1=0.9, status="KILLED")
    synthetic = _log_run(mlflow, "synthetic", val_acc=[1.0], best_epoch=1, test_top1=1.0, env_tag="embedded")
    san = _log_run(mlflow, "san", val_acc=[0.4, 0.6], best_epoch=2, test_top1=0.5, model="san")

    outcomes = {o.name: o for o in register_best(uri, BASE)}
    assert set(outcomes) == {
        "skeleton-attention.base.sbu.sbu_fold.sta_lstm",
        "skeleton-attention.embedded.sbu.sbu_fold.sta_lstm",
        "skeleton-attention.base.sbu.sbu_fold.san",
    }
    sta = outcomes["skeleton-attention.base.sbu.sbu_fold.sta_lstm"]
    assert sta.candidate.run_id == best and sta.candidate.val_top1 == pytest.approx(0.9)
    assert sta.competitors == 3 and sta.created
    assert outcomes["skeleton-attention.embedded.sbu.sbu_fold.sta_lstm"].candidate.run_id == synthetic
    assert outcomes["skeleton-attention.base.sbu.sbu_fold.san"].candidate.run_id == san

    client = mlflow.MlflowClient(uri)
    version = client.get_model_version_by_alias("skeleton-attention.base.sbu.sbu_fold.sta_lstm", ALIAS)
    assert version.run_id == best and version.tags["selected_on"] == "val_acc"
    loaded = mlflow.pytorch.load_model(f"models:/skeleton-attention.base.sbu.sbu_fold.sta_lstm@{ALIAS}")
    assert isinstance(loaded, __import__("torch").nn.Linear)

    # again: nothing new; a new best run moves the alias to a new version
    again = {o.name: o for o in register_best(uri, BASE)}
    assert not any(o.created for o in again.values())
    assert again["skeleton-attention.base.sbu.sbu_fold.sta_lstm"].version == sta.version
    newer = _log_run(mlflow, "newer", val_acc=[0.95], best_epoch=1, test_top1=0.1)
    moved = {o.name: o for o in register_best(uri, BASE)}["skeleton-attention.base.sbu.sbu_fold.sta_lstm"]
    assert moved.created and moved.candidate.run_id == newer
    assert str(client.get_model_version_by_alias(moved.name, ALIAS).version) == moved.version != sta.version


def test_the_command_reads_the_project_settings_and_dry_run_changes_nothing(store, capsys):
    from skeleton_attention.commands import main

    uri, mlflow = store
    _log_run(mlflow, "only", val_acc=[0.7], best_epoch=1, test_top1=0.5)
    assert main(["register-best", "--dry-run"]) == 0  # MLFLOW_TRACKING_URI through conf/base/mlflow.yml
    out = capsys.readouterr().out
    assert "skeleton-attention.base.sbu.sbu_fold.sta_lstm: would register" in out
    assert "validation top-1 0.7000 at epoch 1, best of 1" in out
    assert mlflow.MlflowClient(uri).search_registered_models() == []


def test_the_callback_logs_the_kept_models_validation_accuracy(store):
    """``val_top1`` is ``val_acc`` of the kept (best) epoch, not of the last one."""
    from types import SimpleNamespace

    from skeleton_attention.training.callbacks import MlflowCallback

    _, mlflow = store
    history = [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.8}, {"epoch": 3, "val_acc": 0.9}]
    result = SimpleNamespace(history=history, best_epoch=2, best_metric=0.3, monitor="val_ce")
    with mlflow.start_run() as run:
        MlflowCallback().on_fit_end(None, result)
    metrics = mlflow.MlflowClient().get_run(run.info.run_id).data.metrics
    assert metrics == {"best_epoch": 2.0, "best_val_ce": 0.3, "val_top1": 0.8}
    steps = {m.step for key in metrics for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, key)}
    assert steps == {3}  # the last epoch: the running best_val_ce series does not jump back to step 0
