"""The public site, in process: the index and release pages in both languages, the numbers on
the page against the signed JSON, CSV round trips, the DCAT-AP catalogue against its schema,
caching (ETag, 304, Cache-Control), not-found answers, and no external addresses."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import httpx
import jsonschema_rs
import pytest

from aggregator.app import create_app
from aggregator.home import load_signing_key
from aggregator.releases import store
from aggregator.releases.chain import SealedRelease, parse, seal, verify_chain
from aggregator.releases.compose import cell_label as label
from aggregator.releases.document import (
    RELEASE,
    Cell,
    PostProcessing,
    ReleaseDocument,
    Table,
    TableCoverage,
    TablePrivacy,
    Text,
)
from aggregator.settings import AggregatorSettings
from aggregator.storage.db import make_async_engine, make_async_sessionmaker
from aggregator.storage.models import Release
from protocol.canonical import canonical_bytes
from protocol.signing import sign
from tests.aggregator.test_releases import methodology
from tests.fedkit import make_aggregator

pytestmark = pytest.mark.anyio
BASE = "http://site.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def cell(codes: tuple[str, ...], nl: str, en: str, value: float | None, se: float) -> Cell:
    if value is None:
        return Cell(codes=codes, labels=Text(nl=nl, en=en), value=None, lower=None, upper=None,
                    standard_error=se, rounded_to=10, suppressed=True)  # fmt: skip
    half = round(1.96 * se)
    return Cell(codes=codes, labels=Text(nl=nl, en=en), value=value, lower=max(value - half, 0),
                upper=value + half, standard_error=se, rounded_to=1)  # fmt: skip


Measure = Literal["visits", "persons", "revenue", "mean_price"]


def table(table_id: str, group_by: tuple[str, ...], cells: list[Cell], measure: Measure) -> Table:
    total_value = sum(c.value or 0 for c in cells)
    total = (
        None if measure == "mean_price" else cell(("total",), "Totaal", "Total", total_value, 40)
    )
    return Table(
        table_id=table_id,
        title=Text(nl=f"Tabel {table_id}", en=f"Table {table_id}"),
        round_id="r-" + table_id,
        measure=measure,
        unit=Text(nl="bezoeken", en="visits"),
        group_by=group_by,
        dimension_titles=tuple(Text(nl=d, en=d) for d in group_by),
        cells=tuple(cells),
        total=total,
        privacy=TablePrivacy(
            mode="secure", mechanism="gaussian", rho=0.1, epsilon=2.64, delta=1e-7, threshold=4
        ),
        coverage=TableCoverage(institutions=5, answered=4, missing=("Filmhuis",)),
        bounds={"max_visits_per_person": 12, "max_cells_per_person": 12},
    )


def names(*codes: str) -> tuple[str, str]:
    """A cell's labels (nl, en): month names as the composer writes them, other codes as is."""
    return (
        " · ".join(label("month", c, "nl") if c.startswith("20") else c for c in codes),
        " · ".join(label("month", c, "en") if c.startswith("20") else c for c in codes),
    )


def document(
    sequence: int, previous: str | None, version: int, corrects: str | None, *, more: bool = False
) -> ReleaseDocument:
    """Three tables (months, artforms with a dot, month x artform); ``more`` adds a mean price
    (decimals, no total) and reach by artform x age band (persons, with a dot). The browser
    tests (tests/e2e) use the three."""
    months = [
        cell((f"2025-{m:02d}",), *names(f"2025-{m:02d}"), 41_000.0 + 1_000 * m, 30.0)
        for m in range(1, 13)
    ]
    artforms = [
        cell(("theatre",), "toneel", "theatre", 1_234_567.0, 300.0),
        cell(("dance",), "dans", "dance", 98_765.0, 20.0),
        cell(("film",), "film", "film", None, 90.0),
    ]
    pairs = [("2025-01", "theatre"), ("2025-01", "dance"), ("2025-02", "theatre")]
    grid = [
        cell(pair, *names(*pair), 500.0 + i, 10.0)
        for i, pair in enumerate([*pairs, ("2025-02", "dance")])
    ]
    prices = [  # a mean, in euros: not whole numbers, and no total row
        cell(("0-19",), "0-19 jaar", "0-19 years", 12.5, 0.8),
        cell(("20-64",), "20-64 jaar", "20-64 years", 23.45, 0.4),
        cell(("65+",), "65+ jaar", "65+ years", 31.0625, 0.6),
    ]
    ages = [(a, b) for a in ("theatre", "dance") for b in ("0-19", "20-64", "65+")]
    reach = [  # one cell suppressed
        cell(pair, *names(*pair), None if i == 5 else 2_000.0 * (i + 1), 50)
        for i, pair in enumerate(ages)
    ]
    return ReleaseDocument(
        release_id="sector-2025",
        version=version,
        sequence=sequence,
        previous_hash=previous,
        corrects=corrects,
        correction_note=Text(nl="Titel verbeterd", en="Title fixed") if corrects else None,
        published_at=datetime(2026, 1, 10 + sequence, tzinfo=UTC),
        recipe="standard-2025",
        title=Text(nl=f"Sector 2025 (v{version})", en=f"Sector 2025 (v{version})"),
        description=Text(nl="Beschrijving", en="Description"),
        summary=Text(nl="In 2025 telden de 4 instellingen …", en="In 2025 the 4 institutions …"),
        methodology=methodology(
            rho_total=0.3,
            epsilon_total=4.9,
            institutions=("Museum", "Theater", "Bieb", "Podium"),
            post_processing=PostProcessing(suppress_relative_halfwidth=0.5),
        ),
        tables=(
            table("visits-month", ("month",), months, "visits"),
            table("visits-artform", ("artform",), artforms, "visits"),
            table("visits-grid", ("month", "artform"), grid, "visits"),
            *(
                [
                    table("price-age", ("age_band",), prices, "mean_price"),
                    table("reach-grid", ("artform", "age_band"), reach, "persons"),
                ]
                if more
                else []
            ),
        ),
    )


async def publish_two(settings: AggregatorSettings, *, more: bool = False) -> list[SealedRelease]:
    key = load_signing_key(settings.signing_key_path)
    first = seal(document(1, None, 1, None, more=more), key)
    second = seal(document(2, first.hash, 2, first.hash, more=more), key)
    engine = make_async_engine(settings.database_url)
    async with make_async_sessionmaker(engine)() as session, session.begin():
        for sealed in (first, second):
            await store.append(session, sealed, datetime.now(UTC))
    await engine.dispose()
    return [first, second]


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, list[SealedRelease]]]:
    settings = make_aggregator(tmp_path / "aggregator", None)
    releases = await publish_two(settings, more=True)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client,
    ):
        yield client, releases


def from_page(text: str, lang: str) -> float | None:
    if text == ".":
        return None
    return float(text.replace(".", "").replace(",", ".") if lang == "nl" else text.replace(",", ""))


def page_values(html: str, table_id: str) -> list[tuple[str, str, str]]:
    """(codes, value, interval) per row of one data table, as shown."""
    start = html.index(f'data-table="{table_id}"')
    end = html.index("</table>", start)
    rows = re.findall(
        r'<tr data-codes="([^"]*)">.*?<td class="num value">([^<]*)</td>\s*'
        r'<td class="num interval">([^<]*)</td>',
        html[start:end],
        re.S,
    )
    return [(c, v, i) for c, v, i in rows]


async def test_the_index_lists_every_release_in_both_languages(site: Any) -> None:
    client, releases = site
    root = await client.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/nl/"
    for lang, switch in (("nl", 'href="/en/"'), ("en", 'href="/nl/"')):
        page = await client.get(f"/{lang}/")
        assert page.status_code == 200
        assert f'<html lang="{lang}">' in page.text and switch in page.text
        assert page.text.count("<h1>") == 1
        for release in releases:
            assert f'href="/{lang}/releases/{release.slug}"' in page.text
    english = (await client.get("/en/")).text
    assert "corrects version 1" in english and "corrected by version 2" in english
    assert english.index(releases[1].slug) < english.index(releases[0].slug)  # newest first
    assert 'href="/catalog.jsonld"' in english


async def test_a_release_page_shows_the_signed_numbers(site: Any) -> None:
    client, releases = site
    for release in releases:
        _, signed = parse((await client.get(f"/releases/{release.slug}.json")).content)
        for lang in ("nl", "en"):
            html = (await client.get(f"/{lang}/releases/{release.slug}")).text
            assert signed.summary.get(lang) in html
            for tbl in signed.tables:
                shown = page_values(html, tbl.table_id)
                expected = [*tbl.cells, *([tbl.total] if tbl.total else [])]
                assert len(shown) == len(expected)
                for (codes, value, interval), c in zip(shown, expected, strict=True):
                    assert c is not None
                    assert codes == "|".join(c.codes)
                    assert from_page(value, lang) == c.value
                    if c.lower is None:
                        assert interval == "."
                    else:
                        low, high = interval.split(" – ")
                        assert (from_page(low, lang), from_page(high, lang)) == (c.lower, c.upper)
            count = len(signed.tables)  # one chart (drawn wide and narrow) and one table each
            assert html.count('class="chart chart-wide"') == count
            assert html.count('class="chart chart-narrow"') == count
            assert html.count('role="img"') == 2 * count and html.count("<desc") == 2 * count
            assert html.count("<caption") == count
            whole = "(ε = 4,9, δ = 1e-7)" if lang == "nl" else "(ε = 4.9, δ = 1e-7)"
            assert whole in html  # the release's total privacy cost
            assert "Filmhuis" in html  # who is missing
    nl = (await client.get(f"/nl/releases/{releases[0].slug}")).text
    assert "Er is een verbeterde versie" in nl and releases[1].slug in nl
    assert "1.234.567" in nl and "Een punt (.) betekent" in nl
    assert "23,45" in nl and "31,0625" in nl  # decimal comma
    en = (await client.get(f"/en/releases/{releases[1].slug}")).text
    assert "1,234,567" in en and "Title fixed" in en and releases[0].slug in en
    assert "23.45" in en and "31.0625" in en
    for words in ("ρ = 0.1", "secure", "threshold 4", "at most 12 visits", "4 of 5 institutions",
                  "Catalogue version", "95% intervals", 'href="/en/privacy"', "Post-processing",
                  f"/releases/{releases[1].slug}.json", "/catalog.jsonld", releases[1].hash,
                  releases[0].hash, "Number in the chain"):  # fmt: skip
        assert words in en, words
    assert json.loads(releases[1].data)["key_id"] in en
    assert f'href="/nl/releases/{releases[1].slug}"' in en  # the language switch


async def test_csv_files_round_trip_to_the_json(site: Any) -> None:
    client, releases = site
    release = releases[1]
    _, signed = parse((await client.get(f"/releases/{release.slug}.json")).content)
    for tbl in signed.tables:
        response = await client.get(f"/releases/{release.slug}/{tbl.table_id}.csv")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        reader = csv.DictReader(io.StringIO(response.content.decode("utf-8")))
        labels = [f"{d}_label" for d in tbl.group_by]
        assert reader.fieldnames == [
            *[c for pair in zip(tbl.group_by, labels, strict=True) for c in pair],
            *["value", "lower", "upper", "standard_error", "suppressed"],
            *["measure", "unit", "aggregation", "deduplicated"],
        ]
        rows = list(reader)
        expected = [*tbl.cells, *([tbl.total] if tbl.total else [])]
        assert len(rows) == len(expected)
        for row, c in zip(rows, expected, strict=True):
            assert c is not None
            if c is not tbl.total:
                assert tuple(row[d] for d in tbl.group_by) == c.codes
                assert " · ".join(row[label] for label in labels) == c.labels.en
            else:
                assert row[tbl.group_by[0]] == "total"
            for column in ("value", "lower", "upper", "standard_error"):
                got = None if row[column] == "" else float(row[column])
                assert got == getattr(c, column)
            assert row["suppressed"] == ("true" if c.suppressed else "false")
            assert (row["measure"], row["unit"]) == (tbl.measure, tbl.unit.en)
            assert row["aggregation"] == "sum_over_institutions"
            assert row["deduplicated"] == ("false" if tbl.measure == "persons" else "")


async def test_the_dcat_catalogue_meets_the_dcat_ap_schema(site: Any) -> None:
    client, releases = site
    response = await client.get("/catalog.jsonld")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    catalogue = response.json()
    schema = json.loads(
        resources.files("aggregator.web").joinpath("dcat-ap-schema.json").read_text("utf-8")
    )
    validator = jsonschema_rs.validator_for(schema)
    errors = [e.message for e in validator.iter_errors(catalogue)]
    assert not errors, errors
    datasets = {d["dct:identifier"]: d for d in catalogue["dcat:dataset"]}
    assert set(datasets) == {r.slug for r in releases}
    second = datasets[releases[1].slug]
    assert second["dct:replaces"]["@id"] == f"{BASE}/releases/{releases[0].slug}"
    assert datasets[releases[0].slug]["dct:isReplacedBy"]["@id"].endswith(releases[1].slug)
    urls = [d["dcat:downloadURL"]["@id"] for d in second["dcat:distribution"]]
    assert f"{BASE}/releases/{releases[1].slug}/visits-month.csv" in urls
    for url in urls:  # every distribution can be fetched
        assert (await client.get(url.removeprefix(BASE))).status_code == 200
    broken = dict(catalogue, **{"dcat:dataset": [{"@type": "dcat:Dataset"}]})
    assert not validator.is_valid(broken)  # the schema does check


async def test_pages_are_cacheable(site: Any) -> None:
    client, releases = site
    for path, policy in (
        (f"/nl/releases/{releases[0].slug}", "max-age=3600"),
        ("/en/", "max-age=60"),
        (f"/releases/{releases[0].slug}.json", "max-age=86400"),
        (f"/releases/{releases[0].slug}/visits-month.csv", "max-age=86400"),
        ("/catalog.jsonld", "max-age=60"),
        ("/static/site.css", "max-age=86400"),
    ):
        first = await client.get(path)
        etag = first.headers["etag"]
        assert first.status_code == 200 and etag.startswith('"')
        assert (
            policy in first.headers["cache-control"] and "public" in first.headers["cache-control"]
        )
        again = await client.get(path, headers={"if-none-match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag and again.headers["cache-control"]
        listed = await client.get(path, headers={"if-none-match": f'"x", {etag}'})
        assert listed.status_code == 304
        assert (await client.get(path, headers={"if-none-match": "*"})).status_code == 304
        other = await client.get(path, headers={"if-none-match": '"something-else"'})
        assert other.status_code == 200 and other.content == first.content
        head = await client.head(path)
        assert head.status_code == 200 and head.headers["etag"] == etag


async def test_unknown_addresses_are_not_found(site: Any) -> None:
    client, releases = site
    for path in ("/nl/releases/nothing-v1", "/de/", "/fr/releases/x-v1"):
        response = await client.get(path)
        assert response.status_code == 404
        assert "text/html" in response.headers["content-type"]
    for path in ("/releases/nothing-v1.json", f"/releases/{releases[0].slug}/nothing.csv"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["code"] == "release_not_found"
        assert body["type"] == "https://publieksdata.nl/problems/release_not_found"  # as all
        assert body["title"] == "There is no release with that name." and body["status"] == 404
    assert (await client.get("/v1/health")).status_code == 200  # the API is not shadowed


async def test_no_page_loads_anything_from_another_host(site: Any) -> None:
    client, releases = site
    paths = ["/nl/", "/en/", "/nl/privacy", "/en/privacy", "/static/site.css"]
    paths += [f"/{lang}/releases/{r.slug}" for r in releases for lang in ("nl", "en")]
    for path in paths:
        text = (await client.get(path)).text
        addresses = re.findall(r"https?://[^\s\"'<>)]+", text)
        foreign = [a for a in addresses if not a.startswith((BASE, "http://www.w3.org/2000/svg"))]
        assert not foreign, (path, foreign)
        assert "<script" not in text


async def test_every_answer_of_the_site_forbids_scripts_and_frames(site: Any) -> None:
    client, releases = site
    paths = ["/", "/favicon.ico", "/nl/", "/en/privacy", "/static/site.css", "/catalog.jsonld"]
    paths += [f"/nl/releases/{releases[0].slug}", f"/releases/{releases[0].slug}.json"]
    paths += ["/nl/releases/nothing-v1", "/releases/nothing-v1.json"]
    for path in paths:
        response = await client.get(path, follow_redirects=False)
        policy = dict(
            part.strip().split(" ", 1)
            for part in response.headers["content-security-policy"].split(";")
        )
        assert policy["default-src"] == "'none'", path
        assert policy["frame-ancestors"] == "'none'" and policy["style-src"] == "'self'"
        assert "script-src" not in policy and "'unsafe-inline'" not in str(policy)
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
    etag = (await client.get("/nl/")).headers["etag"]
    again = await client.get("/nl/", headers={"if-none-match": etag})
    assert again.status_code == 304 and "content-security-policy" in again.headers


async def test_a_wrong_method_names_the_allowed_ones(site: Any) -> None:
    client, releases = site
    response = await client.post(f"/nl/releases/{releases[0].slug}")
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
    response = await client.put("/v1/health")
    assert response.status_code == 405 and response.headers["allow"] == "GET"
    assert response.json()["code"] == "method_not_allowed"


def test_chart_axes_use_whole_steps_and_a_table_of_dots_gets_no_chart() -> None:
    from aggregator.web import charts
    from aggregator.web.release_view import table_chart

    assert charts.nice_ticks(3) == [0.0, 1.0, 2.0, 3.0]
    assert charts.nice_ticks(40_229) == [0.0, 20_000.0, 40_000.0, 60_000.0]
    assert charts.nice_ticks(0) == [0.0, 1.0]
    dots = [cell((f"2025-{m:02d}",), f"m{m}", f"m{m}", None, 30.0) for m in range(1, 4)]
    chart, note = table_chart(table("dots", ("month",), dots, "visits"), "en", "Dots")
    assert chart is None and "too uncertain" in note
    svg, _ = table_chart(table("some", ("month",), [*dots, cell(("2025-04",), "a", "a", 9.0, 1.0)],
                          "visits"), "nl", "Wat")  # fmt: skip
    assert svg is not None and svg.count("<circle") == 1 and "<title" in svg


def test_numbers_read_the_way_each_language_writes_them() -> None:
    from aggregator.web.i18n import number

    assert number(4_100_000.0, "nl") == "4.100.000" and number(4_100_000, "en") == "4,100,000"
    assert number(1234.5, "nl") == "1.234,5" and number(1234.5, "en") == "1,234.5"
    assert number(0.1 + 0.2, "en") == "0.30000000000000004"  # exactly the JSON's value
    assert number(None, "nl") == "."


def test_two_dimensional_tables_are_small_multiples_of_their_own_cells() -> None:
    from aggregator.web.release_view import MAX_BARS, table_chart

    doc = document(1, None, 1, None, more=True)
    svg, note = table_chart(doc.table("reach-grid"), "en", "Reach")
    assert svg is not None and note == "One chart per artform, all on the same scale."
    assert ">theatre<" in svg and ">dance<" in svg and svg.count("<rect") == 5  # one is a dot
    svg, note = table_chart(doc.table("visits-grid"), "nl", "Bezoek")
    assert svg is not None and svg.count("<circle") == 4 and "artform" in note  # month lines
    many = [cell((f"m{i:03d}",), f"g{i}", f"g{i}", 10.0 * i, 1.0) for i in range(1, 81)]
    svg, note = table_chart(table("wide", ("municipality",), many, "visits"), "en", "Wide")
    assert svg is not None and svg.count("<rect") == MAX_BARS and "30 largest of 80" in note
    assert ">g80<" in svg and ">g1<" not in svg
    # more panels than fit: the totals along the first dimension; a suppressed cell makes its
    # total unknown (a dot), never silently zero
    grid = [
        cell((f"2025-{m:02d}", f"a{a}"), f"m{m} · a{a}", f"m{m} · a{a}",
             None if (m, a) == (2, 3) else 100.0, 5.0)
        for m in range(1, 4) for a in range(1, 15)
    ]  # fmt: skip
    svg, note = table_chart(table("margin", ("month", "artform"), grid, "visits"), "en", "Margin")
    assert svg is not None and "totals by month" in note
    assert svg.count("<circle") == 2  # February holds the dot
    svg, note = table_chart(table("margin-p", ("month", "artform"), grid, "persons"), "en", "P")
    assert svg is None and "too many cells" in note


async def test_release_pages_have_an_accessible_structure(site: Any) -> None:
    client, releases = site
    for lang in ("nl", "en"):
        for path in (f"/{lang}/", f"/{lang}/releases/{releases[1].slug}", f"/{lang}/privacy"):
            html = (await client.get(path)).text
            levels = [int(level) for level in re.findall(r"<h([1-6])[ >]", html)]
            assert levels[0] == 1 and levels.count(1) == 1, path
            assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), path
            ids = re.findall(r'\sid="([^"]+)"', html)
            assert len(ids) == len(set(ids)), path  # no duplicate ids
            for ref in re.findall(r'aria-labelledby="([^"]+)"', html):
                assert all(part in ids for part in ref.split()), (path, ref)
            for anchor in re.findall(r'href="#([^"]+)"', html):
                assert anchor in ids, (path, anchor)
            assert 'class="skip" href="#main"' in html
        page = (await client.get(f"/{lang}/releases/{releases[1].slug}")).text
        for chart in re.finditer(r"<svg [^>]*>", page):
            assert 'role="img"' in chart.group(0)
            if "chart-wide" in chart.group(0):  # the phone's drawing follows right after it
                continue
            assert page.index("<table", chart.end()) < page.find("<svg", chart.end()) or (
                page.find("<svg", chart.end()) == -1
            )  # every chart is followed by its table before the next chart
        assert '<th scope="col"' in page and '<th scope="row"' in page
    css = (await client.get("/static/site.css")).text
    assert ":focus-visible" in css and "@media" in css


async def test_a_persons_table_signed_before_the_metadata_existed_is_marked_not_deduplicated(
    tmp_path: Path,
) -> None:
    """A release signed before tables had ``aggregation`` and ``deduplicated`` still verifies,
    and its page marks the persons table as summed over institutions, whatever its signed title
    says, and explains it in the method box; visits tables get no such note."""
    settings = make_aggregator(tmp_path / "aggregator", None)
    key = load_signing_key(settings.signing_key_path)
    payload = document(1, None, 1, None, more=True).model_dump(mode="json")
    for tbl in payload["tables"]:
        del tbl["aggregation"], tbl["deduplicated"]
    payload["tables"][-1]["title"] = {"nl": "Bereik (unieke personen)", "en": "Reach (distinct)"}
    data = canonical_bytes(sign(RELEASE, payload, key).model_dump(mode="json"))
    sealed = SealedRelease(data=data, document=parse(data)[1])
    assert verify_chain([data], key.public).ok
    engine = make_async_engine(settings.database_url)
    async with make_async_sessionmaker(engine)() as session, session.begin():
        await store.append(session, sealed, datetime.now(UTC))
    await engine.dispose()
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client,
    ):
        for lang, note, method in (
            ("nl", "opgeteld (niet ontdubbeld)", "drie keer"),
            ("en", "summed (not deduplicated)", "three times"),
        ):
            page = (await client.get(f"/{lang}/releases/{sealed.slug}")).text
            sections = dict(re.findall(r'<section id="table-([^"]+)"(.*?)</section>', page, re.S))
            marked = {t for t, body in sections.items() if "not-deduplicated" in body}
            assert marked == {"reach-grid"}
            assert note in sections["reach-grid"]
            box = page[page.index('<section id="method"') :].split("</section>")[0]
            assert 'id="persons-method"' in box and method in box
            csv_text = (await client.get(f"/releases/{sealed.slug}/reach-grid.csv")).text
            row = next(csv.DictReader(io.StringIO(csv_text)))
            assert (row["measure"], row["aggregation"], row["deduplicated"]) == (
                "persons", "sum_over_institutions", "false",
            )  # fmt: skip


async def test_an_empty_site_says_so_and_its_catalogue_is_valid(tmp_path: Path) -> None:
    settings = make_aggregator(tmp_path / "aggregator", None)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client,
    ):
        assert "Nothing has been published yet." in (await client.get("/en/")).text
        assert "Er is nog niets gepubliceerd." in (await client.get("/nl/")).text
        catalogue = (await client.get("/catalog.jsonld")).json()
        schema = json.loads(
            resources.files("aggregator.web").joinpath("dcat-ap-schema.json").read_text("utf-8")
        )
        assert jsonschema_rs.validator_for(schema).is_valid(catalogue)
        assert catalogue["dcat:dataset"] == []


async def test_a_new_release_shows_up_and_old_pages_learn_they_were_corrected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aggregator.web import cache

    monkeypatch.setattr(cache, "HEAD_TTL", 0.0)  # read the chain's head on every request
    settings = make_aggregator(tmp_path / "aggregator", None)
    key = load_signing_key(settings.signing_key_path)
    first = seal(document(1, None, 1, None), key)
    engine = make_async_engine(settings.database_url)
    factory = make_async_sessionmaker(engine)
    async with factory() as session, session.begin():
        await store.append(session, first, datetime.now(UTC))
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client,
    ):
        index = await client.get("/en/")
        page = await client.get(f"/en/releases/{first.slug}")
        assert "corrected by" not in index.text and "corrected version" not in page.text
        second = seal(document(2, first.hash, 2, first.hash), key)
        async with factory() as session, session.begin():
            await store.append(session, second, datetime.now(UTC))
        again = await client.get("/en/", headers={"if-none-match": index.headers["etag"]})
        assert again.status_code == 200 and second.slug in again.text
        assert again.headers["etag"] != index.headers["etag"]
        page = await client.get(f"/en/releases/{first.slug}")
        assert "There is a corrected version" in page.text and second.slug in page.text
        signed = await client.get(f"/releases/{first.slug}.json")
        assert signed.content == first.data  # the signed bytes never change
    await engine.dispose()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda data: data.replace(b'"value":', b'"value":1', 1),  # an edited figure, valid JSON
        lambda _data: b"{not a release",
        lambda data: data.replace(b'"sequence":1', b'"sequence":1.5', 1),  # not a document
    ],
    ids=["edited figure", "not json", "not a document"],
)
async def test_a_tampered_release_is_flagged_and_the_others_still_served(
    tmp_path: Path, db_url: str, tamper: Any
) -> None:
    settings = make_aggregator(tmp_path / "aggregator", db_url)
    first, second = await publish_two(settings, more=True)
    engine = make_async_engine(settings.database_url)
    async with make_async_sessionmaker(engine)() as session, session.begin():
        row = await session.get(Release, 1)
        assert row is not None and row.data == first.data
        row.data = tamper(row.data)
        assert row.data != first.data
    await engine.dispose()
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client,
    ):
        for lang in ("nl", "en"):
            index = await client.get(f"/{lang}/")
            assert index.status_code == 200, index.text
            assert f'data-unverified="{first.slug}"' in index.text
            assert f'href="/{lang}/releases/{second.slug}"' in index.text
            page = await client.get(f"/{lang}/releases/{first.slug}")
            assert page.status_code == 409
            assert f'data-unverified="{first.slug}"' in page.text
            assert (await client.get(f"/{lang}/releases/{second.slug}")).status_code == 200
        catalogue = await client.get("/catalog.jsonld")
        assert catalogue.status_code == 200, catalogue.text
        document = catalogue.json()
        assert [d["dct:identifier"] for d in document["dcat:dataset"]] == [second.slug]
        assert document["pd:failsVerification"] == [
            {"@id": f"{BASE}/releases/{first.slug}", "dct:identifier": first.slug}
        ]
        schema = json.loads(
            resources.files("aggregator.web").joinpath("dcat-ap-schema.json").read_text("utf-8")
        )
        assert jsonschema_rs.validator_for(schema).is_valid(document)
        signed = await client.get(f"/releases/{first.slug}.json")
        assert signed.status_code == 409
        assert signed.json()["code"] == "release_unverified"
        table = first.document.tables[0].table_id
        assert (await client.get(f"/releases/{first.slug}/{table}.csv")).status_code == 409
        intact = await client.get(f"/releases/{second.slug}.json")
        assert intact.status_code == 200 and intact.content == second.data


# Promises stronger than differential privacy gives: a visitor "cannot be found", a figure
# reveals "nothing" about a person. The site states an ε and says what it means instead.
OVERCLAIMS = (
    "cannot be found", "can be found", "cannot be identified", "can be singled out",
    "impossible", "anything about one person", "nothing about", "no visitor",
    "onmogelijk", "geen enkele bezoeker", "geen bezoeker", "niet herkenbaar", "terug te vinden",
    "verraadt geen", "niets over",
)  # fmt: skip


async def test_the_privacy_pages_promise_no_more_than_the_stated_epsilon(site: Any) -> None:
    client, releases = site
    for lang, means, factor, per in (
        ("nl", "Wat ε betekent", "factor 2,7", "per instelling"),
        ("en", "What ε means", "factor of at most about 2.7", "per institution"),
    ):
        for path in (f"/{lang}/privacy", f"/{lang}/", f"/{lang}/releases/{releases[1].slug}"):
            text = re.sub(r"<[^>]+>", " ", (await client.get(path)).text).lower()
            assert [w for w in OVERCLAIMS if w in text] == [], path
        page = (await client.get(f"/{lang}/privacy")).text
        assert means in page and "e<sup>ε</sup>" in page and factor in page, lang
        assert per in page and "δ" in page


async def test_dutch_pages_offer_a_csv_for_dutch_excel_beside_the_international_one(
    site: Any,
) -> None:
    """Dutch Excel splits a file on ";" and reads "1234,5" as a number: the Dutch pages link
    such a file (UTF-8 with a byte order mark) next to the international CSV, which stays as it
    is."""
    client, releases = site
    release = releases[1]
    _, signed = parse((await client.get(f"/releases/{release.slug}.json")).content)
    nl = (await client.get(f"/nl/releases/{release.slug}")).text
    en = (await client.get(f"/en/releases/{release.slug}")).text
    for tbl in signed.tables:
        international = f'href="/releases/{release.slug}/{tbl.table_id}.csv"'
        dutch = f'href="/releases/{release.slug}/{tbl.table_id}.nl.csv"'
        assert international in nl and dutch in nl and international in en
        assert nl.index(international) < nl.index(dutch)  # next to each other
        response = await client.get(f"/releases/{release.slug}/{tbl.table_id}.nl.csv")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert response.content.startswith(b"\xef\xbb\xbf")
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig")), delimiter=";"))
        header = rows[0]
        plain = (await client.get(f"/releases/{release.slug}/{tbl.table_id}.csv")).content
        assert header == next(csv.reader(io.StringIO(plain.decode("utf-8"))))
        expected = [*tbl.cells, *([tbl.total] if tbl.total else [])]
        assert len(rows) == 1 + len(expected)
        for row, c in zip(rows[1:], expected, strict=True):
            assert c is not None
            fields = dict(zip(header, row, strict=True))
            if c is not tbl.total:
                labels = [fields[f"{d}_label"] for d in tbl.group_by]
                assert " · ".join(labels) == c.labels.nl
            for column in ("value", "lower", "upper", "standard_error"):
                text = fields[column]
                assert "." not in text, (column, text)  # a decimal comma, no thousands mark
                assert (None if text == "" else float(text.replace(",", "."))) == getattr(c, column)
            assert fields["unit"] == tbl.unit.nl
    decimals = (await client.get(f"/releases/{release.slug}/price-age.nl.csv")).text
    assert ";23,45;" in decimals and ";31,0625;" in decimals
    missing = await client.get(f"/releases/{release.slug}/nothing.nl.csv")
    assert missing.status_code == 404


def test_every_chart_is_also_drawn_for_a_phone() -> None:
    """The narrow drawing is 360 units wide (a phone's 358 px: text stays 12 px), puts each bar's
    label above it at full length, and stacks small multiples in one column."""
    from aggregator.web import charts
    from aggregator.web.release_view import table_chart

    doc = document(1, None, 1, None, more=True)
    for tbl in doc.tables:
        wide, _ = table_chart(tbl, "nl", "T")
        narrow, _ = table_chart(tbl, "nl", "T", charts.NARROW)
        assert wide is not None and narrow is not None, tbl.table_id
        assert f'viewBox="0 0 {charts.WIDTH} ' in wide and 'class="chart chart-wide"' in wide
        assert f'viewBox="0 0 {charts.NARROW} ' in narrow and "chart-narrow" in narrow
        assert f'id="chart-{tbl.table_id}-narrow"' in narrow
        assert 'font-size="12"' in narrow and 'font-size="11"' not in narrow
    long = "muziektheater, opera en musical"
    points = [charts.Point(long, 10.0, 8.0, 12.0), charts.Point("dans", 5.0, 4.0, 6.0)]
    assert f">{long}<" in charts.bars(points, "c", "T", "D", "nl", charts.NARROW)
    assert f">{long}<" not in charts.bars(points, "c", "T", "D", "nl")  # cut short beside a bar
    grid, _ = table_chart(doc.table("reach-grid"), "en", "Reach", charts.NARROW)
    assert grid is not None
    offsets = re.findall(r'<g transform="translate\(([\d.]+),([\d.]+)\)"><text', grid)
    assert len(offsets) == 2 and {x for x, _ in offsets} == {"0.0"}  # one column
