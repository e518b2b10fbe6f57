"""``kedro run --pipelines=prepare_kinetics``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from skeleton_attention.pipelines.preparation import preparation_pipeline
from skeleton_attention.pipelines.prepare_kinetics.nodes import ingest_kinetics


def create_pipeline(**kwargs) -> Pipeline:
    ingest = node(
        ingest_kinetics,
        inputs=["kinetics_raw_files", "kinetics_train_label_map", "kinetics_val_label_map", "params:prepare_kinetics"],
        outputs="kinetics_intermediate",
        name="ingest_kinetics",
    )
    return preparation_pipeline("kinetics", ingest)
