"""The aggregator's error catalogue: one code per failure, its HTTP status and public message.

Responses are RFC 9457 problem documents. Public messages never contain data, one node's
figures, another party's budget, secrets or stack traces.
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
    NOT_AUTHENTICATED = "not_authenticated"
    FORBIDDEN = "forbidden"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    STALE_MESSAGE = "stale_message"
    REPLAYED_MESSAGE = "replayed_message"
    WRONG_MESSAGE_TYPE = "wrong_message_type"
    INVITE_INVALID = "invite_invalid"
    ENROL_LOCKED = "enrol_locked"
    KEY_ALREADY_ENROLLED = "key_already_enrolled"
    NO_NODES = "no_nodes"
    UNKNOWN_NODE = "unknown_node"
    WOULD_BE_REFUSED = "would_be_refused"
    ROUND_NOT_FOUND = "round_not_found"
    TASK_NOT_FOUND = "task_not_found"
    WRONG_NODE = "wrong_node"
    ANSWER_MISMATCH = "answer_mismatch"
    ROUND_CLOSED = "round_closed"
    ALREADY_ANSWERED = "already_answered"
    RECIPE_INVALID = "recipe_invalid"
    RELEASE_NOT_POSSIBLE = "release_not_possible"
    RELEASE_NOT_FOUND = "release_not_found"
    RELEASE_UNVERIFIED = "release_unverified"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INTERNAL = "internal_error"
    NOT_READY = "not_ready"


# The entries shared by every service (protocol.problems.SHARED_PROBLEMS) are added by
# build_catalogue, which also refuses a code without an entry.
CATALOGUE: dict[ErrorCode, ErrorInfo] = build_catalogue(
    ErrorCode,
    {
        ErrorCode.BODY_TOO_LARGE: ErrorInfo(413, "The request body is larger than accepted."),
        ErrorCode.INVALID_QUERY: ErrorInfo(422, "The query is not valid."),
        ErrorCode.NOT_AUTHENTICATED: ErrorInfo(
            401, "A valid API token is needed (Authorization: Bearer …)."
        ),
        ErrorCode.FORBIDDEN: ErrorInfo(403, "This token's role may not do this."),
        ErrorCode.UNKNOWN_KEY: ErrorInfo(
            401, "The message is signed by a key that is not enrolled."
        ),
        ErrorCode.INVITE_INVALID: ErrorInfo(
            403, "The invite code is not valid: unknown, already used or expired."
        ),
        ErrorCode.ENROL_LOCKED: ErrorInfo(
            429, "Too many wrong invite codes; enrolment is locked for a while."
        ),
        ErrorCode.KEY_ALREADY_ENROLLED: ErrorInfo(409, "This node key is already enrolled."),
        ErrorCode.NO_NODES: ErrorInfo(409, "No enrolled node matches; there is nobody to ask."),
        ErrorCode.UNKNOWN_NODE: ErrorInfo(404, "There is no enrolled node with that id."),
        ErrorCode.WOULD_BE_REFUSED: ErrorInfo(
            409, "Some nodes would refuse this query; nothing was sent. See 'nodes'."
        ),
        ErrorCode.ROUND_NOT_FOUND: ErrorInfo(404, "There is no round with that id."),
        ErrorCode.TASK_NOT_FOUND: ErrorInfo(404, "There is no task with that id."),
        ErrorCode.WRONG_NODE: ErrorInfo(403, "This task was not sent to the node that signed."),
        ErrorCode.ANSWER_MISMATCH: ErrorInfo(422, "The answer does not answer this task's query."),
        ErrorCode.ROUND_CLOSED: ErrorInfo(409, "The round is closed; the answer came too late."),
        ErrorCode.ALREADY_ANSWERED: ErrorInfo(409, "This task has been answered already."),
        ErrorCode.RECIPE_INVALID: ErrorInfo(422, "The release recipe is not valid."),
        ErrorCode.RELEASE_NOT_POSSIBLE: ErrorInfo(
            409, "The release cannot be built from these rounds; nothing was published."
        ),
        ErrorCode.RELEASE_NOT_FOUND: ErrorInfo(404, "There is no release with that name."),
        ErrorCode.RELEASE_UNVERIFIED: ErrorInfo(
            409, "This release no longer matches its signature; it is not served."
        ),
        ErrorCode.INTERNAL: ErrorInfo(500, "The aggregator could not handle the request."),
        ErrorCode.NOT_READY: ErrorInfo(503, "The aggregator is running but cannot serve yet."),
    },
)


class AggregatorError(ProblemError[ErrorCode]):
    """An error with a catalogue code; ``detail`` must be safe to show to the caller."""

    catalogue = CATALOGUE


def problem(code: ErrorCode, detail: str | None = None, **extra: Any) -> dict[str, Any]:
    return CATALOGUE[code].body(code.value, detail, **extra)
