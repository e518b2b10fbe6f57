"""UTKinect-Action3D: joints files + action segmentation -> intermediate -> streams."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
