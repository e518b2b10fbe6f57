"""Thin nodes for a custom data set (format: docs/custom-data.md)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from skeleton_attention.pipelines.preparation import ingest_source
from skeleton_attention.skeletons.bundle import BundleSource
from skeleton_attention.skeletons.custom import SAMPLES_CSV, plan_custom_dataset, process_custom_row
from skeleton_attention.skeletons.fingerprint import file_stats


def dataset_root(raw_files: list[Path]) -> Path:
    """The directory of the top-most ``samples.csv`` (sample folders below it may hold anything)."""
    csvs = sorted((f for f in raw_files if f.name == SAMPLES_CSV), key=lambda f: (len(f.parts), str(f)))
    if not csvs:
        raise FileNotFoundError(f"no {SAMPLES_CSV} in the custom raw directory (runtime param custom_raw_dir)")
    top = [f for f in csvs if len(f.parts) == len(csvs[0].parts)]
    if len(top) > 1:
        raise ValueError(
            f"several data sets under one directory ({[str(f) for f in top[:3]]}): point custom_raw_dir at one of them"
        )
    return csvs[0].parent


def ingest_custom(raw_files: list[Path], params: Mapping[str, Any]) -> BundleSource:
    root = dataset_root(raw_files)
    plan = plan_custom_dataset(root, params)
    processor = partial(process_custom_row, context=plan.context)
    # the stale-bundle fingerprint covers every file of the data set (CSV, layout, sample files)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    return ingest_source(
        plan.tasks,
        processor,
        plan.protocols,
        {**params, "description": "custom: read"},
        info=plan.info,
        fold_protocols=plan.fold_protocols,
        fingerprint_extra={"files": file_stats(files, root)},
    )
