"""``kedro run --pipelines=report``: every finished run beside the papers' figures (docs/reporting.md)."""

from skeleton_attention.pipelines.report.pipeline import create_pipeline

__all__ = ["create_pipeline"]
