"""A PYSKL / MMAction2 skeleton annotation pickle -> intermediate -> streams."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
