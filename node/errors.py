"""The node's error catalogue: one code per failure, its HTTP status and its public message.

Responses are RFC 9457 problem documents (``application/problem+json``). Public messages never
contain data, counts, other parties' budgets or stack traces.
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
    INVALID_QUERY = "invalid_query"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    STALE_MESSAGE = "stale_message"
    REPLAYED_MESSAGE = "replayed_message"
    WRONG_MESSAGE_TYPE = "wrong_message_type"
    REFUSED = "refused"
    APPROVAL_REQUIRED = "approval_required"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INTERNAL = "internal_error"
    NOT_READY = "not_ready"


# The entries shared by every service (protocol.problems.SHARED_PROBLEMS) are added by
# build_catalogue, which also refuses a code without an entry.
CATALOGUE: dict[ErrorCode, ErrorInfo] = build_catalogue(
    ErrorCode,
    {
        ErrorCode.BODY_TOO_LARGE: ErrorInfo(
            413, "The request body is larger than this node accepts."
        ),
        ErrorCode.INVALID_QUERY: ErrorInfo(422, "The query spec is not valid."),
        ErrorCode.UNKNOWN_KEY: ErrorInfo(
            401, "The message is signed by a key this node does not trust."
        ),
        ErrorCode.REFUSED: ErrorInfo(403, "The node refused to answer this query."),
        ErrorCode.APPROVAL_REQUIRED: ErrorInfo(
            403,
            "This node's operator approves every query; ask it through the aggregator, where the "
            "node waits for the approval.",
        ),
        ErrorCode.INTERNAL: ErrorInfo(500, "The node could not handle the request."),
        ErrorCode.NOT_READY: ErrorInfo(503, "The node is running but cannot serve yet."),
    },
)


class NodeError(ProblemError[ErrorCode]):
    """An error with a catalogue code; ``detail`` must be safe to show to the caller."""

    catalogue = CATALOGUE


def problem(code: ErrorCode, detail: str | None = None, **extra: Any) -> dict[str, Any]:
    return CATALOGUE[code].body(code.value, detail, **extra)
