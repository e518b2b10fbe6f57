"""``kedro run --pipelines=report``: one leaderboard per data set and protocol with every finished
run of every ``train_<family>`` pipeline beside the papers' figures (``conf/base/parameters_report.yml``),
written under ``data/08_reporting/report/`` (``conf/base/catalog_report.yml``) and logged to the
MLflow experiment ``<base>/report`` (mlflow_hooks.py)."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from skeleton_attention.pipelines.report.nodes import build_comparison_report

#: the tag mlflow_hooks.experiment_for uses to log this pipeline into the report's own experiment
REPORT_TAG = "report"


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                build_comparison_report,
                inputs=["report_results", "params:report"],
                outputs=[
                    "report_markdown",
                    "report_html",
                    "report_leaderboard",
                    "report_accuracy_plots",
                    "report_per_class_plots",
                    "report_counts",
                ],
                name="build_comparison_report",
                tags=[REPORT_TAG],
            )
        ]
    )
