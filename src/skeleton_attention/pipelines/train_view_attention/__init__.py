"""``kedro run --pipelines=train_view_attention``: the spatio-temporal and view attention network
(Feng, Li, Yuan, MOBIMEDIA 2018) on a prepared table (multi-view, or single-view for comparison)."""

from skeleton_attention.pipelines.train_view_attention.pipeline import create_pipeline

__all__ = ["create_pipeline"]
