"""View-attention nodes: the shared training nodes, plus this family's checks on the settings.

Everything model-independent lives in :mod:`skeleton_attention.pipelines.training_common`; these
wrappers only check that the model is one of the family's two registered names (multi-view
``view_attention`` on a multi-view table, ``view_attention_single`` on a single-view one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from skeleton_attention.pipelines import training_common

MODEL_NAMES = ("view_attention", "view_attention_single")


def _check_view_attention(params: Mapping[str, Any]) -> None:
    training_common.check_params(params)
    name = params["model"]["name"]
    if name not in MODEL_NAMES:
        raise ValueError(f"train_view_attention trains one of {MODEL_NAMES}, got model.name={name!r}")


def split_samples(samples: Any, params: Mapping[str, Any]) -> pd.DataFrame:
    """Protocol rows; validation carved from the training rows (see training_common)."""
    _check_view_attention(params)
    return training_common.split_samples(samples, params)


def train_model(samples: Any, splits: pd.DataFrame, params: Mapping[str, Any], *, run_key: str):
    """One phase (the paper trains end to end) with the shared trainer."""
    _check_view_attention(params)
    return training_common.train_model(samples, splits, params, run_key=run_key)


NODES = {"split": split_samples, "train": train_model}
