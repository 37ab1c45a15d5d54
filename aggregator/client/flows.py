"""The sans-I/O core of the clients: each method is a *flow*, a generator that yields the HTTP
calls it needs (``Call``) and is sent their responses. Building requests, long-polling a round
and reading responses exist here once; ``Client`` and ``AsyncClient`` (clients.py) differ only in
how they send a call."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypedDict, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from aggregator.client.errors import InvalidQuery, UnexpectedResponse, problem_error
from aggregator.client.result import ReportInfo, Result
from protocol.api import (
    NodeInfo,
    PublishedRelease,
    PublishRequest,
    ReleasePlan,
    RoundRequest,
    RoundSummary,
)
from protocol.preview import RoundPreview
from protocol.query import QuerySpec
from protocol.results import RoundResult, RoundState

POLL_SECONDS = 30.0  # how long the aggregator may hold one GET /v1/rounds/{id} (it allows 60)

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (nodes settled, nodes asked)


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    params: dict[str, float] | None = None
    body: dict[str, Any] | None = None
    hold: float = 0.0  # seconds the aggregator may hold the response


Flow = Generator[Call, httpx.Response, T]

_RESULT = TypeAdapter(RoundResult)
NODES = TypeAdapter(list[NodeInfo])
ROUNDS = TypeAdapter(list[RoundSummary])
REPORTS = TypeAdapter(list[ReportInfo])
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


def get(path: str, adapter: TypeAdapter[T]) -> Flow[T]:
    return _parse((yield Call("GET", path)), adapter)


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
        call = Call("GET", _round_path(result.round_id), params, hold=POLL_SECONDS)
        result = _parse((yield call), _RESULT)


def ask(spec: QuerySpec | Mapping[str, Any] | None, options: AskOptions) -> Flow[Result]:
    body = _round_body(spec, options)
    created = _parse((yield Call("POST", "/v1/rounds", body=body)), _RESULT)
    if not options.get("wait", True):
        return Result(created)
    return (yield from _wait(created, options.get("progress")))


def preview(spec: QuerySpec | Mapping[str, Any] | None, options: AskOptions) -> Flow[RoundPreview]:
    waiting = sorted({"wait", "progress"} & set(options))
    if waiting:
        raise TypeError(f"preview() got an unexpected keyword argument {waiting[0]!r}")
    body = _round_body(spec, options)
    return _parse((yield Call("POST", "/v1/rounds/preview", body=body)), _PREVIEW)


def wait_for(round_id: str, progress: Progress | None) -> Flow[Result]:
    first = _parse((yield Call("GET", _round_path(round_id))), _RESULT)
    return (yield from _wait(first, progress))


def fetch_round(round_id: str) -> Flow[Result]:
    return Result((yield from get(_round_path(round_id), _RESULT)))


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


def publish(
    recipe: str | Mapping[str, Any],
    asked: Mapping[str, str] | None,
    correction: Mapping[str, str] | None,
) -> Flow[PublishedRelease]:
    body = _release_body(recipe, asked, correction)
    return _parse((yield Call("POST", "/v1/releases", body=body)), _PUBLISHED)


def plan(recipe: str | Mapping[str, Any], asked: Mapping[str, str] | None) -> Flow[ReleasePlan]:
    body = _release_body(recipe, asked, None)
    return _parse((yield Call("POST", "/v1/releases/plan", body=body)), _PLAN)
