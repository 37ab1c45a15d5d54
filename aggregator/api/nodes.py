"""The nodes' part of the API: signed messages, no tokens. Enrol, long-poll for tasks, rotate
a key, post a result."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from aggregator.api.signed import SIGNED_BODY, envelope, errors, parsed, verify
from aggregator.deps import StateDep
from aggregator.errors import AggregatorError, ErrorCode
from aggregator.home import rotation_chain
from aggregator.services import enrolment, reports, rotation
from aggregator.services.enrolment import Lockout
from aggregator.services.longpoll import long_poll
from protocol.messages import JOIN, NODE_KEY_ROTATION, POLL, JoinRequest, JoinResponse, Poll
from protocol.signing import (
    StaticKeyRing,
    Verifier,
    fingerprint,
    key_id_of,
    public_key_from_text,
    public_key_to_text,
)

router = APIRouter(prefix="/v1")
log = logging.getLogger("publieksdata.aggregator")


@router.post(
    "/enrol",
    summary="Enrol a node with a one-time invite code",
    description="The body is a 'join' envelope signed by the key being enrolled.",
    openapi_extra={"requestBody": SIGNED_BODY},
)
async def enrol(request: Request, state: StateDep) -> JoinResponse:
    source = request.client.host if request.client else "unknown"
    now = datetime.now(UTC)
    settings = state.settings
    policy = Lockout(
        settings.enrol_max_failures,
        settings.enrol_max_failures_total,
        timedelta(minutes=settings.enrol_lockout_minutes),
    )
    await enrolment.refuse_if_locked(state.factory, source, policy, now)
    _, signed = await envelope(request)
    try:
        join = JoinRequest.model_validate(signed.payload)
        public = public_key_from_text(join.public_key)
    except (ValidationError, ValueError):
        raise AggregatorError(ErrorCode.INVALID_REQUEST, "the join message is malformed") from None
    if key_id_of(public) != signed.key_id:
        raise AggregatorError(ErrorCode.BAD_SIGNATURE)
    max_age = timedelta(seconds=settings.message_max_age_seconds)
    verify(Verifier(StaticKeyRing.of(public), state.join_nonces, max_age=max_age), signed, JOIN)
    node = await enrolment.join(state.writer, join, source, now)
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
    openapi_extra={"requestBody": SIGNED_BODY},
)
async def poll(request: Request, state: StateDep) -> dict[str, Any]:
    """The response is {"tasks": [...]} or, for a node that still trusts a retired aggregator
    key, {"tasks": [], "key_rotation": [...]}: the chain of rotation messages, each signed by the
    key before it, from the node's key to the current one; or, for a node that reports less
    spent than it signed before (restored from an old backup), {"tasks": [],
    "budget_proof": envelope}: that earlier message, so that it raises its ledger first."""
    _, signed = await envelope(request)
    await state.node_keys.fresh(signed.key_id)
    payload = verify(state.poll_verifier, signed, POLL)
    try:
        message = Poll.model_validate(payload)
    except ValidationError as exc:
        raise AggregatorError(ErrorCode.INVALID_REQUEST, errors=errors(exc)) from None
    if message.aggregator_key_id != state.key.key_id:
        chain = rotation_chain(state.rotations, message.aggregator_key_id, state.key.key_id)
        if not chain:
            raise AggregatorError(
                ErrorCode.INVALID_REQUEST, "the node trusts another aggregator key; re-join"
            )
        return {"tasks": [], "key_rotation": [e.model_dump(mode="json") for e in chain]}
    node = state.node_keys.get(signed.key_id)
    if node is None:  # removed between verification and now
        raise AggregatorError(ErrorCode.UNKNOWN_KEY)
    proof = await reports.record_poll(
        state.writer, node.node_id, message, signed.model_dump_json(), datetime.now(UTC)
    )
    if proof is not None:  # the node forgot spending it signed for: it must not answer first
        return {"tasks": [], "budget_proof": json.loads(proof)}
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        tasks = await long_poll(
            state.rounds.pending_for,
            state.notifier,
            lambda: state.node_keys.get(signed.key_id) is not None,
            node.node_id,
            signed.key_id,
            message.in_flight,
            min(message.wait_seconds, state.settings.max_poll_wait_seconds),
            gone,
        )
    finally:
        gone.cancel()
    return {"tasks": tasks}


async def _disconnected(request: Request) -> None:
    """Return when the client goes away (the body has been read, so only a disconnect is
    left to receive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post(
    "/node/rotate",
    summary="A node replaces its key: announced by the old key, confirmed by the new one",
    openapi_extra={"requestBody": SIGNED_BODY},
)
async def rotate_node_key(request: Request, state: StateDep) -> dict[str, Any]:
    """The body is a 'node_key_rotation' envelope signed by the node's enrolled key. Both keys
    are accepted for ``node_key_overlap_hours``; then only the new one."""
    _, signed = await envelope(request)
    await state.node_keys.fresh(signed.key_id)
    message = rotation.check(verify(state.poll_verifier, signed, NODE_KEY_ROTATION), signed.key_id)
    node = state.node_keys.get(signed.key_id)
    if node is None:
        raise AggregatorError(ErrorCode.UNKNOWN_KEY)
    until = datetime.now(UTC) + timedelta(hours=state.settings.node_key_overlap_hours)
    await rotation.rotate(state.writer, node.node_id, message, until)
    await state.node_keys.load()
    state.notifier.keys_changed()
    log.info(
        "node %s rotated its key %s -> %s; the old key is accepted until %s",
        node.node_id,
        signed.key_id,
        message.new_key_id,
        until.isoformat(timespec="seconds"),
    )
    return {"status": "rotated", "new_key_id": message.new_key_id, "overlap_until": until}


@router.post(
    "/node/tasks/{task_id}/result",
    summary="Post a node's signed answer or refusal for a task (nodes only)",
    openapi_extra={"requestBody": SIGNED_BODY},
)
async def post_result(task_id: str, request: Request, state: StateDep) -> dict[str, str]:
    raw = await request.body()
    parsed(request, raw)
    await state.rounds.accept(task_id, raw)
    return {"status": "accepted"}
