"""``kedro run --pipelines=train_san``: SAN / TS-SAN (Cho et al., WACV 2020) on a prepared table."""

from skeleton_attention.pipelines.train_san.pipeline import create_pipeline

__all__ = ["create_pipeline"]
