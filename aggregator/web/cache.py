"""What the public site keeps in memory, and how it answers from it.

Releases never change, so each page, CSV and catalogue is rendered once and kept in memory,
keyed by the chain's head (which changes only when a release is published: a newer version
changes the older version's page, which then says "corrected"). The head is read from the
database at most once a second. Every response carries a strong ETag (SHA-256 of the body) and
Cache-Control; a request with a matching If-None-Match gets 304 without a body. A stored release
that fails verification is never served; the site names it instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request, Response

from aggregator.deps import AggregatorState
from aggregator.errors import ErrorCode, problem
from aggregator.releases import store
from aggregator.releases.chain import SealedRelease, parse, stored_problem
from protocol.http import PROBLEM_JSON

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


def state_of(request: Request) -> AggregatorState:
    state: AggregatorState = request.app.state.aggregator
    return state


def site_cache(request: Request) -> SiteCache:
    cache = getattr(request.app.state, "site", None)
    if cache is None:
        cache = SiteCache()
        request.app.state.site = cache
    return cache


async def current(request: Request) -> tuple[SiteCache, str]:
    """The cache and the chain's head hash ("" before the first release)."""
    cache = site_cache(request)
    if time.monotonic() - cache.checked_at > HEAD_TTL:
        async with cache.lock:
            if time.monotonic() - cache.checked_at > HEAD_TTL:
                async with state_of(request).factory() as session:
                    head = await store.head(session)
                cache.head = "" if head is None else head[1]
                cache.checked_at = time.monotonic()
    return cache, cache.head


async def releases_of(request: Request) -> list[SealedRelease]:
    """Every verified release in chain order. A release never changes, so each is checked and
    parsed once: a new head loads only the releases not seen before. A release that fails
    verification is left out here and listed in ``cache.unverified`` instead."""
    cache, head = await current(request)
    if cache.releases_head != head:
        state = state_of(request)
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


async def unverified_of(request: Request, slug: str) -> Unverified | None:
    await releases_of(request)
    return next((u for u in site_cache(request).unverified if u.slug == slug), None)


def unverified_problem() -> Rendered:
    body = json.dumps(problem(ErrorCode.RELEASE_UNVERIFIED)).encode()
    return Rendered.of(body, "application/problem+json", "no-store", 409)


def base_url(request: Request) -> str:
    configured = state_of(request).settings.public_base_url
    return (configured or str(request.base_url)).rstrip("/")


async def serve(
    request: Request, key: tuple[str, ...], build: Callable[[], Awaitable[Rendered]]
) -> Response:
    cache, head = await current(request)
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


def missing() -> Rendered:
    body = problem(ErrorCode.RELEASE_NOT_FOUND, "There is no release or table with that name.")
    return Rendered.of(json.dumps(body).encode(), PROBLEM_JSON, "no-store", 404)
