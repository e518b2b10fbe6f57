"""Building the comparison report from a results tree and the papers' figures (no Kedro here:
``pipelines/report`` wires this to the catalog)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from skeleton_attention.reporting.document import ReportFigures, render_html, render_markdown
from skeleton_attention.reporting.leaderboard import (
    Leaderboard,
    build_leaderboards,
    leaderboard_csv,
    paper_figures,
    unmatched_papers,
)
from skeleton_attention.reporting.plots import accuracy_figure, figure_png, per_class_figure
from skeleton_attention.reporting.results import Problem, ResultsTree, collect_results

logger = logging.getLogger(__name__)

SETTINGS = {"papers", "titles", "paper_environments", "embed_run_plots", "heatmap_max_classes", "dpi", "report_dir"}


@dataclass
class Report:
    """Everything the report pipeline writes."""

    markdown: str
    html: str
    leaderboard: pd.DataFrame
    accuracy_figures: dict[str, Figure] = field(default_factory=dict)
    per_class_figures: dict[str, Figure] = field(default_factory=dict)
    boards: list[Leaderboard] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, float]:
        """Numbers for MLflow: how much the report covers."""
        return {
            "leaderboards": float(len(self.boards)),
            "runs": float(sum(len(b.runs) for b in self.boards)),
            "paper_figures": float(sum(len(b.papers) for b in self.boards)),
            "unreadable_files": float(len(self.problems)),
        }


def check_settings(settings: Mapping[str, Any]) -> None:
    unknown = set(settings) - SETTINGS
    if unknown:
        raise ValueError(f"unknown report settings {sorted(unknown)}; known: {sorted(SETTINGS)}")


def build_report(tree: ResultsTree, settings: Mapping[str, Any]) -> Report:
    """Read every finished run under ``tree``, rank them per data set and protocol beside the
    papers' figures, draw the figures and render the Markdown and HTML pages."""
    check_settings(settings)
    papers = paper_figures(settings.get("papers") or [])
    results, problems = collect_results(tree)
    for problem in problems:
        logger.warning("report: %s %s", problem.path, problem.reason)
    boards = build_leaderboards(
        results,
        papers,
        titles=settings.get("titles") or {},
        paper_environments=tuple(settings.get("paper_environments") or ("base",)),
    )
    if not boards:
        logger.warning("report: no finished runs under %s; the report says so and lists nothing", tree.results_dir)
    dpi = int(settings.get("dpi", 110))
    accuracy = {board.key: accuracy_figure(board) for board in boards}
    per_class = {}
    for board in boards:
        figure = per_class_figure(board, int(settings.get("heatmap_max_classes", 60)))
        if figure is not None:
            per_class[board.key] = figure
    figures = ReportFigures(
        accuracy={k: figure_png(f, dpi) for k, f in accuracy.items()},
        per_class={k: figure_png(f, dpi) for k, f in per_class.items()},
    )
    unmatched = unmatched_papers(boards, papers)
    report_dir = Path(settings.get("report_dir") or Path(tree.results_dir) / "report")
    markdown = render_markdown(
        boards, unmatched, problems, results_dir=Path(tree.results_dir), report_dir=report_dir, figures=figures
    )
    page = render_html(
        boards,
        unmatched,
        problems,
        results_dir=Path(tree.results_dir),
        figures=figures,
        embed_run_plots=bool(settings.get("embed_run_plots", True)),
    )
    table = leaderboard_csv(boards)
    if table.empty:
        table = pd.DataFrame(columns=["tag", "dataset", "protocol", "source", "model", "top1"])
    return Report(markdown, page, table, accuracy, per_class, boards, problems)
