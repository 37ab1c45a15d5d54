"""HTTP conventions shared by the node and the aggregator: RFC 9457 problem documents, and the
one gate every request body passes (a size limit, and for JSON bodies a check that the document
is one the rest of the stack can handle). Plain ASGI and the standard library only."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://publieksdata.nl/problems/"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def problem_body(
    code: str, status: int, title: str, detail: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    return body


# --- JSON that the stack can handle ------------------------------------------------------------

# No message of the protocol nests deeper than about 12 levels; 64 leaves ample room and keeps
# every recursive consumer (pydantic, RFC 8785 canonicalisation, the database drivers) far from
# Python's recursion limit.
MAX_JSON_DEPTH = 64
# I-JSON (RFC 7493) and RFC 8785: integers outside ±(2**53 − 1) have no exact, interoperable
# JSON form, so a message holding one could not be signed, hashed or verified.
MAX_SAFE_INTEGER = 2**53 - 1
_MAX_INT_DIGITS = len(str(MAX_SAFE_INTEGER))

# Problem codes of the JSON gate; both services' error catalogues list them.
JSON_TOO_DEEP = "json_too_deep"
JSON_NUMBER_INVALID = "json_number_invalid"
JSON_STRING_INVALID = "json_string_invalid"


class JsonRejected(ValueError):
    """A body that is JSON but not acceptable; ``code`` is one of the three problem codes."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _constant(name: str) -> Any:
    raise JsonRejected(JSON_NUMBER_INVALID, f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRejected(JSON_NUMBER_INVALID, "a number is too large to represent")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS or abs(value := int(text)) > MAX_SAFE_INTEGER:
        raise JsonRejected(JSON_NUMBER_INVALID, "an integer is outside ±(2**53 − 1)")
    return value


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise JsonRejected(JSON_STRING_INVALID, "a string holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonRejected(JSON_STRING_INVALID, "a string holds an unpaired surrogate") from None


def _plain(raw: bytes | str) -> bool:
    """Whether no string in the document can hold NUL or an unpaired surrogate: the body is
    ASCII without NUL (so no UTF-8 or UTF-16 encoded surrogate, which ``json.loads`` would let
    through) and without ``\\u`` (so no escaped one). A raw control character inside a string
    is a JSON syntax error already."""
    if isinstance(raw, str):
        return raw.isascii() and "\\u" not in raw and "\x00" not in raw
    return raw.isascii() and b"\\u" not in raw and b"\x00" not in raw


def _brackets(raw: bytes | str) -> int:
    """An upper bound of the nesting depth (brackets inside strings count too)."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def parse_json(raw: bytes | str) -> Any:
    """Parse a request body, refusing what JSON allows but the protocol cannot handle.

    Raises ``json.JSONDecodeError`` / ``UnicodeDecodeError`` for a body that is not JSON, and
    :class:`JsonRejected` for one nested deeper than ``MAX_JSON_DEPTH``, holding ``NaN``,
    ``Infinity`` or a number that overflows a double, an integer beyond ±(2**53 − 1), or a
    string with NUL or an unpaired surrogate (neither can be stored in PostgreSQL text nor
    canonicalised). The result is safe to validate, canonicalise and store.
    """
    try:
        document = json.loads(raw, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except RecursionError:
        raise JsonRejected(JSON_TOO_DEEP, "the document nests too deeply") from None
    plain = _plain(raw)
    if plain and _brackets(raw) <= MAX_JSON_DEPTH:
        return document  # no string to check, and too few brackets to nest too deeply
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not plain:
                _check_string(value)
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise JsonRejected(
                    JSON_TOO_DEEP, f"the document nests deeper than {MAX_JSON_DEPTH} levels"
                )
            if isinstance(value, dict):
                for key, item in value.items():
                    if not plain:
                        _check_string(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
    return document


# Where the JSON gate leaves the body it parsed, so that a route does not parse it again.
GATED_JSON = "publieksdata.gated_json"


def body_json(scope: Mapping[str, Any], raw: bytes) -> Any:
    """A route's body as :func:`parse_json` reads it: the document the gate already parsed,
    or (for a body the gate leaves to the route, such as one sent as a form) parsed now, with
    the same errors."""
    if GATED_JSON in scope:
        return scope[GATED_JSON]
    return parse_json(raw)


async def send_problem(send: Send, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": body["status"],
            "headers": [
                (b"content-type", PROBLEM_JSON.encode("ascii")),
                (b"content-length", str(len(data)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


def _content_type(scope: Scope) -> bytes:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return bytes(value).lower()
    return b""


class BodyLimit:
    """The gate every request body passes, for every endpoint of a service.

    Refuses bodies over ``limit`` bytes: by Content-Length with the ``too_large`` problem, or
    while streaming by raising ``exceeded()`` for the app's error handler. With ``rejected``
    (a problem document per JSON gate code), every body that is not a form is also read in
    full and checked by :func:`parse_json` before any route sees it: a JSON document that is
    too deep, holds a non-finite or out-of-range number or an unstorable string is answered
    with that problem. A body that is not JSON at all is passed on, for the route to refuse.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        too_large: dict[str, Any],
        exceeded: Callable[[], Exception],
        path_limits: Mapping[str, int] | None = None,
        rejected: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        # Other limits for exact paths (e.g. an upload form); every other path gets ``limit``.
        self.path_limits = dict(path_limits or {})
        self.too_large = too_large
        self.exceeded = exceeded
        self.rejected = rejected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope.get("path", ""), self.limit)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await send_problem(send, self.too_large)
                return
        if (
            self.rejected is not None
            and scope.get("method", "GET") not in _BODYLESS
            and not _content_type(scope).startswith(_FORM_TYPES)
        ):
            await self._checked(scope, receive, send, limit, self.rejected)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self.exceeded()
            return message

        await self.app(scope, limited, send)

    async def _checked(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int,
        rejected: Callable[[str], dict[str, Any]],
    ) -> None:
        """Read the whole body (it is small: at most ``limit``), check it, then replay it."""
        body = bytearray()
        replay: list[Message] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                replay.append(message)  # the client went away; the app will see that
                break
            body += message.get("body", b"")
            if len(body) > limit:
                await send_problem(send, self.too_large)
                return
            if not message.get("more_body", False):
                break
        if body.strip():
            try:
                scope[GATED_JSON] = parse_json(bytes(body))
            except JsonRejected as exc:
                await send_problem(send, rejected(exc.code))
                return
            except ValueError:  # not JSON at all (UnicodeDecodeError is a ValueError too)
                pass
        replay.insert(0, {"type": "http.request", "body": bytes(body), "more_body": False})

        async def replayed() -> Message:
            if replay:
                return replay.pop(0)
            return await receive()

        await self.app(scope, replayed, send)
