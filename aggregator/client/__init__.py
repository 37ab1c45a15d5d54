"""A Python client for the aggregator's analyst API, for notebooks and scripts.

    from aggregator.client import Client

    with Client("https://aggregator.example.nl", token) as client:
        result = client.ask(report="revenue", year=2025, rho=0.25)
        frame = result.to_polars()

``Client`` is synchronous; ``AsyncClient`` has the same methods, to ``await``. Both share one
sans-I/O core: each method is a *flow*, a generator that yields the HTTP calls it needs and is
sent their responses. Building requests, long-polling a round and reading responses therefore
exist once; the two classes differ only in how they send a call.

A result's ``rows()`` and data frames show figures as people should read them (never below 0,
money in euros, flagged when too wide to be useful, the raw estimate and the coverage beside
them); ``raw``, ``measure()`` and ``ratio()`` are the wire format (raw estimates, cents). A
closed result with figures from only some of the nodes asked comes with a
``PartialResultWarning``.

Every error is a ``ClientError``: a problem document from the aggregator (with its ``code``,
``status`` and ``detail``), no answer at all, or an answer this client cannot read. With no
answer at all, ``Unreachable`` says what is likely wrong (host not found, connection refused,
TLS against plain HTTP, a wrong port). A read whose kept-alive connection was closed under it
is sent again on a fresh connection, up to twice, before the aggregator counts as unreachable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar, Unpack
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from aggregator.client.errors import (
    ClientError,
    Forbidden,
    InvalidQuery,
    NoEstimates,
    NotAuthenticated,
    NotConfigured,
    NotFound,
    RefusingNode,
    UnexpectedResponse,
    Unreachable,
    WouldBeRefused,
    problem_error,
)
from aggregator.client.result import PartialResultWarning, ReportInfo, Result, warn_if_partial
from protocol.api import (
    NodeInfo,
    PublishedRelease,
    PublishRequest,
    ReleasePlan,
    RoundRequest,
    RoundSummary,
)
from protocol.connection import UNRESOLVABLE, describe, explain, probe
from protocol.preview import MeasurePreview, NodePreview, RoundPreview
from protocol.query import QuerySpec
from protocol.results import RoundResult, RoundState

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "Forbidden",
    "InvalidQuery",
    "MeasurePreview",
    "NoEstimates",
    "NodePreview",
    "NotAuthenticated",
    "NotConfigured",
    "NotFound",
    "PartialResultWarning",
    "RefusingNode",
    "ReportInfo",
    "Result",
    "RoundPreview",
    "UnexpectedResponse",
    "Unreachable",
    "WouldBeRefused",
]

URL_ENV = "PUBLIEKSDATA_AGGREGATOR_URL"
TOKEN_ENV = "PUBLIEKSDATA_TOKEN"  # noqa: S105 - a variable name, not a secret
DEFAULT_TIMEOUT = 30.0
POLL_SECONDS = 30.0  # how long the aggregator may hold one GET /v1/rounds/{id} (it allows 60)

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (nodes settled, nodes asked)


# --- flows: what each method asks of the aggregator, without I/O -------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    params: dict[str, float] | None = None
    body: dict[str, Any] | None = None
    hold: float = 0.0  # seconds the aggregator may hold the response


Flow = Generator[_Call, httpx.Response, T]

_RESULT = TypeAdapter(RoundResult)
_NODES = TypeAdapter(list[NodeInfo])
_ROUNDS = TypeAdapter(list[RoundSummary])
_REPORTS = TypeAdapter(list[ReportInfo])
_PUBLISHED = TypeAdapter(PublishedRelease)
_PREVIEW = TypeAdapter(RoundPreview)
_PLAN = TypeAdapter(ReleasePlan)


class AskOptions(TypedDict, total=False):
    """The keyword arguments of ``ask``. A report template takes ``report`` with ``year`` (or
    ``start`` and ``end``), ``rho`` or ``epsilon`` and, for some, ``codes``; a spec states all of
    that itself. ``nodes`` restricts the round to these node ids; ``deadline_seconds`` and
    ``quorum`` default to the aggregator's settings; ``approval_deadline_seconds`` is a secure
    round's approval window before its protocol phases (default ``deadline_seconds``).
    ``mode`` ("secure" or "independent") goes
    with a report (a spec states its own; reports default to secure under ρ); ``threshold`` is
    a secure round's t, by default ⌈2N/3⌉. With ``wait`` (the default) ``ask`` returns
    once the round has closed, calling ``progress(settled, total)`` whenever more nodes settle."""

    report: str | None
    year: int | None
    start: date | None
    end: date | None
    rho: float | None
    epsilon: float | None
    codes: Sequence[str] | None
    nodes: Sequence[str] | None
    deadline_seconds: int | None
    approval_deadline_seconds: int | None
    quorum: int | None
    mode: str | None
    threshold: int | None
    wait: bool
    progress: Progress | None


_REPORT_KEYS = ("year", "start", "end", "rho", "epsilon", "codes", "mode")
_ROUND_KEYS = ("nodes", "deadline_seconds", "approval_deadline_seconds", "quorum", "threshold")
_ASK_KEYS = frozenset(AskOptions.__optional_keys__)


def _parse(response: httpx.Response, adapter: TypeAdapter[T]) -> T:
    if response.is_error:
        raise problem_error(response)
    try:
        return adapter.validate_json(response.content)
    except ValidationError as exc:
        raise UnexpectedResponse(
            "unexpected_response",
            f"{response.request.method} {response.request.url.path} answered something this "
            f"client cannot read ({exc.error_count()} problems); is the aggregator another "
            "version?",
            status=response.status_code,
        ) from None


def _get(path: str, adapter: TypeAdapter[T]) -> Flow[T]:
    return _parse((yield _Call("GET", path)), adapter)


def _round_path(round_id: str) -> str:
    return f"/v1/rounds/{quote(round_id, safe='')}"


def _round_body(spec: QuerySpec | Mapping[str, Any] | None, options: AskOptions) -> dict[str, Any]:
    """The JSON body of POST /v1/rounds (and its preview): the request without unset fields."""
    request = _round_request(spec, options).model_dump(mode="json")
    return {key: value for key, value in request.items() if value is not None}


def _round_request(spec: QuerySpec | Mapping[str, Any] | None, options: AskOptions) -> RoundRequest:
    unknown = sorted(set(options) - _ASK_KEYS)
    if unknown:
        raise TypeError(f"ask() got an unexpected keyword argument {unknown[0]!r}")
    report = options.get("report")
    if options.get("rho") is not None and options.get("epsilon") is not None:
        raise InvalidQuery("invalid_request", "give rho or epsilon, not both")
    if spec is not None and any(options.get(key) is not None for key in _REPORT_KEYS):
        raise InvalidQuery(
            "invalid_request", f"{', '.join(_REPORT_KEYS)} go with report=…; a spec states its own"
        )
    question: dict[str, Any] = {
        "spec": spec,
        "report": None
        if report is None
        else {"name": report, **{key: options.get(key) for key in _REPORT_KEYS}},
        **{key: options.get(key) for key in _ROUND_KEYS},
    }
    try:
        return RoundRequest.model_validate(question)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise InvalidQuery(
            "invalid_request",
            "the question is not valid:",
            problem={"errors": [{"loc": e["loc"], "msg": e["msg"]} for e in errors]},
        ) from None


def _wait(result: RoundResult, progress: Progress | None) -> Flow[Result]:
    while True:
        settled = result.coverage.total - result.coverage.pending
        if progress is not None:
            progress(settled, result.coverage.total)
        if result.state is RoundState.CLOSED:
            return Result(result)
        params = {"wait": POLL_SECONDS, "seen": settled}
        call = _Call("GET", _round_path(result.round_id), params, hold=POLL_SECONDS)
        result = _parse((yield call), _RESULT)


def _ask(spec: QuerySpec | Mapping[str, Any] | None, options: AskOptions) -> Flow[Result]:
    body = _round_body(spec, options)
    created = _parse((yield _Call("POST", "/v1/rounds", body=body)), _RESULT)
    if not options.get("wait", True):
        return Result(created)
    return (yield from _wait(created, options.get("progress")))


def _preview(spec: QuerySpec | Mapping[str, Any] | None, options: AskOptions) -> Flow[RoundPreview]:
    waiting = sorted({"wait", "progress"} & set(options))
    if waiting:
        raise TypeError(f"preview() got an unexpected keyword argument {waiting[0]!r}")
    body = _round_body(spec, options)
    return _parse((yield _Call("POST", "/v1/rounds/preview", body=body)), _PREVIEW)


def _wait_for(round_id: str, progress: Progress | None) -> Flow[Result]:
    first = _parse((yield _Call("GET", _round_path(round_id))), _RESULT)
    return (yield from _wait(first, progress))


def _round(round_id: str) -> Flow[Result]:
    return Result((yield from _get(_round_path(round_id), _RESULT)))


def _release_body(
    recipe: str | Mapping[str, Any],
    asked: Mapping[str, str] | None,
    correction: Mapping[str, str] | None,
) -> dict[str, Any]:
    request = PublishRequest(
        recipe=recipe if isinstance(recipe, str) else dict(recipe),
        asked=dict(asked or {}),
        correction=None if correction is None else dict(correction),
    )
    return request.model_dump(mode="json")


def _publish(
    recipe: str | Mapping[str, Any],
    asked: Mapping[str, str] | None,
    correction: Mapping[str, str] | None,
) -> Flow[PublishedRelease]:
    body = _release_body(recipe, asked, correction)
    return _parse((yield _Call("POST", "/v1/releases", body=body)), _PUBLISHED)


def _plan(recipe: str | Mapping[str, Any], asked: Mapping[str, str] | None) -> Flow[ReleasePlan]:
    body = _release_body(recipe, asked, None)
    return _parse((yield _Call("POST", "/v1/releases/plan", body=body)), _PLAN)


# --- the two clients ---------------------------------------------------------------------------


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


def _build(http: httpx.Client | httpx.AsyncClient, call: _Call, timeout: float) -> httpx.Request:
    return http.build_request(
        call.method,
        call.path,
        params=call.params,
        json=call.body,
        timeout=httpx.Timeout(timeout, read=timeout + call.hold),
    )


RETRIES = 2  # fresh connections for a read whose kept-alive connection was closed under it


def _retry(call: _Call, exc: httpx.TransportError, retried: int) -> bool:
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
        return self._run(_get("/v1/reports", _REPORTS))

    def nodes(self) -> list[NodeInfo]:
        return self._run(_get("/v1/nodes", _NODES))

    def rounds(self) -> list[RoundSummary]:
        """Recent rounds, newest first."""
        return self._run(_get("/v1/rounds", _ROUNDS))

    def round(self, round_id: str) -> Result:
        """A round as it stands now."""
        return self._run(_round(round_id))

    def wait(self, round_id: str, *, progress: Progress | None = None) -> Result:
        """A round once it has closed."""
        return self._run(_wait_for(round_id, progress))

    def ask(
        self, spec: QuerySpec | Mapping[str, Any] | None = None, **options: Unpack[AskOptions]
    ) -> Result:
        """Ask the federation one question: a spec, or ``report=`` with its parameters."""
        return self._run(_ask(spec, options))

    def preview(
        self, spec: QuerySpec | Mapping[str, Any] | None = None, **options: Unpack[AskOptions]
    ) -> RoundPreview:
        """What ``ask`` with these arguments would cost each node, which nodes would refuse and
        how wide each cell's 95% interval would be. No node is asked; no budget is spent."""
        return self._run(_preview(spec, options))

    def publish(
        self,
        recipe: str | Mapping[str, Any],
        asked: Mapping[str, str] | None = None,
        correction: Mapping[str, str] | None = None,
    ) -> PublishedRelease:
        """Publish a release (admin token): a built-in recipe name or a recipe document, with
        the completed round of every report it names (``asked``: report → round id)."""
        return self._run(_publish(recipe, asked, correction))

    def plan(
        self, recipe: str | Mapping[str, Any], asked: Mapping[str, str] | None = None
    ) -> ReleasePlan:
        """What publishing ``recipe`` would ask and cost each node, and every reason it would
        be refused (the token's role, a node's budget or policy); asks nothing. Reports with a
        completed round (``asked``, or one the aggregator finds for the same question) cost
        nothing."""
        return self._run(_plan(recipe, asked))

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
        return await self._run(_get("/v1/reports", _REPORTS))

    async def nodes(self) -> list[NodeInfo]:
        return await self._run(_get("/v1/nodes", _NODES))

    async def rounds(self) -> list[RoundSummary]:
        """Recent rounds, newest first."""
        return await self._run(_get("/v1/rounds", _ROUNDS))

    async def round(self, round_id: str) -> Result:
        """A round as it stands now."""
        return await self._run(_round(round_id))

    async def wait(self, round_id: str, *, progress: Progress | None = None) -> Result:
        """A round once it has closed."""
        return await self._run(_wait_for(round_id, progress))

    async def ask(
        self, spec: QuerySpec | Mapping[str, Any] | None = None, **options: Unpack[AskOptions]
    ) -> Result:
        """Ask the federation one question: a spec, or ``report=`` with its parameters."""
        return await self._run(_ask(spec, options))

    async def preview(
        self, spec: QuerySpec | Mapping[str, Any] | None = None, **options: Unpack[AskOptions]
    ) -> RoundPreview:
        """What ``ask`` with these arguments would cost each node, which nodes would refuse and
        how wide each cell's 95% interval would be. No node is asked; no budget is spent."""
        return await self._run(_preview(spec, options))

    async def publish(
        self,
        recipe: str | Mapping[str, Any],
        asked: Mapping[str, str] | None = None,
        correction: Mapping[str, str] | None = None,
    ) -> PublishedRelease:
        """Publish a release; see ``Client.publish``."""
        return await self._run(_publish(recipe, asked, correction))

    async def plan(
        self, recipe: str | Mapping[str, Any], asked: Mapping[str, str] | None = None
    ) -> ReleasePlan:
        """What publishing would cost; see ``Client.plan``."""
        return await self._run(_plan(recipe, asked))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
