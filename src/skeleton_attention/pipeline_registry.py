"""Project pipelines: every ``pipelines/<name>/create_pipeline`` is registered under ``<name>``."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    # The default run is the embedded vertical slice: synthetic data -> NTU preparation -> STA-LSTM.
    default = Pipeline([])
    for name in ("synthetic", "prepare_ntu", "train_sta_lstm"):
        if name in pipelines:
            default += pipelines[name]
    pipelines["__default__"] = default
    return pipelines
