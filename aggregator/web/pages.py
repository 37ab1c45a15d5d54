"""The public site's routes: no login, Dutch and English, cacheable.

Each answer is rendered once per chain head and served from memory with an ETag (cache.py);
what a release page shows is built in release_view.py, its charts are drawn in charts.py.

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

import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from aggregator.releases.document import Table
from aggregator.web import csvout, dcat
from aggregator.web.cache import (
    SITE_HEADERS,
    Rendered,
    base_url,
    missing,
    releases_of,
    serve,
    site_cache,
    state_of,
    unverified_of,
    unverified_problem,
)
from aggregator.web.i18n import LANGS, day, t
from aggregator.web.release_view import release_view

router = APIRouter(include_in_schema=False)
PAGE_MAX_AGE = "public, max-age=3600"  # a release page changes only when it is corrected
LIST_MAX_AGE = "public, max-age=60"  # the index and catalogue change with every release
# Signed files never change on one aggregator, but a demo or test aggregator that is set up
# again reuses the same addresses for new releases; a day of caching is safe for both.
DOWNLOAD_MAX_AGE = "public, max-age=86400"

_env = Environment(
    loader=PackageLoader("aggregator.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


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


# --- routes ---------------------------------------------------------------------------------


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> RedirectResponse:
    return RedirectResponse("/nl/", status_code=307, headers=SITE_HEADERS)


STATIC = {"site.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
async def static(name: str, request: Request) -> Response:
    async def build() -> Rendered:
        if name not in STATIC:
            return missing()
        data = resources.files("aggregator.web").joinpath(f"static/{name}").read_bytes()
        return Rendered.of(data, STATIC[name], "public, max-age=86400")

    return await serve(request, ("static", name), build)


@router.api_route("/favicon.ico", methods=["GET", "HEAD"])
async def favicon() -> RedirectResponse:
    return RedirectResponse("/static/favicon.svg", status_code=301, headers=SITE_HEADERS)


@router.api_route("/catalog.jsonld", methods=["GET", "HEAD"])
async def catalogue(request: Request) -> Response:
    async def build() -> Rendered:
        releases = await releases_of(request)
        unverified = [u.slug for u in site_cache(request).unverified]
        document = dcat.catalog(
            releases, base_url(request), state_of(request).settings.name, unverified=unverified
        )
        body = json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")
        return Rendered.of(body, "application/ld+json", LIST_MAX_AGE)

    return await serve(request, ("catalog", base_url(request)), build)


@router.api_route("/releases/{slug}.json", methods=["GET", "HEAD"])
async def release_json(slug: str, request: Request) -> Response:
    async def build() -> Rendered:
        release = next((r for r in await releases_of(request) if r.slug == slug), None)
        if release is None:
            return unverified_problem() if await unverified_of(request, slug) else missing()
        return Rendered.of(release.data, "application/json", DOWNLOAD_MAX_AGE)

    return await serve(request, ("json", slug), build)


async def _table_csv(
    request: Request, slug: str, table_id: str, write: Callable[[Table], bytes]
) -> Rendered:
    release = next((r for r in await releases_of(request) if r.slug == slug), None)
    table = None
    if release is not None:
        table = next((x for x in release.document.tables if x.table_id == table_id), None)
    if table is None:
        return unverified_problem() if await unverified_of(request, slug) else missing()
    return Rendered.of(write(table), "text/csv; charset=utf-8", DOWNLOAD_MAX_AGE)


# Before the international route, whose {table_id} would otherwise take "x.nl".
@router.api_route("/releases/{slug}/{table_id}.nl.csv", methods=["GET", "HEAD"])
async def release_csv_nl(slug: str, table_id: str, request: Request) -> Response:
    async def build() -> Rendered:
        return await _table_csv(request, slug, table_id, csvout.table_csv_nl)

    return await serve(request, ("csv-nl", slug, table_id), build)


@router.api_route("/releases/{slug}/{table_id}.csv", methods=["GET", "HEAD"])
async def release_csv(slug: str, table_id: str, request: Request) -> Response:
    async def build() -> Rendered:
        return await _table_csv(request, slug, table_id, csvout.table_csv)

    return await serve(request, ("csv", slug, table_id), build)


@router.api_route("/{lang}/", methods=["GET", "HEAD"])
async def index(lang: str, request: Request) -> Response:
    name = state_of(request).settings.name

    async def build() -> Rendered:
        if lang not in LANGS:
            return _not_found("nl", name)
        releases = sorted(await releases_of(request), key=lambda r: -r.document.sequence)
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
        unverified = sorted(site_cache(request).unverified, key=lambda u: -u.sequence)
        return _html(
            "index.html", lang, site_name=name, page_title=t("releases", lang),
            items=items, unverified=unverified, other_path=f"/{'en' if lang == 'nl' else 'nl'}/",
        )  # fmt: skip

    return await serve(request, ("index", lang), build)


@router.api_route("/{lang}/privacy", methods=["GET", "HEAD"])
async def privacy(lang: str, request: Request) -> Response:
    name = state_of(request).settings.name

    async def build() -> Rendered:
        if lang not in LANGS:
            return _not_found("nl", name)
        return _html(
            f"privacy_{lang}.html", lang, site_name=name, page_title=t("privacy_title", lang),
            other_path=f"/{'en' if lang == 'nl' else 'nl'}/privacy",
        )  # fmt: skip

    return await serve(request, ("privacy", lang), build)


@router.api_route("/{lang}/releases/{slug}", methods=["GET", "HEAD"])
async def release_page(lang: str, slug: str, request: Request) -> Response:
    name = state_of(request).settings.name

    async def build() -> Rendered:
        if lang not in LANGS:
            return _not_found("nl", name)
        releases = await releases_of(request)
        release = next((r for r in releases if r.slug == slug), None)
        if release is None:
            if await unverified_of(request, slug) is not None:
                return _html(
                    "unverified.html", lang, status=409, site_name=name,
                    page_title=t("unverified", lang), slug=slug,
                    other_path=f"/{'en' if lang == 'nl' else 'nl'}/releases/{slug}",
                )  # fmt: skip
            return _not_found(lang, name)
        view = release_view(release, lang, releases)
        page = _html(
            "release.html", lang, site_name=name, page_title=view["title"], r=view,
            base=base_url(request), other_path=f"/{'en' if lang == 'nl' else 'nl'}/releases/{slug}",
        )  # fmt: skip
        return Rendered.of(page.body, page.media_type, PAGE_MAX_AGE)

    return await serve(request, ("release", lang, slug, base_url(request)), build)
