"""Skeleton formats and geometry: numpy in, numpy out. No Kedro, no torch."""
