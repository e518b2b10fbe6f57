"""``kedro run --pipelines=train_sta_lstm`` (NTU table ``ntu_samples``, parameters ``train_sta_lstm``).

The same pipeline trains on another prepared table through :func:`create_dataset_pipeline`, e.g.
``create_dataset_pipeline("utkinect")`` reads ``utkinect_samples`` with the parameters
``train_sta_lstm_utkinect`` under the namespace ``train_sta_lstm_utkinect``.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from skeleton_attention.pipelines.train_sta_lstm.nodes import NODES
from skeleton_attention.pipelines.training_common import training_pipeline

NAME = "train_sta_lstm"


def create_dataset_pipeline(dataset: str = "ntu") -> Pipeline:
    """STA-LSTM on ``<dataset>_samples``; NTU keeps the plain names (``train_sta_lstm``)."""
    key = NAME if dataset == "ntu" else f"{NAME}_{dataset}"
    return training_pipeline(run_key=key, samples=f"{dataset}_samples", params=key, nodes=NODES)


def create_pipeline(**kwargs) -> Pipeline:
    return create_dataset_pipeline(kwargs.get("dataset", "ntu"))
