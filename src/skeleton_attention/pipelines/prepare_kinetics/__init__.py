"""Kinetics-skeleton (ST-GCN release): JSON clips -> intermediate -> streams."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
