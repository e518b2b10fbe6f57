"""MSR Action3D: real-world joint files -> intermediate -> streams."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
