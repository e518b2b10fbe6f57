"""``kedro run --pipelines=train_dsta_net``: DSTA-Net on the prepared table of ``run.dataset``.

One model per input stream (Sec. 3.6): ``run.name`` selects the stream block of
conf/base/parameters_train_dsta_net.yml (``runs``: spatial_temporal, spatial, fast_temporal,
slow_temporal). Without ``run.name`` the CLI trains all four, one child MLflow run each under one
parent, then runs ``fuse_dsta_net`` (experiments/group_driver.py ``run_group``).
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from skeleton_attention.pipelines.train_dsta_net.nodes import NODES
from skeleton_attention.pipelines.training_common import training_pipeline

NAME = "train_dsta_net"


def create_pipeline(**kwargs) -> Pipeline:
    """``samples``: the catalog entry of the prepared table (``training_samples`` by default)."""
    samples = kwargs.get("samples", "training_samples")
    return training_pipeline(run_key=NAME, samples=samples, params=f"{NAME}_config", nodes=NODES)
