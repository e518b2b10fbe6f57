"""``kedro run --pipelines=prepare_ntu``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from skeleton_attention.pipelines.preparation import preparation_pipeline
from skeleton_attention.pipelines.prepare_ntu.nodes import align_ntu_views, ingest_ntu, view_residual_table


def create_pipeline(**kwargs) -> Pipeline:
    ingest = node(
        ingest_ntu,
        inputs=["ntu_raw_files", "ntu_missing_skeletons", "params:prepare_ntu"],
        outputs="ntu_intermediate",
        name="ingest_ntu",
    )
    views = Pipeline(
        [
            node(align_ntu_views, ["ntu_intermediate", "params:prepare_ntu"], "ntu_multiview", name="align_ntu_views"),
            node(view_residual_table, "ntu_multiview", "ntu_view_residuals", name="report_ntu_view_residuals"),
        ]
    )
    return preparation_pipeline("ntu", ingest) + views
