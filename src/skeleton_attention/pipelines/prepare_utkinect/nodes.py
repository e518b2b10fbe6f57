"""Thin nodes for UTKinect-Action3D preparation."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from skeleton_attention.pipelines.preparation import ingest_source
from skeleton_attention.skeletons.bundle import BundleSource
from skeleton_attention.skeletons.fingerprint import file_digest
from skeleton_attention.skeletons.ingest import RawFileList
from skeleton_attention.skeletons.prepare import (
    UTKINECT_FOLD_PROTOCOLS,
    UTKINECT_PROTOCOLS,
    process_utkinect_file,
)


def ingest_utkinect(raw_files: list[Path], params: Mapping[str, Any]) -> BundleSource:
    joints = RawFileList.wrap(raw_files).select(lambda f: f.name.startswith("joints_"))
    if not joints:
        raise FileNotFoundError("no joints_sXX_eYY.txt files in the UTKinect raw directory")
    label_file = joints[0].parent.parent / params["label_file"]
    if not label_file.is_file():
        label_file = joints[0].parent / params["label_file"]
    processor = partial(process_utkinect_file, label_file=label_file)
    return ingest_source(
        joints,
        processor,
        UTKINECT_PROTOCOLS,
        {**params, "description": "utkinect: parse"},
        info={"dataset": "utkinect", "label_file": str(label_file)},
        fingerprint_extra={"label_file": file_digest(label_file)},
        fold_protocols=UTKINECT_FOLD_PROTOCOLS,
    )
