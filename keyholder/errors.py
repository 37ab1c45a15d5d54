"""The key holder's error catalogue: one code per failure, its HTTP status and public message.

Responses are RFC 9457 problem documents. Public messages never contain an element, a share,
another node's usage or a stack trace.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from protocol.problems import ErrorInfo, ProblemError, build_catalogue


class ErrorCode(StrEnum):
    BODY_TOO_LARGE = "body_too_large"
    MALFORMED_JSON = "malformed_json"
    JSON_TOO_DEEP = "json_too_deep"
    JSON_NUMBER_INVALID = "json_number_invalid"
    JSON_STRING_INVALID = "json_string_invalid"
    INVALID_REQUEST = "invalid_request"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    STALE_MESSAGE = "stale_message"
    REPLAYED_MESSAGE = "replayed_message"
    WRONG_MESSAGE_TYPE = "wrong_message_type"
    INVITE_INVALID = "invite_invalid"
    ENROL_LOCKED = "enrol_locked"
    KEY_ALREADY_ENROLLED = "key_already_enrolled"
    WRONG_KEY_SET = "wrong_key_set"
    BATCH_TOO_LARGE = "batch_too_large"
    INVALID_ELEMENT = "invalid_element"
    RATE_LIMITED = "rate_limited"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INTERNAL = "internal_error"


# The entries shared by every service (protocol.problems.SHARED_PROBLEMS) are added by
# build_catalogue, which also refuses a code without an entry.
CATALOGUE: dict[ErrorCode, ErrorInfo] = build_catalogue(
    ErrorCode,
    {
        ErrorCode.BODY_TOO_LARGE: ErrorInfo(413, "The request body is larger than accepted."),
        ErrorCode.UNKNOWN_KEY: ErrorInfo(
            401, "The message is signed by a key that is not enrolled with this key holder."
        ),
        ErrorCode.INVITE_INVALID: ErrorInfo(
            403, "The invite code is not valid: unknown, already used or expired."
        ),
        ErrorCode.ENROL_LOCKED: ErrorInfo(
            429, "Too many wrong invite codes; enrolment is locked for a while."
        ),
        ErrorCode.KEY_ALREADY_ENROLLED: ErrorInfo(409, "This node key is already enrolled."),
        ErrorCode.WRONG_KEY_SET: ErrorInfo(
            409, "The request is for another key set than this key holder's; re-join."
        ),
        ErrorCode.BATCH_TOO_LARGE: ErrorInfo(413, "The batch holds more elements than accepted."),
        ErrorCode.INVALID_ELEMENT: ErrorInfo(
            422, "An element is not a valid ristretto255 element."
        ),
        ErrorCode.RATE_LIMITED: ErrorInfo(
            429, "This node has asked for more evaluations than its limit allows; wait and retry."
        ),
        ErrorCode.INTERNAL: ErrorInfo(500, "The key holder could not handle the request."),
    },
)


class KeyholderError(ProblemError[ErrorCode]):
    """An error with a catalogue code; ``detail`` must be safe to show to the caller."""

    catalogue = CATALOGUE


def problem(code: ErrorCode, detail: str | None = None, **extra: Any) -> dict[str, Any]:
    return CATALOGUE[code].body(code.value, detail, **extra)
