"""No sector figure that sums per-institution persons is called reach or unique persons.

Pseudonyms are keyed per node, so a sector ``persons`` figure is the sum of each institution's
own distinct visitors: someone who visits three institutions counts three times. The test
publishes the built-in annual release and asks ``reach_age`` against a real in-process
federation, then reads what the system actually produces (the signed JSON, every CSV, the
release pages in Dutch and English with their charts, the DCAT catalogue, the table that
``publieksdata ask`` prints and the Python client's result). Which figures to check comes from
the output itself: every figure whose measure is ``persons`` and whose aggregation is a sum over
institutions. Their labels must not claim deduplication (reach, bereik, unique, uniek,
distinct, ontdubbeld, deduplicated), except to say "niet ontdubbeld" / "not deduplicated".
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

import publieksdata.ask as ask_module
import publieksdata.releases as releases_module
from aggregator.client import Result as ClientResult
from aggregator.releases.chain import parse
from aggregator.releases.compose import default_title, dimension_title
from aggregator.releases.document import Table
from protocol.figures import Aggregation
from protocol.query import Measure
from protocol.reports import REPORTS
from publieksdata.cli import app
from tests.aggregator.test_client import bridged
from tests.aggregator.test_pooled import audience
from tests.aggregator.test_public_site import document
from tests.fedkit import federation

SUMMED = Aggregation.SUM_OVER_INSTITUTIONS.value
_HONEST = re.compile(r"niet ontdubbeld|not deduplicated", re.I)
_CLAIMS = re.compile(r"reach|bereik|unique|uniek|distinct|ontdubbel|deduplicat", re.I)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def claims_deduplication(text: str) -> str | None:
    """The word in ``text`` that claims people were counted once across the sector, if any."""
    found = _CLAIMS.search(_HONEST.sub(" ", text))
    return found.group(0) if found else None


def check(where: str, texts: Iterable[str]) -> list[str]:
    return [
        f"{where}: {word!r} in {text!r}"
        for text in texts
        if (word := claims_deduplication(text)) is not None
    ]


def summed_persons(table: dict[str, Any]) -> bool:
    """A figure of persons summed over the institutions (the field's absence means summed: no
    other aggregation has ever existed)."""
    return table["measure"] == "persons" and table.get("aggregation", SUMMED) == SUMMED


def test_the_check_itself_tells_honest_from_misleading_labels() -> None:
    assert claims_deduplication("Bereik (unieke personen) per leeftijdsgroep") == "Bereik"
    assert claims_deduplication("Reach (distinct persons) by age band") == "Reach"
    assert claims_deduplication("unique visitors") == "unique"
    assert claims_deduplication("ontdubbelde bezoekers") == "ontdubbel"
    assert claims_deduplication("visitors per institution, summed (not deduplicated)") is None
    assert claims_deduplication("bezoekers per instelling, opgeteld (niet ontdubbeld)") is None


def test_report_titles_and_default_table_titles_of_persons_are_honest() -> None:
    problems: list[str] = []
    for template in REPORTS.values():
        if Measure.PERSONS in template.measures:
            problems += check(f"report {template.name}", [template.title_nl, template.title_en])
            title = default_title(Measure.PERSONS, [dimension_title(d) for d in template.group_by])
            problems += check(f"default title for {template.name}", [title.nl, title.en])
    assert not problems, "\n".join(problems)


def test_a_release_made_before_the_metadata_existed_reads_as_summed_and_not_deduplicated() -> None:
    old = document(1, None, 1, None, more=True).model_dump(mode="json")
    for table in old["tables"]:
        del table["aggregation"], table["deduplicated"]
    tables = {t.table_id: t for t in (Table.model_validate(t) for t in old["tables"])}
    assert tables["reach-grid"].aggregation is Aggregation.SUM_OVER_INSTITUTIONS
    assert tables["reach-grid"].deduplicated is False
    assert tables["visits-month"].deduplicated is None
    claim = {**old["tables"][-1], "deduplicated": True}
    with pytest.raises(ValueError, match="deduplicated = false"):
        Table.model_validate(claim)


# -- what the system produces ------------------------------------------------------------------


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def page_labels(page: str, table_id: str) -> list[str]:
    """Everything on a release page that labels one table: its whole section (heading, chart
    title and description, caption, column headers, note) and every link to it or its CSV."""
    start = page.index(f'<section id="table-{table_id}"')
    section = page[start : page.index("</section>", start)]
    links = re.findall(
        rf'<a href="[^"]*(?:#table-{re.escape(table_id)}|/{re.escape(table_id)}\.csv)">(.*?)</a>',
        page,
        re.S,
    )
    return [_text(section), *(_text(link) for link in links)]


def cli_labels(output: str) -> str:
    """The result tables `publieksdata ask` printed, up to the coverage table."""
    return re.split(r"\n\s*(?:Dekking|Coverage):", output)[0]


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.mark.anyio
async def test_no_summed_persons_figure_is_labelled_reach_or_unique(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rows = [audience(i, 150, seed=60 + i) for i in range(3)]
    outputs: dict[str, str] = {}
    asked: dict[str, Any] = {}
    async with federation(tmp_path, rows) as fed:
        with bridged(monkeypatch, fed) as connect:
            monkeypatch.setattr(releases_module, "open_client", connect)
            monkeypatch.setattr(ask_module, "open_client", connect)
            # A wide console of its own: the printed table does not depend on the terminal.
            monkeypatch.setattr(ask_module, "console", Console(width=1000))
            published = await anyio.to_thread.run_sync(
                lambda: run("aggregator", "publish", "standard-2025", "--token", fed.admin)
            )
            assert published.exit_code == 0, published.output
            for lang in ("nl", "en"):
                out = tmp_path / f"ask-{lang}.json"
                command: Callable[[], Result] = lambda lang=lang, out=out: run(  # noqa: E731
                    "ask", "--report", "reach_age", "--year", "2025", "--rho", "0.05",
                    "--lang", lang, "--json", str(out),
                )  # fmt: skip
                answer = await anyio.to_thread.run_sync(command)
                assert answer.exit_code == 0, answer.output
                outputs[lang] = answer.output
                asked[lang] = json.loads(out.read_text("utf-8"))

            def client_result() -> ClientResult:
                with connect(None, None) as client:
                    return client.ask(report="reach_age", year=2025, rho=0.05)

            result = await anyio.to_thread.run_sync(client_result)

        chain = (await fed.client.get("/v1/releases")).json()
        (entry,) = chain["releases"]
        slug = entry["slug"]
        signed = (await fed.client.get(f"/releases/{slug}.json")).content
        pages = {
            lang: (await fed.client.get(f"/{lang}/releases/{slug}")).text for lang in ("nl", "en")
        }
        catalogue = (await fed.client.get("/catalog.jsonld")).json()
        release = json.loads(signed)["payload"]
        csvs = {
            t["table_id"]: (await fed.client.get(f"/releases/{slug}/{t['table_id']}.csv")).text
            for t in release["tables"]
        }
    parse(signed)  # a valid release, with its metadata

    problems: list[str] = []
    persons = [t for t in release["tables"] if summed_persons(t)]
    assert {t["table_id"] for t in persons} >= {"persons-age", "persons-province"}, persons

    # The signed JSON: the tables' own labels and the release's words about them.
    for table in persons:
        where = f"release table {table['table_id']}"
        problems += check(where, [*table["title"].values(), *table["unit"].values()])
        if table.get("deduplicated") is not False:
            problems.append(f"{where}: metadata does not say deduplicated: false")
    for field in ("title", "description", "summary"):
        problems += check(f"release {field}", release[field].values())

    # Every CSV of a summed persons table: the header and the per-row description of the figure.
    for table in persons:
        reader = csv.DictReader(io.StringIO(csvs[table["table_id"]]))
        header, rows = list(reader.fieldnames or ()), list(reader)
        where = f"CSV {table['table_id']}"
        # The metadata columns name the fact (their values are checked below), not the figure.
        problems += check(where, [h for h in header if h not in ("aggregation", "deduplicated")])
        problems += check(where, {row.get("unit") or "" for row in rows})
        if {row.get("deduplicated") for row in rows} != {"false"}:
            problems.append(f"{where}: the deduplicated column does not say false on every row")

    # The release pages, Dutch and English: each table's section (chart included) and links,
    # and the method box explains why the figure is not a count of different people.
    for lang, page in pages.items():
        problems += check(f"{lang} page title", re.findall(r"<h1>(.*?)</h1>", page, re.S))
        for table in persons:
            labels = page_labels(page, table["table_id"])
            assert f'id="chart-{table["table_id"]}"' in page  # the chart is among them
            problems += check(f"{lang} page, table {table['table_id']}", labels)
        method = _text(page[page.index('<section id="method"') :].split("</section>")[0])
        for words in (
            ("drie keer", "nog niet beschikbaar")
            if lang == "nl"
            else ("three times", "not available yet")
        ):
            if words not in method:
                problems.append(f"{lang} page: the method box does not say {words!r}")

    # DCAT: the release's dataset and each persons table's CSV distribution.
    (dataset,) = catalogue["dcat:dataset"]
    problems += check(
        "DCAT dataset",
        [v["@value"] for key in ("dct:title", "dct:description", "dcat:keyword")
         for v in dataset[key]],
    )  # fmt: skip
    for table in persons:
        for dist in dataset["dcat:distribution"]:
            if dist["@id"].endswith(f"/{table['table_id']}.csv"):
                problems += check(
                    f"DCAT {table['table_id']}", [v["@value"] for v in dist["dct:title"]]
                )

    # `publieksdata ask`: its printed result table, when the answer has summed persons.
    for lang, output in outputs.items():
        measures = asked[lang]["measures"]
        assert any(summed_persons(m) for m in measures), measures
        if any(summed_persons(m) and m.get("deduplicated") is not False for m in measures):
            problems.append(f"ask --lang {lang} --json: persons lack deduplicated: false")
        problems += check(f"ask --lang {lang}", [cli_labels(output)])

    # The Python client's result: the measure's metadata and its label.
    estimate = result.measure("persons")
    assert (estimate.aggregation, estimate.deduplicated) == (
        Aggregation.SUM_OVER_INSTITUTIONS,
        False,
    )
    problems += check(
        "client", [result.spec.title, result.label("persons", "nl"), result.label("persons", "en")]
    )

    assert not problems, "\n".join(problems)
