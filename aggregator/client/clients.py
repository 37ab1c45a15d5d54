"""The two clients: ``Client`` sends a flow's calls (flows.py) with httpx synchronously,
``AsyncClient`` with asyncio. Both read the aggregator's URL and token from the environment when
not given, send a read again on a fresh connection when a kept-alive connection was closed under
it, and say what is likely wrong when the aggregator cannot be reached."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, Unpack

import httpx

from aggregator.client import flows
from aggregator.client.errors import NotConfigured, Unreachable
from aggregator.client.flows import AskOptions, Call, Flow, Progress, T
from aggregator.client.result import ReportInfo, Result, warn_if_partial
from protocol.api import NodeInfo, PublishedRelease, ReleasePlan, RoundSummary
from protocol.connection import UNRESOLVABLE, describe, explain, probe
from protocol.preview import RoundPreview
from protocol.query import QuerySpec

URL_ENV = "PUBLIEKSDATA_AGGREGATOR_URL"
TOKEN_ENV = "PUBLIEKSDATA_TOKEN"  # noqa: S105 - a variable name, not a secret
DEFAULT_TIMEOUT = 30.0


def _connection(url: str | None, token: str | None) -> tuple[str, dict[str, str]]:
    url = url or os.environ.get(URL_ENV)
    token = token or os.environ.get(TOKEN_ENV)
    if not url:
        raise NotConfigured("no_url", f"give the aggregator's URL, or set {URL_ENV}")
    if not url.startswith(("http://", "https://")):
        raise NotConfigured("bad_url", f"the aggregator URL must start with https://: {url!r}")
    if not token:
        raise NotConfigured("no_token", f"give an analyst API token, or set {TOKEN_ENV}")
    if not token.isprintable() or token.strip() != token or " " in token:
        raise NotConfigured("bad_token", "the API token contains spaces or control characters")
    return url.rstrip("/"), {"authorization": f"Bearer {token}", "accept": "application/json"}


def _build(http: httpx.Client | httpx.AsyncClient, call: Call, timeout: float) -> httpx.Request:
    return http.build_request(
        call.method,
        call.path,
        params=call.params,
        json=call.body,
        timeout=httpx.Timeout(timeout, read=timeout + call.hold),
    )


RETRIES = 2  # fresh connections for a read whose kept-alive connection was closed under it


def _retry(call: Call, exc: httpx.TransportError, retried: int) -> bool:
    """Send ``call`` again? Only a read (GET: sending it twice changes nothing) whose
    connection was closed before the answer came, as a proxy or the aggregator does to an idle
    kept-alive connection just as the next long-poll goes out; and only ``RETRIES`` times.
    Refused connections, unknown hosts and time-outs are answers of their own."""
    closed = isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError)
    return call.method == "GET" and closed and retried < RETRIES


def _unreachable(url: str, reason: str) -> Unreachable:
    return Unreachable("unreachable", f"aggregator unreachable at {url}: {reason}")


class Client:
    """The synchronous client. ``url`` and ``token`` default to the environment variables
    PUBLIEKSDATA_AGGREGATOR_URL and PUBLIEKSDATA_TOKEN; ``transport`` replaces the network
    (for tests). Use it as a context manager, or call ``close()``."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url, headers = _connection(url, token)
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.url, headers=headers, transport=transport, mounts=UNRESOLVABLE
        )

    def _run(self, flow: Flow[T]) -> T:
        try:
            call, retried = next(flow), 0
            while True:
                try:
                    response = self._http.send(_build(self._http, call, self.timeout))
                except httpx.TransportError as exc:
                    if _retry(call, exc, retried):
                        retried += 1
                        continue
                    reason = describe(exc, self.url, probe)
                    raise _unreachable(self.url, reason) from exc
                call, retried = flow.send(response), 0
        except StopIteration as done:
            value: T = done.value
        if isinstance(value, Result):
            warn_if_partial(value, stacklevel=3)  # at the caller of ask(), wait() or round()
        return value

    def reports(self) -> list[ReportInfo]:
        return self._run(flows.get("/v1/reports", flows.REPORTS))

    def nodes(self) -> list[NodeInfo]:
        return self._run(flows.get("/v1/nodes", flows.NODES))

    def rounds(self) -> list[RoundSummary]:
        """Recent rounds, newest first."""
        return self._run(flows.get("/v1/rounds", flows.ROUNDS))

    def round(self, round_id: str) -> Result:
        """A round as it stands now."""
        return self._run(flows.fetch_round(round_id))

    def wait(self, round_id: str, *, progress: Progress | None = None) -> Result:
        """A round once it has closed."""
        return self._run(flows.wait_for(round_id, progress))

    def ask(
        self, spec: QuerySpec | Mapping[str, Any] | None = None, **options: Unpack[AskOptions]
    ) -> Result:
        """Ask the federation one question: a spec, or ``report=`` with its parameters."""
        return self._run(flows.ask(spec, options))

    def preview(
        self, spec: QuerySpec | Mapping[str, Any] | None = None, **options: Unpack[AskOptions]
    ) -> RoundPreview:
        """What ``ask`` with these arguments would cost each node, which nodes would refuse and
        how wide each cell's 95% interval would be. No node is asked; no budget is spent."""
        return self._run(flows.preview(spec, options))

    def publish(
        self,
        recipe: str | Mapping[str, Any],
        asked: Mapping[str, str] | None = None,
        correction: Mapping[str, str] | None = None,
    ) -> PublishedRelease:
        """Publish a release (admin token): a built-in recipe name or a recipe document, with
        the completed round of every report it names (``asked``: report → round id)."""
        return self._run(flows.publish(recipe, asked, correction))

    def plan(
        self, recipe: str | Mapping[str, Any], asked: Mapping[str, str] | None = None
    ) -> ReleasePlan:
        """What publishing ``recipe`` would ask and cost each node, and every reason it would
        be refused (the token's role, a node's budget or policy); asks nothing. Reports with a
        completed round (``asked``, or one the aggregator finds for the same question) cost
        nothing."""
        return self._run(flows.plan(recipe, asked))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient:
    """``Client`` for asyncio: the same methods, to ``await``."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url, headers = _connection(url, token)
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            transport=transport,
            mounts=UNRESOLVABLE,
        )

    async def _run(self, flow: Flow[T]) -> T:
        try:
            call, retried = next(flow), 0
            while True:
                try:
                    response = await self._http.send(_build(self._http, call, self.timeout))
                except httpx.TransportError as exc:
                    if _retry(call, exc, retried):
                        retried += 1
                        continue
                    reason = await explain(exc, self.url)
                    raise _unreachable(self.url, reason) from exc
                call, retried = flow.send(response), 0
        except StopIteration as done:
            value: T = done.value
        if isinstance(value, Result):
            warn_if_partial(value, stacklevel=3)  # at the caller of ask(), wait() or round()
        return value

    async def reports(self) -> list[ReportInfo]:
        return await self._run(flows.get("/v1/reports", flows.REPORTS))

    async def nodes(self) -> list[NodeInfo]:
        return await self._run(flows.get("/v1/nodes", flows.NODES))

    async def rounds(self) -> list[RoundSummary]:
        """Recent rounds, newest first."""
        return await self._run(flows.get("/v1/rounds", flows.ROUNDS))

    async def round(self, round_id: str) -> Result:
        """A round as it stands now."""
        return await self._run(flows.fetch_round(round_id))

    async def wait(self, round_id: str, *, progress: Progress | None = None) -> Result:
        """A round once it has closed."""
        return await self._run(flows.wait_for(round_id, progress))

    async def ask(
        self, spec: QuerySpec | Mapping[str, Any] | None = None, **options: Unpack[AskOptions]
    ) -> Result:
        """Ask the federation one question: a spec, or ``report=`` with its parameters."""
        return await self._run(flows.ask(spec, options))

    async def preview(
        self, spec: QuerySpec | Mapping[str, Any] | None = None, **options: Unpack[AskOptions]
    ) -> RoundPreview:
        """What ``ask`` with these arguments would cost each node, which nodes would refuse and
        how wide each cell's 95% interval would be. No node is asked; no budget is spent."""
        return await self._run(flows.preview(spec, options))

    async def publish(
        self,
        recipe: str | Mapping[str, Any],
        asked: Mapping[str, str] | None = None,
        correction: Mapping[str, str] | None = None,
    ) -> PublishedRelease:
        """Publish a release; see ``Client.publish``."""
        return await self._run(flows.publish(recipe, asked, correction))

    async def plan(
        self, recipe: str | Mapping[str, Any], asked: Mapping[str, str] | None = None
    ) -> ReleasePlan:
        """What publishing would cost; see ``Client.plan``."""
        return await self._run(flows.plan(recipe, asked))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
