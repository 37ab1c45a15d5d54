"""HTTP conventions shared by the node and the aggregator: RFC 9457 problem documents and a
request-body size limit. Plain ASGI and the standard library only."""

from __future__ import annotations

import json
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


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes: by Content-Length with the ``too_large``
    problem, or while streaming by raising ``exceeded()`` for the app's error handler."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        too_large: dict[str, Any],
        exceeded: Callable[[], Exception],
        path_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        # Other limits for exact paths (e.g. an upload form); every other path gets ``limit``.
        self.path_limits = dict(path_limits or {})
        self.too_large = too_large
        self.exceeded = exceeded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope.get("path", ""), self.limit)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await send_problem(send, self.too_large)
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
