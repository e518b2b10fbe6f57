"""Project commands for the ``kedro`` CLI (Kedro loads ``<package>.cli`` and lets it override).

``kedro run`` is Kedro's own command, with two additions:

* preparation before training: a training pipeline reads the table of ``run.dataset`` under the
  catalog name ``training_samples``, which no preparation node writes by that name, so
  ``--pipelines=prepare_sbu,train_sta_lstm`` runs the other pipelines first, then the training ones;
* cross-validation: when a training pipeline's protocol is cross-validated and no ``run.fold`` is
  given (e.g. ``kedro run --pipelines=train_sta_lstm --params=run.dataset=sbu``), every fold is
  trained and the folds are aggregated (experiments/driver.py);
* run groups: when the family has a ``fuse_<family>`` pipeline, its parameters hold ``runs``
  blocks (e.g. DSTA-Net's four streams) and no ``run.name`` is given, every named run is trained
  and their scores are fused (experiments/driver.py ``plan_run_group``).

Runs with a node filter, and everything else, go to Kedro unchanged.

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
from kedro.framework.cli.utils import KedroCliError

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

    from skeleton_attention.experiments.driver import (
        plan_cross_validation,
        plan_run_group,
        run_cross_validation,
        run_group,
    )

    group = None
    if pipeline.replace("train_", "fuse_", 1) in registered:  # only families with a fusion step plan a group
        try:
            group = plan_run_group(Path.cwd(), pipeline, kwargs.get("env"), kwargs.get("params") or {})
        except ValueError as error:
            raise KedroCliError(str(error)) from error
    if group is not None:
        try:
            return run_group(group)
        except RuntimeError as error:
            raise KedroCliError(str(error)) from error

    plan = plan_cross_validation(Path.cwd(), pipeline, kwargs.get("env"), kwargs.get("params") or {})
    if plan is None:
        return kedro_run.callback(**kwargs)
    try:
        return run_cross_validation(plan)
    except RuntimeError as error:
        raise KedroCliError(str(error)) from error


def _run_distributed(selected: list[str], kwargs: dict[str, Any], env: DistEnv) -> Any:
    """One rank of a torchrun launch: one training pipeline, one run; ranks > 0 stop after training."""
    from kedro.framework.project import pipelines as registered

    from skeleton_attention.experiments.driver import plan_cross_validation, plan_run_group

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
