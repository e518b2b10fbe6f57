"""skeleton-attention: raw skeleton recordings to trained, evaluated and compared attention models."""

__version__ = "0.1.0"
