"""The public site's routes: no login, Dutch and English, cacheable.

Releases never change, so each page, CSV and catalogue is rendered once and kept in memory,
keyed by the chain's head (which changes only when a release is published: a newer version
changes the older version's page, which then says "corrected"). The head is read from the
database at most once a second. Every response carries a strong ETag (SHA-256 of the body) and
Cache-Control; a request with a matching If-None-Match gets 304 without a body.

    /                                   → /nl/
    /nl/, /en/                          the list of releases
    /nl/releases/{slug}, /en/…          a release: summary, charts, tables, method, downloads
    /nl/privacy, /en/privacy            how privacy is protected, in plain words
    /releases/{slug}.json               the signed release, byte for byte
    /releases/{slug}/{table_id}.csv     one table
    /releases/{slug}/{table_id}.nl.csv  the same table for Dutch Excel (";", decimal comma)
    /catalog.jsonld                     the DCAT-AP catalogue of every release
    /static/site.css, favicon.svg       our own assets (nothing is loaded from another host)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from aggregator.deps import AggregatorState
from aggregator.errors import ErrorCode, problem
from aggregator.releases import store
from aggregator.releases.chain import SealedRelease, parse, stored_problem
from aggregator.releases.document import Cell, Table
from aggregator.web import charts, csvout, dcat
from aggregator.web.i18n import LANGS, day, number, small, t
from protocol.figures import method_note, not_deduplicated_note
from protocol.http import PROBLEM_JSON
from protocol.results import Z95

router = APIRouter(include_in_schema=False)
PAGE_MAX_AGE = "public, max-age=3600"  # a release page changes only when it is corrected
LIST_MAX_AGE = "public, max-age=60"  # the index and catalogue change with every release
# Signed files never change on one aggregator, but a demo or test aggregator that is set up
# again reuses the same addresses for new releases; a day of caching is safe for both.
DOWNLOAD_MAX_AGE = "public, max-age=86400"
HEAD_TTL = 1.0  # seconds between reads of the chain's head
CACHE_SIZE = 512
# Every answer of the site: our own stylesheet and images only, no script at all (the charts
# are inline SVG without style attributes), never in a frame.
SITE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}

_env = Environment(
    loader=PackageLoader("aggregator.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Rendered:
    body: bytes
    media_type: str
    cache_control: str
    status: int = 200
    etag: str = ""

    @classmethod
    def of(cls, body: bytes, media_type: str, cache_control: str, status: int = 200) -> Rendered:
        etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
        return cls(body, media_type, cache_control, status, etag)


@dataclass(frozen=True)
class Unverified:
    """A stored release that fails verification (changed in the database after signing): the
    site names it, and serves none of its content."""

    sequence: int
    slug: str
    hash: str
    reason: str


@dataclass
class SiteCache:
    """Rendered responses and the parsed release chain, per chain head."""

    head: str = ""
    checked_at: float = -1e9
    releases: list[SealedRelease] = field(default_factory=list)  # the verified ones
    unverified: list[Unverified] = field(default_factory=list)
    # by hash; a release never changes, so each is checked once
    parsed: dict[str, SealedRelease | Unverified] = field(default_factory=dict)
    releases_head: str | None = None
    rendered: OrderedDict[tuple[str, ...], Rendered] = field(default_factory=OrderedDict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _state(request: Request) -> AggregatorState:
    state: AggregatorState = request.app.state.aggregator
    return state


def _cache(request: Request) -> SiteCache:
    cache = getattr(request.app.state, "site", None)
    if cache is None:
        cache = SiteCache()
        request.app.state.site = cache
    return cache


async def _current(request: Request) -> tuple[SiteCache, str]:
    """The cache and the chain's head hash ("" before the first release)."""
    cache = _cache(request)
    if time.monotonic() - cache.checked_at > HEAD_TTL:
        async with cache.lock:
            if time.monotonic() - cache.checked_at > HEAD_TTL:
                async with _state(request).factory() as session:
                    head = await store.head(session)
                cache.head = "" if head is None else head[1]
                cache.checked_at = time.monotonic()
    return cache, cache.head


async def _releases(request: Request) -> list[SealedRelease]:
    """Every verified release in chain order. A release never changes, so each is checked and
    parsed once: a new head loads only the releases not seen before. A release that fails
    verification is left out here and listed in ``cache.unverified`` instead."""
    cache, head = await _current(request)
    if cache.releases_head != head:
        state = _state(request)
        keyring = {key.key_id: key.public for key in (state.key, *state.retired_keys)}
        async with state.factory() as session:
            index = await store.chain_index(session)
            new = [digest for _, _, digest in index if digest not in cache.parsed]
            raw = dict(await store.stored(session, new)) if new else {}
        for sequence, slug, digest in index:
            if digest in cache.parsed:
                continue
            data = raw.get(digest, b"")
            reason = stored_problem(data, digest, keyring)
            if reason is None:
                cache.parsed[digest] = SealedRelease(data=data, document=parse(data)[1])
            else:
                cache.parsed[digest] = Unverified(sequence, slug, digest, reason)
        checked = [cache.parsed[digest] for _, _, digest in index]
        cache.releases = [r for r in checked if isinstance(r, SealedRelease)]
        cache.unverified = [r for r in checked if isinstance(r, Unverified)]
        cache.releases_head = head
    return cache.releases


async def _unverified(request: Request, slug: str) -> Unverified | None:
    await _releases(request)
    return next((u for u in _cache(request).unverified if u.slug == slug), None)


def _unverified_problem() -> Rendered:
    body = json.dumps(problem(ErrorCode.RELEASE_UNVERIFIED)).encode()
    return Rendered.of(body, "application/problem+json", "no-store", 409)


def _base(request: Request) -> str:
    configured = _state(request).settings.public_base_url
    return (configured or str(request.base_url)).rstrip("/")


async def _serve(
    request: Request, key: tuple[str, ...], build: Callable[[], Awaitable[Rendered]]
) -> Response:
    cache, head = await _current(request)
    full_key = (head, *key)
    entry = cache.rendered.get(full_key)
    if entry is None:
        entry = await build()
        cache.rendered[full_key] = entry
        while len(cache.rendered) > CACHE_SIZE:
            cache.rendered.popitem(last=False)
    else:
        cache.rendered.move_to_end(full_key)
    headers = {"ETag": entry.etag, "Cache-Control": entry.cache_control, **SITE_HEADERS}
    matches = _etags(request.headers.get("if-none-match", ""))
    if entry.status == 200 and (entry.etag in matches or "*" in matches):
        return Response(status_code=304, headers=headers)
    return Response(entry.body, entry.status, headers=headers, media_type=entry.media_type)


def _etags(header: str) -> set[str]:
    return {part.strip().removeprefix("W/") for part in header.split(",") if part.strip()}


# --- rendering ------------------------------------------------------------------------------


def _html(template: str, lang: str, status: int = 200, **context: Any) -> Rendered:
    other = "en" if lang == "nl" else "nl"

    def words(key: str, **values: object) -> str:
        return t(key, lang, **values)

    body = _env.get_template(template).render(lang=lang, other=other, t=words, **context)
    return Rendered.of(body.encode("utf-8"), "text/html; charset=utf-8", LIST_MAX_AGE, status)


def _not_found(lang: str, site_name: str) -> Rendered:
    return _html(
        "notfound.html",
        lang,
        404,
        site_name=site_name,
        page_title=t("not_found", lang),
        other_path="/" + ("en" if lang == "nl" else "nl") + "/",
    )


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
    chart, chart_note = _chart(table, lang, title)
    if chart is not None:  # and the same chart drawn for a phone; the stylesheet picks one
        narrow, _ = _chart(table, lang, title, charts.NARROW)
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


def _chart(
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


def _release_view(
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


# --- routes ---------------------------------------------------------------------------------


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> RedirectResponse:
    return RedirectResponse("/nl/", status_code=307, headers=SITE_HEADERS)


STATIC = {"site.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
async def static(name: str, request: Request) -> Response:
    async def build() -> Rendered:
        if name not in STATIC:
            return _missing()
        data = resources.files("aggregator.web").joinpath(f"static/{name}").read_bytes()
        return Rendered.of(data, STATIC[name], "public, max-age=86400")

    return await _serve(request, ("static", name), build)


@router.api_route("/favicon.ico", methods=["GET", "HEAD"])
async def favicon() -> RedirectResponse:
    return RedirectResponse("/static/favicon.svg", status_code=301, headers=SITE_HEADERS)


@router.api_route("/catalog.jsonld", methods=["GET", "HEAD"])
async def catalogue(request: Request) -> Response:
    async def build() -> Rendered:
        releases = await _releases(request)
        unverified = [u.slug for u in _cache(request).unverified]
        document = dcat.catalog(
            releases, _base(request), _state(request).settings.name, unverified=unverified
        )
        body = json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")
        return Rendered.of(body, "application/ld+json", LIST_MAX_AGE)

    return await _serve(request, ("catalog", _base(request)), build)


@router.api_route("/releases/{slug}.json", methods=["GET", "HEAD"])
async def release_json(slug: str, request: Request) -> Response:
    async def build() -> Rendered:
        release = next((r for r in await _releases(request) if r.slug == slug), None)
        if release is None:
            return _unverified_problem() if await _unverified(request, slug) else _missing()
        return Rendered.of(release.data, "application/json", DOWNLOAD_MAX_AGE)

    return await _serve(request, ("json", slug), build)


async def _table_csv(
    request: Request, slug: str, table_id: str, write: Callable[[Table], bytes]
) -> Rendered:
    release = next((r for r in await _releases(request) if r.slug == slug), None)
    table = None
    if release is not None:
        table = next((x for x in release.document.tables if x.table_id == table_id), None)
    if table is None:
        return _unverified_problem() if await _unverified(request, slug) else _missing()
    return Rendered.of(write(table), "text/csv; charset=utf-8", DOWNLOAD_MAX_AGE)


# Before the international route, whose {table_id} would otherwise take "x.nl".
@router.api_route("/releases/{slug}/{table_id}.nl.csv", methods=["GET", "HEAD"])
async def release_csv_nl(slug: str, table_id: str, request: Request) -> Response:
    async def build() -> Rendered:
        return await _table_csv(request, slug, table_id, csvout.table_csv_nl)

    return await _serve(request, ("csv-nl", slug, table_id), build)


@router.api_route("/releases/{slug}/{table_id}.csv", methods=["GET", "HEAD"])
async def release_csv(slug: str, table_id: str, request: Request) -> Response:
    async def build() -> Rendered:
        return await _table_csv(request, slug, table_id, csvout.table_csv)

    return await _serve(request, ("csv", slug, table_id), build)


def _missing() -> Rendered:
    body = problem(ErrorCode.RELEASE_NOT_FOUND, "There is no release or table with that name.")
    return Rendered.of(json.dumps(body).encode(), PROBLEM_JSON, "no-store", 404)


@router.api_route("/{lang}/", methods=["GET", "HEAD"])
async def index(lang: str, request: Request) -> Response:
    name = _state(request).settings.name

    async def build() -> Rendered:
        if lang not in LANGS:
            return _not_found("nl", name)
        releases = sorted(await _releases(request), key=lambda r: -r.document.sequence)
        items = []
        for r in releases:
            doc = r.document
            corrected = next((c for c in releases if c.hash == doc.corrects), None)
            newer = next(
                (c for c in releases
                 if c.document.release_id == doc.release_id and c.document.version > doc.version),
                None,
            )  # fmt: skip  # the newest, as the list runs newest first
            items.append({
                "slug": r.slug,
                "title": doc.title.get(lang),
                "summary": doc.summary.get(lang),
                "version": doc.version,
                "published": day(doc.published_at, lang),
                "period": f"{day(doc.methodology.period_start, lang)} – "
                f"{day(doc.methodology.period_end, lang)}",
                "corrects": corrected.document.version if corrected else None,
                "corrects_slug": corrected.slug if corrected else None,
                "corrected_by": newer.document.version if newer else None,
                "corrected_by_slug": newer.slug if newer else None,
            })  # fmt: skip
        unverified = sorted(_cache(request).unverified, key=lambda u: -u.sequence)
        return _html(
            "index.html", lang, site_name=name, page_title=t("releases", lang),
            items=items, unverified=unverified, other_path=f"/{'en' if lang == 'nl' else 'nl'}/",
        )  # fmt: skip

    return await _serve(request, ("index", lang), build)


@router.api_route("/{lang}/privacy", methods=["GET", "HEAD"])
async def privacy(lang: str, request: Request) -> Response:
    name = _state(request).settings.name

    async def build() -> Rendered:
        if lang not in LANGS:
            return _not_found("nl", name)
        return _html(
            f"privacy_{lang}.html", lang, site_name=name, page_title=t("privacy_title", lang),
            other_path=f"/{'en' if lang == 'nl' else 'nl'}/privacy",
        )  # fmt: skip

    return await _serve(request, ("privacy", lang), build)


@router.api_route("/{lang}/releases/{slug}", methods=["GET", "HEAD"])
async def release_page(lang: str, slug: str, request: Request) -> Response:
    name = _state(request).settings.name

    async def build() -> Rendered:
        if lang not in LANGS:
            return _not_found("nl", name)
        releases = await _releases(request)
        release = next((r for r in releases if r.slug == slug), None)
        if release is None:
            if await _unverified(request, slug) is not None:
                return _html(
                    "unverified.html", lang, status=409, site_name=name,
                    page_title=t("unverified", lang), slug=slug,
                    other_path=f"/{'en' if lang == 'nl' else 'nl'}/releases/{slug}",
                )  # fmt: skip
            return _not_found(lang, name)
        view = _release_view(release, lang, releases)
        page = _html(
            "release.html", lang, site_name=name, page_title=view["title"], r=view,
            base=_base(request), other_path=f"/{'en' if lang == 'nl' else 'nl'}/releases/{slug}",
        )  # fmt: skip
        return Rendered.of(page.body, page.media_type, PAGE_MAX_AGE)

    return await _serve(request, ("release", lang, slug, _base(request)), build)
