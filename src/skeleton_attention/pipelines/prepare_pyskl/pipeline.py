"""``kedro run --pipelines=prepare_pyskl --params=pyskl_pickle=/data/ntu60_3danno.pkl``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from skeleton_attention.pipelines.preparation import preparation_pipeline
from skeleton_attention.pipelines.prepare_pyskl.nodes import ingest_pyskl


def create_pipeline(**kwargs) -> Pipeline:
    ingest = node(
        ingest_pyskl,
        inputs=["pyskl_annotation_file", "params:prepare_pyskl"],
        outputs="pyskl_intermediate",
        name="ingest_pyskl",
    )
    return preparation_pipeline("pyskl", ingest)
