"""The node's app factory. No import-time state: the lifespan owns engines and keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from node.api.routes import router
from node.connector import Connector
from node.deps import NodeState
from node.errors import ErrorCode, NodeError, problem
from node.identity import load_signing_key
from node.link import load_link
from node.metrics import snapshot
from node.services import ledger, policy_store
from node.services.answering import Answerer
from node.services.approvals import Approvals
from node.services.benchmark import ReleaseSource
from node.services.retention import apply_retention
from node.services.trust import DatabaseKeyRing, DatabaseNonceStore
from node.settings import NodeSettings
from node.storage.db import make_engine, make_sessionmaker, require_current_schema
from node.transport import (
    InsecureAggregatorURL,
    aggregator_client,
    check_aggregator_url,
    tls_verify,
)
from node.web import admin
from protocol import openapi
from protocol.clock import Clock, SystemClock
from protocol.http import PROBLEM_JSON, BodyLimit
from protocol.messages import BudgetStatus
from protocol.observability import CONTENT_TYPE, RequestMetrics, render, request_histogram
from protocol.signing import Verifier
from servicekit.handlers import install_problem_handlers

log = logging.getLogger("publieksdata.node")
RETENTION_INTERVAL_SECONDS = 24 * 3600


# The problem answers of operations that protocol.openapi cannot tell from their parameters.
PROBLEM_STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET", "/v1/ready"): (503,),
    ("POST", "/v1/queries"): (403,),  # refused, with a signed refusal
}


def _problem_response(
    code: ErrorCode,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem(code, detail, **extra)
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def _budget_reader(state: NodeState) -> Callable[[], BudgetStatus]:
    def read() -> BudgetStatus:
        with state.reader() as session:
            period = state.answerer.budget_period()
            return ledger.status(session, period, state.settings.budget_rho)

    return read


@asynccontextmanager
async def _connection(state: NodeState, client: httpx.AsyncClient | None) -> AsyncIterator[None]:
    """Hold the outbound connection to the aggregator while the app runs (after 'join')."""
    link = load_link(state.settings.home)
    if link is None or not state.settings.connect:
        yield
        return
    try:
        check_aggregator_url(link.base, state.settings)
    except InsecureAggregatorURL as exc:
        log.error("not connecting to the aggregator: %s", exc)
        yield
        return
    own_client = client is None
    http = client or aggregator_client(state.settings)
    connector = Connector(
        state.settings,
        link,
        state.key,
        state.answerer,
        state.verifier,
        _budget_reader(state),
        http,
        state.writer,
        approvals=state.approvals,
        clock=state.clock,
    )
    state.connector = connector
    runner = asyncio.create_task(connector.run(), name="aggregator-connector")
    log.info("connecting out to the aggregator at %s", link.base)
    try:
        yield
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await connector.close()
        if own_client:
            await http.aclose()


@asynccontextmanager
async def _retention(state: NodeState) -> AsyncIterator[None]:
    """Apply the retention period at start-up, before the node serves anything (so that no
    answer ever counts data older than the period), and then daily (when one is set)."""

    async def once() -> None:
        days = state.settings.retention_days
        if days is None:
            return
        try:
            done = await to_thread.run_sync(apply_retention, state.writer, days)
        except Exception as exc:  # keep serving; try again tomorrow
            log.error("retention run failed: %s", type(exc).__name__)
        else:
            if done.admissions:
                log.info(
                    "retention: deleted %d admissions from before %s",
                    done.admissions,
                    done.cutoff,
                )

    async def run() -> None:
        while True:
            await asyncio.sleep(RETENTION_INTERVAL_SECONDS)
            await once()

    await once()
    task = asyncio.create_task(run(), name="retention")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(
    settings: NodeSettings,
    aggregator_client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """The node app. ``aggregator_client`` replaces the HTTP client of the outbound connection
    (tests wire it to an in-process aggregator); ``clock`` is protocol time, against which task
    deadlines and approval windows run (default: the system clock; tests pass a ManualClock)."""
    protocol_clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        write_engine = make_engine(settings.database_url, write=True)
        read_engine = make_engine(settings.database_url, write=False)
        try:  # dispose the engines also when start-up fails (e.g. an out-of-date schema)
            require_current_schema(write_engine)
            key = load_signing_key(settings.signing_key_path)
            writer = make_sessionmaker(write_engine)
            reader = make_sessionmaker(read_engine)
            max_age = timedelta(seconds=settings.message_max_age_seconds)
            verifier = Verifier(
                DatabaseKeyRing(reader),
                DatabaseNonceStore(writer, retention=max_age * 2 + timedelta(minutes=1)),
                max_age=max_age,
            )
            policy_store.load(reader, settings)  # the admin pages' policy overrides node.env
            state = NodeState(
                settings=settings,
                writer=writer,
                reader=reader,
                key=key,
                verifier=verifier,
                answerer=Answerer(settings, writer, reader, key),
                approvals=Approvals(writer, reader, protocol_clock),
                releases=ReleaseSource(verify=tls_verify(settings)),
                clock=protocol_clock,
            )
            app.state.node = state
            async with _retention(state), _connection(state, aggregator_client):
                yield
        finally:
            write_engine.dispose()
            read_engine.dispose()

    app = FastAPI(
        title="publieksdata node",
        version="1",
        summary="Differentially-private aggregate answers about one institution's audience.",
        lifespan=lifespan,
    )
    app.include_router(router)
    openapi.install(app, [code.value for code in ErrorCode], PROBLEM_STATUSES)
    admin.install(app)
    registry, histogram = request_histogram("publieksdata_node")

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        """Prometheus metrics: no personal data, only counts, budget and timings."""
        state: NodeState = request.app.state.node
        return Response(render(registry, snapshot(state)), media_type=CONTENT_TYPE)

    @app.exception_handler(NodeError)
    async def _node_error(_request: Request, exc: NodeError) -> JSONResponse:
        return _problem_response(exc.code, exc.detail, **exc.extra)

    install_problem_handlers(app, ErrorCode, _problem_response, log)

    app.add_middleware(RequestMetrics, histogram=histogram)
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        too_large=problem(ErrorCode.BODY_TOO_LARGE),
        exceeded=lambda: NodeError(ErrorCode.BODY_TOO_LARGE),
        rejected=lambda code: problem(ErrorCode(code)),
        path_limits={"/admin/import": settings.admin_max_upload_bytes},
    )
    return app
