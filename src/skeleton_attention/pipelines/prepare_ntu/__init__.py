"""NTU RGB+D 60/120: raw .skeleton files -> denoised intermediate -> streams + multi-view table."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
