"""The key holder's HTTP API: its public description, enrolment, and batch evaluation.

Routes read the body here and do the rest (database, signatures, scalar multiplications) in a
worker thread, so that one large batch does not hold up the event loop.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import anyio
from fastapi import APIRouter, Request
from pydantic import ValidationError

from keyholder.deps import KeyholderState, StateDep
from keyholder.errors import ErrorCode, KeyholderError
from keyholder.services import enrolment, evaluation
from protocol.http import body_json
from protocol.oprf import OprfError
from protocol.sector import (
    EVALUATE,
    EVALUATED,
    KEYHOLDER_JOIN,
    EvaluateRequest,
    EvaluateResponse,
    KeyholderInfo,
    KeyholderJoinRequest,
    KeyholderJoinResponse,
)
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
    sign,
)

log = logging.getLogger("publieksdata.keyholder")
router = APIRouter(prefix="/v1")

_SIGNATURE_CODES = {
    UnknownKey: ErrorCode.UNKNOWN_KEY,
    BadSignature: ErrorCode.BAD_SIGNATURE,
    StaleMessage: ErrorCode.STALE_MESSAGE,
    ReplayedMessage: ErrorCode.REPLAYED_MESSAGE,
    WrongMessageType: ErrorCode.WRONG_MESSAGE_TYPE,
}


def info_of(state: KeyholderState) -> KeyholderInfo:
    share = state.share
    return KeyholderInfo(
        name=state.settings.name,
        key_set=share.key_set,
        index=share.index,
        threshold=share.threshold,
        holders=share.holders,
        public_key=public_key_to_text(state.key.public),
        key_public=share.public_key,
        public_share=share.public_shares[share.index - 1],
        max_batch=state.settings.max_batch,
    )


async def _envelope(request: Request) -> Envelope:
    document = body_json(request.scope, await request.body())
    try:
        return Envelope.model_validate(document)
    except ValidationError:
        raise KeyholderError(
            ErrorCode.INVALID_REQUEST, "the body is not a signed envelope"
        ) from None


def _verify(verifier: Verifier, envelope: Envelope, message_type: str) -> dict[str, Any]:
    try:
        return verifier.verify(envelope, message_type)
    except SignatureError as exc:
        raise KeyholderError(_SIGNATURE_CODES.get(type(exc), ErrorCode.BAD_SIGNATURE)) from None


@router.get("/health", summary="Liveness: the service runs")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/info", summary="This key holder: its key set, index, threshold and public key")
async def info(state: StateDep) -> KeyholderInfo:
    return info_of(state)


@router.post(
    "/enrol",
    summary="Enrol a node with a one-time invite code",
    description="The body is a 'keyholder_join' envelope signed by the key being enrolled.",
    openapi_extra={"requestBody": envelope_request_body()},
)
async def enrol(request: Request, state: StateDep) -> KeyholderJoinResponse:
    source = request.client.host if request.client else "unknown"
    envelope = await _envelope(request)

    def work() -> KeyholderJoinResponse:
        settings, now = state.settings, state.clock.now()
        period = timedelta(minutes=settings.enrol_lockout_minutes)
        with state.factory.begin() as session:
            if enrolment.locked(session, source, settings.enrol_max_failures, period, now):
                raise KeyholderError(ErrorCode.ENROL_LOCKED)
        try:
            join = KeyholderJoinRequest.model_validate(envelope.payload)
            public = public_key_from_text(join.public_key)
        except (ValidationError, ValueError):
            raise KeyholderError(
                ErrorCode.INVALID_REQUEST, "the join message is malformed"
            ) from None
        if key_id_of(public) != envelope.key_id:
            raise KeyholderError(ErrorCode.BAD_SIGNATURE)
        max_age = timedelta(seconds=settings.message_max_age_seconds)
        verifier = Verifier(StaticKeyRing.of(public), state.join_nonces, max_age=max_age)
        _verify(verifier, envelope, KEYHOLDER_JOIN)
        try:
            with state.factory.begin() as session:
                node = enrolment.redeem(session, join, now)
                node_id, institution = node.id, node.institution
        except enrolment.InviteRejected:
            with state.factory.begin() as session:
                enrolment.record_failure(session, source, now)
            raise KeyholderError(ErrorCode.INVITE_INVALID) from None
        except enrolment.KeyInUse:
            raise KeyholderError(ErrorCode.KEY_ALREADY_ENROLLED) from None
        log.info(
            "%s joined as node %s; compare its fingerprint: %s",
            institution,
            node_id,
            fingerprint(public),
        )
        return KeyholderJoinResponse(
            node_id=node_id, institution=institution, keyholder=info_of(state)
        )

    return await anyio.to_thread.run_sync(work)


@router.post(
    "/evaluate",
    summary="Evaluate a batch of blinded elements with this holder's key share",
    description=(
        "The body is an 'oprf_evaluate' envelope signed by an enrolled node; the answer is an "
        "'oprf_evaluated' envelope signed by this key holder, holding k_i·B for every blinded "
        "element B in the same order."
    ),
    openapi_extra={"requestBody": envelope_request_body()},
)
async def evaluate(request: Request, state: StateDep) -> Envelope:
    envelope = await _envelope(request)

    def work() -> Envelope:
        payload = _verify(state.verifier, envelope, EVALUATE)
        node = state.node_keys.node(envelope.key_id)
        if node is None:  # removed between the two reads
            raise KeyholderError(ErrorCode.UNKNOWN_KEY)
        elements = payload.get("elements")
        if isinstance(elements, list) and len(elements) > state.settings.max_batch:
            raise KeyholderError(
                ErrorCode.BATCH_TOO_LARGE,
                f"at most {state.settings.max_batch} elements per request",
                max_batch=state.settings.max_batch,
            )
        try:
            asked = EvaluateRequest.model_validate(payload)
        except ValidationError:
            raise KeyholderError(
                ErrorCode.INVALID_REQUEST, "the evaluation request is malformed"
            ) from None
        if asked.key_set != state.share.key_set:
            raise KeyholderError(ErrorCode.WRONG_KEY_SET)
        try:
            blinded = evaluation.check(asked.elements)
        except OprfError:
            raise KeyholderError(ErrorCode.INVALID_ELEMENT) from None
        limit = evaluation.Limit(
            state.settings.rate_limit_elements,
            timedelta(seconds=state.settings.rate_window_seconds),
        )
        try:
            with state.factory.begin() as session:
                evaluation.admit(
                    session, node.id, asked.year, len(asked.elements), limit, state.clock.now()
                )
        except evaluation.RateLimited as exc:
            with state.factory.begin() as session:  # the refusal is audited too
                session.add(exc.audit)
            seconds = int(exc.retry_after.total_seconds()) + 1
            raise KeyholderError(
                ErrorCode.RATE_LIMITED,
                f"the limit is {limit.elements} elements per {int(limit.window.total_seconds())} s;"
                f" retry in {seconds} s",
                retry_after_seconds=seconds,
            ) from None
        evaluated = evaluation.evaluate(state.share.share, blinded)
        log.info("evaluated %d elements for node %s (year %d)", len(evaluated), node.id, asked.year)
        answer = EvaluateResponse(
            key_set=state.share.key_set,
            index=state.share.index,
            request=envelope.nonce,
            elements=tuple(evaluated),
        )
        return sign(EVALUATED, answer.model_dump(mode="json"), state.key)

    return await anyio.to_thread.run_sync(work)
