"""What a release page shows: its tables with figures and intervals, a chart for each, the
privacy line and the method box, in Dutch or English. Pure: a sealed release in, the values the
release template renders out."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

from markupsafe import Markup

from aggregator.releases.chain import SealedRelease
from aggregator.releases.document import Cell, Table
from aggregator.web import charts
from aggregator.web.i18n import day, number, small, t
from protocol.figures import method_note, not_deduplicated_note
from protocol.results import Z95


def _interval(lower: float | None, upper: float | None, lang: str) -> str:
    if lower is None or upper is None:
        return "."
    return f"{number(lower, lang)} – {number(upper, lang)}"


def _table_view(table: Table, lang: str, slug: str, limit: float | None) -> dict[str, Any]:
    rows = [
        {
            "labels": cell.labels.get(lang).split(" · "),
            "codes": cell.codes,
            "value": number(cell.value, lang),
            "interval": _interval(cell.lower, cell.upper, lang),
            "suppressed": cell.suppressed,
        }
        for cell in table.cells
    ]
    total = None
    if table.total is not None:
        total = {
            "value": number(table.total.value, lang),
            "interval": _interval(table.total.lower, table.total.upper, lang),
        }
    title = table.title.get(lang)
    chart, chart_note = table_chart(table, lang, title)
    if chart is not None:  # and the same chart drawn for a phone; the stylesheet picks one
        narrow, _ = table_chart(table, lang, title, charts.NARROW)
        chart = Markup(chart + (narrow or ""))  # noqa: S704 - our own SVG
    privacy = table.privacy
    mode = (
        t("secure", lang, t=privacy.threshold)
        if privacy.mode == "secure"
        else t("independent", lang)
    )
    return {
        "id": table.table_id,
        "title": title,
        # A persons table summed over institutions says so next to its figures, whatever its
        # (signed, possibly older) title says; the method box explains why.
        "not_deduplicated": not_deduplicated_note(lang) if table.deduplicated is False else None,
        "unit": table.unit.get(lang),
        # The figures' column is headed by their unit ("Bezoeken", "Euro"), never "Aantal".
        "unit_title": table.unit.get(lang)[:1].upper() + table.unit.get(lang)[1:],
        "dims": [d.get(lang) for d in table.dimension_titles],
        "rows": rows,
        "total": total,
        "chart": chart,
        "chart_note": chart_note,
        "has_dots": any(c.suppressed for c in table.cells),
        "limit": None if limit is None else f"{limit * 100:g}",
        "csv": f"/releases/{slug}/{table.table_id}.csv",
        "csv_nl": f"/releases/{slug}/{table.table_id}.nl.csv",
        "privacy": _privacy_line(table, lang, mode),
        "coverage": t(
            "coverage_text", lang, answered=table.coverage.answered,
            asked=table.coverage.institutions,
        ),
        "missing": ", ".join(table.coverage.missing),
        "bounds": t(
            "bounds_text", lang, visits=table.bounds.get("max_visits_per_person", "?"),
            cells=table.bounds.get("max_cells_per_person", "?"),
        ),
    }  # fmt: skip


def _privacy_line(table: Table, lang: str, mode: str) -> str:
    privacy = table.privacy
    delta = small(privacy.delta, lang) if privacy.delta else "0"
    parts = [f"ρ = {small(privacy.rho, lang)}"] if privacy.rho is not None else []
    parts += [
        f"(ε = {small(privacy.epsilon, lang)}, δ = {delta})",
        t(privacy.mechanism, lang),
        mode,
    ]
    return " · ".join(parts)


MAX_BARS = 30  # a longer list of categories: the chart shows the largest, the table all
MAX_PANELS = 12  # small multiples: at most this many small charts
MAX_LINE_POINTS = 60


def _points(cells: Sequence[Cell], lang: str, part: int | None = None) -> list[charts.Point]:
    return [
        charts.Point(
            c.labels.get(lang) if part is None else c.labels.get(lang).split(" · ")[part],
            c.value,
            c.lower,
            c.upper,
        )
        for c in cells
    ]


def table_chart(
    table: Table, lang: str, title: str, width: int = charts.WIDTH
) -> tuple[Markup | None, str]:
    """A chart of the table and a note under it. One dimension: a line over months, else bars
    (the largest ``MAX_BARS`` when there are more). Two dimensions: small multiples, one small
    chart per value of the dimension that is not the month (the cells as in the table). More
    cells than that: the totals along the first dimension (additive measures), or no chart."""
    chart_id = f"chart-{table.table_id}" + ("" if width == charts.WIDTH else "-narrow")
    if all(c.value is None for c in table.cells):
        return None, t("no_chart", lang)
    desc = t("chart_desc", lang, title=title)
    dims = [d.get(lang).lower() for d in table.dimension_titles]
    if len(table.group_by) == 1:
        points = _points(table.cells, lang)
        if table.group_by[0] == "month" and len(points) <= MAX_LINE_POINTS:
            return Markup(charts.line(points, chart_id, title, desc, lang, width)), ""  # noqa: S704
        note = ""
        if len(points) > MAX_BARS:
            shown = [p for p in points if p.value is not None]
            shown.sort(key=lambda p: -(p.value or 0.0))
            note = t("chart_largest", lang, n=min(MAX_BARS, len(shown)), total=len(points))
            points = shown[:MAX_BARS]
        return Markup(charts.bars(points, chart_id, title, desc, lang, width)), note  # noqa: S704
    if len(table.group_by) == 2:
        across = table.group_by.index("month") if "month" in table.group_by else 1
        panel = 1 - across
        groups: dict[str, list[Cell]] = {}
        for cell in table.cells:
            groups.setdefault(cell.codes[panel], []).append(cell)
        longest = max(len(cells) for cells in groups.values())
        kind: Literal["line", "bars"] = "line" if table.group_by[across] == "month" else "bars"
        if len(groups) <= MAX_PANELS and longest <= (24 if kind == "line" else MAX_BARS):
            drawn = [
                (cells[0].labels.get(lang).split(" · ")[panel], _points(cells, lang, across))
                for cells in groups.values()
            ]
            desc = t("chart_desc_panels", lang, title=title, dim=dims[panel])
            svg = charts.panels(drawn, kind, chart_id, title, desc, lang, width)
            return Markup(svg), t("chart_panels", lang, dim=dims[panel])  # noqa: S704
    if table.measure not in ("visits", "revenue"):
        return None, t("no_chart_table", lang)
    return _margin_chart(table, lang, title, chart_id, dims[0], width)


def _margin_chart(
    table: Table, lang: str, title: str, chart_id: str, dim: str, width: int
) -> tuple[Markup | None, str]:
    """The totals along the table's first dimension, from the published cells; a total with a
    suppressed cell in it is unknown, so it is drawn as a dot."""
    sums: dict[str, tuple[str, float | None, float]] = {}
    for cell in table.cells:
        code = cell.codes[0]
        label, value, variance = sums.get(code, (cell.labels.get(lang).split(" · ")[0], 0.0, 0.0))
        value = None if value is None or cell.value is None else value + cell.value
        sums[code] = (label, value, variance + (cell.standard_error or 0.0) ** 2)
    points = [
        charts.Point(label, v, None, None)
        if v is None
        else charts.Point(label, v, max(v - Z95 * math.sqrt(var), 0.0), v + Z95 * math.sqrt(var))
        for label, v, var in sums.values()
    ]
    if all(p.value is None for p in points) or len(points) > MAX_LINE_POINTS:
        return None, t("no_chart_table", lang)
    desc = t("chart_desc_margin", lang, title=title, dim=dim)
    draw = charts.line if table.group_by[0] == "month" else charts.bars
    if draw is charts.bars and len(points) > MAX_BARS:
        return None, t("no_chart_table", lang)
    svg = draw(points, chart_id, title, desc, lang, width)
    return Markup(svg), t("chart_margin", lang, dim=dim)  # noqa: S704 - our own SVG


def release_view(
    release: SealedRelease, lang: str, all_releases: list[SealedRelease]
) -> dict[str, Any]:
    doc = release.document
    methodology = doc.methodology
    pp = methodology.post_processing
    limit = pp.suppress_relative_halfwidth
    newer = [
        r for r in all_releases
        if r.document.release_id == doc.release_id and r.document.version > doc.version
    ]  # fmt: skip
    corrected = next((r for r in all_releases if r.hash == doc.corrects), None)
    if methodology.rho_total is not None:
        cost = t("privacy_cost_text", lang, rho=small(methodology.rho_total, lang),
                 eps=small(methodology.epsilon_total, lang),
                 delta=small(methodology.delta_total, lang))  # fmt: skip
    else:
        cost = t("privacy_cost_eps", lang, eps=small(methodology.epsilon_total, lang))
    steps = []
    if pp.non_negative:
        steps.append(t("pp_non_negative", lang))
    if pp.rounding:
        steps.append(t("pp_rounding", lang))
    if pp.consistent_totals:
        steps.append(t("pp_totals", lang))
    if limit is not None:
        steps.append(t("pp_suppress", lang, limit=f"{limit * 100:g}"))
    return {
        "doc": doc,
        "slug": release.slug,
        "hash": release.hash,
        "key_id": json.loads(release.data)["key_id"],
        "title": doc.title.get(lang),
        "description": doc.description.get(lang),
        "summary": doc.summary.get(lang),
        "published": day(doc.published_at, lang),
        "period": f"{day(methodology.period_start, lang)} – {day(methodology.period_end, lang)}",
        "tables": [_table_view(table, lang, release.slug, limit) for table in doc.tables],
        "cost": cost,
        "mechanisms": ", ".join(t(m, lang) for m in methodology.mechanisms),
        "institutions": methodology.institutions,
        "asked": methodology.institutions_asked,
        "steps": steps or [t("pp_none", lang)],
        "persons_note": (
            method_note(lang) if any(table.deduplicated is False for table in doc.tables) else None
        ),
        "confidence": f"{methodology.confidence * 100:g}",
        "newest": newer[-1].slug if newer else None,
        "corrected": corrected.slug if corrected else None,
        "correction_note": doc.correction_note.get(lang) if doc.correction_note else None,
    }
