"""Key holders for tests: a ceremony, one home per holder, the real app behind a TestClient
(sync, with its lifespan), and a node-side pseudonymiser wired to them in-process. No mocks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
from fastapi import FastAPI

from keyholder.app import create_app
from keyholder.home import init_home
from keyholder.services.enrolment import create_invite
from keyholder.settings import KeyholderSettings
from keyholder.share import ShareFile, ceremony
from keyholder.storage.db import make_sessionmaker, make_sync_engine
from node.ingest.sector import SectorPseudonymiser
from node.keyholders import KeyholderLink, SectorConfig
from node.services.sector_enrolment import join
from protocol.clock import ManualClock
from protocol.signing import SigningKey

CLOSED_PORT = "http://127.0.0.1:9"  # discard: nothing listens on loopback here


class AppThread(httpx.BaseTransport):
    """A sync httpx transport to an ASGI app that runs, lifespan included, on an event loop
    in a thread of its own (the node's import is synchronous; the key holder app is not)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.inner = httpx.ASGITransport(app)
        self._lifespan = app.router.lifespan_context(app)
        self._call(self._lifespan.__aenter__())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> httpx.Response:
            inner = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self.inner.handle_async_request(inner)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return cast(httpx.Response, self._call(send()))

    def close(self) -> None:
        if self.loop.is_running():
            self._call(self._lifespan.__aexit__(None, None, None))
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


class Borrowed(httpx.BaseTransport):
    """A transport a client may close without stopping the app behind it."""

    def __init__(self, inner: AppThread) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)


@dataclass
class Holder:
    settings: KeyholderSettings
    share: ShareFile
    client: httpx.Client
    url: str
    up: bool = True

    def invite(self, institution: str = "Theater") -> str:
        engine = make_sync_engine(self.settings.database_url)
        try:
            with make_sessionmaker(engine).begin() as session:
                valid = timedelta(hours=self.settings.invite_valid_hours)
                code, _ = create_invite(session, institution, datetime.now(UTC), valid)
        finally:
            engine.dispose()
        return code


@dataclass
class Holders:
    holders: list[Holder]
    clock: ManualClock
    shares: list[ShareFile] = field(default_factory=list)

    def by_url(self, url: str) -> Holder:
        return next(h for h in self.holders if h.url == url)

    def client_for(self, link: KeyholderLink) -> httpx.Client:
        """The holder's in-process client; for a holder that is down, a real client to a
        loopback port where nothing listens."""
        holder = self.by_url(link.url)
        if not holder.up:
            return httpx.Client(base_url=CLOSED_PORT, timeout=5)
        transport = holder.client._transport
        assert isinstance(transport, AppThread)
        return httpx.Client(transport=Borrowed(transport), base_url=holder.url)

    def enrol(self, home: Path, key: SigningKey, institution: str = "Theater") -> SectorConfig:
        config: SectorConfig | None = None
        for holder in self.holders:
            _, config = join(
                home, institution, key, holder.url, holder.invite(institution), holder.client
            )
        assert config is not None
        return config

    def pseudonymiser(
        self, config: SectorConfig, key: SigningKey, batch: int = 5_000
    ) -> SectorPseudonymiser:
        return SectorPseudonymiser(config, key, client_for=self.client_for, batch=batch)


@contextmanager
def running_holders(
    tmp_path: Path,
    threshold: int = 2,
    holders: int = 3,
    first_database_url: str | None = None,
    **settings: object,
) -> Iterator[Holders]:
    """``n`` key holders on SQLite; the first on ``first_database_url`` when given (the
    PostgreSQL variant of a test)."""
    shares = ceremony(threshold, holders)
    clock = ManualClock()
    with ExitStack() as stack:
        made = []
        for share in shares:
            home = tmp_path / f"keyholder-{share.index}"
            url_of_db = first_database_url if share.index == 1 else None
            init_home(home, share, f"Holder {share.index}", url_of_db)
            config = KeyholderSettings.load(home, **settings)
            url = f"http://127.0.0.1:{8490 + share.index}"
            transport = AppThread(create_app(config, clock))
            stack.callback(transport.close)
            client = stack.enter_context(httpx.Client(transport=transport, base_url=url))
            made.append(Holder(config, share, client, url))
        yield Holders(made, clock, shares)
