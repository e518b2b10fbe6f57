"""STA-LSTM nodes: the shared training nodes, plus the STA-LSTM checks on the settings.

Everything model-independent lives in :mod:`skeleton_attention.pipelines.training_common`; these
wrappers only add what is specific to this model family.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from skeleton_attention.pipelines import training_common

logger = logging.getLogger(__name__)

MODEL_NAME = "sta_lstm"


def _check_sta_lstm(params: Mapping[str, Any]) -> None:
    training_common.check_params(params)
    if params["model"]["name"] != MODEL_NAME:
        raise ValueError(f"train_sta_lstm trains model {MODEL_NAME!r}, got model.name={params['model']['name']!r}")
    sampling = (params["data"].get("sampling") or {}).get("mode", "full")
    if sampling != "full":
        # the paper: "To avoid destroying the continuity of a sequence, no temporal down-sampling"
        logger.warning("STA-LSTM with temporal sampling %r; the paper uses every frame (mode: full)", sampling)


def split_samples(samples: Any, params: Mapping[str, Any]) -> pd.DataFrame:
    """Protocol rows; validation carved from the training rows (see training_common)."""
    _check_sta_lstm(params)
    return training_common.split_samples(samples, params)


def train_model(samples: Any, splits: pd.DataFrame, params: Mapping[str, Any], *, run_key: str):
    """Algorithm 1 phases (or any phase list) with the shared trainer."""
    _check_sta_lstm(params)
    return training_common.train_model(samples, splits, params, run_key=run_key)


NODES = {"split": split_samples, "train": train_model}
