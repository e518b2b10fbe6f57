"""The embedded default data set, generated in the real raw formats (NTU .skeleton, Kinetics JSON)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
