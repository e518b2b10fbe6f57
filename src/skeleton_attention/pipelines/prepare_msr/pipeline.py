"""``kedro run --pipelines=prepare_msr``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from skeleton_attention.pipelines.preparation import preparation_pipeline
from skeleton_attention.pipelines.prepare_msr.nodes import ingest_msr


def create_pipeline(**kwargs) -> Pipeline:
    ingest = node(
        ingest_msr,
        inputs=["msr_raw_files", "params:prepare_msr"],
        outputs="msr_intermediate",
        name="ingest_msr",
    )
    return preparation_pipeline("msr", ingest)
