"""Project commands for the ``kedro`` CLI (Kedro loads ``<package>.cli`` and lets it override).

``kedro run`` is Kedro's own command, with one addition: when exactly one training pipeline is
selected, no node filter is given, and the run's protocol is cross-validated with no ``run.fold``
(e.g. ``kedro run --pipelines=train_sta_lstm --params=run.dataset=sbu``), every fold is trained and
the folds are aggregated (experiments/driver.py). Everything else goes to Kedro unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.cli.utils import KedroCliError

logger = logging.getLogger(__name__)

#: options that select part of a pipeline: with any of them the run is Kedro's plain run
_FILTERS = ("tags", "node_names", "to_nodes", "from_nodes", "from_inputs", "to_outputs", "namespaces")


@click.group(name="skeleton-attention")
def cli() -> None:
    """skeleton-attention project commands."""


@cli.command(name="run", params=list(kedro_run.params), help=kedro_run.help, short_help=kedro_run.short_help)
def run(**kwargs: Any) -> Any:
    selected = [kwargs["pipeline"]] if kwargs.get("pipeline") else list(kwargs.get("pipelines") or [])
    wants_cv = (
        len(selected) == 1
        and selected[0].startswith("train_")
        and not any(kwargs.get(name) for name in _FILTERS)
        and not kwargs.get("conf_source")
    )
    if wants_cv:
        from skeleton_attention.experiments.driver import plan_cross_validation, run_cross_validation

        plan = plan_cross_validation(Path.cwd(), selected[0], kwargs.get("env"), kwargs.get("params") or {})
        if plan is not None:
            try:
                return run_cross_validation(plan)
            except RuntimeError as error:
                raise KedroCliError(str(error)) from error
    return kedro_run.callback(**kwargs)
