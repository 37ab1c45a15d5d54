"""A real node: `publieksdata node serve` in its own process, queried over HTTP, and killed.

These tests check the ledger's two promises where they matter, in a real server: concurrent
queries never together overspend, and a crash (SIGKILL, at a random moment) never releases an
answer without its debit nor leaves a debit without its ledger entry.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from node.identity import load_signing_key
from node.services import ledger
from node.settings import NodeSettings
from node.storage.db import make_engine
from node.storage.models import BudgetPeriod, LedgerEntry
from protocol.messages import ANSWER, QueryAnswer
from protocol.query import Measure
from protocol.signing import Envelope, SigningKey, verify_once
from tests.factories import Row, write_rows
from tests.nodekit import Server, make_node, make_spec, query_body, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

JSON = {"content-type": "application/json"}


def post(client: httpx.Client, server: Server, body: bytes) -> httpx.Response:
    return client.post(f"{server.url}/v1/queries", content=body, headers=JSON)


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    """Engines opened by a test, disposed at the end."""
    engines: list[Engine] = []
    yield engines
    for engine in engines:
        engine.dispose()


def open_engine(settings: NodeSettings, engines: list[Engine]) -> Engine:
    engine = make_engine(settings.database_url)
    engines.append(engine)
    return engine


def ledger_state(engine: Engine) -> tuple[int, dict[str, Any]]:
    """Spent units over all periods, and every ledger entry by query id."""
    with engine.connect() as conn:
        spent = sum(conn.scalars(select(BudgetPeriod.spent_units)))
        rows = conn.execute(select(LedgerEntry.__table__)).all()
    return spent, {row.query_id: row for row in rows}


def check_ledger(engine: Engine, settings: NodeSettings) -> dict[str, Any]:
    """No debit without its entry; every stored answer is a valid answer to its own query."""
    spent, entries = ledger_state(engine)
    assert spent == sum(entry.rho_units for entry in entries.values())
    key = load_signing_key(settings.signing_key_path).public
    for query_id, entry in entries.items():
        answer_bytes = bytes(entry.answer)
        assert entry.answer_sha256 == hashlib.sha256(answer_bytes).hexdigest()
        payload = verify_once(Envelope.model_validate_json(answer_bytes), ANSWER, key)
        answer = QueryAnswer.model_validate(payload)
        assert answer.query_id == query_id and answer.query_hash == entry.query_hash
    return entries


# -- concurrency over HTTP ----------------------------------------------------------------------


def test_concurrent_http_queries_never_overspend(
    tmp_path: Path, db_url: str, engines: list[Engine]
) -> None:
    settings, querier = make_node(tmp_path, db_url, budget_rho=1.0)
    engine = open_engine(settings, engines)
    write_rows(engine, [Row(person=p, event_date=date(2025, 1 + p % 12, 3)) for p in range(200)])
    server = start_server(settings.home, tmp_path / "server.log")
    try:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        with (
            httpx.Client(timeout=60, limits=limits) as client,
            ThreadPoolExecutor(max_workers=24) as pool,
        ):
            # 20 retries of one query id at once: one debit, one answer, byte for byte.
            same = make_spec("q-e2e-same-id", rho=0.05)
            bodies = [query_body(querier, same) for _ in range(20)]
            retries = list(pool.map(lambda b: post(client, server, b), bodies, timeout=60))
            assert {r.status_code for r in retries} == {200}
            assert len({r.content for r in retries}) == 1
            assert sum(r.headers["x-publieksdata-replayed"] == "false" for r in retries) == 1

            # 60 distinct queries of ρ = 0.05 against the 0.95 left: exactly 19 fit.
            bodies = [query_body(querier, make_spec(f"q-e2e-{i:03d}", rho=0.05)) for i in range(60)]
            responses = list(pool.map(lambda b: post(client, server, b), bodies, timeout=60))
        outcomes = Counter(
            "answered" if r.status_code == 200 else r.json().get("reason") for r in responses
        )
        assert outcomes == {"answered": 19, "budget_exhausted": 41}, server.output()
        assert all(
            r.headers["content-type"] == "application/problem+json"
            for r in responses
            if r.status_code != 200
        )
    finally:
        server.stop()
    entries = check_ledger(engine, settings)
    spent, _ = ledger_state(engine)
    assert spent == ledger.cap_units(1.0)
    assert len(entries) == 20
    released = {
        hashlib.sha256(r.content).hexdigest()
        for r in [*responses, retries[0]]
        if r.status_code == 200
    }
    assert released == {entry.answer_sha256 for entry in entries.values()}


def test_a_served_node_answers_problems_without_leaking(tmp_path: Path) -> None:
    settings, querier = make_node(
        tmp_path, f"sqlite:///{tmp_path / 'node.db'}", max_body_bytes=2048
    )
    server = start_server(settings.home, tmp_path / "server.log")
    secret = settings.secret_path.read_text().strip()
    try:
        with httpx.Client(timeout=10) as client:

            def chunks() -> Iterator[bytes]:
                for _ in range(8):
                    yield b" " * 512

            responses = [
                client.post(f"{server.url}/v1/queries", content=chunks(), headers=JSON),
                client.post(f"{server.url}/v1/queries", content=b" " * 4096, headers=JSON),
                client.post(f"{server.url}/v1/queries", content=b"{oops", headers=JSON),
                client.get(f"{server.url}/v1/missing"),
            ]
            assert [r.status_code for r in responses] == [413, 413, 400, 404]
            for response in responses:
                assert response.headers["content-type"] == "application/problem+json"
                assert "Traceback" not in response.text and secret not in response.text
            assert post(client, server, query_body(querier, make_spec())).status_code == 200
            assert client.get(f"{server.url}/v1/health").json()["status"] == "ok"
    finally:
        server.stop()
    assert "Traceback" not in server.output()


# -- crash safety -------------------------------------------------------------------------------


def many_rows(count: int, seed: int) -> list[Row]:
    """Enough admissions that an answer takes tens of milliseconds, so a kill lands mid-answer."""
    rng = random.Random(seed)
    artforms = ("theatre", "dance", "film", "cabaret", "classical_music")
    return [
        Row(
            person=rng.randrange(1, count // 4),
            event_date=date(2025, rng.randint(1, 12), rng.randint(1, 28)),
            artform=rng.choice(artforms),
            price_cents=rng.randrange(500, 6000),
        )
        for _ in range(count)
    ]


class Stream:
    """Client threads that send fresh queries back to back until told to stop."""

    def __init__(self, server: Server, querier: SigningKey, label: str, workers: int = 4) -> None:
        self.server = server
        self.querier = querier
        self.label = label
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.received: dict[str, bytes] = {}
        self.cut_off: list[str] = []  # sent, but the connection died before an answer came back
        self.not_sent: list[str] = []  # the server was gone before the request could connect
        self.unexpected: list[tuple[int, str]] = []
        self.threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(workers)
        ]

    def __enter__(self) -> Stream:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=20)
        assert not any(thread.is_alive() for thread in self.threads)

    def _run(self, worker: int) -> None:
        with httpx.Client(timeout=15) as client:
            n = 0
            while not self.stop.is_set():
                query_id = f"q-{self.label}-{worker}-{n:04d}"
                n += 1
                spec = make_spec(
                    query_id,
                    rho=0.001,
                    group_by=("artform",),
                    measures=(Measure.VISITS, Measure.PERSONS),
                )
                try:
                    response = post(client, self.server, query_body(self.querier, spec))
                except httpx.ConnectError:
                    with self.lock:
                        self.not_sent.append(query_id)
                    time.sleep(0.01)
                    continue
                except httpx.TransportError:
                    with self.lock:
                        self.cut_off.append(query_id)
                    continue
                with self.lock:
                    if response.status_code == 200:
                        self.received[query_id] = response.content
                    else:
                        self.unexpected.append((response.status_code, response.text))

    def answered(self) -> int:
        with self.lock:
            return len(self.received)


def test_sigkill_never_releases_an_answer_without_its_debit(
    tmp_path: Path, db_url: str, engines: list[Engine]
) -> None:
    settings, querier = make_node(tmp_path, db_url, budget_rho=10.0)
    engine = open_engine(settings, engines)
    write_rows(engine, many_rows(20_000, seed=7))
    rng = random.Random(20250517)
    log = tmp_path / "server.log"
    received: dict[str, bytes] = {}
    cut_off: list[str] = []
    not_sent: list[str] = []
    for round_ in range(3):
        server = start_server(settings.home, log)
        try:
            with Stream(server, querier, f"r{round_}") as stream:
                deadline = time.monotonic() + 10
                while stream.answered() < 3 and time.monotonic() < deadline:
                    time.sleep(0.01)  # let the stream get going before the kill window opens
                time.sleep(rng.uniform(0.05, 1.0))
                server.kill()
        finally:
            server.kill()
        assert not stream.unexpected, stream.unexpected[:3]
        assert stream.received, f"round {round_}: no answers before the kill\n{server.output()}"
        received.update(stream.received)
        cut_off += stream.cut_off
        not_sent += stream.not_sent
    assert cut_off, "no request was in flight at any kill"

    # Every answer the client saw is in the ledger, byte for byte, with its debit.
    entries = check_ledger(engine, settings)
    for query_id, body in received.items():
        assert query_id in entries, f"{query_id} was released but is not in the ledger"
        assert bytes(entries[query_id].answer) == body
    # Ledger entries the client never saw belong to requests cut off by a kill.
    assert set(entries) - set(received) <= set(cut_off)

    # After a restart, retrying the cut-off queries returns the stored answer when there is one
    # (no fresh noise), and a first answer otherwise; the books still balance.
    server = start_server(settings.home, log)
    try:
        with httpx.Client(timeout=15) as client:
            for query_id in cut_off + not_sent[:5]:
                spec = make_spec(
                    query_id,
                    rho=0.001,
                    group_by=("artform",),
                    measures=(Measure.VISITS, Measure.PERSONS),
                )
                response = post(client, server, query_body(querier, spec))
                assert response.status_code == 200, response.text
                replayed = response.headers["x-publieksdata-replayed"] == "true"
                assert replayed == (query_id in entries)
                if replayed:
                    assert response.content == bytes(entries[query_id].answer)
    finally:
        server.stop()
    after = check_ledger(engine, settings)
    assert set(after) == set(entries) | set(cut_off) | set(not_sent[:5])
