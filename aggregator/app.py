"""The aggregator's app factory. No import-time state: the lifespan owns the engine, the group
writer, the deadline timers (on the clock the factory is given) and the signing key."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from aggregator.api import admin, analysts, nodes, public
from aggregator.api.releases import router as releases_router
from aggregator.deps import AggregatorState
from aggregator.errors import AggregatorError, ErrorCode, problem
from aggregator.home import load_rotations, load_signing_key, retired_keys
from aggregator.metrics import snapshot
from aggregator.rounds.service import Rounds
from aggregator.services.notify import ClusterNotifier, Notifier
from aggregator.services.registry import NodeKeys
from aggregator.services.writer import Writer
from aggregator.settings import AggregatorSettings
from aggregator.storage.db import (
    is_sqlite,
    libpq_conninfo,
    make_async_engine,
    make_async_sessionmaker,
    require_current_schema,
)
from aggregator.web.pages import router as site_router
from protocol import openapi
from protocol.clock import Clock, SystemClock
from protocol.http import PROBLEM_JSON, BodyLimit
from protocol.observability import CONTENT_TYPE, RequestMetrics, render, request_histogram
from protocol.signing import MemoryNonceStore, Verifier
from servicekit.handlers import install_problem_handlers

log = logging.getLogger("publieksdata.aggregator")


def _problem_response(
    code: ErrorCode,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem(code, detail, **extra)
    headers = dict(headers or {})
    if code is ErrorCode.ENROL_LOCKED and "retry_after_seconds" in extra:
        headers["Retry-After"] = str(extra["retry_after_seconds"])
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def begin_shutdown(app: FastAPI) -> None:
    """Wake every hanging long-poll so that it answers now. Safe to call from a signal
    handler: the work is handed to the app's event loop."""
    loop = getattr(app.state, "loop", None)
    state = getattr(app.state, "aggregator", None)
    if loop is None or state is None or loop.is_closed():
        return
    loop.call_soon_threadsafe(lambda: loop.create_task(state.notifier.stop()))


SWEEP_SECONDS = 10.0
# The problem answers of operations that protocol.openapi cannot tell from their parameters.
PROBLEM_STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET", "/v1/ready"): (503,),
    ("POST", "/v1/enrol"): (403, 409, 429),  # invite_invalid, key_already_enrolled, enrol_locked
    ("POST", "/v1/node/tasks/{task_id}/result"): (403,),  # wrong_node
    ("POST", "/v1/rounds"): (409,),  # no_nodes, would_be_refused
    ("POST", "/v1/releases"): (409,),  # release_not_possible
}


async def _sweep(rounds: Rounds) -> None:
    """With several processes on one database: time out overdue rounds of any process. The
    interval is protocol time, like the deadlines it checks."""
    clock = rounds.clock
    while True:
        await clock.sleep_until(clock.now() + timedelta(seconds=SWEEP_SECONDS))
        try:
            acted = await rounds.sweep()
        except Exception as exc:  # the next sweep tries again
            log.error("round sweep failed: %s", type(exc).__name__)
        else:
            if acted:
                log.info("timed out %d overdue rounds of other processes", acted)


def create_app(settings: AggregatorSettings, clock: Clock | None = None) -> FastAPI:
    """The aggregator app. ``clock`` is protocol time: round and phase deadlines and their
    timers (default: the system clock; tests pass a ``ManualClock``)."""
    protocol_clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        require_current_schema(settings.database_url)
        key = load_signing_key(settings.signing_key_path)
        # Every write goes through the group writer; all other sessions only read. On SQLite
        # the readers get their own engine with deferred transactions, so that they read a WAL
        # snapshot instead of queueing for the write lock behind the writer's batch.
        engine = make_async_engine(settings.database_url)
        read_engine = (
            make_async_engine(settings.database_url, write=False)
            if is_sqlite(settings.database_url)
            else engine
        )
        factory = make_async_sessionmaker(read_engine)
        writer = Writer(make_async_sessionmaker(engine))
        writer.start()
        notifier: Notifier
        if is_sqlite(settings.database_url):
            notifier = Notifier()
        else:  # several aggregator processes may share this database: wake each other
            notifier = ClusterNotifier(libpq_conninfo(settings.database_url))
        node_keys = NodeKeys(factory)
        rounds = Rounds(settings, factory, writer, notifier, key, protocol_clock, node_keys)
        try:
            if isinstance(notifier, ClusterNotifier):
                notifier.on_keys_changed = node_keys.load
                await notifier.start()
            await node_keys.load()
            max_age = timedelta(seconds=settings.message_max_age_seconds)
            retention = max_age * 2 + timedelta(minutes=1)
            app.state.aggregator = AggregatorState(
                settings=settings,
                factory=factory,
                writer=writer,
                notifier=notifier,
                key=key,
                node_keys=node_keys,
                poll_verifier=Verifier(node_keys, MemoryNonceStore(retention), max_age=max_age),
                join_nonces=MemoryNonceStore(retention),
                rounds=rounds,
                rotations=load_rotations(settings),
                retired_keys=retired_keys(settings),
            )
            app.state.loop = asyncio.get_running_loop()
            resumed = await rounds.resume()
            if resumed:
                log.info("resumed %d open rounds", resumed)
            sweeper = (
                asyncio.create_task(_sweep(rounds), name="round-sweep")
                if isinstance(notifier, ClusterNotifier)
                else None
            )
            try:
                yield
            finally:
                if sweeper is not None:
                    sweeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sweeper
        finally:
            rounds.stop()
            if isinstance(notifier, ClusterNotifier):
                await notifier.close()
            await writer.stop()
            await engine.dispose()
            if read_engine is not engine:
                await read_engine.dispose()

    app = FastAPI(
        title="publieksdata aggregator",
        version="1",
        summary="Asks every institution's node the same question and merges the private answers.",
        lifespan=lifespan,
    )
    registry, histogram = request_histogram("publieksdata_aggregator")

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: counts, timings and node connectivity; no figures."""
        state: AggregatorState = request.app.state.aggregator
        return Response(render(registry, await snapshot(state)), media_type=CONTENT_TYPE)

    for part in (public, nodes, analysts, admin):
        app.include_router(part.router)
    app.include_router(releases_router)
    app.include_router(site_router)  # last: its /{lang}/ paths must not shadow the API
    openapi.install(app, [code.value for code in ErrorCode], PROBLEM_STATUSES)

    @app.exception_handler(AggregatorError)
    async def _error(_request: Request, exc: AggregatorError) -> JSONResponse:
        return _problem_response(exc.code, exc.detail, **exc.extra)

    install_problem_handlers(app, ErrorCode, _problem_response, log)

    app.add_middleware(RequestMetrics, histogram=histogram)
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        too_large=problem(ErrorCode.BODY_TOO_LARGE),
        exceeded=lambda: AggregatorError(ErrorCode.BODY_TOO_LARGE),
        rejected=lambda code: problem(ErrorCode(code)),
    )
    # Outermost: behind a trusted TLS proxy, the client is the one the proxy names, so that
    # enrolment lock-outs count per real client rather than once for the proxy.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    return app
