"""What every route that takes a signed envelope does first: read the body the JSON gate parsed,
validate the envelope, and verify it, mapping each failure to its error code."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import ValidationError

from aggregator.errors import AggregatorError, ErrorCode
from protocol.http import JsonRejected, body_json
from protocol.signing import (
    BadSignature,
    Envelope,
    ReplayedMessage,
    SignatureError,
    StaleMessage,
    UnknownKey,
    Verifier,
    WrongMessageType,
    envelope_request_body,
)

SIGNATURE_CODES: dict[type[SignatureError], ErrorCode] = {
    UnknownKey: ErrorCode.UNKNOWN_KEY,
    BadSignature: ErrorCode.BAD_SIGNATURE,
    StaleMessage: ErrorCode.STALE_MESSAGE,
    ReplayedMessage: ErrorCode.REPLAYED_MESSAGE,
    WrongMessageType: ErrorCode.WRONG_MESSAGE_TYPE,
}
SIGNED_BODY = envelope_request_body()


def errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def parsed(request: Request, raw: bytes) -> Any:
    """The body as the JSON gate parsed it (the gate itself skips bodies sent as forms)."""
    try:
        return body_json(request.scope, raw)
    except JsonRejected as exc:
        raise AggregatorError(ErrorCode(exc.code)) from None
    except ValueError:  # not JSON (UnicodeDecodeError is a ValueError too)
        raise AggregatorError(ErrorCode.MALFORMED_JSON) from None


async def envelope(request: Request) -> tuple[bytes, Envelope]:
    raw = await request.body()
    document = parsed(request, raw)
    try:
        return raw, Envelope.model_validate(document)
    except ValidationError as exc:
        raise AggregatorError(ErrorCode.INVALID_REQUEST, errors=errors(exc)) from None


def verify(verifier: Verifier, signed: Envelope, message_type: str) -> dict[str, Any]:
    try:
        return verifier.verify(signed, message_type)
    except SignatureError as exc:
        raise AggregatorError(SIGNATURE_CODES.get(type(exc), ErrorCode.BAD_SIGNATURE)) from None
