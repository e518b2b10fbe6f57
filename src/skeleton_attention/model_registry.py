"""Registers the best model of each family in MLflow's model registry (``skeleton-attention register-best``).

"Best" is decided on **validation only**: within one experiment (one data set and protocol,
``mlflow_hooks.experiment_name``) and one environment tag (``embedded`` runs train on synthetic
data and never compete with ``base`` runs), the finished run of a model family whose selected
model has the highest validation top-1 wins; ties go to the lower validation cross-entropy, then
to the later run. The selected model's validation top-1 is ``val_acc`` at the step of the run's
``best_epoch`` (the epoch the trainer kept; both are logged by ``training.callbacks.MlflowCallback``
for every family). Test metrics are never read.

The winner's logged model (``train_<family>.mlflow_model``, kedro-mlflow's pytorch flavor) becomes a
version of the registered model ``<base>.<env tag>.<dataset>.<protocol>.<model>`` (e.g.
``skeleton-attention.base.sbu.sbu_fold.sta_lstm``; MLflow forbids ``/`` in names) with the alias
``best``, so ``mlflow.pytorch.load_model("models:/<name>@best")`` loads it. Running the command again
registers nothing new unless another run has become the best; the alias then moves to it.
Runs without a logged model (a cross-validation's parent run, a score fusion) are not candidates;
each fold run is (it has its own model and its own validation set).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

ALIAS = "best"
#: the metric (per epoch, step = epoch) whose value at ``best_epoch`` ranks the runs
VALIDATION_METRIC = "val_acc"
TIE_BREAK_METRIC = "val_ce"


@dataclass(frozen=True)
class Candidate:
    """A finished training run with a logged model, and its selected model's validation scores."""

    experiment: str
    env_tag: str
    model: str
    run_id: str
    run_name: str
    model_id: str
    best_epoch: int
    val_top1: float
    val_ce: float
    start_time: int


@dataclass(frozen=True)
class Registration:
    """The outcome for one (experiment, environment, family): the version the ``best`` alias names."""

    name: str
    candidate: Candidate
    version: str | None  # None: a dry run
    created: bool
    competitors: int


def registered_name(base: str, experiment: str, env_tag: str, model: str) -> str:
    """``<base>.<env tag>.<dataset>.<protocol>.<model>`` from the experiment ``<base>/<dataset>/<protocol>``."""
    scope = experiment[len(base) + 1 :] if experiment.startswith(base + "/") else experiment
    return ".".join([base, env_tag or "base", *scope.split("/"), model])


def _value_at(client: Any, run_id: str, key: str, step: int) -> float | None:
    values = [m.value for m in client.get_metric_history(run_id, key) if m.step == step]
    return float(values[-1]) if values else None


def _all_logged_models(client: Any, experiment_id: str) -> list[Any]:
    models, token = [], None
    while True:
        page = client.search_logged_models(experiment_ids=[experiment_id], page_token=token)
        models.extend(page)
        token = page.token
        if not token:
            return models


def candidates(client: Any, experiment: Any) -> list[Candidate]:
    """Every finished training run of ``experiment`` with a logged model and its validation scores."""
    models: dict[str, Any] = {}
    for logged in _all_logged_models(client, experiment.experiment_id):
        if logged.source_run_id and (
            logged.source_run_id not in models
            or logged.creation_timestamp > models[logged.source_run_id].creation_timestamp
        ):
            models[logged.source_run_id] = logged  # the latest model a run logged (a resumed run logs again)
    found = []
    finished = "attributes.status = 'FINISHED'"
    for run in client.search_runs([experiment.experiment_id], filter_string=finished, max_results=50_000):
        tags, run_id = run.data.tags, run.info.run_id
        best_epoch = run.data.metrics.get("best_epoch")
        if not tags.get("model") or run_id not in models or best_epoch is None:
            continue
        step = int(best_epoch)
        val_top1 = _value_at(client, run_id, VALIDATION_METRIC, step)
        if val_top1 is None or not math.isfinite(val_top1):
            logger.warning("run %s (%s): no %s at its best epoch %d; not a candidate", run_id,
                           run.info.run_name, VALIDATION_METRIC, step)  # fmt: skip
            continue
        val_ce = _value_at(client, run_id, TIE_BREAK_METRIC, step)
        found.append(
            Candidate(
                experiment=experiment.name,
                env_tag=tags.get("env_tag") or "base",
                model=tags["model"],
                run_id=run_id,
                run_name=run.info.run_name or "",
                model_id=models[run_id].model_id,
                best_epoch=step,
                val_top1=val_top1,
                val_ce=math.inf if val_ce is None or not math.isfinite(val_ce) else val_ce,
                start_time=int(run.info.start_time or 0),
            )
        )
    return found


def best_of(group: list[Candidate]) -> Candidate:
    """Highest validation top-1, then lowest validation cross-entropy, then the latest run."""
    return max(group, key=lambda c: (c.val_top1, -c.val_ce, c.start_time))


def _register(client: Any, name: str, best: Candidate) -> tuple[str, bool]:
    """The version of ``name`` holding ``best``'s model (created when none does); alias ``best`` on it."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description=f"Best {best.model} on {best.experiment} ({best.env_tag}), by validation top-1"
        )
    existing = [v for v in client.search_model_versions(f"name = '{name}'") if v.run_id == best.run_id]
    created = not existing
    if existing:
        version = max(existing, key=lambda v: int(v.version))
    else:
        version = client.create_model_version(
            name,
            source=f"models:/{best.model_id}",
            run_id=best.run_id,
            model_id=best.model_id,
            tags={
                "val_top1": f"{best.val_top1:.6g}",
                "val_ce": f"{best.val_ce:.6g}",
                "best_epoch": str(best.best_epoch),
                "selected_on": VALIDATION_METRIC,
            },
            description=f"{best.run_name}: validation top-1 {best.val_top1:.4f} at epoch {best.best_epoch}",
        )
    client.set_registered_model_alias(name, ALIAS, str(version.version))
    return str(version.version), created


def register_best(tracking_uri: str, base: str, *, dry_run: bool = False) -> list[Registration]:
    """Registers (or confirms) the best model of every family in every experiment under ``base``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    outcomes = []
    for experiment in client.search_experiments(filter_string=f"name LIKE '{base}/%'"):
        groups: dict[tuple[str, str], list[Candidate]] = {}
        for candidate in candidates(client, experiment):
            groups.setdefault((candidate.env_tag, candidate.model), []).append(candidate)
        for (env_tag, model), group in sorted(groups.items()):
            best = best_of(group)
            name = registered_name(base, experiment.name, env_tag, model)
            version, created = (None, False) if dry_run else _register(client, name, best)
            outcomes.append(Registration(name, best, version, created, len(group)))
    return outcomes


def describe(outcome: Registration) -> str:
    """One line per registered model, for the command line."""
    c = outcome.candidate
    what = "would register" if outcome.version is None else ("registered" if outcome.created else "unchanged")
    version = f" version {outcome.version} (@{ALIAS})" if outcome.version else ""
    return (f"{outcome.name}{version}: {what} run {c.run_id} '{c.run_name}', validation top-1 {c.val_top1:.4f} "
            f"at epoch {c.best_epoch}, best of {outcome.competitors}")  # fmt: skip
