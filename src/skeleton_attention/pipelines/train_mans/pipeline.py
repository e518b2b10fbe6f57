"""``kedro run --pipelines=train_mans``: MANs on the prepared table of ``run.dataset``.

One pipeline for every data set and protocol (the run selectors), with the composed
``train_mans_config`` (conf/base/parameters_train_mans.yml: the paper's block + a block per data set).
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from skeleton_attention.pipelines.train_mans.nodes import NODES
from skeleton_attention.pipelines.training_common import training_pipeline

NAME = "train_mans"


def create_pipeline(**kwargs) -> Pipeline:
    """``samples``: the catalog entry of the prepared table (``training_samples`` by default)."""
    samples = kwargs.get("samples", "training_samples")
    return training_pipeline(run_key=NAME, samples=samples, params=f"{NAME}_config", nodes=NODES)
