"""``kedro run --pipelines=prepare_sbu``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from skeleton_attention.pipelines.preparation import preparation_pipeline
from skeleton_attention.pipelines.prepare_sbu.nodes import ingest_sbu


def create_pipeline(**kwargs) -> Pipeline:
    ingest = node(
        ingest_sbu,
        inputs=["sbu_raw_files", "params:prepare_sbu"],
        outputs="sbu_intermediate",
        name="ingest_sbu",
    )
    return preparation_pipeline("sbu", ingest)
