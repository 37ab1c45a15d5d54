"""Charts as inline SVG, drawn on the server: no JavaScript, no external assets.

Each chart is ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` (referenced by
``aria-labelledby``), and the page puts the same figures in a data table right after it. Values
are bars (categories) or points on a line (months); the 95% interval is a whisker. A suppressed
figure (".") gets no bar and its label says so. Colours keep a contrast of at least 3:1 against
the white background (WCAG 2.1, non-text contrast).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from aggregator.web.i18n import number

INK = "#1a1a1a"  # text and whiskers: 17:1 on white
BAR = "#1f5f8b"  # bars and points: 6.9:1 on white
BAND = "#c9dced"  # the interval band behind a line (decorative; whiskers carry the interval)
GRID = "#8c8c8c"  # 3.4:1 on white
WIDTH = 720


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


def _head(chart_id: str, title: str, desc: str, height: int) -> list[str]:
    return [
        f'<svg id="{chart_id}" class="chart" role="img" aria-labelledby="{chart_id}-t '
        f'{chart_id}-d" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
    ]


def _top(points: Sequence[Point]) -> float:
    return max((p.upper if p.upper is not None else p.value or 0.0) for p in points) or 1.0


def bars(points: Sequence[Point], chart_id: str, title: str, desc: str, lang: str) -> str:
    """Horizontal bars with 95% whiskers, one row per category."""
    left, right, row, top_pad = 210, 70, 26, 30
    plot = WIDTH - left - right
    height = top_pad + row * len(points) + 10
    ticks = nice_ticks(_top(points))
    scale = plot / ticks[-1]
    out = _head(chart_id, title, desc, height)
    out.append(f'<g font-size="12" fill="{INK}">')
    for tick in ticks:
        x = left + tick * scale
        out.append(
            f'<line x1="{x:.1f}" y1="{top_pad - 6}" x2="{x:.1f}" y2="{height - 10}" '
            f'stroke="{GRID}" stroke-width="0.5"/>'
            f'<text x="{x:.1f}" y="{top_pad - 10}" text-anchor="middle">'
            f"{escape(number(tick, lang))}</text>"
        )
    for i, p in enumerate(points):
        y = top_pad + i * row
        label = p.label if len(p.label) <= 30 else p.label[:29] + "…"
        out.append(
            f'<text x="{left - 8}" y="{y + row / 2 + 4:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        if p.value is None:
            out.append(f'<text x="{left + 4}" y="{y + row / 2 + 4:.1f}">.</text>')
            continue
        width = max(p.value * scale, 0.0)
        out.append(
            f'<rect x="{left}" y="{y + 5}" width="{width:.1f}" height="{row - 10}" fill="{BAR}"/>'
        )
        if p.lower is not None and p.upper is not None:
            x1, x2, mid = left + p.lower * scale, left + p.upper * scale, y + row / 2
            out.append(
                f'<path d="M{x1:.1f},{mid:.1f}H{x2:.1f}M{x1:.1f},{mid - 5:.1f}V{mid + 5:.1f}'
                f'M{x2:.1f},{mid - 5:.1f}V{mid + 5:.1f}" stroke="{INK}" stroke-width="1.5" '
                'fill="none"/>'
            )
    out.append("</g></svg>")
    return "".join(out)


def line(points: Sequence[Point], chart_id: str, title: str, desc: str, lang: str) -> str:
    """A time series: points joined by a line, each with its 95% whisker."""
    left, right, top_pad, bottom = 80, 20, 20, 50
    height = 300
    plot_w, plot_h = WIDTH - left - right, height - top_pad - bottom
    ticks = nice_ticks(_top(points))
    scale = plot_h / ticks[-1]
    step = plot_w / max(len(points), 1)
    out = _head(chart_id, title, desc, height)
    out.append(f'<g font-size="12" fill="{INK}">')
    base = top_pad + plot_h
    for tick in ticks:
        y = base - tick * scale
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" stroke="{GRID}" '
            f'stroke-width="0.5"/><text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(number(tick, lang))}</text>"
        )
    path: list[str] = []
    for i, p in enumerate(points):
        x = left + step * (i + 0.5)
        out.append(
            f'<text x="{x:.1f}" y="{base + 18}" text-anchor="middle">{escape(p.label[:3])}</text>'
        )
        if p.value is None:
            out.append(f'<text x="{x:.1f}" y="{base - 6}" text-anchor="middle">.</text>')
            path.append("")
            continue
        y = base - p.value * scale
        path.append(f"{x:.1f},{y:.1f}")
        if p.lower is not None and p.upper is not None:
            y1, y2 = base - p.lower * scale, base - p.upper * scale
            out.append(
                f'<path d="M{x:.1f},{y1:.1f}V{y2:.1f}M{x - 5:.1f},{y1:.1f}H{x + 5:.1f}'
                f'M{x - 5:.1f},{y2:.1f}H{x + 5:.1f}" stroke="{INK}" stroke-width="1.5" '
                'fill="none"/>'
            )
    segments = " ".join(
        ("M" if i == 0 or not path[i - 1] else "L") + xy for i, xy in enumerate(path) if xy
    )
    if segments:
        out.append(f'<path d="{segments}" stroke="{BAR}" stroke-width="2.5" fill="none"/>')
    for xy in path:
        if xy:
            cx, cy = xy.split(",")
            out.append(f'<circle cx="{cx}" cy="{cy}" r="4.5" fill="{BAR}"/>')
    out.append("</g></svg>")
    return "".join(out)
