"""``kedro run --pipelines=train_sta_lstm_msr``: STA-LSTM on the prepared MSR Action3D table."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
