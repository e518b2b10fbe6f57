"""DSTA-Net nodes: the shared training nodes, plus the DSTA-Net checks on the settings.

Everything model-independent lives in :mod:`skeleton_attention.pipelines.training_common`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from skeleton_attention.pipelines import training_common
from skeleton_attention.training.batches import MOTION_STREAMS

logger = logging.getLogger(__name__)

MODEL_NAME = "dsta_net"


def check_dsta_net(params: Mapping[str, Any]) -> None:
    """One stream per model; temporal streams differenced after sampling (Sec. 3.6, 4.2)."""
    training_common.check_params(params)
    if params["model"]["name"] != MODEL_NAME:
        raise ValueError(f"train_dsta_net trains model {MODEL_NAME!r}, got model.name={params['model']['name']!r}")
    data = params["data"]
    streams = data.get("streams") or ["joint"]
    streams = [streams] if isinstance(streams, str) else list(streams)
    if len(streams) != 1:
        raise ValueError(
            f"DSTA-Net trains one model per stream (Sec. 3.6); data.streams is {streams}: "
            "choose a stream with run.name (conf/base/parameters_train_dsta_net.yml `runs`)"
        )
    if streams[0] in MOTION_STREAMS and data.get("motion_from", "table") != "sampled":
        # the table's motion columns were differenced on the recorded frame rate, before the 150 / 128 sampling
        logger.warning(
            "DSTA-Net stream %s read from the table (motion_from: table): the paper differences the sampled "
            "frames; use data.motion_from: sampled",
            streams[0],
        )


def split_samples(samples: Any, params: Mapping[str, Any]) -> pd.DataFrame:
    """Protocol rows; validation carved from the training rows (see training_common)."""
    check_dsta_net(params)
    return training_common.split_samples(samples, params)


def train_model(samples: Any, splits: pd.DataFrame, params: Mapping[str, Any], *, run_key: str):
    """SGD with Nesterov momentum and a step schedule (Sec. 4.2) with the shared trainer."""
    check_dsta_net(params)
    return training_common.train_model(samples, splits, params, run_key=run_key)


NODES = {"split": split_samples, "train": train_model}
