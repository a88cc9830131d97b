"""The report page's charts, drawn server-side by matplotlib as SVG (pure: figures in,
markup out).

Text stays text in the SVG (``svg.fonttype: none``), so the browser draws it with its
own fonts and Chinese labels are selectable and sharp; matplotlib only measures it, with
the first of :data:`FONTS` that is installed for each character (Noto Sans CJK from
Debian's ``fonts-noto-cjk`` for Chinese). Rendering uses matplotlib's object API and its SVG
backend, never pyplot's global state, under one lock because the fonts are
chosen through matplotlib's global settings.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import date

import matplotlib
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Latin first (its digits and letters), then CJK families as Debian and other systems
# name them; the browser gets the same list.
FONTS = (
    "DejaVu Sans",
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "PingFang SC",
)
# Colour-blind-safe (Okabe-Ito), one per root cause in the order they are drawn.
PALETTE = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
    "#999999", "#000000",
)  # fmt: skip
INK, MUTED, GRID = "#1d2433", "#5b6577", "#e3e7ee"
WIDTH_IN = 7.2

_lock = threading.Lock()


def installed_fonts() -> list[str]:
    names = {entry.name for entry in font_manager.fontManager.ttflist}
    return [name for name in FONTS if name in names] or ["DejaVu Sans"]


def _style() -> dict[str, object]:
    return {
        "svg.fonttype": "none",
        # The families themselves, not "sans-serif": matplotlib falls back from one
        # family to the next for a missing character only along an explicit list.
        "font.family": [*installed_fonts(), "sans-serif"],
        "font.size": 9,
        "axes.edgecolor": MUTED,
        "axes.labelcolor": INK,
        "xtick.color": MUTED,
        "ytick.color": MUTED,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }


def _svg(fig: Figure, name: str, title: str) -> str:
    """The figure as inline SVG markup, labelled for screen readers."""
    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": name}):
        fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    markup = out.getvalue()
    markup = markup[markup.index("<svg") :]
    # Scales with the page instead of keeping matplotlib's size in points.
    markup = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", markup, count=1)
    label = title.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return markup.replace("<svg", f'<svg role="img" aria-label="{label}" class="chart"', 1)


def _week_label(monday: date) -> str:
    return f"{monday.month}/{monday.day}"


def volume_by_cause(
    weeks: Sequence[date],
    counts: Mapping[str, Sequence[int]],
    names: Mapping[str, str],
    *,
    title: str,
    empty: str,
) -> str:
    """Cases opened per week, stacked by root cause (largest cause at the bottom)."""
    with _lock, matplotlib.rc_context(_style()):
        fig = Figure(figsize=(WIDTH_IN, 3.0))
        ax = fig.subplots()
        x = list(range(len(weeks)))
        bottoms = [0] * len(weeks)
        causes = sorted(counts, key=lambda cause: (-sum(counts[cause]), cause))
        for index, cause in enumerate(causes):
            values = list(counts[cause])
            ax.bar(
                x,
                values,
                bottom=bottoms,
                color=PALETTE[index % len(PALETTE)],
                label=names.get(cause, cause),
                width=0.7,
            )
            bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        ax.set_xticks(x, [_week_label(week) for week in weeks])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", color=GRID)
        ax.set_axisbelow(True)
        if causes:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        else:
            ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", color=MUTED)
        ax.set_title(title, loc="left", color=INK)
        return _svg(fig, "volume", title)


def deadlines_by_team(
    teams: Sequence[str],
    first_response: Sequence[float | None],
    resolution: Sequence[float | None],
    *,
    labels: tuple[str, str],
    title: str,
    empty: str,
) -> str:
    """Share of deadlines met per team (0-100%), first response and resolution side by
    side; a team with no deadline known yet has no bar."""
    with _lock, matplotlib.rc_context(_style()):
        height = max(1.6, 0.45 * len(teams) + 0.9)
        fig = Figure(figsize=(WIDTH_IN, height))
        ax = fig.subplots()
        y = list(range(len(teams)))
        for offset, shares, label, colour in (
            (-0.2, first_response, labels[0], PALETTE[0]),
            (0.2, resolution, labels[1], PALETTE[1]),
        ):
            ax.barh(
                [at + offset for at in y],
                [100 * share if share is not None else 0 for share in shares],
                height=0.38,
                label=label,
                color=colour,
            )
        ax.set_yticks(y, list(teams))
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.xaxis.set_major_formatter("{x:.0f}%")
        ax.grid(axis="x", color=GRID)
        ax.set_axisbelow(True)
        if teams:
            ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.02), ncols=2, frameon=False)
        else:
            ax.set_yticks([])
            ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", color=MUTED)
        ax.set_title(title, loc="left", color=INK, pad=24)
        return _svg(fig, "deadlines", title)


def satisfaction_over_time(
    weeks: Sequence[date],
    csat_mean: Sequence[float | None],
    index: Sequence[float | None],
    *,
    labels: tuple[str, str],
    title: str,
) -> str:
    """CSAT mean (1-5, left axis) and the satisfaction index (right axis) per week; a
    week without answers is a gap in the line."""
    with _lock, matplotlib.rc_context(_style()):
        fig = Figure(figsize=(WIDTH_IN, 2.8))
        ax = fig.subplots()
        x = list(range(len(weeks)))
        csat = [value if value is not None else float("nan") for value in csat_mean]
        ax.plot(x, csat, marker="o", color=PALETTE[0], label=labels[0])
        ax.set_ylim(1, 5)
        ax.set_xlim(-0.5, len(weeks) - 0.5)  # every week, answered or not
        ax.set_ylabel(labels[0], color=PALETTE[0])
        ax.set_xticks(x, [_week_label(week) for week in weeks])
        ax.grid(axis="y", color=GRID)
        right = ax.twinx()
        right.spines["right"].set_visible(True)
        right.spines["top"].set_visible(False)
        values = [value if value is not None else float("nan") for value in index]
        right.plot(x, values, marker="s", linestyle="--", color=PALETTE[5], label=labels[1])
        known = [value for value in index if value is not None]
        right.set_ylim(min([60.0, *known]) - 5, max([120.0, *known]) + 5)
        right.axhline(100, color=PALETTE[5], linewidth=0.6, alpha=0.4)
        right.set_ylabel(labels[1], color=PALETTE[5])
        ax.set_title(title, loc="left", color=INK)
        return _svg(fig, "satisfaction", title)
