"""``kedro run --pipelines=train_dsta_net``: DSTA-Net (Shi et al., ACCV 2020) on a prepared table;
without ``run.name`` its four streams are trained and fused (``fuse_dsta_net``)."""

from skeleton_attention.pipelines.train_dsta_net.pipeline import create_pipeline

__all__ = ["create_pipeline"]
