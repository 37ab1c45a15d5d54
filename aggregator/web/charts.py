"""Charts as inline SVG, drawn on the server: no JavaScript, no external assets.

Each chart is ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` (referenced by
``aria-labelledby``), and the page puts the same figures in a data table right after it. Values
are bars (categories) or points on a line (months); the 95% interval is a whisker. A suppressed
figure (".") gets no bar and a dot instead. A table of two dimensions is drawn as small
multiples: one small chart per value of one dimension, all on the same scale. Colours keep a
contrast of at least 3:1 against the white background (WCAG 2.1, non-text contrast).

Each chart is drawn twice: ``WIDTH`` units wide for a laptop and ``NARROW`` units wide for a
phone (labels above the bars, one small multiple per row, fewer month labels), and the
stylesheet shows the one that fits the screen. An SVG scales as a picture, so one drawing
cannot serve both: at 390 px the wide one's 12-unit text would be 6 px.

Pure functions: points in, SVG text out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

from aggregator.web.i18n import number

INK = "#1a1a1a"  # text and whiskers: 17:1 on white
BAR = "#1f5f8b"  # bars and points: 6.9:1 on white
GRID = "#8c8c8c"  # 3.4:1 on white
WIDTH = 720
NARROW = 360  # drawn for a phone's 358 px (390 px minus the page's margins): text stays 12 px
MAX_LINE_LABELS = 16  # a longer series labels every n-th point
_YEAR = re.compile(r"\s(\d{4})$")


@dataclass(frozen=True)
class Point:
    label: str
    value: float | None  # None: suppressed
    lower: float | None
    upper: float | None


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 up to at least ``top``."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = max(next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw), 1.0)  # counts
    ticks = [0.0]
    while ticks[-1] < top:
        ticks.append(ticks[-1] + step)
    return ticks


def _head(chart_id: str, title: str, desc: str, height: float, width: int = WIDTH) -> list[str]:
    size = "chart-wide" if width == WIDTH else "chart-narrow"
    return [
        f'<svg id="{chart_id}" class="chart {size}" role="img" aria-labelledby="{chart_id}-t '
        f'{chart_id}-d" viewBox="0 0 {width} {height:.0f}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
    ]


def _top(points: Sequence[Point]) -> float:
    return max(((p.upper if p.upper is not None else p.value) or 0.0) for p in points) or 1.0


def _short(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _bar_rows(
    points: Sequence[Point],
    ticks: Sequence[float],
    x: float,
    y: float,
    width: float,
    lang: str,
    *,
    label_width: float,
    row: float,
) -> tuple[list[str], float]:
    """Horizontal bars with whiskers in a box at (x, y); the SVG elements and the height used.
    With ``label_width`` 0 each label stands above its bar (a phone: the whole width for both)."""
    above = label_width == 0
    left = x + (6 if above else label_width)  # above: room for half the "0" under the axis
    last = len(number(ticks[-1], lang)) * 3.5 + 4  # half the last tick's label
    scale = (width - label_width - max(last, 12 if above else 34)) / ticks[-1]
    axis = y + 14
    first = axis + 8
    bottom = first + row * len(points)
    out = []
    for tick in ticks:
        tx = left + tick * scale
        out.append(
            f'<line x1="{tx:.1f}" y1="{first - 4:.1f}" x2="{tx:.1f}" y2="{bottom:.1f}" '
            f'stroke="{GRID}" stroke-width="0.5"/>'
            f'<text x="{tx:.1f}" y="{axis:.1f}" text-anchor="middle">'
            f"{escape(number(tick, lang))}</text>"
        )
    chars = max(int((width if above else label_width) / 7), 6)
    for i, p in enumerate(points):
        top = first + i * row
        if above:
            out.append(
                f'<text x="{x:.1f}" y="{top + 13:.1f}">{escape(_short(p.label, chars))}</text>'
            )
            top += 14
        mid = top + (row - 14 if above else row) / 2
        if not above:
            out.append(
                f'<text x="{left - 8:.1f}" y="{mid + 4:.1f}" text-anchor="end">'
                f"{escape(_short(p.label, chars))}</text>"
            )
        if p.value is None:
            out.append(f'<text x="{left + 4:.1f}" y="{mid + 4:.1f}">.</text>')
            continue
        bar = (row - 14) * 0.7 if above else row * 0.6
        out.append(
            f'<rect x="{left:.1f}" y="{mid - bar / 2:.1f}" width="{max(p.value * scale, 0):.1f}" '
            f'height="{bar:.1f}" fill="{BAR}"/>'
        )
        if p.lower is not None and p.upper is not None:
            x1, x2 = left + p.lower * scale, left + p.upper * scale
            out.append(
                f'<path d="M{x1:.1f},{mid:.1f}H{x2:.1f}M{x1:.1f},{mid - 5:.1f}V{mid + 5:.1f}'
                f'M{x2:.1f},{mid - 5:.1f}V{mid + 5:.1f}" stroke="{INK}" stroke-width="1.5" '
                'fill="none"/>'
            )
    return out, bottom - y + 4


def _series(
    points: Sequence[Point],
    ticks: Sequence[float],
    x: float,
    y: float,
    width: float,
    height: float,
    lang: str,
    *,
    axis_width: float,
    short: int,
) -> list[str]:
    """Points joined by a line, each with its whisker, in a box at (x, y). Month labels are cut
    to ``short`` letters and written as often as they fit; the year is written under the first
    point of each year. The axis is at least ``axis_width`` wide, wider for long tick labels."""
    axis_width = max(axis_width, max(len(number(t, lang)) for t in ticks) * 7 + 12)
    left = x + axis_width
    base = y + height - 34
    scale = (base - y - 8) / ticks[-1]
    step = (width - axis_width - 8) / max(len(points), 1)
    every = max(math.ceil(len(points) / MAX_LINE_LABELS), math.ceil((short * 7 + 6) / step))
    out = []
    for tick in ticks:
        ty = base - tick * scale
        out.append(
            f'<line x1="{left:.1f}" y1="{ty:.1f}" x2="{x + width - 8:.1f}" y2="{ty:.1f}" '
            f'stroke="{GRID}" stroke-width="0.5"/><text x="{left - 6:.1f}" y="{ty + 4:.1f}" '
            f'text-anchor="end">{escape(number(tick, lang))}</text>'
        )
    path: list[str] = []
    year = ""
    for i, p in enumerate(points):
        px = left + step * (i + 0.5)
        found = _YEAR.search(p.label)
        if i % every == 0:
            out.append(
                f'<text x="{px:.1f}" y="{base + 16:.1f}" text-anchor="middle">'
                f"{escape(p.label[:short])}</text>"
            )
        if found and found.group(1) != year:
            year = found.group(1)
            out.append(f'<text x="{px:.1f}" y="{base + 30:.1f}" text-anchor="middle">{year}</text>')
        if p.value is None:
            out.append(f'<text x="{px:.1f}" y="{base - 6:.1f}" text-anchor="middle">.</text>')
            path.append("")
            continue
        py = base - p.value * scale
        path.append(f"{px:.1f},{py:.1f}")
        if p.lower is not None and p.upper is not None:
            y1, y2 = base - p.lower * scale, base - p.upper * scale
            out.append(
                f'<path d="M{px:.1f},{y1:.1f}V{y2:.1f}M{px - 4:.1f},{y1:.1f}H{px + 4:.1f}'
                f'M{px - 4:.1f},{y2:.1f}H{px + 4:.1f}" stroke="{INK}" stroke-width="1.5" '
                'fill="none"/>'
            )
    segments = " ".join(
        ("M" if i == 0 or not path[i - 1] else "L") + xy for i, xy in enumerate(path) if xy
    )
    if segments:
        out.append(f'<path d="{segments}" stroke="{BAR}" stroke-width="2" fill="none"/>')
    for xy in path:
        if xy:
            cx, cy = xy.split(",")
            out.append(f'<circle cx="{cx}" cy="{cy}" r="3.5" fill="{BAR}"/>')
    return out


def bars(
    points: Sequence[Point], chart_id: str, title: str, desc: str, lang: str, width: int = WIDTH
) -> str:
    """Horizontal bars with 95% whiskers, one row per category."""
    ticks = nice_ticks(_top(points))
    if width == WIDTH:
        rows, height = _bar_rows(points, ticks, 0, 10, width - 50, lang, label_width=210, row=26)
    else:
        rows, height = _bar_rows(points, ticks, 0, 10, width - 2, lang, label_width=0, row=36)
    out = _head(chart_id, title, desc, height + 16, width)
    return "".join([*out, f'<g font-size="12" fill="{INK}">', *rows, "</g></svg>"])


def line(
    points: Sequence[Point], chart_id: str, title: str, desc: str, lang: str, width: int = WIDTH
) -> str:
    """A time series: points joined by a line, each with its 95% whisker."""
    ticks = nice_ticks(_top(points))
    axis = 80 if width == WIDTH else 30
    rows = _series(points, ticks, 0, 10, width, 300, lang, axis_width=axis, short=3)
    out = _head(chart_id, title, desc, 310, width)
    return "".join([*out, f'<g font-size="12" fill="{INK}">', *rows, "</g></svg>"])


def panels(
    groups: Sequence[tuple[str, Sequence[Point]]],
    kind: Literal["line", "bars"],
    chart_id: str,
    title: str,
    desc: str,
    lang: str,
    total_width: int = WIDTH,
) -> str:
    """Small multiples: one small chart per group, in a grid (one column on a phone), all on the
    same scale."""
    ticks = nice_ticks(max(_top(points) for _, points in groups), 3 if kind == "line" else 2)
    wide = total_width == WIDTH
    cols, gap = ((3, 16) if kind == "line" else (2, 24)) if wide else (1, 16)
    width = (total_width - gap * (cols - 1)) / cols
    drawn: list[tuple[str, list[str], float]] = []
    for label, points in groups:
        if kind == "line":
            short = 3 if len(points) <= 8 or not wide else 1  # "jan" or "j"
            body = _series(
                points, ticks, 0, 0, width, 170, lang, axis_width=62 if wide else 30, short=short
            )
            drawn.append((label, body, 170))
        else:
            body, height = _bar_rows(
                points, ticks, 0, 0, width - (0 if wide else 2), lang,
                label_width=120 if wide else 0, row=20 if wide else 34,
            )  # fmt: skip
            drawn.append((label, body, height))
    out = []
    y = 0.0
    for start in range(0, len(drawn), cols):
        line_of = drawn[start : start + cols]
        for i, (label, body, _) in enumerate(line_of):
            x = i * (width + gap)
            out.append(
                f'<g transform="translate({x:.1f},{y:.1f})"><text x="0" y="14" '
                f'font-weight="700">{escape(_short(label, int(width / 7)))}</text>'
                f'<g transform="translate(0,20)">{"".join(body)}</g></g>'
            )
        y += 20 + max(height for _, _, height in line_of) + gap
    head = _head(chart_id, title, desc, y, total_width)
    size = 11 if wide else 12
    return "".join([*head, f'<g font-size="{size}" fill="{INK}">', *out, "</g></svg>"])
