"""The one-paragraph summary at the top of a release: the headline total in words, with its
margin ("In 2025 telden de 12 deelnemende instellingen samen ongeveer 4,1 miljoen bezoeken")."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from aggregator.releases.document import Table, Text


def _about(value: float, lang: str) -> str:
    """ "about 4.1 million" / "ongeveer 4,1 miljoen": two significant figures in words."""
    for size, nl, en in ((1e9, "miljard", "billion"), (1e6, "miljoen", "million")):
        if value >= size:
            short = f"{value / size:.1f}"
            return f"{short.replace('.', ',')} {nl}" if lang == "nl" else f"{short} {en}"
    digits = max(0, len(str(int(value))) - 2)
    rounded = int(round(value, -digits)) if value else 0
    text = f"{rounded:,}"
    return text.replace(",", ".") if lang == "nl" else text


def summary(tables: Sequence[Table], institutions: int, start: date, end: date) -> Text:
    when_nl = (
        f"In {start.year}"
        if (start.month, start.day, end.month, end.day) == (1, 1, 12, 31) and start.year == end.year
        else f"Van {start:%d-%m-%Y} tot en met {end:%d-%m-%Y}"
    )
    when_en = when_nl.replace("Van ", "From ").replace(" tot en met ", " to ")
    headline = next(
        (t for t in tables if t.measure == "visits" and t.total and t.total.value), None
    ) or next((t for t in tables if t.total and t.total.value), None)
    who_nl = f"de {institutions} deelnemende instellingen"
    who_en = f"the {institutions} participating institutions"
    if headline is None or headline.total is None or headline.total.value is None:
        return Text(
            nl=f"{when_nl} leverden {who_nl} cijfers voor deze publicatie.",
            en=f"{when_en}, {who_en} contributed figures to this release.",
        )
    total = headline.total
    assert total.value is not None and total.lower is not None and total.upper is not None
    relative = (total.upper - total.lower) / 2 / total.value * 100
    pct = f"{relative:.1f}" if relative < 10 else f"{relative:.0f}"
    unit = headline.unit
    return Text(
        nl=(
            f"{when_nl} telden {who_nl} samen ongeveer {_about(total.value, 'nl')} {unit.nl} "
            f"(± {pct.replace('.', ',')}%). De marges zijn 95%-intervallen: ze komen van de "
            "ruis die de privacy van elke bezoeker beschermt."
        ),
        en=(
            f"{when_en}, {who_en} together counted about {_about(total.value, 'en')} {unit.en} "
            f"(± {pct}%). The margins are 95% intervals: they come from the noise that "
            "protects every visitor's privacy."
        ),
    )
