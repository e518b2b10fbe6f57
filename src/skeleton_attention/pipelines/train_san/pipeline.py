"""``kedro run --pipelines=train_san``: SAN / TS-SAN on the prepared table of ``run.dataset``.

One pipeline for every data set, protocol and variant: the data set, protocol and fold are run
selectors (``--params=run.dataset=nucla``), the parameters are the composed ``train_san_config``
(conf/base/parameters_train_san.yml: the paper's NTU block + a block per data set).
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from skeleton_attention.pipelines.train_san.nodes import NODES
from skeleton_attention.pipelines.training_common import training_pipeline

NAME = "train_san"


def create_pipeline(**kwargs) -> Pipeline:
    """``samples``: the catalog entry of the prepared table (``training_samples`` by default)."""
    samples = kwargs.get("samples", "training_samples")
    return training_pipeline(run_key=NAME, samples=samples, params=f"{NAME}_config", nodes=NODES)
