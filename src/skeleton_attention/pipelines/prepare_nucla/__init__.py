"""Northwestern-UCLA Multiview: JSON views -> intermediate -> streams + multi-view table."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
