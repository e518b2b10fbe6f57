"""``kedro run --pipelines=prepare_custom --params=custom_raw_dir=/data/my_set``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from skeleton_attention.pipelines.preparation import preparation_pipeline
from skeleton_attention.pipelines.prepare_custom.nodes import ingest_custom


def create_pipeline(**kwargs) -> Pipeline:
    ingest = node(
        ingest_custom,
        inputs=["custom_raw_files", "params:prepare_custom"],
        outputs="custom_intermediate",
        name="ingest_custom",
    )
    return preparation_pipeline("custom", ingest)
