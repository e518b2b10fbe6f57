"""Project pipelines: every ``pipelines/<name>/create_pipeline`` is registered under ``<name>``.

One training pipeline per model family (``train_<family>``); the data set, protocol and fold are
run selectors (``--params=run.dataset=sbu``), not pipelines.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

#: the embedded vertical slice that `kedro run` (and `make run`) executes
DEFAULT_PIPELINES = ("synthetic", "prepare_ntu", "train_sta_lstm")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    # Kedro 1.7 discovers only the requested pipelines; the default exists when all its parts were found
    if all(name in pipelines for name in DEFAULT_PIPELINES):
        from skeleton_attention.pipelines.train_sta_lstm import create_pipeline as train_sta_lstm

        # the embedded run trains on what prepare_ntu writes: wire the table by name, so Kedro orders
        # training after preparation (`training_samples` is the same directory, but another dataset name)
        parts = [pipelines[name] for name in DEFAULT_PIPELINES[:-1]] + [train_sta_lstm(samples="ntu_samples")]
        pipelines["__default__"] = sum(parts, Pipeline([]))
    return pipelines
