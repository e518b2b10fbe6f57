"""``kedro run --pipelines=train_sta_lstm_utkinect``: STA-LSTM on the prepared UTKinect-Action3D table."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
