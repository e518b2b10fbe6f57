"""Thin nodes for NTU RGB+D preparation."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from skeleton_attention.pipelines.preparation import ingest_source
from skeleton_attention.skeletons.bundle import BundleSource, PreparedBundle
from skeleton_attention.skeletons.ntu import parse_missing_skeleton_list
from skeleton_attention.skeletons.prepare import (
    NTU_PROTOCOLS,
    process_ntu_file,
    process_view_group,
    shuffled,
    view_groups,
)

ACTION_NAMES_FILE = "action_names.json"


def _action_names(raw_files: list[Path]) -> dict[int, str] | None:
    """An ``action_names.json`` ({"1": "name", ...}) at the root of the raw files overrides NTU's names."""
    if not raw_files:
        return None
    root = Path(os.path.commonpath([str(p.parent) for p in raw_files]))
    path = root / ACTION_NAMES_FILE
    if not path.is_file():
        return None
    return {int(k): str(v) for k, v in json.loads(path.read_text()).items()}


def ingest_ntu(raw_files: list[Path], missing_list: str, params: Mapping[str, Any]) -> BundleSource:
    """Parse, check against the official missing list, and denoise every NTU file."""
    use_missing = params.get("use_missing_list", True)
    missing = parse_missing_skeleton_list(missing_list) if use_missing else frozenset()
    action_names = _action_names(raw_files)
    processor = partial(process_ntu_file, missing=missing, denoise=params.get("denoise", {}), action_names=action_names)
    return ingest_source(
        raw_files,
        processor,
        NTU_PROTOCOLS,
        {**params, "description": "ntu: parse+denoise"},
        info={"dataset": "ntu", "missing_list_entries": len(missing)},
        fingerprint_extra={"missing": sorted(missing), "action_names": action_names},
    )


def align_ntu_views(intermediate: PreparedBundle, params: Mapping[str, Any]) -> BundleSource:
    """Group the NTU samples by recording and align their camera views (docs/geometry.md)."""
    multiview = dict(params.get("multiview", {}))
    cameras = tuple(multiview.pop("cameras", (1, 2, 3)))
    frame = str(multiview.pop("frame", "body"))
    # a seeded order of the recordings (the tasks are small; each re-reads its own raw files), so the
    # multi-view table is not written in file order either (docs/data-format.md, "Row order")
    groups = shuffled(view_groups(intermediate.table), params.get("row_order"))
    processor = partial(
        process_view_group,
        table=intermediate.table,
        cameras=cameras,
        align=multiview,
        denoise=params.get("denoise", {}),
        frame=frame,
    )
    return ingest_source(
        groups,
        processor,
        intermediate.table.split_protocols,
        {**params, "chunksize": 2, "description": "ntu: align views"},
        info={
            "dataset": "ntu_multiview",
            "cameras": list(cameras),
            "frame": frame,
            "coordinates": frame,
            "layout_note": "M = views x bodies",
        },
        fold_protocols=intermediate.table.fold_protocols,
        source_bundle=intermediate,
    )


def view_residual_table(multiview: PreparedBundle) -> pd.DataFrame:
    """Per recording: which cameras, frame offsets and residuals (metres per joint) after alignment."""
    report = multiview.report
    if "view_group" not in report.columns:
        return report
    columns = [c for c in report.columns if c != "input"]
    return report[columns].sort_values("view_group").reset_index(drop=True)
