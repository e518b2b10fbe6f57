"""``kedro run --pipelines=train_view_attention``: the view-attention network on ``run.dataset``.

One pipeline for every data set and protocol (``--params=run.dataset=nucla_multiview``); the
parameters are the composed ``train_view_attention_config``
(conf/base/parameters_train_view_attention.yml: the paper's NTU block + a block per data set).
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from skeleton_attention.pipelines.train_view_attention.nodes import NODES
from skeleton_attention.pipelines.training_common import training_pipeline

NAME = "train_view_attention"


def create_pipeline(**kwargs) -> Pipeline:
    """``samples``: the catalog entry of the prepared table; ``training_samples`` (the table of
    ``run.dataset``) unless a caller wires it to a preparation pipeline's output (e.g.
    ``ntu_multiview``, so that Kedro orders training after ``prepare_ntu``)."""
    samples = kwargs.get("samples", "training_samples")
    return training_pipeline(run_key=NAME, samples=samples, params=f"{NAME}_config", nodes=NODES)
