"""Thin nodes for SBU Kinect Interaction preparation."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from skeleton_attention.pipelines.preparation import ingest_source
from skeleton_attention.skeletons.bundle import BundleSource
from skeleton_attention.skeletons.prepare import SBU_FOLD_PROTOCOLS, process_sbu_file
from skeleton_attention.skeletons.sbu import COORDINATE_MODES, FILE_NAME


def ingest_sbu(raw_files: list[Path], params: Mapping[str, Any]) -> BundleSource:
    files = [f for f in raw_files if f.name == FILE_NAME]
    if not files:
        raise FileNotFoundError(
            f"no <pair>/<class>/<seq>/{FILE_NAME} files in the SBU raw directory "
            f"{params.get('raw_dir', '(sbu_raw_dir)')}"
        )
    coordinates = str(params.get("coordinates", "metres"))
    if coordinates not in COORDINATE_MODES:
        raise ValueError(f"prepare_sbu.coordinates must be one of {COORDINATE_MODES}, not {coordinates!r}")
    processor = partial(process_sbu_file, coordinates=coordinates)
    return ingest_source(
        files,
        processor,
        (),
        {**params, "description": "sbu: parse"},
        info={"dataset": "sbu", "coordinates": "camera_metres" if coordinates == "metres" else "raw"},
        fold_protocols=SBU_FOLD_PROTOCOLS,
    )
