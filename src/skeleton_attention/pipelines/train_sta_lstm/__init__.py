"""``kedro run --pipelines=train_sta_lstm``: STA-LSTM (Song et al., AAAI 2017) on a prepared table."""

from skeleton_attention.pipelines.train_sta_lstm.pipeline import create_pipeline

__all__ = ["create_pipeline"]
