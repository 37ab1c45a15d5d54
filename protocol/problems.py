"""The part of an error catalogue every service shares: the entry type, the problems the shared
HTTP layer and signed-message checks raise, and the function that assembles a service's catalogue.

Each service keeps its own ``ErrorCode`` enum, its own entries and its own exception class; the
entries here are the ones whose status and public message are the same in every service. Standard
library only, like the rest of ``protocol``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from protocol.http import problem_body


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A catalogue entry: the HTTP status and the public title of one problem code."""

    status: int
    title: str

    def body(self, code: str, detail: str | None = None, **extra: Any) -> dict[str, Any]:
        """The RFC 9457 problem document for ``code`` with this entry's status and title."""
        return problem_body(code, self.status, self.title, detail, **extra)


# Codes raised by the JSON gate (protocol.http), request validation, signed-message verification
# and routing, worded alike in every service.
SHARED_PROBLEMS: dict[str, ErrorInfo] = {
    "malformed_json": ErrorInfo(400, "The request body is not valid JSON."),
    "json_too_deep": ErrorInfo(400, "The request body nests deeper than accepted."),
    "json_number_invalid": ErrorInfo(
        400, "The request body holds NaN, Infinity or a number outside the accepted range."
    ),
    "json_string_invalid": ErrorInfo(
        400, "The request body holds a string with a NUL character or an unpaired surrogate."
    ),
    "invalid_request": ErrorInfo(422, "The request does not have the expected fields."),
    "bad_signature": ErrorInfo(401, "The message signature is not valid."),
    "stale_message": ErrorInfo(401, "The message is too old or dated in the future."),
    "replayed_message": ErrorInfo(409, "This message was received before."),
    "wrong_message_type": ErrorInfo(400, "The message has the wrong type for this endpoint."),
    "not_found": ErrorInfo(404, "There is nothing at this address."),
    "method_not_allowed": ErrorInfo(405, "This address does not accept that method."),
}


C = TypeVar("C", bound=StrEnum)


def build_catalogue(codes: type[C], own: Mapping[C, ErrorInfo]) -> dict[C, ErrorInfo]:
    """A service's catalogue: the shared entries plus ``own``, in the order of ``codes``.

    Raises ``ValueError`` if a code has no entry, if ``own`` redefines a shared code, or if a
    shared code is missing from ``codes`` (every service answers every shared problem)."""
    missing_shared = set(SHARED_PROBLEMS) - {code.value for code in codes}
    if missing_shared:
        raise ValueError(f"{codes.__name__} lacks the shared codes {sorted(missing_shared)}")
    redefined = {code.value for code in own} & set(SHARED_PROBLEMS)
    if redefined:
        raise ValueError(f"{codes.__name__} redefines the shared codes {sorted(redefined)}")
    catalogue: dict[C, ErrorInfo] = {}
    for code in codes:
        info = own.get(code) or SHARED_PROBLEMS.get(code.value)
        if info is None:
            raise ValueError(f"{codes.__name__}.{code.name} has no catalogue entry")
        catalogue[code] = info
    return catalogue


class ProblemError(Exception, Generic[C]):
    """An error with a catalogue code; ``detail`` must be safe to show to the caller. A service
    subclasses it once, naming its catalogue."""

    catalogue: ClassVar[Mapping[Any, ErrorInfo]]

    def __init__(self, code: C, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.catalogue[code].title)
        self.code = code
        self.detail = detail
        self.extra = extra
