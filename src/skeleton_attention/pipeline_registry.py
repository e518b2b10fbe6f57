"""Project pipelines: every ``pipelines/<name>/create_pipeline`` is registered under ``<name>``.

Training pipelines on the small real data sets are registered as ``<train pipeline>_<dataset>``
(e.g. ``train_sta_lstm_utkinect``); each reads ``<dataset>_samples`` and its own parameter block.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from skeleton_attention.pipelines.train_sta_lstm.pipeline import create_dataset_pipeline as sta_lstm_on

#: the embedded vertical slice that `kedro run` (and `make run`) executes
DEFAULT_PIPELINES = ("synthetic", "prepare_ntu", "train_sta_lstm")
SMALL_REAL_DATASETS = ("utkinect", "msr")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    for dataset in SMALL_REAL_DATASETS:
        pipelines[f"train_sta_lstm_{dataset}"] = sta_lstm_on(dataset)
    # Kedro 1.7 discovers only the requested pipelines; the default exists when all its parts were found
    if all(name in pipelines for name in DEFAULT_PIPELINES):
        pipelines["__default__"] = sum((pipelines[name] for name in DEFAULT_PIPELINES), Pipeline([]))
    return pipelines
