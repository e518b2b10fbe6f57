"""The report as Markdown (figures linked beside it) and as one self-contained HTML page (every
figure embedded as base64 PNG, so the page can be mailed or logged as a single MLflow artifact)."""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from skeleton_attention.reporting.leaderboard import Leaderboard, PaperFigure, board_frame
from skeleton_attention.reporting.results import Problem

EMPTY = (
    "No finished runs were found under `{root}`. Train a model first, e.g. "
    "`kedro run --env=embedded --pipelines=synthetic,prepare_ntu,train_sta_lstm`, then build the report again."
)
INTRO = (
    "Test accuracy of every finished run under `{root}`, one leaderboard per data set and protocol. "
    "Rows marked **paper** are the figures the papers report (read from `conf/base/parameters_report.yml`, "
    "with the table they come from), not our measurements. ± is the standard deviation over folds "
    "(cross-validated protocols) or seeds; train time is per run (mean per fold or seed)."
)


@dataclass
class ReportFigures:
    """PNG bytes of the report's own figures, by leaderboard key."""

    accuracy: dict[str, bytes] = field(default_factory=dict)
    per_class: dict[str, bytes] = field(default_factory=dict)


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        text = [cell(v) for v in row]
        if str(row[0]).startswith("paper"):
            text = [f"*{t}*" for t in text]
        lines.append("| " + " | ".join(text) + " |")
    return "\n".join(lines)


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def render_markdown(
    boards: Sequence[Leaderboard],
    unmatched: Sequence[PaperFigure],
    problems: Sequence[Problem],
    *,
    results_dir: Path,
    report_dir: Path,
    figures: ReportFigures,
) -> str:
    """The report in Markdown; figures are linked relative to ``report_dir`` (where it is written)."""
    out = ["# Results: our runs beside the papers' figures", ""]
    if not boards:
        out += [EMPTY.format(root=results_dir), ""]
    else:
        out += [INTRO.format(root=results_dir), ""]
        out += ["## Contents", ""] + [f"- [{b.heading}](#{_anchor(b)})" for b in boards] + [""]
    for board in boards:
        out += [
            f'<a id="{_anchor(board)}"></a>',
            "",
            f"## {board.heading}",
            "",
            _markdown_table(board_frame(board)),
            "",
        ]
        if board.key in figures.accuracy:
            out += [f"![top-1 accuracy, {board.heading}](accuracy/{board.key}.png)", ""]
        if board.key in figures.per_class:
            out += [f"![per-class accuracy, {board.heading}](per_class/{board.key}.png)", ""]
        for run in board.runs:
            if run.plots:
                links = ", ".join(f"[{title}]({_rel(path, report_dir)})" for title, path in run.plots.items())
                out.append(f"- {run.label}: {links}; numbers from `{run.source}`")
        out.append("")
    out += _markdown_tail(unmatched, problems)
    return "\n".join(out).rstrip() + "\n"


def _markdown_tail(unmatched: Sequence[PaperFigure], problems: Sequence[Problem]) -> list[str]:
    out = []
    if unmatched:
        out += [
            "## Papers' figures without a run of ours",
            "",
            "| protocol | method | top-1 (%) | source |",
            "|---|---|---|---|",
        ]
        out += [f"| {p.protocol} | {p.method} | {p.top1:.2f} | {p.citation} |" for p in unmatched]
        out.append("")
    if problems:
        out += ["## Files that could not be read", "", "These results are missing from the leaderboards above:", ""]
        out += [f"- `{p.path}`: {p.reason}" for p in problems]
        out.append("")
    return out


def _anchor(board: Leaderboard) -> str:
    return board.key.replace(".", "-").lower()


# --- HTML --------------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f0f0f0; } td:nth-child(1), td:nth-child(2) { text-align: left; }
tr.paper td { background: #f7f7f7; font-style: italic; color: #555; }
img { max-width: 100%; } .runs img { max-width: 560px; margin: 0.3em; vertical-align: top; }
.problem { color: #a00; } code { background: #f4f4f4; padding: 0 0.2em; }
details { margin: 0.4em 0; } summary { cursor: pointer; }
"""


def _code(text: str) -> str:
    """Markdown's `code` spans of an already escaped text as <code> elements."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        css = ' class="paper"' if str(row[0]).startswith("paper") else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(
    boards: Sequence[Leaderboard],
    unmatched: Sequence[PaperFigure],
    problems: Sequence[Problem],
    *,
    results_dir: Path,
    figures: ReportFigures,
    embed_run_plots: bool = True,
) -> str:
    """The whole report as one HTML page with every image inline (no external file or script)."""
    esc = html.escape
    body = ["<h1>Results: our runs beside the papers' figures</h1>"]
    if not boards:
        body.append(f"<p><strong>{_code(esc(EMPTY.format(root=results_dir)))}</strong></p>")
    else:
        body.append(f"<p>{_code(esc(INTRO.format(root=results_dir))).replace('**paper**', '<em>paper</em>')}</p>")
        body.append(
            "<ul>" + "".join(f'<li><a href="#{_anchor(b)}">{esc(b.heading)}</a></li>' for b in boards) + "</ul>"
        )
    for board in boards:
        body += [f'<h2 id="{_anchor(board)}">{esc(board.heading)}</h2>', _html_table(board_frame(board))]
        if board.key in figures.accuracy:
            body.append(_img(figures.accuracy[board.key], f"top-1 accuracy, {board.heading}"))
        if board.key in figures.per_class:
            body.append(_img(figures.per_class[board.key], f"per-class accuracy, {board.heading}"))
        if embed_run_plots:
            body.append(_run_plots(board))
    body += _html_tail(unmatched, problems)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>skeleton-attention results</title>"
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _run_plots(board: Leaderboard) -> str:
    parts = ['<div class="runs">']
    for run in board.runs:
        images = [
            _img(path.read_bytes(), f"{title}, {run.label}") for title, path in run.plots.items() if path.is_file()
        ]
        if images:
            summary = f"{run.label}: {', '.join(run.plots)} (numbers from {run.source})"
            parts.append(f"<details><summary>{html.escape(summary)}</summary>{''.join(images)}</details>")
    parts.append("</div>")
    return "".join(parts)


def _html_tail(unmatched: Sequence[PaperFigure], problems: Sequence[Problem]) -> list[str]:
    esc = html.escape
    out = []
    if unmatched:
        frame = pd.DataFrame(
            [
                {"protocol": p.protocol, "method": p.method, "top-1 (%)": f"{p.top1:.2f}", "source": p.citation}
                for p in unmatched
            ]
        )
        out += ["<h2>Papers' figures without a run of ours</h2>", _html_table(frame)]
    if problems:
        out += [
            "<h2>Files that could not be read</h2><p>These results are missing from the leaderboards above:</p><ul>"
        ]
        out += [f'<li class="problem"><code>{esc(str(p.path))}</code>: {esc(p.reason)}</li>' for p in problems]
        out.append("</ul>")
    return out
