"""``kedro run --pipelines=train_mans``: MANs (Xie et al., IJCAI 2018) on a prepared table."""

from skeleton_attention.pipelines.train_mans.pipeline import create_pipeline

__all__ = ["create_pipeline"]
