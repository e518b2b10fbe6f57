"""The shared STA-LSTM training pipeline, reading ``utkinect_samples``."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from skeleton_attention.pipelines.train_sta_lstm.pipeline import create_dataset_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    return create_dataset_pipeline("utkinect")
