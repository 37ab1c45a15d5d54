"""The client's errors: every failure is a ``ClientError`` carrying the aggregator's problem
code, status and detail (or saying that no readable answer came)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx


class ClientError(Exception):
    """Anything the client raises on purpose. ``status`` is the HTTP status, or None when there
    was no HTTP answer; ``problem`` is the aggregator's whole problem document, if any."""

    def __init__(
        self,
        code: str,
        detail: str = "",
        *,
        status: int | None = None,
        title: str = "",
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        self.code = code
        self.detail = detail
        self.status = status
        self.title = title
        self.problem: Mapping[str, Any] = problem or {}
        text = " ".join(part for part in (title, detail) if part) or code
        errors = "; ".join(
            f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}"
            for e in self.problem.get("errors", ())
            if isinstance(e, dict)
        )
        where = f"{code}, HTTP {status}" if status is not None else code
        super().__init__(f"{text}{' ' + errors if errors else ''} ({where})")


class NotConfigured(ClientError):
    """No aggregator URL or token: give them, or set PUBLIEKSDATA_AGGREGATOR_URL and
    PUBLIEKSDATA_TOKEN."""


class Unreachable(ClientError):
    """No HTTP answer: the aggregator could not be reached, or it did not answer in time."""


class UnexpectedResponse(ClientError):
    """An answer this client cannot read (another API version, or not the aggregator)."""


class NotAuthenticated(ClientError):
    """The token is missing, unknown or revoked (401)."""


class Forbidden(ClientError):
    """The token's role may not do this (403)."""


class NotFound(ClientError):
    """No such round, node or address (404)."""


class InvalidQuery(ClientError):
    """The question is not valid (422, or found before sending). ``errors`` lists the fields."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.problem.get("errors", ()) if isinstance(e, dict)]


@dataclass(frozen=True, slots=True)
class RefusingNode:
    node_id: str
    institution: str
    reason: str  # a refusal reason code, such as budget_exhausted


class WouldBeRefused(ClientError):
    """Some nodes would refuse, judged from their last reports; nothing was sent (409)."""

    @property
    def nodes(self) -> tuple[RefusingNode, ...]:
        return tuple(
            RefusingNode(str(n.get("node_id", "")), str(n.get("institution", "")), str(n["reason"]))
            for n in self.problem.get("nodes", ())
            if isinstance(n, dict) and "reason" in n
        )


class NoEstimates(ClientError):
    """The result has no estimates: the round is still open, or its quorum was not met."""


# The aggregator's problem codes (aggregator/errors.py, docs/reference/http-api.md) that have an
# error class of their own; any other code is a plain ClientError. The client depends on
# protocol/ only, so the codes are the wire strings; a test checks each against the catalogue.
_ERRORS: dict[str, type[ClientError]] = {
    "not_authenticated": NotAuthenticated,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "round_not_found": NotFound,
    "unknown_node": NotFound,
    "invalid_query": InvalidQuery,
    "invalid_request": InvalidQuery,
    "would_be_refused": WouldBeRefused,
}


def problem_error(response: httpx.Response) -> ClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return UnexpectedResponse(
            f"http_{response.status_code}",
            f"the server answered {response.status_code} {response.reason_phrase} "
            "without a problem document",
            status=response.status_code,
        )
    return _ERRORS.get(body["code"], ClientError)(
        body["code"],
        str(body.get("detail") or ""),
        status=response.status_code,
        title=str(body.get("title") or ""),
        problem=body,
    )
