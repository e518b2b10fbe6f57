"""Thin nodes for Northwestern-UCLA Multiview (N-UCLA) preparation."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from skeleton_attention.pipelines.preparation import ingest_source
from skeleton_attention.skeletons.alignment import FRAMES
from skeleton_attention.skeletons.bundle import BundleSource, PreparedBundle
from skeleton_attention.skeletons.prepare import (
    NUCLA_PROTOCOLS,
    process_nucla_file,
    process_nucla_recording,
    shuffled,
    view_groups,
)


def ingest_nucla(raw_files: list[Path], params: Mapping[str, Any]) -> BundleSource:
    """Read every ``aXX_sYY_eZZ_vWW.json`` view (one sample per file)."""
    if not raw_files:
        raise FileNotFoundError("no aXX_sYY_eZZ_vWW.json files in the N-UCLA raw directory")
    processor = partial(process_nucla_file, min_frames=int(params.get("min_frames", 1)))
    return ingest_source(
        raw_files,
        processor,
        NUCLA_PROTOCOLS,
        {**params, "description": "nucla: parse"},
        info={"dataset": "nucla", "min_frames": int(params.get("min_frames", 1))},
    )


def stack_nucla_views(intermediate: PreparedBundle, params: Mapping[str, Any]) -> BundleSource:
    """One row per recording: its views on a common timeline, in ``multiview.frame`` (docs/geometry.md)."""
    multiview = dict(params.get("multiview", {}))
    cameras = tuple(multiview.pop("cameras", (1, 2, 3)))
    frame = str(multiview.pop("frame", "body"))
    normalize = multiview.pop("normalize", None)
    copied = str(multiview.pop("copied_views", "mask"))
    copy_min_share = float(multiview.pop("copy_min_share", 0.2))
    if frame not in FRAMES:
        raise ValueError(f"prepare_nucla.multiview.frame must be one of {FRAMES}, got {frame!r}")
    processor = partial(
        process_nucla_recording,
        table=intermediate.table,
        cameras=cameras,
        frame=frame,
        align=multiview,
        normalize=normalize,
        copied=copied,
        copy_min_share=copy_min_share,
    )
    protocols = [p for p in intermediate.table.split_protocols if "xview" not in p]
    # a seeded order of the recordings, like the feature table (docs/data-format.md, "Row order")
    groups = shuffled(view_groups(intermediate.table), params.get("row_order"))
    return ingest_source(
        groups,
        processor,
        protocols,
        {**params, "chunksize": 8, "description": "nucla: stack views"},
        info={
            "dataset": "nucla_multiview",
            "cameras": list(cameras),
            "frame": frame,
            "coordinates": frame,
            "layout_note": "M = views x bodies (1 body per view)",
        },
        fold_protocols=intermediate.table.fold_protocols,
        source_bundle=intermediate,  # stale-bundle check: the multi-view table records what it came from
    )


def nucla_view_residual_table(multiview: PreparedBundle) -> pd.DataFrame:
    """Per recording: cameras present, frame offsets, rates and residuals (metres per joint)."""
    report = multiview.report
    if "view_group" not in report.columns:
        return report
    columns = [c for c in report.columns if c != "input"]
    return report[columns].sort_values("view_group").reset_index(drop=True)
