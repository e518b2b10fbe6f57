"""A user's own data set in the project's plain format: ``samples.csv`` + ``layout.yaml`` + sample files.

Format and validation rules: ``docs/custom-data.md``. :func:`plan_custom_dataset` checks the data set
as a whole (layout file, CSV columns, labels, folds) and fails the run on a problem there; it returns
one task per CSV row, and :func:`process_custom_row` turns a task into a sample or raises
:class:`~skeleton_attention.skeletons.errors.MalformedSkeletonFile` naming the CSV line or the sample
file (a quarantine row, or a failed run with ``strict``). Plain numpy / pandas, no Kedro.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skeleton_attention.skeletons.custom_files import (
    CustomLayout,
    find_layout_file,
    load_layout_file,
    read_sample_file,
    with_suggestions,
)
from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.ingest import FileOutcome
from skeleton_attention.skeletons.layouts import JointLayout, layout_to_dict, register_layout
from skeleton_attention.skeletons.sequence import SkeletonSequence

logger = logging.getLogger(__name__)

SAMPLES_CSV = "samples.csv"
REQUIRED_COLUMNS: tuple[str, ...] = ("sample_id", "file", "label")
OPTIONAL_COLUMNS: tuple[str, ...] = ("label_name", "subject", "view", "camera", "episode", "split", "group")
#: CSV column -> integer metadata column of the sample table
INT_COLUMNS: dict[str, str] = {"subject": "subject", "view": "camera", "camera": "camera", "episode": "episode"}
_PROTOCOL_RE = re.compile(r"[A-Za-z0-9_]+")
_INT_RE = re.compile(r"[+-]?\d+")
SPLIT_VALUES = ("train", "test")


@dataclass(frozen=True)
class CustomContext:
    """What every row task needs (small and picklable: it travels to the ingest workers)."""

    root: str
    csv: str
    layout: JointLayout
    channels: tuple[str, ...]
    dataset: str
    label_mode: str  # "index" or "name"
    classes: tuple[str, ...] | None
    #: CSV column -> protocol name
    protocol_columns: tuple[tuple[str, str], ...] = ()
    fold_protocol: str | None = None


@dataclass
class CustomPlan:
    """The checked data set: row tasks, their context, the protocols and what the summary records."""

    tasks: list[dict[str, Any]]
    context: CustomContext
    protocols: tuple[str, ...]
    fold_protocols: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)


# --- the CSV -----------------------------------------------------------------------------------------


def read_samples_csv(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The CSV as strings (cells stripped) plus the ignored columns; raises on a structural problem.

    Columns are the required and optional ones, ``split_<protocol>``, and others that are recorded
    as ignored; a column that looks like a misspelt known one (``subjet``, ``Label``) is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; a custom data set needs {SAMPLES_CSV} (docs/custom-data.md)")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise MalformedSkeletonFile(str(path), "bad_csv", "the file is empty (no header)", 1)
    columns = [c.strip() for c in header]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise MalformedSkeletonFile(str(path), "bad_csv", f"duplicate column(s) {dupes}", 1)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise MalformedSkeletonFile(str(path), "bad_csv", f"missing required column(s) {missing}", 1)
    if "view" in columns and "camera" in columns:
        raise MalformedSkeletonFile(str(path), "bad_csv", "both 'view' and 'camera': they are the same field", 1)
    known = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    unknown = [c for c in columns if c not in known and not c.startswith("split_")]
    suspicious = [c for c in unknown if _looks_like(c, known)]
    if suspicious:
        raise MalformedSkeletonFile(
            str(path),
            "bad_csv",
            f"unknown column(s) {with_suggestions(suspicious, [*known, 'split_<protocol>'])}; columns are "
            f"{list(known)} and split_<protocol> (lower case)",
            1,
        )
    for column in columns:
        if column.startswith("split_") and not _PROTOCOL_RE.fullmatch(column[len("split_") :]):
            raise MalformedSkeletonFile(str(path), "bad_csv", f"protocol column {column!r}: use letters, digits, _", 1)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True)
    frame.columns = columns
    frame = frame.apply(lambda s: s.str.strip())
    if frame.empty:
        raise MalformedSkeletonFile(str(path), "bad_csv", "no sample rows", 2)
    return frame, unknown


def _looks_like(column: str, known: Sequence[str]) -> bool:
    import difflib

    lower = column.lower()
    if lower in known or lower.startswith("split_") or lower == "split":
        return True  # right name, wrong case
    return bool(difflib.get_close_matches(lower, [*known, "split"], n=1, cutoff=0.75))


def csv_line(index: int) -> int:
    """1-based line of data row ``index`` (the header is line 1; no embedded newlines in cells)."""
    return index + 2


def resolve_label_mode(
    labels: pd.Series, classes: tuple[str, ...] | None, source: str
) -> tuple[str, tuple[str, ...] | None]:
    """``("index", classes)`` when every label is an integer, else ``("name", classes)``.

    Class names without a ``classes`` list in the layout file are sorted, so label indices do not
    depend on row order.
    """
    present = labels[labels != ""]
    is_int = present.str.fullmatch(_INT_RE.pattern)
    if is_int.all():
        return "index", classes
    if is_int.any():
        lines = [csv_line(i) for i in present.index[is_int][:5]]
        raise MalformedSkeletonFile(
            source, "bad_csv", f"label column mixes class indices (lines {lines}) and class names", lines[0]
        )
    return "name", classes if classes is not None else tuple(sorted(present.unique()))


def check_label_names(frame: pd.DataFrame, source: str) -> None:
    """Without a class list, one class index must carry one ``label_name`` throughout the CSV."""
    named = frame[frame["label_name"] != ""]
    names = named.groupby(named["label"].astype(int))["label_name"].unique()
    for label, values in names.items():
        if len(values) > 1:
            line = csv_line(int(named.index[named["label"].astype(int) == label][0]))
            raise MalformedSkeletonFile(
                source, "bad_csv", f"label {label} has several label_name values {sorted(values)[:4]}", line
            )


# --- folds -------------------------------------------------------------------------------------------


def assign_folds(groups: Sequence[str], k: int, seed: int = 0) -> list[int]:
    """Fold 1..k per item, whole groups together, balanced in item count, deterministic.

    Groups are shuffled with ``seed``, then placed largest first (stable, so equal sizes keep the
    shuffled order) into the fold holding the fewest items so far (lowest fold on ties).
    """
    keys = sorted(set(groups))
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    if k > len(keys):
        raise ValueError(f"k-fold with k={k} needs at least {k} groups, the data set has {len(keys)}")
    sizes = pd.Series(list(groups)).value_counts()
    shuffled = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    order = sorted(shuffled, key=lambda g: -int(sizes[g]))  # stable: ties keep the seeded order
    load = [0] * k
    fold_of: dict[str, int] = {}
    for group in order:
        fold = int(np.argmin(load))
        fold_of[group] = fold + 1
        load[fold] += int(sizes[group])
    return [fold_of[g] for g in groups]


def plan_kfold(
    frame: pd.DataFrame, kfold: Mapping[str, Any] | None, source: str
) -> tuple[list[int | None], dict[str, Any], list[str]]:
    """Fold numbers per row, the summary record and warnings; ``kfold`` ``None`` -> no folds."""
    if not kfold:
        return [None] * len(frame), {}, []
    unknown = sorted(set(kfold) - {"k", "group", "seed", "name"})
    if unknown:
        raise ValueError(f"kfold: unknown key(s) {unknown}; known: k, group, seed, name")
    k, seed = int(kfold.get("k", 5)), int(kfold.get("seed", 0))
    group = str(kfold.get("group", "subject"))
    warnings = []
    if group in frame.columns:
        keys = frame[group]
        empty = keys == ""
        if empty.any():
            lines = [csv_line(i) for i in frame.index[empty][:5]]
            raise MalformedSkeletonFile(
                source, "bad_csv", f"kfold groups by {group!r}, empty on lines {lines}", lines[0]
            )
        grouped_by = group
    else:
        warning = (
            f"kfold: no {group!r} column in {SAMPLES_CSV}; folds are drawn per sample, so one "
            "person's samples can be in training and test folds (optimistic scores)"
        )
        logger.warning(warning)
        warnings.append(warning)
        keys, grouped_by = frame["sample_id"] + "\x00" + frame.index.astype(str), "sample"
    try:
        folds = assign_folds(list(keys), k, seed)
    except ValueError as error:
        raise ValueError(f"{source}: {error} (set prepare_custom.kfold.k, or kfold: null)") from None
    counts = pd.Series(folds).value_counts().sort_index()
    info = {
        "name": str(kfold.get("name", "custom_kfold")),
        "k": k,
        "seed": seed,
        "group": grouped_by,
        "groups": int(keys.nunique()),
        "fold_sizes": {str(f): int(n) for f, n in counts.items()},
    }
    return list(folds), info, warnings


# --- the plan ----------------------------------------------------------------------------------------


def plan_custom_dataset(root: str | Path, params: Mapping[str, Any]) -> CustomPlan:
    """Check a custom data set directory as a whole and return one task per CSV row.

    Registers the layout (a runtime layout) in this process; the returned ``info`` carries its
    definition, so bundles built from it re-register it when loaded.
    """
    root = Path(root)
    layout_path = Path(params["layout_file"]) if params.get("layout_file") else find_layout_file(root)
    spec: CustomLayout = load_layout_file(layout_path if layout_path.is_absolute() else root / layout_path)
    if not spec.builtin:
        register_layout(spec.layout)
    csv_path = root / SAMPLES_CSV
    frame, ignored = read_samples_csv(csv_path)
    label_mode, classes = resolve_label_mode(frame["label"], spec.classes, str(csv_path))
    if label_mode == "index" and classes is None and "label_name" in frame.columns:
        check_label_names(frame, str(csv_path))
    dataset = str(params.get("dataset") or spec.dataset or root.name)
    split_columns = [c for c in frame.columns if c == "split" or c.startswith("split_")]
    # a bare `split` column is the data set's own benchmark: protocol named after the data set
    own = re.sub(r"[^A-Za-z0-9_]", "_", dataset)
    protocol_columns = tuple((c, own if c == "split" else c[len("split_") :]) for c in split_columns)
    folds, kfold_info, warnings = plan_kfold(frame, params.get("kfold"), str(csv_path))
    fold_protocol = kfold_info.get("name")
    protocols = tuple(p for _, p in protocol_columns)
    if len(set(protocols)) != len(protocols) or fold_protocol in protocols:
        raise ValueError(f"{csv_path}: protocol names {list(protocols)} + k-fold {fold_protocol!r} must be distinct")
    if fold_protocol is not None and not _PROTOCOL_RE.fullmatch(fold_protocol):
        raise ValueError(f"kfold.name {fold_protocol!r}: use letters, digits, _")
    if ignored:
        warnings.append(f"ignored column(s) {ignored} of {SAMPLES_CSV}")
    context = CustomContext(
        root=str(root),
        csv=str(csv_path),
        layout=spec.layout,
        channels=spec.channels,
        dataset=dataset,
        label_mode=label_mode,
        classes=classes,
        protocol_columns=protocol_columns,
        fold_protocol=fold_protocol,
    )
    tasks = [
        {"name": f"{csv_path}:{csv_line(i)}", "line": csv_line(i), "row": record, "fold": fold}
        for i, (record, fold) in enumerate(zip(frame.to_dict("records"), folds, strict=True))
    ]
    info: dict[str, Any] = {
        "dataset": dataset,
        "layout": spec.layout.name,
        "channels": list(spec.channels),
        "label_mode": label_mode,
        "classes": list(classes) if classes is not None else None,
        "csv_columns": list(frame.columns),
        "warnings": warnings,
    }
    if kfold_info:
        info["kfold"] = kfold_info
    if not spec.builtin:
        info["layouts"] = {spec.layout.name: layout_to_dict(spec.layout)}
    return CustomPlan(tasks, context, protocols, (fold_protocol,) if fold_protocol else (), info)


# --- one row -----------------------------------------------------------------------------------------


def process_custom_row(task: Mapping[str, Any], *, context: CustomContext) -> FileOutcome:
    """One CSV row -> one sample; ``MalformedSkeletonFile`` naming the CSV line or the sample file."""
    row: Mapping[str, str] = task["row"]
    line = int(task["line"])

    def bad(reason: str, detail: str) -> MalformedSkeletonFile:
        return MalformedSkeletonFile(context.csv, reason, detail, line)

    sample_id = row["sample_id"]
    if not sample_id:
        raise bad("missing_sample_id", "empty sample_id")
    label, label_name = _label(row, context, bad)
    splits: dict[str, str | int | None] = {}
    for column, protocol in context.protocol_columns:
        value = row[column].lower()
        if value not in ("", *SPLIT_VALUES):
            raise bad(
                "bad_split",
                f"{column}={row[column]!r}: use train, test or leave empty (validation is "
                "carved from the training rows by the trainer)",
            )
        splits[protocol] = value or None
    if context.fold_protocol is not None:
        splits[context.fold_protocol] = task["fold"]
    meta: dict[str, object] = {}
    for column, target in INT_COLUMNS.items():
        value = row.get(column, "")
        if value:
            if not _INT_RE.fullmatch(value):
                raise bad("bad_value", f"{column}={value!r} is not an integer")
            meta[target] = int(value)
    if row.get("group"):
        meta["view_group"] = row["group"]
    file_name = row["file"]
    if not file_name:
        raise bad("missing_file", f"sample {sample_id}: empty file column")
    if Path(file_name).is_absolute():
        raise bad("bad_path", f"sample {sample_id}: file {file_name!r} must be relative to the data set directory")
    path = Path(context.root) / file_name
    if not path.is_file():
        raise bad("missing_file", f"sample {sample_id}: {path} does not exist")
    coords = read_sample_file(path, context.layout, context.channels)
    seq = SkeletonSequence(
        sample_id=sample_id,
        dataset=context.dataset,
        layout=context.layout.name,
        coords=coords,
        label=label,
        label_name=label_name,
        source_file=str(path),
        meta=meta,
    )
    return FileOutcome(samples=[(seq, splits)])


def _label(row: Mapping[str, str], context: CustomContext, bad) -> tuple[int, str]:
    value, given_name = row["label"], row.get("label_name", "")
    if not value:
        raise bad("missing_label", "empty label")
    classes = context.classes
    if context.label_mode == "name":
        assert classes is not None
        if value not in classes:
            raise bad("unknown_label", f"label {value!r} is not in the class list")
        label = classes.index(value)
        name = value
    else:
        label = int(value)
        if label < 0 or (classes is not None and label >= len(classes)):
            span = f"0..{len(classes) - 1}" if classes is not None else ">= 0"
            raise bad("unknown_label", f"label {label} outside {span}")
        name = classes[label] if classes is not None else given_name
    if given_name and given_name != name:
        raise bad("label_mismatch", f"label_name {given_name!r} but label {value!r} is class {name!r}")
    return label, name
