"""The report's figures: accuracy bars (error bars over folds / seeds) and per-class heat maps.

Sizes grow with the number of rows and classes so that labels stay legible at the saved size
(``report.dpi``): one bar per row of the leaderboard, one heat-map cell per (model, class).
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.figure import Figure

from skeleton_attention.reporting.leaderboard import Leaderboard

OURS = "#2f6db3"
PAPER = "#c9c9c9"
FONT = 10


def accuracy_figure(board: Leaderboard) -> Figure:
    """Horizontal top-1 bars, best at the top: ours (error bar = std over folds or seeds) and the
    papers' figures (grey, hatched, labelled as the paper's)."""
    rows = [(r.label, 100 * r.top1, None if r.top1_std is None else 100 * r.top1_std, False) for r in board.runs]
    rows += [(f"{p.method} [paper, {p.table}]", p.top1, None, True) for p in board.papers]
    rows.sort(key=lambda row: row[1])
    height = 1.6 + 0.38 * len(rows)
    fig = Figure(figsize=(9.5, height), layout="constrained")  # not kept by pyplot: freed with the report
    ax = fig.subplots()
    y = np.arange(len(rows))
    values = [row[1] for row in rows]
    colors = [PAPER if row[3] else OURS for row in rows]
    bars = ax.barh(y, values, color=colors)
    spread = [(i, row[1], row[2]) for i, row in enumerate(rows) if row[2]]
    if spread:
        ax.errorbar(
            [s[1] for s in spread],
            [s[0] for s in spread],
            xerr=[s[2] for s in spread],
            fmt="none",
            ecolor="black",
            elinewidth=1,
            capsize=3,
        )
    for bar, row in zip(bars, rows, strict=True):
        if row[3]:
            bar.set_hatch("//")
        text = f"{row[1]:.1f}" + (f" ± {row[2]:.1f}" if row[2] else "")
        ax.text(
            min(row[1] + (row[2] or 0) + 0.8, 101),
            bar.get_y() + bar.get_height() / 2,
            text,
            va="center",
            fontsize=FONT - 1,
        )
    ax.set_yticks(y, [row[0] for row in rows], fontsize=FONT)
    ax.set_xlim(0, 112)
    ax.set_xlabel("test top-1 accuracy (%)", fontsize=FONT)
    ax.set_title(board.heading, fontsize=FONT + 1)
    ax.grid(axis="x", alpha=0.3)
    from matplotlib.patches import Patch

    handles = [Patch(color=OURS, label="ours (mean ± std over folds / seeds)")]
    if board.papers:
        handles.append(Patch(facecolor=PAPER, hatch="//", label="paper's reported figure"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=FONT - 1)
    return fig


def per_class_figure(board: Leaderboard, max_classes: int = 60) -> Figure | None:
    """Models x classes heat map of per-class test accuracy (the rows that share the leaderboard's
    class list); classes beyond ``max_classes`` continue in further panels. None without data."""
    rows = [r for r in board.runs if r.per_class]
    if not rows:
        return None
    classes = rows[0].class_names
    rows = [r for r in rows if r.class_names == classes]
    matrix = 100 * np.asarray([r.per_class for r in rows], dtype=float)
    panels = max(1, math.ceil(len(classes) / max_classes))
    per_panel = math.ceil(len(classes) / panels)
    longest = max(len(str(c)) for c in classes)
    width = min(30.0, 4.5 + 0.34 * per_panel + 0.07 * max(len(r.label) for r in rows))
    panel_height = 0.9 + 0.34 * len(rows) + 0.075 * min(longest, 30)
    fig = Figure(figsize=(width, panel_height * panels + 1.0), layout="constrained")
    axes = fig.subplots(panels, 1, squeeze=False)
    image = None
    for index, ax in enumerate(axes[:, 0]):
        part = slice(index * per_panel, min(len(classes), (index + 1) * per_panel))
        values = matrix[:, part]
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        names = [str(c)[:30] for c in classes[part]]
        ax.set_xticks(np.arange(len(names)), names, rotation=60, ha="right", fontsize=FONT - 1)
        ax.set_yticks(np.arange(len(rows)), [r.label for r in rows], fontsize=FONT)
        if values.shape[1] <= 25 and len(rows) <= 25:
            for (i, j), value in np.ndenumerate(values):
                if not np.isnan(value):
                    ax.text(
                        j,
                        i,
                        f"{value:.0f}",
                        ha="center",
                        va="center",
                        fontsize=FONT - 2,
                        color="white" if value < 60 else "black",
                    )
    fig.suptitle(f"per-class test accuracy (%)\n{board.heading}", fontsize=FONT + 1)
    fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.8, label="accuracy (%)")
    return fig


def figure_png(figure: Figure, dpi: int) -> bytes:
    """The PNG bytes of a figure as the catalog saves it (for embedding in the HTML page)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
