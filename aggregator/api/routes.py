"""The aggregator's HTTP API (v1).

* public: health, catalogue, report templates;
* nodes (signed messages, no tokens): enrol, long-poll for tasks, post a result;
* analysts (token): nodes and their budgets, rounds;
* admins (token): invites, removing and re-keying nodes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from asyncio import FIRST_COMPLETED
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy import select

from aggregator.deps import AdminDep, AnalystDep, StateDep
from aggregator.errors import AggregatorError, ErrorCode
from aggregator.home import rotation_chain
from aggregator.services import enrolment, preview, registry
from aggregator.services.enrolment import InviteRejected, InviteUsed, KeyInUse, Lockout
from aggregator.storage.db import head_revision
from aggregator.storage.models import Node
from protocol import catalogue
from protocol.api import (
    InviteCreated,
    InviteRequest,
    NodeBudget,
    NodeInfo,
    ReportRequest,
    RoundRequest,
    RoundSummary,
)
from protocol.http import JsonRejected, body_json
from protocol.messages import (
    JOIN,
    NODE_KEY_CONFIRM,
    NODE_KEY_ROTATION,
    POLL,
    JoinRequest,
    JoinResponse,
    NodeKeyRotation,
    NodeReport,
    Poll,
)
from protocol.preview import RoundPreview
from protocol.query import Period, QuerySpec
from protocol.reports import REPORTS, report, year_period
from protocol.results import RoundResult
from protocol.signing import (
    BadSignature,
    Envelope,
    ReplayedMessage,
    SignatureError,
    StaleMessage,
    StaticKeyRing,
    UnknownKey,
    Verifier,
    WrongMessageType,
    envelope_request_body,
    fingerprint,
    key_id_of,
    public_key_from_text,
    public_key_to_text,
    verify_once,
)

router = APIRouter(prefix="/v1")
log = logging.getLogger("publieksdata.aggregator")
CONNECTED_WITHIN = timedelta(minutes=1)

_SIGNATURE_CODES: dict[type[SignatureError], ErrorCode] = {
    UnknownKey: ErrorCode.UNKNOWN_KEY,
    BadSignature: ErrorCode.BAD_SIGNATURE,
    StaleMessage: ErrorCode.STALE_MESSAGE,
    ReplayedMessage: ErrorCode.REPLAYED_MESSAGE,
    WrongMessageType: ErrorCode.WRONG_MESSAGE_TYPE,
}
_SIGNED_BODY = envelope_request_body()


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def _parsed(request: Request, raw: bytes) -> Any:
    """The body as the JSON gate parsed it (the gate itself skips bodies sent as forms)."""
    try:
        return body_json(request.scope, raw)
    except JsonRejected as exc:
        raise AggregatorError(ErrorCode(exc.code)) from None
    except ValueError:  # not JSON (UnicodeDecodeError is a ValueError too)
        raise AggregatorError(ErrorCode.MALFORMED_JSON) from None


async def _envelope(request: Request) -> tuple[bytes, Envelope]:
    raw = await request.body()
    document = _parsed(request, raw)
    try:
        return raw, Envelope.model_validate(document)
    except ValidationError as exc:
        raise AggregatorError(ErrorCode.INVALID_REQUEST, errors=_errors(exc)) from None


def _verify(verifier: Verifier, envelope: Envelope, message_type: str) -> dict[str, Any]:
    try:
        return verifier.verify(envelope, message_type)
    except SignatureError as exc:
        raise AggregatorError(_SIGNATURE_CODES.get(type(exc), ErrorCode.BAD_SIGNATURE)) from None


# --- public -----------------------------------------------------------------------------------


@router.get("/ready", summary="Readiness: the database answers and its schema is current")
async def ready(state: StateDep) -> dict[str, Any]:
    from sqlalchemy import text

    try:
        async with state.factory() as session:
            revision = await session.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception:
        raise AggregatorError(ErrorCode.NOT_READY, "the database does not answer") from None
    if revision != head_revision():
        raise AggregatorError(ErrorCode.NOT_READY, "the database schema is out of date")
    return {"status": "ready"}


@router.get("/health", summary="Liveness and identity of this aggregator")
async def health(state: StateDep) -> dict[str, Any]:
    return {
        "status": "ok",
        "name": state.settings.name,
        "key_id": state.key.key_id,
        "public_key": public_key_to_text(state.key.public),
        "fingerprint": fingerprint(state.key.public),
        "catalogue_version": catalogue.CATALOGUE_VERSION,
    }


@router.get("/catalogue", summary="The public catalogue of dimensions and values")
async def get_catalogue() -> dict[str, object]:
    return catalogue.as_dict()


@router.get("/reports", summary="The standard report templates")
async def reports() -> list[dict[str, Any]]:
    return [template.describe() for template in REPORTS.values()]


# --- nodes --------------------------------------------------------------------------------------


@router.post(
    "/enrol",
    summary="Enrol a node with a one-time invite code",
    description="The body is a 'join' envelope signed by the key being enrolled.",
    openapi_extra={"requestBody": _SIGNED_BODY},
)
async def enrol(request: Request, state: StateDep) -> JoinResponse:
    source = request.client.host if request.client else "unknown"
    now = datetime.now(UTC)
    policy = Lockout(
        state.settings.enrol_max_failures,
        state.settings.enrol_max_failures_total,
        timedelta(minutes=state.settings.enrol_lockout_minutes),
    )
    async with state.factory() as session:
        locked = await enrolment.locked_for(session, source, policy, now)
    if locked is not None:
        raise AggregatorError(
            ErrorCode.ENROL_LOCKED, retry_after_seconds=int(locked.total_seconds()) + 1
        )
    _, envelope = await _envelope(request)
    try:
        join = JoinRequest.model_validate(envelope.payload)
        public = public_key_from_text(join.public_key)
    except (ValidationError, ValueError):
        raise AggregatorError(ErrorCode.INVALID_REQUEST, "the join message is malformed") from None
    if key_id_of(public) != envelope.key_id:
        raise AggregatorError(ErrorCode.BAD_SIGNATURE)
    max_age = timedelta(seconds=state.settings.message_max_age_seconds)
    _verify(Verifier(StaticKeyRing.of(public), state.join_nonces, max_age=max_age), envelope, JOIN)

    async def redeem(session: Any) -> Node | str:
        try:
            return await enrolment.redeem(session, join, now)
        except InviteUsed:
            return "used"
        except InviteRejected:
            return "rejected"
        except KeyInUse:
            return "key_in_use"

    node = await state.writer.run(redeem)
    if node == "rejected":

        async def fail(session: Any) -> None:
            await enrolment.record_failure(session, source, now)

        await state.writer.run(fail)
        raise AggregatorError(ErrorCode.INVITE_INVALID)
    if node == "used":  # the same answer as a wrong code, but not counted: no guess
        raise AggregatorError(ErrorCode.INVITE_INVALID)
    if node == "key_in_use":
        raise AggregatorError(ErrorCode.KEY_ALREADY_ENROLLED)
    assert isinstance(node, Node)
    await state.node_keys.load()
    state.notifier.keys_changed()
    log.info(
        "%s joined as node %s; compare its fingerprint: %s",
        node.institution,
        node.id,
        fingerprint(public),
    )
    return JoinResponse(
        node_id=node.id,
        institution=node.institution,
        aggregator_key=public_key_to_text(state.key.public),
        aggregator_key_id=state.key.key_id,
    )


@router.post(
    "/node/poll",
    summary="Long-poll for tasks (nodes only)",
    description=(
        "The body is a 'poll' envelope signed by an enrolled node. The response holds the "
        "node's unsettled tasks, each a 'task' envelope signed by the aggregator; it comes as "
        "soon as there is one, or empty after wait_seconds."
    ),
    openapi_extra={"requestBody": _SIGNED_BODY},
)
async def poll(request: Request, state: StateDep) -> dict[str, Any]:
    """The response is {"tasks": [...]} or, for a node that still trusts a retired aggregator
    key, {"tasks": [], "key_rotation": [...]}: the chain of rotation messages, each signed by the
    key before it, from the node's key to the current one; or, for a node that reports less
    spent than it signed before (restored from an old backup), {"tasks": [],
    "budget_proof": envelope}: that earlier message, so that it raises its ledger first."""
    _, envelope = await _envelope(request)
    await state.node_keys.fresh(envelope.key_id)
    payload = _verify(state.poll_verifier, envelope, POLL)
    try:
        message = Poll.model_validate(payload)
    except ValidationError as exc:
        raise AggregatorError(ErrorCode.INVALID_REQUEST, errors=_errors(exc)) from None
    if message.aggregator_key_id != state.key.key_id:
        chain = rotation_chain(state.rotations, message.aggregator_key_id, state.key.key_id)
        if not chain:
            raise AggregatorError(
                ErrorCode.INVALID_REQUEST, "the node trusts another aggregator key; re-join"
            )
        return {"tasks": [], "key_rotation": [e.model_dump(mode="json") for e in chain]}
    node = state.node_keys.get(envelope.key_id)
    if node is None:  # removed between verification and now
        raise AggregatorError(ErrorCode.UNKNOWN_KEY)
    report: NodeReport = message.report
    now = datetime.now(UTC)

    async def remember(session: Any) -> str | None:
        await registry.record_report(session, node.node_id, report, now)
        await registry.record_awaiting(session, node.node_id, message.awaiting_approval)
        return await registry.record_proof(
            session, node.node_id, envelope.model_dump_json(), report.budget
        )

    proof = await state.writer.run(remember)
    if proof is not None:  # the node forgot spending it signed for: it must not answer first
        return {"tasks": [], "budget_proof": json.loads(proof)}
    loop = asyncio.get_running_loop()
    until = loop.time() + min(message.wait_seconds, state.settings.max_poll_wait_seconds)
    event = state.notifier.node_event(node.node_id)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        while True:
            event.clear()
            if gone.done() or state.notifier.stopping.is_set():
                return {"tasks": []}  # nobody to hand tasks to, or shutting down
            tasks = await state.rounds.pending_for(node.node_id, envelope.key_id, message.in_flight)
            if tasks:
                return {"tasks": tasks}
            remaining = until - loop.time()
            if remaining <= 0:
                return {"tasks": []}
            woken = asyncio.ensure_future(event.wait())
            await asyncio.wait({woken, gone}, timeout=remaining, return_when=FIRST_COMPLETED)
            woken.cancel()
            if state.node_keys.get(envelope.key_id) is None:
                raise AggregatorError(ErrorCode.UNKNOWN_KEY)
    finally:
        gone.cancel()


@router.post(
    "/node/rotate",
    summary="A node replaces its key: announced by the old key, confirmed by the new one",
    openapi_extra={"requestBody": _SIGNED_BODY},
)
async def rotate_node_key(request: Request, state: StateDep) -> dict[str, Any]:
    """The body is a 'node_key_rotation' envelope signed by the node's enrolled key. Both keys
    are accepted for ``node_key_overlap_hours``; then only the new one."""
    _, envelope = await _envelope(request)
    await state.node_keys.fresh(envelope.key_id)
    payload = _verify(state.poll_verifier, envelope, NODE_KEY_ROTATION)
    try:
        message = NodeKeyRotation.model_validate(payload)
        new_key = public_key_from_text(message.new_key)
        confirmation = Envelope.model_validate(message.confirmation)
        confirmed = verify_once(confirmation, NODE_KEY_CONFIRM, new_key)
    except (ValidationError, ValueError, SignatureError) as exc:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST, f"not a valid key rotation: {str(exc)[:120]}"
        ) from None
    stated = {
        "old_key_id": message.old_key_id,
        "new_key_id": message.new_key_id,
        "new_key": message.new_key,
    }
    if (
        message.old_key_id != envelope.key_id
        or message.new_key_id != key_id_of(new_key)
        or confirmed != stated
    ):
        raise AggregatorError(ErrorCode.INVALID_REQUEST, "the rotation's keys do not match")
    node = state.node_keys.get(envelope.key_id)
    if node is None:
        raise AggregatorError(ErrorCode.UNKNOWN_KEY)
    now = datetime.now(UTC)
    until = now + timedelta(hours=state.settings.node_key_overlap_hours)

    async def rotate(session: Any) -> bool:
        row = await session.get(Node, node.node_id)
        if row is None or row.status != "active" or row.key_id != envelope.key_id:
            return False
        taken = await session.scalar(select(Node.id).where(Node.key_id == message.new_key_id))
        if taken is not None:
            return False
        row.retired_key_id, row.retired_public_key = row.key_id, row.public_key
        row.retired_until = until
        row.key_id, row.public_key = message.new_key_id, message.new_key
        return True

    if not await state.writer.run(rotate):
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST, "this key was rotated already, or the new key is in use"
        )
    await state.node_keys.load()
    state.notifier.keys_changed()
    log.info(
        "node %s rotated its key %s -> %s; the old key is accepted until %s",
        node.node_id,
        envelope.key_id,
        message.new_key_id,
        until.isoformat(timespec="seconds"),
    )
    return {"status": "rotated", "new_key_id": message.new_key_id, "overlap_until": until}


async def _disconnected(request: Request) -> None:
    """Return when the client goes away (the body has been read, so only a disconnect is
    left to receive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post(
    "/node/tasks/{task_id}/result",
    summary="Post a node's signed answer or refusal for a task (nodes only)",
    openapi_extra={"requestBody": _SIGNED_BODY},
)
async def post_result(
    task_id: str,
    request: Request,
    state: StateDep,
) -> dict[str, str]:
    raw = await request.body()
    _parsed(request, raw)
    await state.rounds.accept(task_id, raw)
    return {"status": "accepted"}


# --- analysts ------------------------------------------------------------------------------------


@router.get("/nodes", summary="Enrolled nodes, their connection and budget")
async def nodes(state: StateDep, _: AnalystDep) -> list[NodeInfo]:
    now = datetime.now(UTC)
    async with state.factory() as session:
        rows = await registry.active_nodes(session)
        pending = await registry.committed_since_report(session)
    infos = []
    for row in rows:
        budget = None
        report = registry.stored_report(row)
        if report is not None and row.report_at is not None:
            reported = report.budget
            budget = NodeBudget(
                period=reported.period,
                cap_rho=reported.cap_rho,
                spent_rho=reported.spent_rho,
                remaining_rho=registry.remaining_estimate(row, pending) or 0.0,
                reported_at=row.report_at,
            )
        infos.append(
            NodeInfo(
                node_id=row.id,
                institution=row.institution,
                status=row.status,
                key_id=row.key_id,
                fingerprint=fingerprint(public_key_from_text(row.public_key)),
                joined_at=row.joined_at,
                last_seen_at=row.last_seen_at,
                connected=row.last_seen_at is not None
                and now - row.last_seen_at < CONNECTED_WITHIN,
                budget=budget,
            )
        )
    return infos


def _spec_from_report(request: ReportRequest) -> QuerySpec:
    if request.name not in REPORTS:
        raise AggregatorError(
            ErrorCode.INVALID_QUERY, f"unknown report; choose one of: {', '.join(REPORTS)}"
        )
    if request.year is not None and (request.start or request.end):
        raise AggregatorError(ErrorCode.INVALID_QUERY, "give a year or start and end, not both")
    try:
        if request.start is not None and request.end is not None:
            period = Period(start=request.start, end=request.end)
        elif request.start is None and request.end is None:
            period = year_period(request.year or date.today().year - 1)
        else:
            raise ValueError("give both start and end")
        return report(request.name).build(
            period=period,
            rho=request.rho,
            epsilon=request.epsilon,
            codes=request.codes,
            mode=request.mode,
        )
    except ValueError as exc:
        raise AggregatorError(ErrorCode.INVALID_QUERY, str(exc).splitlines()[0]) from None


@router.post("/rounds", status_code=201, summary="Ask the federation a question")
async def create_round(body: RoundRequest, state: StateDep, who: AnalystDep) -> RoundResult:
    spec = body.spec if body.spec is not None else _spec_from_report(body.report)  # type: ignore[arg-type]
    round_id = await state.rounds.create(
        spec,
        who.name,
        list(body.nodes) if body.nodes is not None else None,
        body.deadline_seconds,
        body.quorum,
        threshold=body.threshold,
        approval_deadline_seconds=body.approval_deadline_seconds,
    )
    return await state.rounds.result(round_id)


@router.post(
    "/rounds/preview",
    summary="What a round would cost and how accurate it would be; nothing is asked or spent",
)
async def preview_round(body: RoundRequest, state: StateDep, _: AnalystDep) -> RoundPreview:
    spec = body.spec if body.spec is not None else _spec_from_report(body.report)  # type: ignore[arg-type]
    return await preview.preview(
        state.settings,
        state.factory,
        spec,
        list(body.nodes) if body.nodes is not None else None,
        body.quorum,
        body.threshold,
    )


@router.get("/rounds", summary="Recent rounds, newest first")
async def list_rounds(state: StateDep, _: AnalystDep) -> list[RoundSummary]:
    return [
        RoundSummary(
            round_id=row.id,
            title=QuerySpec.model_validate_json(row.spec).title,
            analyst=row.analyst,
            state=row.state,
            created_at=row.created_at,
            deadline=row.deadline,
            closed_at=row.closed_at,
        )
        for row in await state.rounds.recent()
    ]


@router.get(
    "/rounds/{round_id}",
    summary="A round's coverage and, once closed, its merged result",
    description=(
        "With wait > 0 the response is held until more than 'seen' nodes have settled, the "
        "round closes, or wait seconds pass."
    ),
)
async def get_round(
    round_id: str,
    state: StateDep,
    _: AnalystDep,
    wait: Annotated[float, Query(ge=0, le=60)] = 0,
    seen: Annotated[int, Query(ge=-1, le=1_000_000)] = -1,
) -> RoundResult:
    if len(round_id) > 80:
        raise AggregatorError(ErrorCode.ROUND_NOT_FOUND)
    return await state.rounds.wait(round_id, seen, wait)


# --- admins --------------------------------------------------------------------------------------


async def _invite(
    state: StateDep, who: str, institution: str, hours: float | None, node_id: str | None
) -> InviteCreated:
    valid = timedelta(hours=hours or state.settings.invite_valid_hours)

    async def create(session: Any) -> tuple[str, Any]:
        return await enrolment.create_invite(session, institution, who, valid, node_id)

    code, invite = await state.writer.run(create)
    return InviteCreated(
        code=code,
        institution=invite.institution,
        node_id=node_id,
        expires_at=invite.expires_at,
        aggregator_fingerprint=fingerprint(state.key.public),
    )


@router.post("/admin/invites", status_code=201, summary="Create a one-time invite code")
async def create_invite(body: InviteRequest, state: StateDep, who: AdminDep) -> InviteCreated:
    return await _invite(state, who.name, body.institution, body.valid_hours, None)


@router.delete("/admin/nodes/{node_id}", status_code=204, summary="Remove a node")
async def delete_node(node_id: str, state: StateDep, _: AdminDep) -> Response:
    async def remove(session: Any) -> list[str] | None:
        return await registry.remove_node(session, node_id)

    changed = await state.writer.run(remove)
    if changed is None:
        raise AggregatorError(ErrorCode.UNKNOWN_NODE)
    await state.node_keys.load()
    state.notifier.keys_changed()
    state.notifier.forget_node(node_id)
    for round_id in changed:
        await state.notifier.round_changed(round_id)
    return Response(status_code=204)


@router.post(
    "/admin/nodes/{node_id}/rekey",
    status_code=201,
    summary="An invite with which an enrolled node replaces its key",
)
async def rekey_node(node_id: str, state: StateDep, who: AdminDep) -> InviteCreated:
    async with state.factory() as session:
        node = await session.get(Node, node_id)
    if node is None or node.status != "active":
        raise AggregatorError(ErrorCode.UNKNOWN_NODE)
    return await _invite(state, who.name, node.institution, None, node_id)
