"""Two aggregator processes on one PostgreSQL database (what a proxy in front of two replicas
gives): nodes connected to either process answer rounds created on the other, quickly, because
the processes wake each other with LISTEN/NOTIFY; an independent and a secure round complete."""

from __future__ import annotations

import asyncio
import time
from datetime import date
from pathlib import Path

import httpx
import pytest

from aggregator.services.tokens import Role
from protocol.results import NodeStatus, RoundResult, RoundState
from publieksdata.processes import Service, free_port, start
from tests.e2e.test_federation_process import _join
from tests.factories import Row
from tests.fedkit import make_aggregator, make_token, node_with_rows

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(180)]
CHILD_ENV = {"PUBLIEKSDATA_LOG_LEVEL": "warning", "PUBLIEKSDATA_TESTING": "1"}


def _aggregator(home: Path, log: Path) -> Service:
    port = free_port()
    service = start(
        "aggregator",
        ["aggregator", "serve", "--home", str(home), "--port", str(port)],
        port,
        log,
        CHILD_ENV,
    )
    service.wait_healthy(60)
    return service


def _round(
    url: str, token: str, body: dict[str, object], wait_on: str
) -> tuple[RoundResult, float]:
    headers = {"authorization": f"Bearer {token}"}
    started = time.monotonic()
    created = httpx.post(f"{url}/v1/rounds", json=body, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    round_id = created.json()["round_id"]
    while True:
        result = RoundResult.model_validate(
            httpx.get(
                f"{wait_on}/v1/rounds/{round_id}",
                params={"wait": 10},
                headers=headers,
                timeout=30,
            ).json()
        )
        if result.state is RoundState.CLOSED or time.monotonic() - started > 90:
            return result, time.monotonic() - started


def test_two_aggregator_processes_share_one_database(tmp_path: Path, postgres_url: str) -> None:
    agg = make_aggregator(tmp_path / "aggregator", postgres_url, unsafe_accept_exact_answers=True)
    admin = asyncio.run(make_token(agg, Role.ADMIN, "beheer"))
    analyst = asyncio.run(make_token(agg, Role.ANALYST, "analist"))
    first = _aggregator(agg.home, tmp_path / "aggregator-1.log")
    second = _aggregator(agg.home, tmp_path / "aggregator-2.log")
    services = [first, second]
    try:
        offset = 0
        for i in range(3):
            rows = [Row(person=offset + p, event_date=date(2025, 6, p)) for p in range(1, 6)]
            node, engine = node_with_rows(
                tmp_path / f"node{i}",
                f"Instelling {i}",
                rows,
                ref_offset=offset,
                unsafe_disable_noise=True,
            )
            engine.dispose()
            offset += 5
            target = first if i < 2 else second  # node 2 polls the other process
            asyncio.run(_join(target.url, admin, node))
            port = free_port()
            service = start(
                node.institution,
                ["node", "serve", "--home", str(node.home), "--port", str(port)],
                port,
                tmp_path / f"node{i}.log",
                CHILD_ENV,
            )
            services.append(service)
            service.wait_healthy(60)
        deadline = time.monotonic() + 60
        while True:
            listed = httpx.get(
                f"{second.url}/v1/nodes", headers={"authorization": f"Bearer {analyst}"}
            ).json()
            if sum(1 for n in listed if n["connected"]) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        time.sleep(1.0)  # every node back in a long poll (25 s) at its own process
        report = {"name": "volume", "year": 2025, "rho": 0.05}
        independent, took = _round(
            first.url,
            analyst,
            {"report": {**report, "mode": "independent"}, "deadline_seconds": 60},
            wait_on=second.url,
        )
        assert independent.state is RoundState.CLOSED
        assert [n.status for n in independent.coverage.nodes] == [NodeStatus.ANSWERED] * 3
        assert sum(independent.measures[0].estimates) == 15
        # Without the cross-process wake-up, node 2 would see its task only when its 25 s poll
        # ended; with it the round is done in a few seconds.
        assert took < 15, took
        secure, took = _round(
            second.url, analyst, {"report": report, "deadline_seconds": 60}, wait_on=first.url
        )
        assert secure.state is RoundState.CLOSED and secure.failure is None, secure.failure
        assert secure.coverage.answered == 3
        assert sum(secure.measures[0].estimates) == 15
    finally:
        for service in reversed(services):
            service.stop()


def test_a_round_outlives_the_process_that_asked_it(tmp_path: Path, postgres_url: str) -> None:
    """The process that created a round is killed; the other one times the round out at its
    deadline (its periodic sweep) with the answer it has."""
    agg = make_aggregator(
        tmp_path / "aggregator", postgres_url, unsafe_accept_exact_answers=True, min_quorum=1
    )
    admin = asyncio.run(make_token(agg, Role.ADMIN, "beheer"))
    analyst = asyncio.run(make_token(agg, Role.ANALYST, "analist"))
    first = _aggregator(agg.home, tmp_path / "aggregator-1.log")
    second = _aggregator(agg.home, tmp_path / "aggregator-2.log")
    services = [first, second]
    try:
        rows = [Row(person=p, event_date=date(2025, 6, p)) for p in range(1, 6)]
        node, engine = node_with_rows(tmp_path / "node", "Instelling", rows)
        engine.dispose()
        asyncio.run(_join(second.url, admin, node))  # the node polls the second process
        # A second institution that never answers keeps the round open until its deadline.
        silent, engine = node_with_rows(tmp_path / "silent", "Stil", rows)
        engine.dispose()
        asyncio.run(_join(second.url, admin, silent))
        port = free_port()
        service = start(
            node.institution,
            ["node", "serve", "--home", str(node.home), "--port", str(port)],
            port,
            tmp_path / "node.log",
            {**CHILD_ENV, "PUBLIEKSDATA_NODE_UNSAFE_DISABLE_NOISE": "true"},
        )
        services.append(service)
        service.wait_healthy(60)
        headers = {"authorization": f"Bearer {analyst}"}
        deadline = time.monotonic() + 30
        while not any(
            n["connected"] for n in httpx.get(f"{second.url}/v1/nodes", headers=headers).json()
        ):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        body = {
            "report": {"name": "volume", "year": 2025, "rho": 0.05, "mode": "independent"},
            # Long enough for the node to answer on a busy machine; the sweep (every 10 s,
            # 5 s grace) then closes the round, so the wait below ends on that event.
            "deadline_seconds": 15,
            "nodes": None,
        }
        created = httpx.post(f"{first.url}/v1/rounds", json=body, headers=headers, timeout=30)
        assert created.status_code == 201, created.text
        round_id = created.json()["round_id"]
        first.kill()  # the process that asked the round, and holds its timer, is gone
        until = time.monotonic() + 90  # a guard against a hanging test, not a deadline
        while True:
            result = RoundResult.model_validate(
                httpx.get(f"{second.url}/v1/rounds/{round_id}", headers=headers).json()
            )
            if result.state is RoundState.CLOSED or time.monotonic() > until:
                break
            time.sleep(0.5)
        assert result.state is RoundState.CLOSED
        status = {n.institution: n.status for n in result.coverage.nodes}
        assert status == {"Instelling": NodeStatus.ANSWERED, "Stil": NodeStatus.TIMED_OUT}
    finally:
        for item in reversed(services):
            item.stop()
