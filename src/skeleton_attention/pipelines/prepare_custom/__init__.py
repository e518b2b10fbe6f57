"""A user's own data set (samples.csv + layout.yaml + sample files) -> intermediate -> streams."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
