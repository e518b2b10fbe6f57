"""Reading finished runs from the results tree that the training pipelines write.

Every training pipeline (``train_<family>``, pipelines/training_common.py) writes its evaluation to
``<results>/train_<family>/<tag>/<dataset>/<protocol>[/<name>][/fold<k>]/`` (experiments/config.py
``run_dir``): ``test_metrics.json`` (top-1, top-5, per-class accuracy, confusion matrix),
``history.csv`` (per-epoch training time and throughput), ``curves.png`` and
``confusion_matrix.png``; a cross-validation adds ``cv/summary.json`` (mean +- std over folds, the
pooled confusion matrix) beside its folds. The model artifact (``model.pt``, parameter count and
variant for runs written before those were in ``test_metrics.json``) sits under the same run
directory below the models root.

:func:`collect_results` turns that tree into :class:`RunResult` rows, one per finished run or
cross-validation, with every file it could not read listed as a :class:`Problem` (its path and
what is wrong): a bad file never stops the report and is never silently dropped.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FOLD_DIR = re.compile(r"^fold(\d+)$")
TEST_METRICS = "test_metrics.json"
CV_SUMMARY = "cv/summary.json"


@dataclass
class Problem:
    """A file of the results tree that could not be used, and why."""

    path: Path
    reason: str


@dataclass
class RunResult:
    """One row of a leaderboard: a run, a cross-validation (folds) or seed replicates (seeds)."""

    family: str  # the pipeline's family: train_sta_lstm -> sta_lstm
    tag: str  # the environment tag (base, embedded, ...)
    dataset: str
    protocol: str
    name: str | None  # run.name (a named ablation), None for the family's default run
    model: str
    variant: str
    kind: str  # "run", "fold" (one fold run on its own), "folds" (merged), "cv" or "seeds"
    top1: float
    top5: float | None = None
    top1_std: float | None = None
    top5_std: float | None = None
    repeats: int = 1  # folds (cv) or seeds (seeds) behind the mean
    repeats_total: int | None = None  # the protocol's folds when a subset was run
    num_samples: int | None = None
    num_parameters: int | None = None
    train_time_s: float | None = None  # per run (mean per fold or seed)
    samples_per_s: float | None = None
    val_top1: float | None = None
    streams: str = "joint"
    seed: int | None = None
    fold: int | None = None  # the fold of a "fold" row
    class_names: list[str] = field(default_factory=list)
    per_class: list[float] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)  # title -> PNG already written by the run
    source: Path | None = None  # the metrics file the numbers come from
    members: list[str] = field(default_factory=list)  # the runs behind a seeds row

    @property
    def group(self) -> tuple[str, str, str]:
        """The leaderboard this row belongs to: (tag, dataset, protocol)."""
        return (self.tag, self.dataset, self.protocol)

    @property
    def members_label(self) -> str:
        return f"fold {self.fold} only" if self.repeats == 1 else f"{self.repeats} folds only"

    @property
    def label(self) -> str:
        parts = [self.model if self.variant in ("", self.model) else f"{self.model}/{self.variant}"]
        if self.streams and self.streams != "joint":
            parts.append(self.streams)
        if self.name:
            parts.append(self.name)
        if self.kind == "folds":
            parts.append("(unfinished CV)")
        return " ".join(parts)


@dataclass
class ResultsTree:
    """Where the results are: the reporting root (``data/08_reporting``) and the models root."""

    results_dir: Path
    models_dir: Path | None = None


# --- small readers ---------------------------------------------------------------------------------


class UnreadableFile(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.problem = Problem(path, reason)


def read_json(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableFile(path, f"cannot be read: {error}") from error
    except json.JSONDecodeError as error:
        raise UnreadableFile(path, f"is not valid JSON: {error.msg} (line {error.lineno})") from error
    if not isinstance(data, dict):
        raise UnreadableFile(path, f"holds a {type(data).__name__}, not a JSON object")
    missing = [key for key in required if key not in data]
    if missing:
        raise UnreadableFile(path, f"lacks the key(s) {missing}")
    for key in required:
        value = data[key]
        if key in ("top1", "top1_mean") and not (isinstance(value, int | float) and 0 <= value <= 1):
            raise UnreadableFile(path, f"{key} = {value!r} is not an accuracy in [0, 1]")
    return data


def history_timing(path: Path) -> tuple[float | None, float | None]:
    """Total training time (train + validation seconds over all epochs) and the median training
    throughput (samples/s) of a run's ``history.csv``; None where the columns are absent."""
    if not path.is_file():
        return None, None
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))

    def column(name: str) -> list[float]:
        values = []
        for row in rows:
            try:
                value = float(row.get(name) or "nan")
            except ValueError:
                continue
            if math.isfinite(value):
                values.append(value)
        return values

    times = column("train_time_s") + column("val_time_s")
    speed = column("train_samples_per_s")
    return (float(sum(times)) if times else None), (float(np.median(speed)) if speed else None)


def model_facts(metrics: dict[str, Any], model_file: Path | None) -> dict[str, Any]:
    """Model name, variant, parameter count and streams: from the metrics (newer runs record
    them), else from the model artifact's info."""
    facts = {k: metrics.get(k) for k in ("model", "variant", "num_parameters", "streams", "seed")}
    if all(facts[k] is not None for k in ("model", "variant", "num_parameters")):
        return facts
    if model_file is not None and model_file.is_file():
        from skeleton_attention.training.checkpoints import load_model_artifact

        artifact = load_model_artifact(model_file)
        info = artifact.get("info") or {}
        facts["model"] = facts["model"] or artifact.get("model_name")
        facts["variant"] = facts["variant"] or (artifact.get("model_kwargs") or {}).get("variant")
        facts["num_parameters"] = facts["num_parameters"] or info.get("num_parameters")
        facts["streams"] = facts["streams"] or info.get("streams")
    return facts


def _streams(value: Any) -> str:
    if not value:
        return "joint"
    return "+".join(map(str, [value] if isinstance(value, str) else value))


def per_class_from_confusion(confusion: list[list[int]]) -> list[float]:
    matrix = np.asarray(confusion, dtype=float)
    totals = matrix.sum(axis=1)
    return [float(d / t) if t else float("nan") for d, t in zip(np.diag(matrix), totals, strict=True)]


# --- the tree ----------------------------------------------------------------------------------------


def _split_run_dir(rel: tuple[str, ...]) -> tuple[str, str, str, str | None, int | None] | None:
    """``(tag, dataset, protocol, name, fold)`` of a run directory relative to ``train_<family>/``."""
    fold = None
    if rel and FOLD_DIR.match(rel[-1]):
        fold = int(FOLD_DIR.match(rel[-1]).group(1))
        rel = rel[:-1]
    if len(rel) not in (3, 4):
        return None
    return rel[0], rel[1], rel[2], (rel[3] if len(rel) == 4 else None), fold


def _plots(directory: Path, names: dict[str, str]) -> dict[str, Path]:
    return {title: directory / file for title, file in names.items() if (directory / file).is_file()}


def _read_run(family: str, run_path: Path, rel: tuple[str, ...], tree: ResultsTree) -> RunResult:
    tag, dataset, protocol, name, fold = _split_run_dir(rel)  # type: ignore[misc]
    metrics_path = run_path / TEST_METRICS
    metrics = read_json(metrics_path, ("top1",))
    model_file = tree.models_dir / f"train_{family}" / Path(*rel) / "model.pt" if tree.models_dir else None
    facts = model_facts(metrics, model_file)
    time_s, speed = history_timing(run_path / "history.csv")
    per_class = metrics.get("per_class") or {}
    flat_path = run_path / "metrics.json"
    val_top1 = read_json(flat_path).get("val_top1") if flat_path.is_file() else None
    return RunResult(
        family=family,
        tag=tag,
        dataset=dataset,
        protocol=metrics.get("protocol") or protocol,
        name=name,
        model=str(facts["model"] or family),
        variant=str(facts["variant"] or facts["model"] or family),
        kind="run" if fold is None else "fold",
        top1=float(metrics["top1"]),
        top5=None if metrics.get("top5") is None else float(metrics["top5"]),
        fold=fold,
        num_samples=metrics.get("num_samples"),
        num_parameters=facts["num_parameters"],
        train_time_s=time_s,
        samples_per_s=speed,
        val_top1=val_top1,
        streams=_streams(facts["streams"]),
        seed=facts["seed"],
        class_names=list(per_class),
        per_class=[float("nan") if v is None else float(v) for v in per_class.values()],
        plots=_plots(run_path, {"confusion matrix": "confusion_matrix.png", "training curves": "curves.png"}),
        source=metrics_path,
    )


def _read_cv(family: str, base: Path, rel: tuple[str, ...], tree: ResultsTree) -> RunResult:
    tag, dataset, protocol, name, _fold = _split_run_dir(rel)  # type: ignore[misc]
    summary_path = base / CV_SUMMARY
    summary = read_json(summary_path, ("top1_mean", "folds"))
    folds = [int(f) for f in summary["folds"]]
    first = base / f"fold{folds[0]}" if folds else base
    first_metrics = read_json(first / TEST_METRICS) if (first / TEST_METRICS).is_file() else {}
    model_file = tree.models_dir / f"train_{family}" / Path(*rel) / first.name / "model.pt" if tree.models_dir else None
    facts = model_facts(first_metrics, model_file)
    timings = [history_timing(base / f"fold{k}" / "history.csv") for k in folds]
    times = [t for t, _ in timings if t is not None]
    speeds = [s for _, s in timings if s is not None]
    classes = list(summary.get("class_names") or [])
    confusion = summary.get("confusion_matrix")
    return RunResult(
        family=family,
        tag=tag,
        dataset=dataset,
        protocol=summary.get("protocol") or protocol,
        name=name,
        model=str(facts["model"] or family),
        variant=str(facts["variant"] or facts["model"] or family),
        kind="cv",
        top1=float(summary["top1_mean"]),
        top5=summary.get("top5_mean"),
        top1_std=summary.get("top1_std"),
        top5_std=summary.get("top5_std"),
        repeats=int(summary.get("num_folds", len(folds))),
        repeats_total=summary.get("num_folds_total"),
        num_samples=summary.get("num_samples"),
        num_parameters=facts["num_parameters"],
        train_time_s=float(np.mean(times)) if times else None,
        samples_per_s=float(np.mean(speeds)) if speeds else None,
        val_top1=summary.get("val_top1_mean"),
        streams=_streams(facts["streams"]),
        seed=facts["seed"],
        class_names=classes,
        per_class=per_class_from_confusion(confusion) if confusion else [],
        plots=_plots(base / "cv", {"pooled confusion matrix": "confusion_matrix.png", "top-1 per fold": "folds.png"})
        | _plots(first, {f"training curves (fold {folds[0] if folds else '?'})": "curves.png"}),
        source=summary_path,
    )


def collect_results(tree: ResultsTree) -> tuple[list[RunResult], list[Problem]]:
    """Every finished run and cross-validation of every ``train_*`` pipeline under the tree.

    A fold directory belongs to its cross-validation when ``cv/summary.json`` exists beside it (the
    folds are then one row, mean +- std); a fold run on its own (``run.fold=k``) is a row of its own.
    Plain runs that differ only by their seed (same ``replicate_fingerprint``) become one row with
    mean +- std over seeds. Unreadable files are returned as problems.
    """
    results: list[RunResult] = []
    problems: list[Problem] = []
    root = Path(tree.results_dir)
    if not root.is_dir():
        return results, [Problem(root, "the results directory does not exist; run a training pipeline first")]
    for family_dir in sorted(p for p in root.glob("train_*") if p.is_dir()):
        family = family_dir.name[len("train_") :]
        cv_bases = {p.parent.parent for p in family_dir.rglob(CV_SUMMARY)}
        for base in sorted(cv_bases):
            rel = base.relative_to(family_dir).parts
            if _split_run_dir(rel) is None:
                problems.append(
                    Problem(base / CV_SUMMARY, "not in a <tag>/<dataset>/<protocol>[/<name>] run directory")
                )
                continue
            try:
                results.append(_read_cv(family, base, rel, tree))
            except UnreadableFile as error:
                problems.append(error.problem)
            except (ValueError, TypeError, KeyError) as error:
                problems.append(Problem(base / CV_SUMMARY, f"has unexpected contents: {error}"))
        for metrics_path in sorted(family_dir.rglob(TEST_METRICS)):
            run_path = metrics_path.parent
            rel = run_path.relative_to(family_dir).parts
            split = _split_run_dir(rel)
            if split is None:
                problems.append(
                    Problem(metrics_path, "not in a <tag>/<dataset>/<protocol>[/<name>][/fold<k>] run directory")
                )
                continue
            if split[4] is not None and run_path.parent in cv_bases:
                continue  # a fold of a summarised cross-validation
            try:
                results.append(_read_run(family, run_path, rel, tree))
            except UnreadableFile as error:
                problems.append(error.problem)
            except (ValueError, TypeError, KeyError) as error:
                problems.append(Problem(metrics_path, f"has unexpected contents: {error}"))
    results = merge_folds(results)
    return merge_seeds(results, _replicate_keys(results)), problems


def merge_folds(results: list[RunResult]) -> list[RunResult]:
    """The folds of one unfinished cross-validation (no ``cv/summary.json``: folds run one by one
    with ``run.fold=k``, or a run that stopped) as one ``folds`` row, mean +- std over the folds
    found, labelled as unfinished, so a single fold never passes for a protocol result."""
    groups: dict[tuple, list[RunResult]] = defaultdict(list)
    for result in results:
        if result.kind == "fold" and result.source is not None:
            groups[(result.family, result.source.parent.parent)].append(result)
    rows = [_merged_row(sorted(m, key=lambda r: r.fold or 0), "folds") for m in groups.values()]
    return [r for r in results if r.kind != "fold"] + rows


def _replicate_keys(results: list[RunResult]) -> dict[int, str]:
    keys = {}
    for index, result in enumerate(results):
        if result.kind != "run" or result.source is None:
            continue
        key = json.loads(result.source.read_text(encoding="utf-8")).get("replicate_fingerprint")
        if key:
            keys[index] = key
    return keys


def merge_seeds(results: list[RunResult], keys: dict[int, str]) -> list[RunResult]:
    """Plain runs with the same configuration apart from seed and run name (``replicate_fingerprint``
    in ``test_metrics.json``) and at least two different seeds: one ``seeds`` row, mean +- std."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, key in keys.items():
        groups[(results[index].family, results[index].group, key)].append(index)
    merged: set[int] = set()
    rows = []
    for indices in groups.values():
        members = [results[i] for i in indices]
        if len({m.seed for m in members}) < 2:
            continue
        merged.update(indices)
        rows.append(_merged_row(sorted(members, key=lambda m: (m.seed is None, m.seed)), "seeds"))
    return [r for i, r in enumerate(results) if i not in merged] + rows


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None
    return float(np.mean(present)), float(np.std(present, ddof=1)) if len(present) > 1 else None


def _merged_row(members: list[RunResult], kind: str) -> RunResult:
    """Mean +- std of several runs of one configuration (seeds, or the folds of an unfinished
    cross-validation)."""
    first = members[0]
    top1, top1_std = _mean_std([m.top1 for m in members])
    top5, top5_std = _mean_std([m.top5 for m in members])
    per_class = (
        np.nanmean(np.asarray([m.per_class for m in members], dtype=float), axis=0).tolist()
        if all(m.class_names == first.class_names for m in members)
        else []
    )
    names = sorted({m.name for m in members if m.name})
    name = first.name if kind == "folds" or len(names) == 1 else f"{len(members)} seeds"
    described = (
        (lambda m: f"fold {m.fold}: {m.source}") if kind == "folds" else (lambda m: f"seed {m.seed}: {m.source}")
    )
    return RunResult(
        family=first.family,
        tag=first.tag,
        dataset=first.dataset,
        protocol=first.protocol,
        name=name,
        model=first.model,
        variant=first.variant,
        kind=kind,
        fold=first.fold if len(members) == 1 else None,
        top1=top1,
        top5=top5,
        top1_std=top1_std,
        top5_std=top5_std,
        repeats=len(members),
        num_samples=sum(m.num_samples or 0 for m in members) if kind == "folds" else first.num_samples,
        num_parameters=first.num_parameters,
        train_time_s=_mean_std([m.train_time_s for m in members])[0],
        samples_per_s=_mean_std([m.samples_per_s for m in members])[0],
        val_top1=_mean_std([m.val_top1 for m in members])[0],
        streams=first.streams,
        seed=first.seed if kind == "folds" else None,
        class_names=first.class_names if per_class else [],
        per_class=per_class,
        plots=first.plots,
        source=first.source,
        members=[described(m) for m in members],
    )
