"""The node's HTTP API (v1): health, catalogue, budget, report templates, signed queries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from node.deps import StateDep
from node.errors import ErrorCode, NodeError
from node.services import ledger
from node.services.answering import Answered
from protocol import catalogue
from protocol.http import JsonRejected, body_json
from protocol.messages import QUERY, REFUSAL, BudgetStatus, QueryRequest
from protocol.reports import REPORTS
from protocol.signing import (
    BadSignature,
    Envelope,
    ReplayedMessage,
    SignatureError,
    StaleMessage,
    UnknownKey,
    WrongMessageType,
    envelope_request_body,
    sign,
)

router = APIRouter(prefix="/v1")

_SIGNATURE_CODES: dict[type[SignatureError], ErrorCode] = {
    UnknownKey: ErrorCode.UNKNOWN_KEY,
    BadSignature: ErrorCode.BAD_SIGNATURE,
    StaleMessage: ErrorCode.STALE_MESSAGE,
    ReplayedMessage: ErrorCode.REPLAYED_MESSAGE,
    WrongMessageType: ErrorCode.WRONG_MESSAGE_TYPE,
}


@router.get("/ready", summary="Readiness: the database answers and its schema is current")
def ready(state: StateDep) -> dict[str, Any]:
    from sqlalchemy import text

    from node.storage.db import SchemaOutOfDate, require_current_schema

    try:
        with state.reader() as session:
            session.execute(text("SELECT 1"))
            bind = session.get_bind()
        require_current_schema(bind)  # type: ignore[arg-type]
    except SchemaOutOfDate:
        raise NodeError(ErrorCode.NOT_READY, "the database schema is out of date") from None
    except Exception:
        raise NodeError(ErrorCode.NOT_READY, "the database does not answer") from None
    return {"status": "ready"}


@router.get("/health", summary="Liveness and identity of this node")
def health(state: StateDep) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "ok",
        "institution": state.settings.institution,
        "key_id": state.key.key_id,
        "catalogue_version": catalogue.CATALOGUE_VERSION,
    }
    if state.connector is not None:
        status = state.connector.status
        body["aggregator"] = {
            "url": state.connector.link.base,
            "connected": status.connected,
            "last_contact": status.last_contact.isoformat() if status.last_contact else None,
            "tasks_answered": status.tasks_answered,
        }
    return body


@router.get("/catalogue", summary="The public catalogue of dimensions and values")
def get_catalogue() -> dict[str, object]:
    return catalogue.as_dict()


@router.get("/budget", summary="This node's privacy budget for the current period")
def budget(state: StateDep) -> BudgetStatus:
    with state.reader() as session:
        return ledger.status(session, state.answerer.budget_period(), state.settings.budget_rho)


@router.get("/reports", summary="The standard report templates this node answers")
def reports() -> list[dict[str, Any]]:
    return [report.describe() for report in REPORTS.values()]


def _validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    # Location and message only: never echo input values back.
    return [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


@router.post(
    "/queries",
    summary="Answer a signed query",
    description=(
        "The body is a signed envelope of type 'query' whose payload is a QueryRequest. "
        "The answer is a signed envelope of type 'answer'; a refusal is a 403 problem document "
        "carrying a signed 'refusal'. A node whose operator approves every query (approval "
        "'manual') answers no query here: 403 'approval_required', before anything is spent."
    ),
    responses={200: {"content": {"application/json": {}}}},
    openapi_extra={"requestBody": envelope_request_body()},
)
async def post_query(request: Request, state: StateDep) -> Response:
    raw = await request.body()
    try:  # as the JSON gate parsed it (the gate itself skips bodies sent as forms)
        document = body_json(request.scope, raw)
    except JsonRejected as exc:
        raise NodeError(ErrorCode(exc.code)) from None
    except ValueError:  # not JSON (UnicodeDecodeError is a ValueError too)
        raise NodeError(ErrorCode.MALFORMED_JSON) from None
    try:
        envelope = Envelope.model_validate(document)
    except ValidationError as exc:
        raise NodeError(ErrorCode.INVALID_REQUEST, errors=_validation_detail(exc)) from None
    try:
        payload = await run_in_threadpool(state.verifier.verify, envelope, QUERY)
    except SignatureError as exc:
        raise NodeError(_SIGNATURE_CODES.get(type(exc), ErrorCode.BAD_SIGNATURE)) from None
    try:
        query = QueryRequest.model_validate(payload)
    except ValidationError as exc:
        raise NodeError(ErrorCode.INVALID_QUERY, errors=_validation_detail(exc)) from None
    if state.settings.approval == "manual":
        # Only the aggregator's tasks wait for the operator (node/connector.py); answering here
        # would skip the approval. Nothing is filed, spent or answered.
        raise NodeError(ErrorCode.APPROVAL_REQUIRED)
    outcome = await run_in_threadpool(state.answerer.answer, query, envelope.key_id)
    if isinstance(outcome, Answered):
        headers = {"X-Publieksdata-Replayed": "true" if outcome.replayed else "false"}
        return Response(outcome.body, media_type="application/json", headers=headers)
    signed = sign(REFUSAL, outcome.model_dump(mode="json"), state.key)
    raise NodeError(
        ErrorCode.REFUSED,
        outcome.message,
        reason=outcome.reason.value,
        refusal=signed.model_dump(mode="json"),
    )
