"""``kedro run --pipelines=prepare_nucla``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from skeleton_attention.pipelines.preparation import preparation_pipeline
from skeleton_attention.pipelines.prepare_nucla.nodes import (
    ingest_nucla,
    nucla_view_residual_table,
    stack_nucla_views,
)


def create_pipeline(**kwargs) -> Pipeline:
    ingest = node(
        ingest_nucla,
        inputs=["nucla_raw_files", "params:prepare_nucla"],
        outputs="nucla_intermediate",
        name="ingest_nucla",
    )
    views = Pipeline(
        [
            node(
                stack_nucla_views,
                ["nucla_intermediate", "params:prepare_nucla"],
                "nucla_multiview",
                name="stack_nucla_views",
            ),
            node(
                nucla_view_residual_table, "nucla_multiview", "nucla_view_residuals", name="report_nucla_view_residuals"
            ),
        ]
    )
    return preparation_pipeline("nucla", ingest) + views
