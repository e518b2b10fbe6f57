"""Leaderboards: our runs of one data set and protocol beside the papers' reported figures.

The papers' figures come from ``conf/base/parameters_report.yml`` (``report.papers``), one entry
per number with the paper and table it was read from; they are never computed here, and every row
built from them says so (``source`` = ``paper``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from skeleton_attention.reporting.results import RunResult

PAPER_KEYS = {"method", "paper", "table", "protocol", "top1", "top5", "family", "note"}


@dataclass(frozen=True)
class PaperFigure:
    """One number a paper reports (percent, as printed)."""

    method: str
    paper: str
    table: str
    protocol: str
    top1: float
    top5: float | None = None
    family: str | None = None
    note: str | None = None

    @property
    def citation(self) -> str:
        return f"{self.paper}, {self.table}"


def paper_figures(entries: Sequence[Mapping[str, Any]]) -> list[PaperFigure]:
    """Validated papers' figures from ``report.papers`` (a clear error names the bad entry)."""
    figures = []
    for index, entry in enumerate(entries or []):
        where = f"report.papers[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a mapping, got {entry!r}")
        unknown = set(entry) - PAPER_KEYS
        missing = {"method", "paper", "table", "protocol", "top1"} - set(entry)
        if unknown or missing:
            raise ValueError(
                f"{where} ({entry.get('method')}): unknown keys {sorted(unknown)}, missing {sorted(missing)}"
            )
        for key in ("top1", "top5"):
            value = entry.get(key)
            # papers print percentages: a value <= 1 is a fraction typed by mistake
            if value is not None and not (isinstance(value, int | float) and 1 < value <= 100):
                raise ValueError(
                    f"{where} ({entry['method']}): {key} = {value!r} is not a percentage in (1, 100] "
                    "(write 91.51, not 0.9151)"
                )
        figures.append(
            PaperFigure(
                method=str(entry["method"]),
                paper=str(entry["paper"]),
                table=str(entry["table"]),
                protocol=str(entry["protocol"]),
                top1=float(entry["top1"]),
                top5=None if entry.get("top5") is None else float(entry["top5"]),
                family=entry.get("family"),
                note=entry.get("note"),
            )
        )
    return figures


@dataclass
class Leaderboard:
    """Our rows (best first) and the papers' figures of one (tag, dataset, protocol)."""

    tag: str
    dataset: str
    protocol: str
    title: str
    runs: list[RunResult]
    papers: list[PaperFigure]

    @property
    def key(self) -> str:
        return f"{self.tag}_{self.dataset}_{self.protocol}"

    @property
    def heading(self) -> str:
        env = "" if self.tag == "base" else f" [{self.tag} environment]"
        return f"{self.title} ({self.dataset} / {self.protocol}){env}"


def build_leaderboards(
    results: Iterable[RunResult],
    papers: Sequence[PaperFigure],
    *,
    titles: Mapping[str, str] | None = None,
    paper_environments: Sequence[str] = ("base",),
) -> list[Leaderboard]:
    """One leaderboard per (environment tag, data set, protocol) that has results. Papers' figures
    join the leaderboards of their protocol in ``paper_environments`` only: the embedded
    environment trains on synthetic data, which no paper's number describes."""
    groups: dict[tuple[str, str, str], list[RunResult]] = defaultdict(list)
    for result in results:
        groups[result.group].append(result)
    boards = []
    for (tag, dataset, protocol), runs in sorted(groups.items()):
        runs = sorted(runs, key=lambda r: (-r.top1, r.label))
        matching = [p for p in papers if p.protocol == protocol] if tag in paper_environments else []
        title = (titles or {}).get(protocol, protocol)
        boards.append(Leaderboard(tag, dataset, protocol, title, runs, sorted(matching, key=lambda p: -p.top1)))
    return boards


def unmatched_papers(boards: Sequence[Leaderboard], papers: Sequence[PaperFigure]) -> list[PaperFigure]:
    """The papers' figures of protocols we have no run on (listed so that nothing is hidden)."""
    shown = {p for board in boards for p in board.papers}
    return [p for p in papers if p not in shown]


# --- rows -------------------------------------------------------------------------------------------


def _pct(value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{100 * value:.2f}"
    return f"{text} ± {100 * std:.2f}" if std is not None else text


def _over(result: RunResult) -> str:
    if result.kind == "cv":
        total = result.repeats_total
        return f"{result.repeats} folds" + (f" of {total}" if total and total != result.repeats else "")
    if result.kind == "seeds":
        return f"{result.repeats} seeds"
    if result.kind == "folds":
        return result.members_label
    return f"1 run (seed {result.seed})" if result.seed is not None else "1 run"


def _number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def board_frame(board: Leaderboard) -> pd.DataFrame:
    """The leaderboard as a table (display strings), ours and the papers' rows ranked by top-1."""
    rows = []
    for r in board.runs:
        rows.append(
            {
                "_top1": r.top1,
                "source": "ours",
                "model": r.label,
                "top-1 (%)": _pct(r.top1, r.top1_std),
                "top-5 (%)": _pct(r.top5, r.top5_std),
                "over": _over(r),
                "val top-1 (%)": _pct(r.val_top1),
                "parameters": _number(r.num_parameters),
                "train time (s)": _number(r.train_time_s),
                "samples/s": _number(r.samples_per_s),
                "test samples": _number(r.num_samples),
            }
        )
    for p in board.papers:
        rows.append(
            {
                "_top1": p.top1 / 100,
                "source": f"paper: {p.citation}",
                "model": f"{p.method} (paper's figure)",
                "top-1 (%)": f"{p.top1:.2f}",
                "top-5 (%)": "-" if p.top5 is None else f"{p.top5:.2f}",
                "over": "as reported",
                "val top-1 (%)": "-",
                "parameters": "-",
                "train time (s)": "-",
                "samples/s": "-",
                "test samples": "-",
            }
        )
    frame = pd.DataFrame(rows).sort_values("_top1", ascending=False, kind="stable").drop(columns="_top1")
    return frame.reset_index(drop=True)


def leaderboard_csv(boards: Sequence[Leaderboard]) -> pd.DataFrame:
    """Every row of every leaderboard as numbers (fractions), for tools: ours and the papers'."""
    rows = []
    for board in boards:
        base = {"tag": board.tag, "dataset": board.dataset, "protocol": board.protocol}
        for r in board.runs:
            rows.append(
                {
                    **base,
                    "source": "ours",
                    "family": r.family,
                    "model": r.model,
                    "variant": r.variant,
                    "run_name": r.name or "",
                    "streams": r.streams,
                    "kind": r.kind,
                    "repeats": r.repeats,
                    "top1": r.top1,
                    "top1_std": r.top1_std,
                    "top5": r.top5,
                    "top5_std": r.top5_std,
                    "val_top1": r.val_top1,
                    "num_parameters": r.num_parameters,
                    "train_time_s": r.train_time_s,
                    "samples_per_s": r.samples_per_s,
                    "num_test_samples": r.num_samples,
                    "metrics_file": str(r.source or ""),
                }
            )
        for p in board.papers:
            rows.append(
                {
                    **base,
                    "source": "paper",
                    "family": p.family or "",
                    "model": p.method,
                    "variant": "",
                    "run_name": "",
                    "kind": "paper",
                    "top1": p.top1 / 100,
                    "top5": None if p.top5 is None else p.top5 / 100,
                    "metrics_file": p.citation,
                }
            )
    return pd.DataFrame(rows)
