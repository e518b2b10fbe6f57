"""Composition of a training configuration: family block + data-set block + run selectors.

A model family's parameters (``conf/base/parameters_train_<family>.yml``) hold the paper's
settings at the top (``seed, model, data, training, evaluation, mlflow``) and, under ``datasets``,
one block per prepared data set with what the paper (or our validation) changes for that data set,
e.g. STA-LSTM's lambdas and batch size on SBU. The run selectors (``run``: data set, protocol,
fold, name, tag) come from ``conf/base/parameters.yml`` and ``globals.yml`` and are set on the
command line (``--params=run.dataset=sbu``). :func:`compose` deep-merges
``family without datasets`` <- ``datasets[run.dataset]`` and fills ``data.protocol``/``data.fold``
from the run; every node of a training pipeline reads only that result. The same function backs
the ``compose`` resolver in ``settings.py``, so the configuration Kedro logs to MLflow is the one
that trains.

A family may also hold ``runs``: blocks selected by ``run.name`` and merged last (e.g. DSTA-Net's
four input streams: ``--params=run.name=spatial`` trains the bone stream). Without ``run.name`` no
such block applies; when a family has ``runs``, the CLI trains every one of them and fuses their
scores (:func:`~skeleton_attention.experiments.group_driver.plan_run_group`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: the sections a composed training configuration may have
SECTIONS = ("seed", "model", "data", "training", "evaluation", "mlflow", "run")
#: the run selectors (parameters.yml ``run`` block)
RUN_KEYS = ("dataset", "protocol", "fold", "name", "tag")


class ConfigError(ValueError):
    """A training configuration that cannot be composed; the message says which key and why."""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """``base`` updated by ``override``: mappings merge key by key, anything else is replaced.

    Within a section's first level (e.g. ``data.batch_size``) an override may only set keys the
    base block defines, so a typo fails instead of being ignored; nested option mappings
    (``model.kwargs``, ``data.sampling``, ...) are open, and their consumers check them.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        where = f"{path}.{key}" if path else str(key)
        depth = where.count(".")
        if depth <= 1 and key not in merged:
            known = ", ".join(sorted(map(str, merged)))
            raise ConfigError(f"unknown key {where!r}; known here: {known}")
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value, where)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def check_run(run: Mapping[str, Any]) -> dict[str, Any]:
    """The run selectors, checked: a data set and a protocol are required, a fold is an int >= 1."""
    unknown = set(run) - set(RUN_KEYS)
    if unknown:
        raise ConfigError(f"unknown run selectors {sorted(unknown)}; known: {list(RUN_KEYS)}")
    selected = {key: run.get(key) for key in RUN_KEYS}
    if not selected["dataset"]:
        raise ConfigError("run.dataset is required (a prepared table: ntu, sbu, nucla, utkinect, msr, ...)")
    if not selected["protocol"]:
        raise ConfigError(
            f"data set {selected['dataset']!r} has no default protocol (globals.yml default_protocol): "
            "pass run.protocol=<name>"
        )
    fold = selected["fold"]
    if fold is not None and (isinstance(fold, bool) or not isinstance(fold, int) or fold < 1):
        raise ConfigError(f"run.fold must be a fold number >= 1 or null, got {fold!r}")
    selected["tag"] = str(selected["tag"] or "base")
    return selected


def compose(family: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """The effective training configuration of ``family`` for the run selectors ``run``."""
    selected = check_run(run)
    base = {k: v for k, v in family.items() if k not in ("datasets", "runs")}
    unknown = set(base) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown parameter sections {sorted(unknown)}; known: {list(SECTIONS)}")
    blocks = family.get("datasets") or {}
    if not isinstance(blocks, Mapping):
        raise ConfigError("'datasets' must map data set names to parameter blocks")
    block = blocks.get(selected["dataset"]) or {}
    effective = deep_merge(base, block, "")
    named = family.get("runs") or {}
    if not isinstance(named, Mapping):
        raise ConfigError("'runs' must map run names to parameter blocks")
    if selected["name"] in named:
        # lists (data.streams, data.sampling) are replaced whole, so the run block wins over the data set's
        effective = deep_merge(effective, named[selected["name"]] or {}, "")
    data = dict(effective.get("data") or {})
    if "table" in data:
        raise ConfigError(
            "data.table does not exist: the table is chosen with run.dataset (e.g. --params=run.dataset=sbu)"
        )
    for key in ("dataset", "protocol", "fold"):
        if key in data:
            raise ConfigError(f"data.{key} is set by the run selectors: use --params=run.{key}=...")
    data.update(dataset=selected["dataset"], protocol=selected["protocol"], fold=selected["fold"])
    effective["data"] = data
    effective["run"] = selected
    return effective


def run_dir(
    tag: str | None, dataset: str, protocol: str | None, fold: int | None = None, name: str | None = None
) -> str:
    """Where a run's outputs live below ``data/<layer>/<pipeline>/``:
    ``<tag>/<dataset>/<protocol>[/<name>][/fold<k>]``, so runs of other environments, data sets,
    protocols, named variants or folds never overwrite each other."""
    parts = [str(tag or "base"), str(dataset), str(protocol or "default")]
    if name:
        parts.append(str(name))
    if fold is not None:
        parts.append(f"fold{int(fold)}")
    for part in parts:
        if not part or "/" in part or part in (".", ".."):
            raise ConfigError(f"run directory part {part!r} is not a plain name")
    return "/".join(parts)


def config_run_dir(config: Mapping[str, Any]) -> str:
    run = config["run"]
    return run_dir(run.get("tag"), run["dataset"], run["protocol"], run.get("fold"), run.get("name"))


def fingerprint(config: Mapping[str, Any]) -> str:
    """A short digest of a configuration (canonical JSON), for resume and staleness checks."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
