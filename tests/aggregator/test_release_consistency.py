"""The demo release page as a reader sees it: one set of numbers. Composed in-process from a real
round (real aggregator and node apps, noise on), published, and read back from the page."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import select

from node.storage.db import make_engine, make_sessionmaker
from node.storage.models import LedgerEntry
from protocol.privacy_loss import zcdp_to_epsilon
from publieksdata.demo import demo_recipe
from tests.aggregator.test_pooled import audience
from tests.fedkit import federation


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Page(HTMLParser):
    """The release page's tables (headers, cells, total), summary and method box."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, list[str]]] = {}
        self.summary = ""
        self.steps = ""
        self._table: str | None = None
        self._where: str | None = None
        self._text: list[str] | None = None
        self._section = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("data-table"):
            self._table = a["data-table"]
            self.tables[self._table or ""] = {"headers": [], "cells": [], "total": []}
        elif tag == "tfoot":
            self._where = "total"
        elif tag == "th" and a.get("scope") == "col" and self._table:
            self._text, self._where = [], "headers"
        elif tag == "td" and "value" in (a.get("class") or "") and self._table:
            self._text = []
            if self._where != "total":
                self._where = "cells"
        elif tag == "p" and "summary" in (a.get("class") or ""):
            self._section, self._text = "summary", []
        elif tag == "section" and a.get("id") == "method":
            self._section = "method"

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)
        if self._section == "method":
            self.steps += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td") and self._text is not None and self._table and self._where:
            self.tables[self._table][self._where].append("".join(self._text).strip())
            self._text = None
        elif tag == "p" and self._section == "summary" and self._text is not None:
            self.summary, self._section, self._text = "".join(self._text), "", None
        elif tag == "table":
            self._table, self._where = None, None
        elif tag == "section" and self._section == "method":
            self._section = "done"


def whole(text: str) -> int | None:
    return None if text == "." else int(text.replace(",", ""))


def about(value: int) -> int:
    """The headline's rounding: two significant figures."""
    digits = max(0, len(str(value)) - 2)
    return int(round(value, -digits))


@pytest.mark.anyio
async def test_the_demo_release_page_shows_one_set_of_numbers(tmp_path: Path) -> None:
    rows = [audience(i, 400, seed=160 + i) for i in range(3)]
    async with federation(tmp_path, rows) as fed:
        created = await fed.ask(
            report={"name": "standard", "year": 2025, "rho": 0.25, "mode": "independent"},
            deadline_seconds=30,
        )
        result = await fed.wait(created.round_id)
        assert result.measures, result
        response = await fed.client.post(
            "/v1/releases", json={"recipe": demo_recipe(result)}, headers=fed.as_(fed.admin)
        )
        assert response.status_code == 201, response.text
        slug = response.json()["path"].rsplit("/", 1)[1]
        page = Page()
        html = (await fed.client.get(f"/en/releases/{slug}")).text
        page.feed(html)
        engine = make_engine(fed.nodes[0].database_url)
        try:
            with make_sessionmaker(engine)() as session:
                entry = session.scalars(select(LedgerEntry)).one()
                logged = (entry.rho, entry.epsilon, entry.delta)
        finally:
            engine.dispose()

    tables = page.tables
    assert set(tables) == {"visits-month", "visits-artform", "visits-age", "revenue-artform"}
    # Every shared total is equal across the tables of the same measure.
    visits = {t: whole(tables[t]["total"][0]) for t in ("visits-month", "visits-artform",
                                                        "visits-age")}  # fmt: skip
    assert len(set(visits.values())) == 1, visits
    total = visits["visits-month"]
    assert total is not None and total > 0
    # A table without dots adds up to its total; with dots, the method box does not claim so.
    for name, table in tables.items():
        shown = [whole(v) for v in table["cells"]]
        assert all(v is None or v >= 0 for v in shown)
        if None not in shown:
            assert sum(v for v in shown if v is not None) == whole(table["total"][0]), name
    assert "sum of the published cells" not in page.steps
    if any("." in t["cells"] for t in tables.values()):
        assert "." in page.steps and "include" in page.steps
    # The headline is the same total, rounded as a headline.
    match = re.search(r"about ([\d,]+) visits", page.summary)
    assert match, page.summary
    assert int(match.group(1).replace(",", "")) == about(total)
    # Every column header with a figure names its unit; a euro column is never a count.
    for name, table in tables.items():
        unit = "euros" if name.startswith("revenue") else "visits"
        figures = table["headers"][-2:]
        assert all(unit in h.lower() for h in figures), (name, table["headers"])
        assert not any(h in ("Value", "Aantal") for h in table["headers"])
    # ε on the release page is the node's audit-log ε for the same ρ and δ.
    rho, epsilon, delta = logged
    assert epsilon == zcdp_to_epsilon(rho, delta)
    assert f"ρ = {rho:.3g}" in html
    assert f"(ε = {epsilon:.3g}, δ = {delta:.0e}".replace("e-0", "e-") in html
