"""``kedro run --pipelines=synthetic``: regenerate the embedded raw data."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from skeleton_attention.pipelines.synthetic.nodes import synthetic_kinetics_writer, synthetic_ntu_writer


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(synthetic_ntu_writer, "params:synthetic.ntu", "ntu_raw_files", name="generate_synthetic_ntu"),
            node(
                synthetic_kinetics_writer,
                "params:synthetic.kinetics",
                "kinetics_raw_files",
                name="generate_synthetic_kinetics",
            ),
        ]
    )
