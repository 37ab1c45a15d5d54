"""The key holder's app factory. No import-time state: the lifespan loads the share and the
signing key and owns the engine; the clock (protocol time, for the rate-limit windows and
invite expiry) is injected."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from keyholder.api.routes import router
from keyholder.deps import KeyholderState
from keyholder.errors import ErrorCode, KeyholderError, problem
from keyholder.services.evaluation import NodeKeys
from keyholder.settings import KeyholderSettings
from keyholder.share import ShareFile
from keyholder.storage.db import make_sessionmaker, make_sync_engine, require_current_schema
from protocol import openapi
from protocol.clock import Clock, SystemClock
from protocol.http import PROBLEM_JSON, BodyLimit
from protocol.signing import MemoryNonceStore, SigningKey, Verifier
from servicekit.handlers import install_problem_handlers

log = logging.getLogger("publieksdata.keyholder")

PROBLEM_STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/v1/enrol"): (403, 409, 429),  # invite_invalid, key_already_enrolled, enrol_locked
    ("POST", "/v1/evaluate"): (401, 409, 413, 429),  # unknown key, replay/key set, batch, limit
}


def _problem_response(
    code: ErrorCode,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem(code, detail, **extra)
    headers = dict(headers or {})
    if "retry_after_seconds" in extra:
        headers["Retry-After"] = str(extra["retry_after_seconds"])
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def load_signing_key(settings: KeyholderSettings) -> SigningKey:
    return SigningKey.from_pem(settings.signing_key_path.read_bytes())


def create_app(settings: KeyholderSettings, clock: Clock | None = None) -> FastAPI:
    """The key holder app. ``clock`` is protocol time (default: the system clock; tests pass a
    ``ManualClock``)."""
    protocol_clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        require_current_schema(settings.database_url)
        share = ShareFile.read(settings.share_path)
        key = load_signing_key(settings)
        engine = make_sync_engine(settings.database_url)
        factory = make_sessionmaker(engine)
        max_age = timedelta(seconds=settings.message_max_age_seconds)
        retention = max_age * 2 + timedelta(minutes=1)
        node_keys = NodeKeys(factory)
        app.state.keyholder = KeyholderState(
            settings=settings,
            factory=factory,
            share=share,
            key=key,
            clock=protocol_clock,
            node_keys=node_keys,
            verifier=Verifier(node_keys, MemoryNonceStore(retention), max_age=max_age),
            join_nonces=MemoryNonceStore(retention),
        )
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="publieksdata key holder",
        version="1",
        summary="Evaluates blinded elements with one share of the sector pseudonym's OPRF key.",
        lifespan=lifespan,
    )
    app.include_router(router)
    openapi.install(app, [code.value for code in ErrorCode], PROBLEM_STATUSES)

    @app.exception_handler(KeyholderError)
    async def _error(_request: Request, exc: KeyholderError) -> JSONResponse:
        return _problem_response(exc.code, exc.detail, **exc.extra)

    install_problem_handlers(app, ErrorCode, _problem_response, log)

    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        too_large=problem(ErrorCode.BODY_TOO_LARGE),
        exceeded=lambda: KeyholderError(ErrorCode.BODY_TOO_LARGE),
        rejected=lambda code: problem(ErrorCode(code)),
    )
    # Outermost: behind a trusted TLS proxy the client is the one the proxy names.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    return app
