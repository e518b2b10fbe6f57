"""Thin nodes for a custom data set (format: docs/custom-data.md)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from skeleton_attention.pipelines.preparation import ingest_source
from skeleton_attention.skeletons.bundle import BundleSource
from skeleton_attention.skeletons.custom import SAMPLES_CSV, plan_custom_dataset, process_custom_row


def dataset_root(raw_files: list[Path]) -> Path:
    """The directory of the top-most ``samples.csv`` (sample folders below it may hold anything)."""
    csvs = sorted((f for f in raw_files if f.name == SAMPLES_CSV), key=lambda f: (len(f.parts), str(f)))
    if not csvs:
        raise FileNotFoundError(f"no {SAMPLES_CSV} in the custom raw directory (runtime param custom_raw_dir)")
    top = [f for f in csvs if len(f.parts) == len(csvs[0].parts)]
    if len(top) > 1:
        raise ValueError(f"several data sets under one directory ({[str(f) for f in top[:3]]}): "
                         "point custom_raw_dir at one of them")
    return csvs[0].parent


def ingest_custom(raw_files: list[Path], params: Mapping[str, Any]) -> BundleSource:
    plan = plan_custom_dataset(dataset_root(raw_files), params)
    processor = partial(process_custom_row, context=plan.context)
    return ingest_source(
        plan.tasks, processor, plan.protocols, {**params, "description": "custom: read"},
        info=plan.info, fold_protocols=plan.fold_protocols,
    )
