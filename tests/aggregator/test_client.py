"""The Python client (aggregator/client.py).

``AsyncClient`` runs against the real aggregator and real nodes in process (httpx.ASGITransport).
The sync ``Client`` shares every request and parse step with it; it is tested with
httpx.MockTransport for the long-poll, the errors and the parsing, and in process through
``ThreadBridge`` (sync code in a worker thread, the federation in the test's event loop), which the
docs example and the CLI tests use too.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import math
import re
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

import aggregator.client as client_module
from aggregator.client import (
    AsyncClient,
    Client,
    ClientError,
    InvalidQuery,
    NoEstimates,
    NotAuthenticated,
    NotConfigured,
    NotFound,
    PartialResultWarning,
    RefusingNode,
    Result,
    UnexpectedResponse,
    Unreachable,
    WouldBeRefused,
)
from aggregator.client.presentation import present
from aggregator.releases.compose import compose
from aggregator.releases.recipe import Recipe
from protocol.http import PROBLEM_JSON, problem_body
from protocol.query import Measure, QuerySpec
from protocol.ratios import derived
from protocol.reports import REPORTS, year_period
from protocol.results import (
    Z95,
    Coverage,
    MeasureEstimate,
    NodeOutcome,
    NodeStatus,
    RoundResult,
    RoundState,
)
from tests.factories import Row
from tests.fedkit import AGG_URL, Federation, federation

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reference" / "python-client.md"
ARTFORMS = ("theatre", "dance", "film")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- factories ----------------------------------------------------------------------------------


def node_rows(i: int) -> list[Row]:
    """Node i's admissions: one per person, artforms and prices varying by node and person."""
    return [
        Row(
            person=p,
            event_date=date(2025, 1 + p % 12, 1 + p % 28),
            artform=ARTFORMS[(p + i) % 3],
            price_cents=1_000 + 250 * p + 100 * i,
        )
        for p in range(1, 6 + 2 * i)
    ]


def exact_sums(rows: list[list[Row]], spec: QuerySpec) -> dict[str, list[int]]:
    """Visits and revenue per artform cell, summed over all nodes' rows."""
    cells = [cell[0] for cell in spec.cells()]
    visits, revenue = [0] * len(cells), [0] * len(cells)
    for row in (r for node in rows for r in node):
        visits[cells.index(row.artform)] += 1
        revenue[cells.index(row.artform)] += row.price_cents
    return {"visits": visits, "revenue": revenue}


def exact_federation(
    tmp_path: Path, rows: list[list[Row]], start_nodes: Callable[[int], bool] = lambda _i: True
) -> AbstractAsyncContextManager[Federation]:
    """An in-process federation whose nodes answer without noise (testing only)."""
    return federation(
        tmp_path,
        rows,
        agg_settings={"unsafe_accept_exact_answers": True},
        node_settings={"unsafe_disable_noise": True},
        start_nodes=start_nodes,
    )


def async_client(fed: Federation, token: str | None = None) -> AsyncClient:
    return AsyncClient(AGG_URL, token or fed.analyst, transport=httpx.ASGITransport(fed.app))


REVENUE = REPORTS["revenue"].build(period=year_period(2025), rho=0.1, query_id="client-test-1")


def make_result(
    statuses: tuple[NodeStatus, ...] = (NodeStatus.ANSWERED, NodeStatus.ANSWERED),
    *,
    state: RoundState = RoundState.CLOSED,
    quorum: int = 1,
    se: float = 10.0,
    values: dict[Measure, list[int]] | None = None,
    ses: dict[Measure, float] | None = None,
) -> RoundResult:
    """A RoundResult for the revenue report as the aggregator would return it: by default
    revenue 25,000·k cents and 10·k visits in cell k, with standard error ``se``."""
    reasons = {NodeStatus.REFUSED: "budget_exhausted", NodeStatus.TIMED_OUT: "not_delivered"}
    nodes = tuple(
        NodeOutcome(
            node_id=f"node-{i}", institution=f"Instelling {i}", status=s, reason=reasons.get(s)
        )
        for i, s in enumerate(statuses)
    )
    count = {s: statuses.count(s) for s in NodeStatus}
    answered = count[NodeStatus.ANSWERED]
    closed_ok = state is RoundState.CLOSED and answered >= quorum
    n = REVENUE.cell_count
    values = values or {
        Measure.REVENUE: [2_500 * 10 * k for k in range(n)],
        Measure.VISITS: [10 * k for k in range(n)],
    }
    sd = {m: (ses or {}).get(m, se) for m in REVENUE.measures}
    measures = tuple(
        MeasureEstimate(
            measure=m,
            estimates=tuple(values[m]),
            standard_errors=(sd[m],) * n,
            lower=tuple(v - Z95 * sd[m] for v in values[m]),
            upper=tuple(v + Z95 * sd[m] for v in values[m]),
        )
        for m in REVENUE.measures
    )
    created = "2026-01-05T10:00:00Z"
    return RoundResult.model_validate(
        {
            "round_id": "round-1",
            "spec": REVENUE,
            "analyst": "analist",
            "state": state,
            "created_at": created,
            "deadline": "2026-01-05T10:05:00Z",
            "closed_at": created if state is RoundState.CLOSED else None,
            "quorum": quorum,
            "quorum_met": answered >= quorum,
            "partial": state is RoundState.CLOSED and answered < len(statuses),
            "coverage": Coverage(
                total=len(statuses),
                answered=answered,
                refused=count[NodeStatus.REFUSED],
                timed_out=count[NodeStatus.TIMED_OUT],
                invalid=count[NodeStatus.INVALID],
                pending=count[NodeStatus.PENDING],
                nodes=nodes,
            ),
            "group_by": REVENUE.group_by,
            "cells": tuple(REVENUE.cells()),
            "measures": measures if closed_ok else (),
            "ratios": derived(REVENUE, measures) if closed_ok else (),
        }
    )


def reply(status: int, body: object) -> httpx.Response:
    if isinstance(body, RoundResult):
        return httpx.Response(status, content=body.model_dump_json())
    return httpx.Response(status, json=body)


def problem(code: str, status: int, **extra: Any) -> httpx.Response:
    body = problem_body(code, status, f"title of {code}", "what went wrong", **extra)
    return httpx.Response(status, json=body, headers={"content-type": PROBLEM_JSON})


def fake(*responses: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A fake aggregator that answers ``responses`` in order, and the requests it received."""
    queue, seen = list(responses), []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    return httpx.MockTransport(handle), seen


def sync_client(transport: httpx.BaseTransport) -> Client:
    return Client(AGG_URL, "pd_test-token", transport=transport)


class ThreadBridge(httpx.BaseTransport):
    """A sync transport for code in a worker thread (``anyio.to_thread.run_sync``) that hands
    each request to an async transport on the test's event loop."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return anyio.from_thread.run(send)


@contextmanager
def bridged(
    monkeypatch: pytest.MonkeyPatch, fed: Federation
) -> Iterator[Callable[[str | None, str | None], Client]]:
    """While active, ``aggregator.client.Client`` talks to ``fed`` (call it from a worker thread);
    yields a factory with ``open_client``'s signature."""
    real = Client
    bridge = ThreadBridge(httpx.ASGITransport(fed.app))

    class BridgedClient(real):  # type: ignore[misc, valid-type]
        def __init__(self, url: str | None = None, token: str | None = None, **kw: Any) -> None:
            super().__init__(url, token, **(kw | {"transport": bridge}))

    monkeypatch.setattr(client_module, "Client", BridgedClient)
    monkeypatch.setenv(client_module.URL_ENV, AGG_URL)
    monkeypatch.setenv(client_module.TOKEN_ENV, fed.analyst)
    yield lambda url, token: BridgedClient(url, token)


# -- in process: the real aggregator and nodes --------------------------------------------------


async def test_noise_off_results_equal_the_per_node_exact_sums(tmp_path: Path) -> None:
    rows = [node_rows(i) for i in range(3)]
    seen: list[tuple[int, int]] = []
    async with exact_federation(tmp_path, rows) as fed, async_client(fed) as client:
        result = await client.ask(
            report="revenue", year=2025, rho=0.1, progress=lambda *p: seen.append(p)
        )
    expected = exact_sums(rows, result.spec)
    assert result.closed and result.quorum_met and not result.partial
    assert not result.raw.noise
    assert [n.status for n in result.coverage.nodes] == [NodeStatus.ANSWERED] * 3
    assert seen[-1] == (3, 3) and seen[0][1] == 3
    for name in ("visits", "revenue"):
        estimate = result.measure(name)
        assert list(estimate.estimates) == expected[name]
        assert set(estimate.standard_errors) == {0.0}
        assert estimate.lower == estimate.upper == tuple(map(float, expected[name]))
    mean = result.ratio("mean_price")
    for k, (visits, revenue) in enumerate(
        zip(expected["visits"], expected["revenue"], strict=True)
    ):
        assert mean.estimates[k] == (revenue / visits if visits else None)
    rows_out = {r["artform"]: r for r in result.rows(lang="en")}
    assert rows_out["dance"]["artform_label"] == "dance"
    assert rows_out["theatre"]["visits"] == expected["visits"][0]
    assert rows_out["theatre"]["revenue_eur_se"] == 0.0
    assert rows_out["theatre"]["revenue_eur"] == expected["revenue"][0] / 100
    film = rows_out["film"]
    assert film["mean_price_eur_lower"] == pytest.approx(film["mean_price_eur"])


async def test_lists_reports_nodes_rounds_and_waits_for_a_round(tmp_path: Path) -> None:
    async with (
        exact_federation(tmp_path, [node_rows(0), node_rows(1)]) as fed,
        async_client(fed) as client,
    ):
        assert [r.name for r in await client.reports()] == list(REPORTS)
        nodes = await client.nodes()
        assert sorted(n.institution for n in nodes) == ["Instelling 0", "Instelling 1"]
        created = await client.ask(
            REPORTS["volume"].build(period=year_period(2025), rho=0.1), wait=False
        )
        done = await client.wait(created.round_id)
        again = await client.round(created.round_id)
        listed = await client.rounds()
    assert done.closed and done.round_id == created.round_id
    assert again.raw == done.raw
    assert listed[0].round_id == created.round_id and listed[0].state == "closed"
    assert done.spec.group_by == ("month", "artform")


async def test_a_node_that_never_connects_makes_a_partial_result(tmp_path: Path) -> None:
    rows = [node_rows(i) for i in range(3)]
    async with (
        exact_federation(tmp_path, rows, start_nodes=lambda i: i < 2) as fed,
        async_client(fed) as client,
        anyio.create_task_group() as group,
    ):
        # The round closes at its deadline once the two live nodes answered; ask() waits.
        group.start_soon(functools.partial(fed.expire, silent=1))
        with pytest.warns(PartialResultWarning, match="2 of 3 institutions") as warned:
            result = await client.ask(
                report="revenue", year=2025, rho=0.1, deadline_seconds=1, mode="independent"
            )
    assert warned[0].filename == __file__  # attributed to the caller of ask()
    assert "not in them: Instelling 2" in str(warned[0].message)
    assert result.partial and result.quorum_met
    by_name = {n.institution: n for n in result.coverage.nodes}
    assert by_name["Instelling 2"].status is NodeStatus.TIMED_OUT
    assert by_name["Instelling 2"].reason == "not_delivered"
    assert list(result.measure("visits").estimates) == exact_sums(rows[:2], result.spec)["visits"]


async def test_errors_carry_the_problem_code_status_and_refusing_nodes(tmp_path: Path) -> None:
    async with exact_federation(tmp_path, [node_rows(0), node_rows(1)]) as fed:
        async with async_client(fed) as client:
            with anyio.fail_after(20):  # the nodes report their policy with their first poll
                known = await client.nodes()
                while any(n.budget is None for n in known):
                    await anyio.sleep(0.05)
                    known = await client.nodes()
            with pytest.raises(WouldBeRefused) as refused:
                await client.ask(report="volume", year=2025, rho=0.6)  # above max_rho_per_query
            with pytest.raises(InvalidQuery) as invalid:
                await client.ask(report="origin_pc4", year=2025)
            with pytest.raises(NotFound) as missing:
                await client.round("no-such-round")
        async with async_client(fed, token="pd_not-a-token") as stranger:
            with pytest.raises(NotAuthenticated) as unknown:
                await stranger.nodes()
    assert (refused.value.status, refused.value.code) == (409, "would_be_refused")
    assert sorted(refused.value.nodes, key=lambda n: n.institution) == [
        RefusingNode(n.node_id, n.institution, "policy_cost_too_high")
        for n in sorted(known, key=lambda n: n.institution)
    ]
    assert "2 of 2 nodes would refuse" in str(refused.value)
    assert (invalid.value.status, invalid.value.code) == (422, "invalid_query")
    assert "pc4" in invalid.value.detail
    assert (missing.value.status, missing.value.code) == (404, "round_not_found")
    assert unknown.value.status == 401


# -- the sync client against a fake aggregator --------------------------------------------------


def test_ask_long_polls_until_the_round_closes() -> None:
    transport, seen = fake(
        reply(201, make_result(state=RoundState.OPEN, statuses=(NodeStatus.PENDING,) * 2)),
        reply(
            200,
            make_result(state=RoundState.OPEN, statuses=(NodeStatus.ANSWERED, NodeStatus.PENDING)),
        ),
        reply(200, make_result()),
    )
    progress: list[tuple[int, int]] = []
    with sync_client(transport) as client:
        result = client.ask(
            report="revenue",
            start=date(2025, 1, 1),
            end=date(2025, 6, 30),
            codes=None,
            nodes=["node-0", "node-1"],
            quorum=2,
            progress=lambda *p: progress.append(p),
        )
    assert progress == [(0, 2), (1, 2), (2, 2)]
    assert result.closed and list(result.measure("visits").estimates[:3]) == [0, 10, 20]
    post, *polls = seen
    assert post.method == "POST" and post.url == f"{AGG_URL}/v1/rounds"
    assert post.headers["authorization"] == "Bearer pd_test-token"
    assert json.loads(post.content) == {
        "report": {
            "name": "revenue",
            "year": None,
            "start": "2025-01-01",
            "end": "2025-06-30",
            "rho": None,
            "epsilon": None,
            "codes": None,
            "mode": None,
        },
        "nodes": ["node-0", "node-1"],
        "quorum": 2,
    }
    assert [(r.url.path, dict(r.url.params)) for r in polls] == [
        ("/v1/rounds/round-1", {"wait": "30.0", "seen": "0"}),
        ("/v1/rounds/round-1", {"wait": "30.0", "seen": "1"}),
    ]


def test_ask_sends_a_spec_and_can_return_at_once() -> None:
    transport, seen = fake(reply(201, make_result(state=RoundState.OPEN)))
    with sync_client(transport) as client:
        result = client.ask(REVENUE, deadline_seconds=60, wait=False)
    assert not result.closed and len(seen) == 1
    body = json.loads(seen[0].content)
    assert QuerySpec.model_validate(body["spec"]) == REVENUE
    assert body["deadline_seconds"] == 60 and "report" not in body
    with pytest.raises(NoEstimates, match="still open"):
        result.rows()


def test_ask_sends_a_secure_rounds_approval_window() -> None:
    transport, seen = fake(reply(201, make_result(state=RoundState.OPEN)))
    with sync_client(transport) as client:
        client.ask(REVENUE, deadline_seconds=60, approval_deadline_seconds=86400, wait=False)
    body = json.loads(seen[0].content)
    assert body["deadline_seconds"] == 60 and body["approval_deadline_seconds"] == 86400


@pytest.mark.parametrize(
    ("response", "kind", "check"),
    [
        (
            problem(
                "would_be_refused",
                409,
                nodes=[
                    {"node_id": "n1", "institution": "Schouwburg", "reason": "budget_exhausted"}
                ],
            ),
            WouldBeRefused,
            lambda e: e.nodes == (RefusingNode("n1", "Schouwburg", "budget_exhausted"),),
        ),
        (
            problem("invalid_request", 422, errors=[{"loc": ["body", "quorum"], "msg": "too big"}]),
            InvalidQuery,
            lambda e: e.errors[0]["msg"] == "too big" and "body.quorum: too big" in str(e),
        ),
        (problem("forbidden", 403), ClientError, lambda e: e.title == "title of forbidden"),
        (problem("no_nodes", 409), ClientError, lambda e: e.detail == "what went wrong"),
        (httpx.Response(502, text="<html>bad gateway</html>"), UnexpectedResponse, lambda e: True),
        (httpx.Response(201, json={"round_id": 3}), UnexpectedResponse, lambda e: True),
    ],
)
def test_http_errors_become_client_errors(
    response: httpx.Response, kind: type[ClientError], check: Callable[[Any], bool]
) -> None:
    with sync_client(fake(response)[0]) as client, pytest.raises(kind) as raised:
        client.ask(report="volume", year=2025)
    assert raised.value.status == response.status_code
    assert check(raised.value), raised.value


def test_no_answer_at_all_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with sync_client(httpx.MockTransport(refuse)) as client, pytest.raises(Unreachable) as raised:
        client.nodes()
    assert raised.value.status is None and "connection refused" in str(raised.value)


def test_questions_are_checked_before_anything_is_sent() -> None:
    transport, seen = fake()
    with sync_client(transport) as client:
        with pytest.raises(InvalidQuery, match="exactly one of"):
            client.ask()
        with pytest.raises(InvalidQuery, match="go with report"):
            client.ask(REVENUE, year=2025)
        with pytest.raises(InvalidQuery, match="not both"):  # the aggregator would drop rho
            client.ask(report="volume", rho=0.05, epsilon=0.9)
        with pytest.raises(InvalidQuery, match="quorum"):
            client.ask(report="volume", quorum=0)
        with pytest.raises(TypeError, match="reprot"):
            client.ask(reprot="volume")  # type: ignore[call-arg]
    assert seen == []


def test_url_and_token_come_from_the_arguments_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(client_module.URL_ENV, raising=False)
    monkeypatch.delenv(client_module.TOKEN_ENV, raising=False)
    with pytest.raises(NotConfigured, match=client_module.URL_ENV):
        Client()
    with pytest.raises(NotConfigured, match=client_module.TOKEN_ENV):
        Client("https://aggregator.example")
    with pytest.raises(NotConfigured, match="https://"):
        Client("aggregator.example", "pd_x")
    with pytest.raises(NotConfigured, match="spaces"):
        Client("https://aggregator.example", "pd_x\nInjected: 1")
    monkeypatch.setenv(client_module.URL_ENV, "https://aggregator.example/base/")
    monkeypatch.setenv(client_module.TOKEN_ENV, "pd_from-env")
    transport, seen = fake(reply(200, []))
    with Client(transport=transport) as client:
        assert client.rounds() == []
    assert str(seen[0].url) == "https://aggregator.example/base/v1/rounds"
    assert seen[0].headers["authorization"] == "Bearer pd_from-env"


# -- Result -------------------------------------------------------------------------------------


def test_rows_columns_and_shares() -> None:
    result = Result(make_result())
    rows = result.rows(lang="en", shares_along="artform")
    assert len(rows) == REVENUE.cell_count
    assert list(rows[1]) == [
        "artform",
        "artform_label",
        *(
            f"{name}{suffix}"
            for name in (
                "revenue_eur",
                "visits",
                "mean_price_eur",
                "revenue_share_artform",
                "visits_share_artform",
            )
            for suffix in ("", "_se", "_lower", "_upper", "_raw", "_too_wide")
        ),
        "coverage_answered",
        "coverage_total",
        "partial",
    ]
    assert rows[1]["artform"] == "musical_opera"
    assert rows[1]["artform_label"] == "music theatre, opera and musical"
    assert rows[1]["visits"] == 10 and rows[1]["visits_se"] == 10.0
    assert rows[1]["mean_price_eur"] == pytest.approx(25)  # 2,500 cents
    assert rows[0]["mean_price_eur"] is None  # no visits, no mean
    assert rows[0]["mean_price_eur_too_wide"] is None
    assert rows[2]["revenue_eur"] == 500.0 and rows[2]["revenue_eur_raw"] == 500.0
    share = result.shares("visits", along="artform")
    assert sum(e for e in share.estimates if e is not None) == pytest.approx(1)
    assert rows[1]["visits_share_artform"] == share.estimates[1]
    assert result.rows()[1]["artform_label"] == "muziektheater, opera en musical"
    with pytest.raises(ValueError, match="does not group by"):
        result.shares("visits", along="age_band")
    assert "round-1 closed: 2 of 2 nodes answered" in repr(result)


def test_no_estimates_without_the_quorum() -> None:
    result = Result(
        make_result((NodeStatus.ANSWERED, NodeStatus.REFUSED, NodeStatus.TIMED_OUT), quorum=2)
    )
    assert result.partial and not result.quorum_met and not result.has_estimates
    with pytest.raises(NoEstimates, match="1 of 3 nodes answered and 2 were needed"):
        result.rows()
    assert RoundResult.model_validate_json(result.to_json()) == result.raw


def test_to_polars_and_to_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    result = Result(make_result())
    frame = result.to_polars(lang="en")
    assert frame.columns == list(result.columns(lang="en"))
    assert frame["visits"].to_list() == list(result.measure("visits").estimates)
    assert frame["mean_price_eur"].null_count() == 1
    assert frame["coverage_answered"].to_list() == [2] * len(frame)
    assert frame["coverage_total"].to_list() == [2] * len(frame)
    assert not frame["partial"].any()

    class FakeFrame:
        def __init__(self, columns: dict[str, list[Any]]) -> None:
            self.columns, self.attrs = columns, {}

    fake_pandas = types.ModuleType("pandas")
    fake_pandas.DataFrame = FakeFrame  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pandas", fake_pandas)
    frame = result.to_pandas()
    assert frame.columns == result.columns()
    assert frame.attrs["round_id"] == "round-1"
    assert frame.attrs["coverage"]["answered"] == 2
    assert frame.attrs["coverage"]["nodes"][0]["institution"] == "Instelling 0"
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"to_pandas\(\) needs pandas.*pip install pandas"):
        result.to_pandas()
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(ImportError, match="pip install polars"):
        result.to_polars()


TWO_OF_THREE = (NodeStatus.ANSWERED, NodeStatus.ANSWERED, NodeStatus.TIMED_OUT)


def seen_in_the_issue(statuses: tuple[NodeStatus, ...] = TWO_OF_THREE) -> RoundResult:
    """The figures of issue 16 in the revenue report, as a noisy merge can give them: "overig"
    at −83 visits, and in musical_opera −75,400 cents of revenue over 1 visit, a mean ticket
    price of −€754 whose 95% interval is about ±€80,000. Every other cell is well measured."""
    cells = [cell[0] for cell in REVENUE.cells()]
    visits = [10_000] * len(cells)
    revenue = [25_000_000] * len(cells)
    visits[cells.index("other")] = -83
    visits[cells.index("musical_opera")] = 1
    revenue[cells.index("musical_opera")] = -75_400
    return make_result(
        statuses,
        values={Measure.VISITS: visits, Measure.REVENUE: revenue},
        ses={Measure.VISITS: 10.0, Measure.REVENUE: 4_000_000.0},
    )


def test_negative_figures_are_shown_as_0_flagged_and_kept_raw() -> None:
    result = Result(seen_in_the_issue())
    cells = [cell[0] for cell in REVENUE.cells()]
    rows = {row["artform"]: row for row in result.rows(lang="en")}
    other, opera, theatre = rows["other"], rows["musical_opera"], rows["theatre"]
    assert (other["visits"], other["visits_raw"], other["visits_too_wide"]) == (0, -83, True)
    assert other["visits_lower"] == other["visits_upper"] == 0.0  # −83 ± 19.6, clipped at 0
    assert opera["mean_price_eur_raw"] == pytest.approx(-754)
    assert opera["mean_price_eur"] == 0.0 and opera["mean_price_eur_too_wide"] is True
    half_width = opera["mean_price_eur_upper"] - opera["mean_price_eur_raw"]  # about ± €80,000
    assert half_width == pytest.approx(Z95 * math.sqrt(40_000**2 + 754**2 * 10**2))
    assert opera["revenue_eur"] == 0.0 and opera["revenue_eur_raw"] == -754.0
    assert (theatre["visits"], theatre["visits_too_wide"]) == (10_000, False)
    assert theatre["revenue_eur"] == 250_000.0 and not theatre["revenue_eur_too_wide"]
    assert theatre["mean_price_eur"] == pytest.approx(25) and not theatre["mean_price_eur_too_wide"]
    for row in rows.values():
        for name, value in row.items():
            shown = not name.endswith(("_raw", "_se")) and isinstance(value, int | float)
            assert not shown or value >= 0, (row["artform"], name, value)
    # the wire format is untouched: cents, raw noisy sums
    assert result.measure("visits").estimates[cells.index("other")] == -83
    assert result.measure("revenue").estimates[cells.index("musical_opera")] == -75_400
    frame = result.to_polars()
    assert frame["visits_raw"].min() == -83 and frame["visits"].min() == 0
    assert frame["coverage_answered"].to_list() == [2] * len(cells)
    assert frame["coverage_total"].to_list() == [3] * len(cells)
    assert frame["partial"].all()


@pytest.mark.parametrize(
    ("visits", "se"),
    [(-83, 60.0), (0, 1.0), (40, 10.0), (39, 10.0), (1_000, 10.0), (2_000, 500.0), (1_961, 500.0),
     (1_960, 500.0), (1_959, 500.0), (1_950, 500.0), (3, 0.0)],
)  # fmt: skip
def test_the_client_flags_exactly_the_cells_the_public_site_suppresses(
    visits: int, se: float
) -> None:
    """Around the 50% limit, where rounding the published figure can tip the balance."""
    cells = [cell[0] for cell in REVENUE.cells()]
    spread = [visits + k for k in range(len(cells))]
    raw = make_result(
        values={Measure.VISITS: spread, Measure.REVENUE: [100 * v for v in spread]},
        ses={Measure.VISITS: se, Measure.REVENUE: 100 * se},
    ).model_copy(update={"noise": True})
    recipe = Recipe.model_validate(
        {
            "release_id": "check",
            "title": {"nl": "t", "en": "t"},
            "description": {"nl": "d", "en": "d"},
            "tables": [
                {"table_id": m, "round": raw.round_id, "measure": m, "by": ["artform"]}
                for m in ("visits", "revenue")
            ],
        }
    )
    document = compose(
        recipe,
        {"visits": raw, "revenue": raw},
        version=1,
        sequence=1,
        previous_hash=None,
        corrects=None,
        published_at=datetime(2026, 1, 5, tzinfo=UTC),
    )
    rows = Result(raw).rows()
    for table, column in zip(document.tables, ("visits", "revenue_eur"), strict=True):
        site = [cell.suppressed for cell in table.cells]
        assert site == [row[f"{column}_too_wide"] for row in rows], column


def test_euros_are_exactly_cents_divided_by_100() -> None:
    cents = (57, -3, 1_999_999)
    revenue = MeasureEstimate(
        measure=Measure.REVENUE,
        estimates=cents,
        standard_errors=(0.0,) * 3,
        lower=tuple(map(float, cents)),
        upper=tuple(map(float, cents)),
    )
    shown = present(revenue)
    assert (shown.name, shown.kind) == ("revenue_eur", "money")
    assert shown.values == (0.57, 0.0, 19_999.99)  # 57 * 0.01 would be 0.5700000000000001
    assert shown.raw == (0.57, -0.03, 19_999.99)
    assert shown.too_wide == (False, False, False)  # exact figures (noise off) are never too wide


def test_the_sync_client_warns_of_a_partial_result_at_the_caller() -> None:
    transport, _ = fake(reply(201, seen_in_the_issue()), reply(200, seen_in_the_issue()))
    with sync_client(transport) as client:
        with pytest.warns(PartialResultWarning, match="2 of 3 institutions") as warned:
            client.ask(report="revenue", year=2025)
        assert warned[0].filename == __file__
        assert "not in them: Instelling 2" in str(warned[0].message)
        with pytest.warns(PartialResultWarning):
            client.round("round-1")
    complete = (NodeStatus.ANSWERED,) * 3
    transport, _ = fake(reply(201, seen_in_the_issue(complete)))
    with sync_client(transport) as client:
        client.ask(report="revenue", year=2025)  # filterwarnings = error: no warning here


# -- the sync client in process, and the docs example -------------------------------------------


async def test_sync_client_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [node_rows(i) for i in range(2)]
    async with exact_federation(tmp_path, rows) as fed:
        with bridged(monkeypatch, fed) as connect:

            def ask() -> Result:
                with connect(None, None) as client:
                    return client.ask(report="revenue", year=2025)

            result = await anyio.to_thread.run_sync(ask)
    assert list(result.measure("revenue").estimates) == exact_sums(rows, result.spec)["revenue"]


def doc_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)


async def test_docs_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = doc_examples()
    assert len(examples) >= 2, "python-client.md lost its examples"
    async with exact_federation(tmp_path, [node_rows(i) for i in range(3)]) as fed:
        with bridged(monkeypatch, fed):

            class InProcess(AsyncClient):
                def __init__(self, url: str | None = None, token: str | None = None, **kw: Any):
                    super().__init__(
                        url, token, **(kw | {"transport": httpx.ASGITransport(fed.app)})
                    )

            monkeypatch.setattr(client_module, "AsyncClient", InProcess)
            for index, source in enumerate(examples):
                code = compile(
                    source,
                    f"python-client.md example {index + 1}",
                    "exec",
                    flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                )
                namespace: dict[str, Any] = {"__name__": "__docs__"}
                if code.co_flags & inspect.CO_COROUTINE:  # top-level await: run on this loop
                    await eval(code, namespace)
                else:
                    await anyio.to_thread.run_sync(exec, code, namespace)
    printed = capsys.readouterr().out
    assert "theatre: " in printed  # the sync example's rows
    assert "visits: ± " in printed and "would refuse" not in printed  # the preview example
    assert printed.count("3 of 3 nodes answered") >= 2  # its progress, and the async example
