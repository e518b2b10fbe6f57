"""Thin nodes for a PYSKL / MMAction2 annotation pickle (docs/custom-data.md)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from skeleton_attention.pipelines.preparation import ingest_source
from skeleton_attention.skeletons.bundle import BundleSource
from skeleton_attention.skeletons.fingerprint import file_stats
from skeleton_attention.skeletons.pyskl import plan_pyskl, process_pyskl_annotation


def ingest_pyskl(pickle_path: Path, params: Mapping[str, Any]) -> BundleSource:
    tasks, context, info = plan_pyskl(pickle_path, params)
    processor = partial(process_pyskl_annotation, context=context)
    return ingest_source(
        tasks,
        processor,
        context.protocols,
        {**params, "description": "pyskl: convert"},
        info=info,
        fingerprint_extra={"pickle": file_stats([pickle_path])},  # size + mtime: no re-read of a large pickle
    )
