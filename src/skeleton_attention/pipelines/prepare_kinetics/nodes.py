"""Thin nodes for Kinetics-skeleton preparation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from skeleton_attention.pipelines.preparation import ingest_source
from skeleton_attention.skeletons.bundle import BundleSource
from skeleton_attention.skeletons.fingerprint import digest
from skeleton_attention.skeletons.kinetics import label_map_classes
from skeleton_attention.skeletons.prepare import KINETICS_PROTOCOLS, process_kinetics_file

logger = logging.getLogger(__name__)


def ingest_kinetics(
    raw_files: list[Path],
    train_label_map: Mapping[str, Any],
    val_label_map: Mapping[str, Any],
    params: Mapping[str, Any],
) -> BundleSource:
    num_classes = params.get("num_classes") or label_map_classes(train_label_map, val_label_map)
    logger.info(
        "kinetics: label_index must lie in [0, %s) (%s)",
        num_classes,
        "prepare_kinetics.num_classes" if params.get("num_classes") else "distinct names in the label maps",
    )
    max_frames = params.get("max_frames")
    processor = partial(
        process_kinetics_file,
        train_map=dict(train_label_map),
        val_map=dict(val_label_map),
        max_people=int(params.get("max_people", 2)),
        num_classes=None if num_classes is None else int(num_classes),
        max_frames=None if max_frames is None else int(max_frames),
    )
    return ingest_source(
        raw_files,
        processor,
        KINETICS_PROTOCOLS,
        {**params, "description": "kinetics: parse"},
        info={"dataset": "kinetics", "num_classes": num_classes, "max_frames": max_frames},
        fingerprint_extra={"train_map": digest(train_label_map), "val_map": digest(val_label_map)},
    )
