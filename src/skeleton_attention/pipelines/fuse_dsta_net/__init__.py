"""``kedro run --pipelines=fuse_dsta_net``: the score fusion of DSTA-Net's four stream models."""

from skeleton_attention.pipelines.fuse_dsta_net.pipeline import create_pipeline

__all__ = ["create_pipeline"]
