"""SBU Kinect Interaction: two-person skeleton files -> intermediate -> (smoothed) streams."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
