"""``kedro run --pipelines=train_sta_lstm``: STA-LSTM on the prepared table of ``run.dataset``.

One pipeline for every data set and protocol: the data set, protocol and fold are run selectors
(``--params=run.dataset=sbu``), the parameters are the composed ``train_sta_lstm_config``
(conf/base/parameters_train_sta_lstm.yml: the paper's NTU block + a block per data set).
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from skeleton_attention.pipelines.train_sta_lstm.nodes import NODES
from skeleton_attention.pipelines.training_common import training_pipeline

NAME = "train_sta_lstm"


def create_pipeline(**kwargs) -> Pipeline:
    """``samples``: the catalog entry of the prepared table; ``training_samples`` (the table of
    ``run.dataset``) unless a caller wires it to a preparation pipeline's output (pipeline_registry)."""
    samples = kwargs.get("samples", "training_samples")
    return training_pipeline(run_key=NAME, samples=samples, params=f"{NAME}_config", nodes=NODES)
