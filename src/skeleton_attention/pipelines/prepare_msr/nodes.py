"""Thin nodes for MSR Action3D preparation."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from skeleton_attention.pipelines.preparation import ingest_source
from skeleton_attention.skeletons.bundle import BundleSource
from skeleton_attention.skeletons.fingerprint import file_digest
from skeleton_attention.skeletons.ingest import RawFileList
from skeleton_attention.skeletons.msr import load_msr_subset
from skeleton_attention.skeletons.prepare import MSR_PROTOCOLS, process_msr_file


def ingest_msr(raw_files: list[Path], params: Mapping[str, Any]) -> BundleSource:
    skeletons = RawFileList.wrap(raw_files).select(lambda f: f.name.endswith("_skeleton3D.txt"))
    if not skeletons:
        raise FileNotFoundError("no aXX_sYY_eZZ_skeleton3D.txt files in the MSR Action3D raw directory")
    subset, subset_path = None, None
    if params.get("subset_file"):
        subset_path = skeletons[0].parent / params["subset_file"]
        subset = frozenset(load_msr_subset(subset_path))
    processor = partial(process_msr_file, subset=subset)
    return ingest_source(
        skeletons,
        processor,
        MSR_PROTOCOLS,
        {**params, "description": "msr: parse"},
        info={"dataset": "msr", "subset_file": params.get("subset_file")},
        fingerprint_extra={"subset_file": file_digest(subset_path)},
    )
