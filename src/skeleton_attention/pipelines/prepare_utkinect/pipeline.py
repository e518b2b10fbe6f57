"""``kedro run --pipelines=prepare_utkinect``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from skeleton_attention.pipelines.preparation import preparation_pipeline
from skeleton_attention.pipelines.prepare_utkinect.nodes import ingest_utkinect


def create_pipeline(**kwargs) -> Pipeline:
    ingest = node(
        ingest_utkinect,
        inputs=["utkinect_raw_files", "params:prepare_utkinect"],
        outputs="utkinect_intermediate",
        name="ingest_utkinect",
    )
    return preparation_pipeline("utkinect", ingest)
