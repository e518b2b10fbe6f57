"""Thin nodes of the report pipeline; the work is in :mod:`skeleton_attention.reporting`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from skeleton_attention.reporting.report import build_report
from skeleton_attention.reporting.results import ResultsTree


def build_comparison_report(
    tree: ResultsTree, settings: Mapping[str, Any]
) -> tuple[str, str, pd.DataFrame, dict[str, Figure], dict[str, Figure], dict[str, dict[str, float]]]:
    """Markdown, HTML, leaderboard table, accuracy and per-class figures (by leaderboard key) and
    the report's counts for MLflow."""
    report = build_report(tree, settings)
    counts = {key: {"value": value, "step": 0} for key, value in report.counts().items()}
    return (
        report.markdown,
        report.html,
        report.leaderboard,
        {f"{key}.png": fig for key, fig in report.accuracy_figures.items()},
        {f"{key}.png": fig for key, fig in report.per_class_figures.items()},
        counts,
    )
