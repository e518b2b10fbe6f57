"""Thin nodes for NTU RGB+D preparation."""

from __future__ import annotations

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
    view_groups,
)


def ingest_ntu(raw_files: list[Path], missing_list: str, params: Mapping[str, Any]) -> BundleSource:
    """Parse, check against the official missing list, and denoise every NTU file."""
    missing = parse_missing_skeleton_list(missing_list) if params.get("use_missing_list", True) else frozenset()
    processor = partial(process_ntu_file, missing=missing, denoise=params.get("denoise", {}))
    return ingest_source(
        raw_files, processor, NTU_PROTOCOLS, {**params, "description": "ntu: parse+denoise"},
        info={"dataset": "ntu", "missing_list_entries": len(missing)},
    )


def align_ntu_views(intermediate: PreparedBundle, params: Mapping[str, Any]) -> BundleSource:
    """Group the NTU samples by recording and align their camera views (docs/geometry.md)."""
    multiview = dict(params.get("multiview", {}))
    cameras = tuple(multiview.pop("cameras", (1, 2, 3)))
    groups = view_groups(intermediate.table)
    processor = partial(process_view_group, table=intermediate.table, cameras=cameras, align=multiview)
    return ingest_source(
        groups, processor, intermediate.table.protocols,
        {**params, "chunksize": 2, "description": "ntu: align views"},
        info={"dataset": "ntu_multiview", "cameras": list(cameras), "layout_note": "M = views x bodies"},
    )


def view_residual_table(multiview: PreparedBundle) -> pd.DataFrame:
    """Per recording: which cameras, frame offsets and residuals (metres per joint) after alignment."""
    report = multiview.report
    if "view_group" not in report.columns:
        return report
    columns = [c for c in report.columns if c != "input"]
    return report[columns].sort_values("view_group").reset_index(drop=True)
