"""MANs nodes: the shared training nodes, plus the MANs checks on the settings.

Everything model-independent lives in :mod:`skeleton_attention.pipelines.training_common`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from skeleton_attention.pipelines import training_common

logger = logging.getLogger(__name__)

MODEL_NAME = "mans"


def _check_mans(params: Mapping[str, Any]) -> None:
    training_common.check_params(params)
    if params["model"]["name"] != MODEL_NAME:
        raise ValueError(f"train_mans trains model {MODEL_NAME!r}, got model.name={params['model']['name']!r}")
    sampling = params["data"].get("sampling") or {}
    if isinstance(sampling, Mapping) and sampling.get("mode", "full") == "full":
        # eq. 8's W1 (T/alpha x T) acts across frames: the image needs a fixed number of rows
        raise ValueError("MANs needs a fixed number of frames: set data.sampling.mode to resample (paper: 50)")


def split_samples(samples: Any, params: Mapping[str, Any]) -> pd.DataFrame:
    """Protocol rows; validation carved from the training rows (see training_common)."""
    _check_mans(params)
    return training_common.split_samples(samples, params)


def train_model(samples: Any, splits: pd.DataFrame, params: Mapping[str, Any], *, run_key: str):
    """One phase of SGD with the shared trainer (Sec. 3.1)."""
    _check_mans(params)
    return training_common.train_model(samples, splits, params, run_key=run_key)


NODES = {"split": split_samples, "train": train_model}
