"""SAN nodes: the shared training nodes, plus the SAN checks on the settings.

Everything model-independent lives in :mod:`skeleton_attention.pipelines.training_common`; these
wrappers only check what the SAN family needs from the data settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from skeleton_attention.models.san import STREAMS
from skeleton_attention.pipelines import training_common
from skeleton_attention.training.data import DataSettings
from skeleton_attention.training.sampling import Segments

logger = logging.getLogger(__name__)

MODEL_NAME = "san"


def _check_san(params: Mapping[str, Any]) -> None:
    """The model is SAN; position and velocity streams; velocity of the sampled frames; for TS-SAN
    the sampling's segments match the model's (a mismatch would cut segments across clips)."""
    training_common.check_params(params)
    if params["model"]["name"] != MODEL_NAME:
        raise ValueError(f"train_san trains model {MODEL_NAME!r}, got model.name={params['model']['name']!r}")
    settings = DataSettings.from_config(params["data"])
    if settings.streams != STREAMS:
        raise ValueError(f"SAN reads data.streams {list(STREAMS)} (position, velocity), got {list(settings.streams)}")
    if settings.motion_from != "sampled":
        # the paper's velocity is the difference of the frames the network sees (Sec. 4.1)
        logger.warning(
            "SAN with motion_from=%r; the paper's velocity is that of the sampled frames", settings.motion_from
        )
    num_segments = int((params["model"].get("kwargs") or {}).get("num_segments", 1))
    steps = settings.sampling.steps
    last = steps[-1] if steps else None
    if num_segments > 1 and not (isinstance(last, Segments) and last.num == num_segments):
        raise ValueError(
            f"TS-SAN with num_segments={num_segments} needs data.sampling to end with "
            f"{{segments: {{num: {num_segments}, ...}}}}, got {params['data'].get('sampling')!r}"
        )


def split_samples(samples: Any, params: Mapping[str, Any]) -> pd.DataFrame:
    """Protocol rows; validation carved from the training rows (see training_common)."""
    _check_san(params)
    return training_common.split_samples(samples, params)


def train_model(samples: Any, splits: pd.DataFrame, params: Mapping[str, Any], *, run_key: str):
    """One training phase with the shared trainer (Adam, plateau schedule)."""
    _check_san(params)
    return training_common.train_model(samples, splits, params, run_key=run_key)


NODES = {"split": split_samples, "train": train_model}
